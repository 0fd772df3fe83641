package flatfile

import (
	"crypto/sha256"
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

// arg is k's SQLite value.
func (k key) arg() any {
	if k.isInt {
		return k.n
	}
	return []byte(k.b)
}

// keySet is a set of keys. Integer keys have a map of their own: a map of int64 is
// several times faster than one of strings at a batch's 50,000 keys.
type keySet struct {
	size  int // the capacity a map is made with
	ints  map[int64]struct{}
	other map[string]struct{}
}

func newKeySet(size int) *keySet { return &keySet{size: size} }

func (s *keySet) add(k key) {
	switch {
	case k.isInt:
		if s.ints == nil {
			s.ints = make(map[int64]struct{}, s.size)
		}
		s.ints[k.n] = struct{}{}
	default:
		if s.other == nil {
			s.other = make(map[string]struct{}, s.size)
		}
		s.other[k.b] = struct{}{}
	}
}

// take removes k and reports whether the set held it.
func (s *keySet) take(k key) bool {
	if k.isInt {
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

func (s *keySet) len() int { return len(s.ints) + len(s.other) }

// keys lists the set's keys, in no order.
func (s *keySet) keys() []key {
	out := make([]key, 0, s.len())
	for n := range s.ints {
		out = append(out, key{isInt: true, n: n})
	}
	for b := range s.other {
		out = append(out, key{b: b})
	}
	return out
}
