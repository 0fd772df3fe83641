package redis

import (
	"strconv"

	"github.com/ibexrepl/ibex/sinks/pgtext"
)

// A unit's first batch of a table whose keys are integers of a narrow range (a key-range
// batch of a dense integer key) is tracked in bits rather than in the table's present map:
// which of its keys it has, and which a row came for. That is what the batch's FinishBatch
// needs (the keys to DEL); the map entries are made only if something else of the table
// comes in the same unit (tstate.settle), which a run's unit of one batch never does.

// fastKeys are such a batch's keys.
type fastKeys struct {
	batch uint32 // the table's batch (tstate.batches) they are of
	base  string // the table's key base: a key is base + its integer
	lo    int64
	in    []uint64 // bit n-lo: n is a key of the batch
	got   []uint64 // bit n-lo: a row came for n
	keys  []string // the batch's keys (its DEL list, distinct)
}

// fastKeysOf returns the fast keys of a batch of l, or nil when keys (the key text
// PrepareBatch takes) are not all canonical integers of a range of at most 4 integers
// a key. Such a key's Redis key is base + its text (layout.key).
func (l *layout) fastKeysOf(keys []string) *fastKeys {
	if len(l.t.Key) != 1 || len(keys) == 0 {
		return nil
	}
	if ty := l.types[0]; ty.Array || ty.Kind == pgtext.Bytes || ty.Kind == pgtext.TimestampTZ {
		return nil
	}
	var lo, hi int64
	for i, k := range keys {
		n, ok := canonicalInt(k)
		if !ok {
			return nil
		}
		if i == 0 {
			lo, hi = n, n
		}
		lo, hi = min(lo, n), max(hi, n)
	}
	span := uint64(hi) - uint64(lo)
	if span/4 >= uint64(len(keys)) {
		return nil
	}
	words := span/64 + 1
	f := &fastKeys{base: l.base, lo: lo, in: make([]uint64, words), got: make([]uint64, words), keys: make([]string, 0, len(keys))}
	for _, k := range keys {
		n, _ := canonicalInt(k)
		if w, m := f.bit(n); f.in[w]&m == 0 {
			f.in[w] |= m
			f.keys = append(f.keys, l.base+k)
		}
	}
	return f
}

// canonicalInt parses s when it is an integer as strconv prints it (no sign but -, no
// leading zero): the one text of its value.
func canonicalInt(s string) (int64, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, false
	}
	var buf [20]byte
	return n, string(strconv.AppendInt(buf[:0], n, 10)) == s
}

// bit is the word and mask of n, which must be in the range.
func (f *fastKeys) bit(n int64) (int, uint64) {
	i := uint64(n) - uint64(f.lo)
	return int(i / 64), 1 << (i % 64)
}

// has reports whether n is a key of the batch.
func (f *fastKeys) has(n int64) bool {
	i := uint64(n) - uint64(f.lo)
	return i/64 < uint64(len(f.in)) && f.in[i/64]&(1<<(i%64)) != 0
}

// gotRow records that a row came for key text s, and reports false when s is not one of
// the batch's keys (the caller then tracks the table in its map).
func (f *fastKeys) gotRow(s string) bool {
	n, ok := canonicalInt(s)
	if !ok || !f.has(n) {
		return false
	}
	w, m := f.bit(n)
	f.got[w] |= m
	return true
}

// rowCame reports whether a row came for key k (one of f.keys).
func (f *fastKeys) rowCame(k string) bool {
	n, _ := canonicalInt(k[len(f.base):])
	w, m := f.bit(n)
	return f.got[w]&m != 0
}

// settle puts the keys of the table's fast batch, if any, into its present map.
func (ts *tstate) settle() {
	f := ts.fast
	if f == nil {
		return
	}
	ts.fast = nil
	if ts.present == nil {
		ts.present = make(map[string]keyState, len(f.keys))
	}
	for _, k := range f.keys {
		ts.present[k] = keyState{exists: f.rowCame(k), batch: f.batch}
	}
}
