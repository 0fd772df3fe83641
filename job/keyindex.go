package job

import "strconv"

// keyIndex finds the states of a batch's keys by an integer key's value, in an array over
// the keys' range: the route of a sent row looks its key up there rather than hashing its
// text in the batch's map (a lookup per row of the batch).
type keyIndex struct {
	lo     int64
	states []*keyState // by value - lo; nil: not a key the batch sends
}

// get returns the state of the key whose text (as COPY prints it) is key, nil when the
// batch sends no row of it; ok is false when the index cannot tell (no index, or not an
// integer: the map can).
func (x *keyIndex) get(key []byte) (ks *keyState, ok bool) {
	if x == nil {
		return nil, false
	}
	n, ok := atoi(key)
	if !ok {
		return nil, false
	}
	if i := uint64(n - x.lo); n >= x.lo && i < uint64(len(x.states)) {
		return x.states[i], true
	}
	return nil, true
}

// keyIndexer collects the keys a batch sends, for their keyIndex.
type keyIndexer struct {
	ok     bool
	ns     []int64
	states []*keyState
	buf    [20]byte
}

// init readies the indexer for about n keys of t: only a one-column integer key is
// indexed.
func (x *keyIndexer) init(t *table, n int) {
	x.ok = rangeKind(t) == integerKey && len(t.extras) == 0
	if x.ok {
		x.ns, x.states = make([]int64, 0, n), make([]*keyState, 0, n)
	}
}

// add takes a key the batch sends: its text must be the value's only text, or no index
// is made.
func (x *keyIndexer) add(k string, ks *keyState) {
	if !x.ok {
		return
	}
	n, ok := atoi(k)
	if !ok || string(strconv.AppendInt(x.buf[:0], n, 10)) != k {
		x.ok = false
		return
	}
	x.ns, x.states = append(x.ns, n), append(x.states, ks)
}

// index returns the index of the keys added, or nil when there is none to make: keys
// that are not all integers, or that fill less than half of their range (the array
// would be mostly empty).
func (x *keyIndexer) index() *keyIndex {
	if !x.ok || len(x.ns) == 0 {
		return nil
	}
	lo, hi := x.ns[0], x.ns[0]
	for _, n := range x.ns {
		lo, hi = min(lo, n), max(hi, n)
	}
	if uint64(hi-lo) >= 2*uint64(len(x.ns)) {
		return nil
	}
	ix := &keyIndex{lo: lo, states: make([]*keyState, hi-lo+1)}
	for i, n := range x.ns {
		ix.states[n-lo] = x.states[i]
	}
	return ix
}
