package job

import (
	"context"
	"slices"
	"strconv"
	"sync"

	"github.com/ibexrepl/ibex/internal/conflict"
)

// A backlog of a few batches is read in one scan of each source's change table and cut
// into key ranges by the run, instead of asking each source for quantiles of its keys (a
// scan and a sort of the change rows) and then reading each range (a scan each: the change
// table has no index). The ranges are cut between the keys themselves, into about equal
// numbers of changed keys, so that each batch holds the budget's share; the bounds are
// those of quantile ranges (table.bounds), which the later statements of the table's
// batches (consume, a batch read again) select as usual.

// oneScanBatches is the most batches a backlog may need to be read in one scan: its keys
// are all held at once (about oneScanBatches * batch_size).
const oneScanBatches = 4

// splitKeys is a backlog read in one scan and cut into key ranges: the keys of each range,
// the first of them merged, the others merged by a goroutine meanwhile.
type splitKeys struct {
	t     *table
	alive uint64 // the members alive when it was read (the flags it read depend on them)
	wg    sync.WaitGroup
	maps  []map[string]*keyState // by bucket; nil once taken, or while only order is made (mergeOne)
	order []*keyOrder            // by bucket, when known
}

// take returns bucket b's keys and their order when known (see keyOrder), or nil when
// the dbs taking part changed since they were read (the bucket is then read again by its
// range).
func (s *splitKeys) take(b int, alive uint64) (map[string]*keyState, *keyOrder) {
	if b > 0 {
		s.wg.Wait()
	}
	keys, order := s.maps[b], s.order[b]
	s.maps[b], s.order[b] = nil, nil
	if alive != s.alive {
		return nil, nil
	}
	return keys, order
}

// slice returns the keys from i to j of p (sharing p's arrays, capped: appending copies).
func (p *keyPart) slice(i, j int) *keyPart {
	q := &keyPart{keys: p.keys[i:j:j], at: p.at[i:j:j], kind: p.kind[i:j:j], need: p.need[i:j:j]}
	if p.sums != nil {
		q.sums = p.sums[i:j:j]
	}
	if p.cols != nil {
		q.cols = p.cols[i:j:j]
	}
	if p.old != nil {
		q.old = p.old[i:j:j]
	}
	if p.ints != nil {
		q.ints = p.ints[i:j:j]
	}
	return q
}

// readSplit reads every pending key of t (a table whose backlog needs nb batches, 1 < nb
// <= oneScanBatches, and whose key sorts as kind) in one scan per source, and cuts them
// into ranges of at most batch keys. It sets t.bounds and returns the number of batches
// and their keys; ok is false when t does not qualify (TRUNCATEs pending) or a source
// failed (it has left the run; the caller splits as usual).
func (r *runner) readSplit(ctx context.Context, t *table, nb, batch int, kind keyKind) (n int, s *splitKeys, ok bool) {
	if nb <= 1 || nb > oneScanBatches || kind == noRanges || r.truncs[t] != nil {
		return 0, nil, false
	}
	alive := r.aliveMask()
	kr := r.startKeyParts(ctx, t, 0, 1, false, false)
	kr.wg.Wait()
	for _, a := range r.members {
		if kr.errs[a.idx] != nil {
			r.finishKeyRead(kr) // drops it
			return 0, nil, false
		}
	}
	// Each key's place in the key order: an integer key's value; a uuid's text sorts as
	// PostgreSQL sorts the uuid.
	var ns [][]int64 // integerKey: per part, its keys' values
	var all []int64
	var texts []string
	if kind == integerKey {
		ns = make([][]int64, len(kr.parts))
	}
	nparts, sorted := 0, true // sorted: every part's keys are in order (the grouper's)
	for _, p := range kr.parts {
		if p != nil {
			nparts++
			sorted = sorted && len(p.ints) == len(p.keys)
		}
	}
	for pi, p := range kr.parts {
		if p == nil {
			continue
		}
		if kind != integerKey {
			texts = append(texts, p.keys...)
			continue
		}
		vs := p.ints // the grouper's, or parsed here
		if len(vs) != len(p.keys) {
			vs = make([]int64, len(p.keys))
			for i, k := range p.keys {
				v, err := strconv.ParseInt(k, 10, 64)
				if err != nil {
					return 0, nil, false
				}
				vs[i] = v
			}
		}
		ns[pi] = vs
		if nparts == 1 && sorted {
			all = vs // distinct and in order already
		} else {
			all = append(all, vs...)
		}
	}
	// The distinct keys, in order: the ranges are cut between them, at the first key of
	// each range.
	var bounds []string
	var ibounds []int64  // integerKey
	var sbounds []string // uuidKey
	if kind == integerKey {
		if nparts > 1 || !sorted {
			slices.Sort(all)
			all = slices.Compact(all)
		}
		nb = max(1, (len(all)+batch-1)/batch)
		for b := 1; b < nb; b++ {
			v := all[b*len(all)/nb]
			ibounds, bounds = append(ibounds, v), append(bounds, strconv.FormatInt(v, 10))
		}
	} else {
		slices.Sort(texts)
		texts = slices.Compact(texts)
		nb = max(1, (len(texts)+batch-1)/batch)
		for b := 1; b < nb; b++ {
			v := texts[b*len(texts)/nb]
			sbounds, bounds = append(sbounds, v), append(bounds, "'"+v+"'::uuid")
		}
	}
	// Each part cut by the bounds, into parts of the ranges sized at once.
	parts := make([][]*keyPart, nb)
	for b := range parts {
		parts[b] = make([]*keyPart, len(r.members))
	}
	for pi, p := range kr.parts {
		if p == nil {
			continue
		}
		if kind == integerKey && sorted {
			// Keys in order: each range's are a run of them, taken as they are.
			lo := 0
			for b := range parts {
				hi := len(p.keys)
				if b < len(ibounds) {
					hi, _ = slices.BinarySearch(p.ints, ibounds[b])
				}
				parts[b][pi] = p.slice(lo, hi)
				lo = hi
			}
			continue
		}
		in := make([]uint8, len(p.keys))
		sizes := make([]int, nb)
		for i, k := range p.keys {
			b := 0
			if kind == integerKey {
				for b < len(ibounds) && ns[pi][i] >= ibounds[b] {
					b++
				}
			} else {
				for b < len(sbounds) && k >= sbounds[b] {
					b++
				}
			}
			in[i] = uint8(b)
			sizes[b]++
		}
		for b := range parts {
			q := &keyPart{keys: make([]string, 0, sizes[b]), at: make([]int64, 0, sizes[b]),
				kind: make([]conflict.Kind, 0, sizes[b]), need: make([]uint64, 0, sizes[b])}
			if p.sums != nil {
				q.sums = make([][]string, 0, sizes[b])
			}
			if p.cols != nil {
				q.cols = make([]string, 0, sizes[b])
			}
			if p.old != nil {
				q.old = make([]string, 0, sizes[b])
			}
			parts[b][pi] = q
		}
		for i := range p.keys {
			q := parts[in[i]][pi]
			q.keys, q.at = append(q.keys, p.keys[i]), append(q.at, p.at[i])
			q.kind, q.need = append(q.kind, p.kind[i]), append(q.need, p.need[i])
			if p.sums != nil {
				q.sums = append(q.sums, p.sums[i])
			}
			if p.cols != nil {
				q.cols = append(q.cols, p.cols[i])
			}
			if p.old != nil {
				q.old = append(q.old, p.old[i])
			}
		}
	}
	t.bounds = bounds
	if len(bounds) == 0 {
		t.bounds = nil
	}
	s = &splitKeys{t: t, alive: alive, maps: make([]map[string]*keyState, nb), order: make([]*keyOrder, nb)}
	s.maps[0], s.order[0] = mergeParts(r.members, parts[0])
	if nb > 1 {
		members := r.members
		s.wg.Go(func() {
			for b := 1; b < nb; b++ {
				s.maps[b], s.order[b] = mergeParts(members, parts[b])
			}
		})
	}
	return nb, s, true
}
