package flatfile

import (
	"crypto/sha256"
	"math"
	"math/bits"
	"strconv"

	"github.com/ibexrepl/ibex/internal/conflict"
)

// A key is held in the index in the most compact of three forms, each its own SQLite
// value, so that no two forms ever meet: a key that is one integer written as COPY
// writes it (a one-column integer key) as an INTEGER; another key whose text is shorter
// than hashedKey bytes as that text (a BLOB); a longer one as the first hashedKey bytes
// of its SHA-256 (a BLOB of that length, which a shorter text never equals). Two
// different keys of a table share a hash with a probability of about n²/2¹²⁹ (below
// 10⁻²⁰ for a billion keys), an accident that would only miscount a batch's deleted
// rows, never change a file.
const hashedKey = 16

// key is a key as the index holds it.
type key struct {
	isInt bool
	n     int64  // the integer, when isInt
	b     string // else the text, or its hash
}

// indexKey is the key of fields, the key fields of a row or of a key PrepareBatch got.
// They are re-encoded as COPY TO writes them, so that both always match.
func indexKey(fields []conflict.Field) key {
	if len(fields) == 1 && !fields[0].Null {
		// One field: its COPY text is its text when that is an integer, which needs
		// no escape.
		if n, err := strconv.ParseInt(fields[0].Text, 10, 64); err == nil {
			var buf [20]byte
			if string(strconv.AppendInt(buf[:0], n, 10)) == fields[0].Text {
				return key{isInt: true, n: n}
			}
		}
	}
	text := conflict.EncodeCopyLine(fields)
	if n, err := strconv.ParseInt(text, 10, 64); err == nil {
		var buf [20]byte
		if string(strconv.AppendInt(buf[:0], n, 10)) == text { // not +1, 01, -0
			return key{isInt: true, n: n}
		}
	}
	if len(text) < hashedKey {
		return key{b: text}
	}
	h := sha256.Sum256([]byte(text))
	return key{b: string(h[:hashedKey])}
}

// rawKey is indexKey of key fields given as the bytes of their text (fields without an
// escape or a NULL), without a copy for one integer written as COPY writes it.
func rawKey(fields [][]byte) key {
	if len(fields) == 1 {
		if n, ok := canonicalInt(fields[0]); ok {
			return key{isInt: true, n: n}
		}
	}
	fs := make([]conflict.Field, len(fields))
	for i, b := range fields {
		fs[i] = conflict.Field{Text: string(b)}
	}
	return indexKey(fs)
}

// canonicalInt parses b when it is an int64 as strconv.AppendInt writes it (no +, no
// leading zero, no -0).
func canonicalInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	d := b
	if neg {
		d = d[1:]
	}
	if len(d) == 0 || len(d) > 19 || (d[0] == '0' && (len(d) > 1 || neg)) {
		return 0, false
	}
	var u uint64
	for _, c := range d {
		if c < '0' || c > '9' {
			return 0, false
		}
		u = u*10 + uint64(c-'0')
	}
	switch {
	case neg && u <= 1<<63:
		return int64(-u), true
	case !neg && u <= math.MaxInt64:
		return int64(u), true
	}
	return 0, false
}

// arg is k's SQLite value.
func (k key) arg() any {
	if k.isInt {
		return k.n
	}
	return []byte(k.b)
}

// keySet is a set of keys. Integer keys within a range of at most as many integers as
// the set was made with (a batch of a dense key) are bits, one per integer of the range;
// other integer keys have a map of their own: a map of int64 is several times faster than
// one of strings at a batch's 50,000 keys.
type keySet struct {
	ints  map[int64]struct{}
	other map[string]struct{}
	// base is the first integer of the range whose integers bits holds (nil: none), n
	// how many bits are set.
	base int64
	bits []uint64
	n    int
	// full is set by newKeySet when the set is every integer from lo to hi.
	full   bool
	lo, hi int64
}

// newIntKeySet is newKeySet of integer keys ns.
func newIntKeySet(ns []int64) *keySet {
	s := &keySet{}
	if len(ns) == 0 {
		return s
	}
	lo, hi := ns[0], ns[0]
	for _, n := range ns {
		lo, hi = min(lo, n), max(hi, n)
	}
	if uint64(hi)-uint64(lo) < uint64(len(ns)) {
		s.base, s.bits = lo, make([]uint64, (uint64(hi)-uint64(lo))/64+1)
	}
	for _, n := range ns {
		s.add(key{isInt: true, n: n})
	}
	if s.bits != nil && uint64(s.n) == uint64(hi)-uint64(lo)+1 {
		s.full, s.lo, s.hi = true, lo, hi
	}
	return s
}

// newKeySet returns the set of keys (which may repeat).
func newKeySet(keys []key) *keySet {
	s := &keySet{}
	ints := len(keys) > 0
	var lo, hi int64
	for i, k := range keys {
		if !k.isInt {
			ints = false
			break
		}
		if i == 0 {
			lo, hi = k.n, k.n
		}
		lo, hi = min(lo, k.n), max(hi, k.n)
	}
	if ints && uint64(hi)-uint64(lo) < uint64(len(keys)) {
		s.base, s.bits = lo, make([]uint64, (uint64(hi)-uint64(lo))/64+1)
	}
	for _, k := range keys {
		s.add(k)
	}
	if s.bits != nil && uint64(s.n) == uint64(hi)-uint64(lo)+1 {
		s.full, s.lo, s.hi = true, lo, hi
	}
	return s
}

// bit returns the word and mask of integer n in bits, ok false when n is out of them.
func (s *keySet) bit(n int64) (w int, m uint64, ok bool) {
	i := uint64(n) - uint64(s.base)
	if i/64 >= uint64(len(s.bits)) {
		return 0, 0, false
	}
	return int(i / 64), 1 << (i % 64), true
}

func (s *keySet) add(k key) {
	if k.isInt {
		if w, m, ok := s.bit(k.n); ok {
			if s.bits[w]&m == 0 {
				s.bits[w] |= m
				s.n++
			}
			return
		}
		if s.ints == nil {
			s.ints = map[int64]struct{}{}
		}
		s.ints[k.n] = struct{}{}
		return
	}
	if s.other == nil {
		s.other = map[string]struct{}{}
	}
	s.other[k.b] = struct{}{}
}

// take removes k and reports whether the set held it.
func (s *keySet) take(k key) bool {
	if k.isInt {
		if w, m, ok := s.bit(k.n); ok {
			if s.bits[w]&m == 0 {
				return false
			}
			s.bits[w] &^= m
			s.n--
			return true
		}
		if _, ok := s.ints[k.n]; ok {
			delete(s.ints, k.n)
			return true
		}
		return false
	}
	if _, ok := s.other[k.b]; ok {
		delete(s.other, k.b)
		return true
	}
	return false
}

func (s *keySet) len() int { return s.n + len(s.ints) + len(s.other) }

// keys lists the set's keys, in no order.
func (s *keySet) keys() []key {
	out := make([]key, 0, s.len())
	for w, word := range s.bits {
		for ; word != 0; word &= word - 1 {
			i := uint64(w)*64 + uint64(bits.TrailingZeros64(word))
			out = append(out, key{isInt: true, n: int64(uint64(s.base) + i)})
		}
	}
	for n := range s.ints {
		out = append(out, key{isInt: true, n: n})
	}
	for b := range s.other {
		out = append(out, key{b: b})
	}
	return out
}
