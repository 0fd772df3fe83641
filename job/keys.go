package job

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"sync"

	"github.com/ibexrepl/ibex/internal/capture"
	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/sinks"
)

// keyState is what a batch knows of one changed key.
type keyState struct {
	changes []conflict.Change
	changer uint64 // members that changed the key (bit per member index)
	need    uint64 // members some changer's pending change has not reached yet
	recv    uint64 // members that receive the winner's row
	winner  int    // member index, -1: none (skip)
	// built is set when the row receivers get is built from several versions (a conflict
	// decision that is not a whole row, see build.go): the members in more.from send
	// their version, and every receiver in recv, the winner too, gets the built row.
	built bool
	// dropRow: the key's row is deleted on every receiver in recv, its own source too
	// (a unique clash's losing row): no db sends it.
	dropRow bool
	// more is what few keys have (nil: none of it): a batch holds a state per changed
	// key, kept small.
	more *keyMore
}

// keyMore is what a key's state holds besides, for a built row, or on a table with
// counters, conflict_detect=columns or old rows.
type keyMore struct {
	// from and decision: the members that send their version of a built row, and its
	// decision (a pointer: few keys have one, and more of a counter table's keys is
	// made for their sums).
	from     uint64
	decision *conflict.Decision
	// sums are, on a table with counters, each changer's sums of deltas (by source member
	// index; see keyPart.sums).
	sums map[int][]string
	// cols are, on a table with conflict_detect=columns, each changer's changed columns
	// (by source member index): capture.ColsSep-separated names, nullText for all.
	cols map[int]string
	// old are, when capture keeps old rows (a conflict function), each changer's row as
	// its first pending change found it (by source member index): JSON, "" for none.
	old map[int]string
}

// extra returns ks.more, made when missing.
func (ks *keyState) extra() *keyMore {
	if ks.more == nil {
		ks.more = &keyMore{}
	}
	return ks.more
}

// sums, cols and old are ks.more's (nil without).
func (ks *keyState) sums() map[int][]string {
	if ks.more == nil {
		return nil
	}
	return ks.more.sums
}

func (ks *keyState) cols() map[int]string {
	if ks.more == nil {
		return nil
	}
	return ks.more.cols
}

func (ks *keyState) old() map[int]string {
	if ks.more == nil {
		return nil
	}
	return ks.more.old
}

// readKeys reads the pending keys of every live source for one bucket (phase 1).
func (r *runner) readKeys(ctx context.Context, t *table, b, nb int) map[string]*keyState {
	return r.finishKeyRead(r.startKeyRead(ctx, t, b, nb, false))
}

// keyPart is what one source sent of a bucket's pending keys.
type keyPart struct {
	keys []string
	at   []int64
	kind []conflict.Kind
	need []uint64
	// sums are, on a table with counters, per key the sums of the deltas of the source's
	// pending changes of it that each receiver has not applied: counter by counter, one
	// entry per member index ("" for a member that is no receiver; nullText when a change
	// has no delta).
	sums [][]string
	// cols are, with conflict_detect=columns, per key the columns the source's pending
	// updates changed (see keyState.cols).
	cols []string
	// old are, when capture keeps old rows, per key the old row (see keyState.old).
	old []string
	// ints are, when the run grouped a one-column integer key (grouper), the keys'
	// values, in increasing order (as keys are then); nil otherwise.
	ints []int64
}

// nullText is NULL in COPY text.
const nullText = `\N`

// isT reports whether a COPY text boolean is true.
func isT(f []byte) bool { return len(f) == 1 && f[0] == 't' }

// keyRead is a read of one bucket's pending keys from every live source, under way.
type keyRead struct {
	t     *table
	b     int
	alive uint64 // the members alive when it started (the flags it reads depend on them)
	parts []*keyPart
	errs  []error
	wg    sync.WaitGroup // the sources' reads and the merge
	// merged are the keys the sources sent, merged by a goroutine once they are all in
	// (while the previous batch is applied, for a read ahead); nil when a source failed or
	// when a TRUNCATE may void some changes: finishKeyRead merges them then.
	merged map[string]*keyState
	order  *keyOrder // merged's keys in the order of their states, when mergeOne made them
}

// keyOrder is a batch's keys in the order of their states (one source's keys, merged by
// mergeOne: in key order for an integer key), so that a walk over all of them reads the
// states in memory order rather than in the map's.
type keyOrder struct {
	names  []string
	states []keyState
}

// startKeyRead starts reading the pending keys of bucket b of t from every live source, on
// their first sessions, or on their key sessions when ahead (reading the next bucket while
// this one is applied: the rows it reads are not touched by that). Only the SQL is built
// here, from the run's state; the goroutines touch nothing but their sessions.
func (r *runner) startKeyRead(ctx context.Context, t *table, b, nb int, ahead bool) *keyRead {
	return r.startKeyParts(ctx, t, b, nb, ahead, true)
}

// startKeyParts is startKeyRead; without merge, the sources' parts are left unmerged
// (readSplit cuts them first).
func (r *runner) startKeyParts(ctx context.Context, t *table, b, nb int, ahead, merge bool) *keyRead {
	nk := len(t.keyCols)
	kr := &keyRead{t: t, b: b, alive: r.aliveMask(), parts: make([]*keyPart, len(r.members)), errs: make([]error, len(r.members))}
	var reads sync.WaitGroup
	if merge && r.truncs[t] == nil {
		members := r.members
		kr.wg.Add(1)
		defer func() {
			go func() {
				defer kr.wg.Done()
				reads.Wait()
				for _, err := range kr.errs {
					if err != nil {
						return
					}
				}
				kr.merged, kr.order = mergeParts(members, kr.parts)
			}()
		}()
	}
	for _, a := range r.alive() {
		if !a.isSource() {
			continue
		}
		var recvs []*member
		for _, m := range r.members {
			if m != a && m.alive() {
				recvs = append(recvs, m)
			}
		}
		if len(recvs) == 0 {
			continue
		}
		// One need-flag per receiver, in the order of recvs (that of r.watermarks).
		byCols := t.rel.Detect == control.DetectColumns
		withOld := keepsOld(r.sync)
		nc, nm := len(t.rel.Counters), len(r.members)
		// A key that prints one way is grouped here rather than by the server (see
		// capture.KeyReadRows), when the lines carry nothing but flags.
		rows := nc == 0 && !byCols && !withOld && rangeKind(t) != noRanges
		ints := rows && rangeKind(t) == integerKey
		sql := capture.KeyReadOld(t.change, t.keyCols, a.snap, r.watermarks(a), r.bucketCond(t, changeAlias, b, nb), t.bounds != nil, t.rel.Counters, byCols, withOld)
		if rows {
			sql = capture.KeyReadRows(t.change, t.keyCols[0], a.snap, r.watermarks(a), r.bucketCond(t, changeAlias, b, nb), t.bounds != nil)
		}
		extra := 0
		if byCols {
			extra++
		}
		if withOld {
			extra++
		}
		conn := a.conn
		if ahead {
			conn = a.kconn
		}
		p := &keyPart{}
		kr.parts[a.idx] = p
		// About how many keys the source sends, to size what holds them.
		var hint int
		if rows && r.pendingN != nil {
			hint = int(min(min(r.pendingN[t], r.changesPending(t, a))/int64(max(nb, 1)), 2*int64(r.batchSize())))
		}
		kr.wg.Add(1)
		reads.Add(1)
		go func() {
			defer kr.wg.Done()
			defer reads.Done()
			var g *grouper
			if rows {
				g = newGrouper(p, hint, ints)
			}
			var lw interface {
				io.Writer
				Err() error
			}
			var f [][]byte // a line's fields, reused
			if g != nil {
				lw = newTupleWriter(func(f [][]byte) error { return g.addBinary(f, recvs) })
			} else {
				lw = sinks.NewLineWriter(func(line []byte) error {
					f = sinks.SplitTabs(f[:0], line)
					if len(f) != nk+3+len(recvs)*(1+nc)+extra {
						return fmt.Errorf("unexpected change row with %d fields", len(f))
					}
					at, err := strconv.ParseInt(string(f[nk]), 10, 64)
					if err != nil {
						return err
					}
					kind := conflict.KindUpdate
					if isT(f[nk+2]) {
						kind = conflict.KindDelete
					} else if isT(f[nk+1]) {
						kind = conflict.KindInsert
					}
					var need uint64
					for i, m := range recvs {
						if isT(f[nk+3+i]) {
							need |= bit(m.idx)
						}
					}
					p.keys = append(p.keys, string(bytes.Join(f[:nk], []byte{'\t'})))
					p.at = append(p.at, at)
					p.kind = append(p.kind, kind)
					p.need = append(p.need, need)
					if nc > 0 {
						sums := make([]string, nc*nm)
						at := nk + 3 + len(recvs)
						for c := range nc {
							for i, m := range recvs {
								sums[c*nm+m.idx] = string(f[at+c*len(recvs)+i])
							}
						}
						p.sums = append(p.sums, sums)
					}
					if byCols {
						p.cols = append(p.cols, string(f[nk+3+len(recvs)*(1+nc)]))
					}
					if withOld {
						old := ""
						if v := f[len(f)-1]; string(v) != nullText {
							fs, err := conflict.DecodeCopyLine(string(v))
							if err != nil || len(fs) != 1 {
								return fmt.Errorf("unexpected old row %q", v)
							}
							old = fs[0].Text
						}
						p.old = append(p.old, old)
					}
					return nil
				})
			}
			_, err := conn.PgConn().CopyTo(ctx, lw, sql)
			if err == nil {
				err = lw.Err()
			}
			if err == nil && g != nil {
				g.finish()
			}
			kr.errs[a.idx] = err
		}()
	}
	return kr
}

// grouper merges the change rows of a key (capture.KeyReadRows lines: key, time,
// insert, delete, need-flags) into the key's entry of a keyPart, as KeyRead's grouping
// does: the latest time, whether the first change is an insert and the last a delete, and
// the receivers that lack some change.
type grouper struct {
	p  *keyPart
	at map[string]int // key -> its index in p
	// per key: the earliest time, and the earliest insert's and the latest delete's
	// (math.MaxInt64 and math.MinInt64 when none)
	first, firstIns, lastDel []int64
	// ints: the key is an integer (an integer column prints one way). Change rows that
	// come in key order (a table updated in key order, the common case) are merged as
	// they come, into p.ints, p.at and p.need and the keys' earliest times and flags
	// (firsts, flags): cur is the key under way. A row out of order turns them into rows,
	// which are kept as they come, then sorted by key and merged by finish (no map).
	// Either way the part's keys end in order, with their values in p.ints.
	ints   bool
	sorted bool // rows come in key order so far
	cur    intChange
	hasCur bool
	firsts []int64
	flags  []uint8 // per key, intIns | intDel
	rows   []intChange
	text   []byte // a key's text, reused
}

// intChange is a change row of an integer key, or the merge of several of the key's:
// the latest and earliest times, whether a change at the earliest time is an insert and
// one at the latest a delete (what the key's changes did to its row), the receivers
// lacking one.
type intChange struct {
	n, last, first int64
	need           uint64
	ins, del       bool
}

// newIntChange is the intChange of one change row.
func newIntChange(n, at int64, need uint64, ins, del bool) intChange {
	return intChange{n: n, last: at, first: at, need: need, ins: ins, del: del}
}

// merge adds o (of the same key) to c.
func (c *intChange) merge(o intChange) {
	switch {
	case o.last > c.last:
		c.last, c.del = o.last, o.del
	case o.last == c.last:
		c.del = c.del || o.del
	}
	switch {
	case o.first < c.first:
		c.first, c.ins = o.first, o.ins
	case o.first == c.first:
		c.ins = c.ins || o.ins
	}
	c.need |= o.need
}

// kind is what the key's changes did to its row, as KeyRead's line says it.
func (c *intChange) kind() conflict.Kind {
	switch {
	case c.del:
		return conflict.KindDelete
	case c.ins:
		return conflict.KindInsert
	}
	return conflict.KindUpdate
}

// The flags of a key merged in order.
const (
	intIns uint8 = 1 << iota
	intDel
)

// minCompact is how many change rows the grouper of an integer key holds before it
// first merges them by key (compact).
const minCompact = 1 << 16

// addInt merges a change row of an integer key: into the key under way while rows come
// in key order, else kept. When the rows kept fill their slice, they are merged by key
// first (the slice is doubled when that freed less than half of it): what is held grows
// with the keys, not with the changes of each (a key changed a million times between
// runs).
func (g *grouper) addInt(c intChange) {
	if g.sorted {
		switch {
		case !g.hasCur:
			g.cur, g.hasCur = c, true
			return
		case c.n == g.cur.n:
			g.cur.merge(c)
			return
		case c.n > g.cur.n:
			g.emit()
			g.cur = c
			return
		}
		g.unsort()
	}
	if n := len(g.rows); n == cap(g.rows) && n >= minCompact {
		g.rows = mergeIntChanges(g.rows)
		if len(g.rows) > n/2 {
			g.rows = slices.Grow(g.rows, n)
		}
	}
	g.rows = append(g.rows, c)
}

// emit adds the key under way, complete, to the keys merged in order.
func (g *grouper) emit() {
	c, p := &g.cur, g.p
	var f uint8
	if c.ins {
		f |= intIns
	}
	if c.del {
		f |= intDel
	}
	p.ints, p.at, p.need = append(p.ints, c.n), append(p.at, c.last), append(p.need, c.need)
	g.firsts, g.flags = append(g.firsts, c.first), append(g.flags, f)
}

// unsort turns the keys merged in order, and the key under way, into rows, for a row
// that came out of order.
func (g *grouper) unsort() {
	p := g.p
	g.rows = make([]intChange, len(p.ints), max(2*(len(p.ints)+1), cap(p.ints)))
	for i, n := range p.ints {
		g.rows[i] = intChange{n: n, last: p.at[i], first: g.firsts[i], need: p.need[i], ins: g.flags[i]&intIns != 0, del: g.flags[i]&intDel != 0}
	}
	if g.hasCur {
		g.rows = append(g.rows, g.cur)
	}
	g.sorted, g.hasCur = false, false
	p.ints, p.at, p.need, g.firsts, g.flags = nil, nil, nil, nil, nil
}

// newGrouper returns a grouper into p, sized for about hint keys; with ints, the keys
// are integers.
func newGrouper(p *keyPart, hint int, ints bool) *grouper {
	hint = max(hint, 0)
	if ints {
		p.ints, p.at, p.need = make([]int64, 0, hint), make([]int64, 0, hint), make([]uint64, 0, hint)
		return &grouper{p: p, ints: true, sorted: true, firsts: make([]int64, 0, hint), flags: make([]uint8, 0, hint)}
	}
	p.keys, p.at = make([]string, 0, hint), make([]int64, 0, hint)
	p.kind, p.need = make([]conflict.Kind, 0, hint), make([]uint64, 0, hint)
	return &grouper{p: p, at: make(map[string]int, hint),
		first: make([]int64, 0, hint), firstIns: make([]int64, 0, hint), lastDel: make([]int64, 0, hint)}
}

// atoi parses a decimal integer as PostgreSQL prints one, without allocating.
func atoi[T string | []byte](b T) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n uint64
	for i := range len(b) {
		c := b[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	if neg {
		if n > 1<<63 {
			return 0, false
		}
		return -int64(n), true
	}
	if n > math.MaxInt64 {
		return 0, false
	}
	return int64(n), true
}

// addBinary merges a change row read in COPY's binary format (capture.KeyReadRows: the
// key, the time as stored, the operation's byte, need-flags).
func (g *grouper) addBinary(f [][]byte, recvs []*member) error {
	if len(f) != 3+len(recvs) {
		return fmt.Errorf("unexpected change row with %d fields", len(f))
	}
	t, ok := binaryInt(f[1])
	if !ok || len(f[1]) != 8 || t == math.MaxInt64 || t == math.MinInt64 {
		return fmt.Errorf("unexpected change time %x", f[1])
	}
	at := t + pgEpochMicros
	if len(f[2]) != 1 {
		return fmt.Errorf("unexpected change kind %x", f[2])
	}
	ins, del := f[2][0] == capture.OpInsert[0], f[2][0] == capture.OpDelete[0]
	var need uint64
	for i, m := range recvs {
		v, ok := binaryBool(f[3+i])
		if !ok {
			return fmt.Errorf("unexpected flag %x", f[3+i])
		}
		if v {
			need |= bit(m.idx)
		}
	}
	if g.ints {
		n, ok := binaryInt(f[0])
		if !ok {
			return fmt.Errorf("unexpected integer key %x", f[0])
		}
		g.addInt(newIntChange(n, at, need, ins, del))
		return nil
	}
	k, ok := appendUUID(g.text[:0], f[0])
	if !ok {
		return fmt.Errorf("unexpected uuid key %x", f[0])
	}
	g.text = k
	g.put(k, at, ins, del, need)
	return nil
}

// put merges one change of the key whose text is k.
func (g *grouper) put(k []byte, at int64, ins, del bool, need uint64) {
	p := g.p
	i, ok := g.at[string(k)]
	if !ok {
		i = len(p.keys)
		key := string(k)
		g.at[key] = i
		p.keys = append(p.keys, key)
		p.at = append(p.at, at)
		p.kind = append(p.kind, conflict.KindUpdate)
		p.need = append(p.need, 0)
		g.first = append(g.first, at)
		g.firstIns = append(g.firstIns, math.MaxInt64)
		g.lastDel = append(g.lastDel, math.MinInt64)
	}
	p.at[i] = max(p.at[i], at)
	g.first[i] = min(g.first[i], at)
	p.need[i] |= need
	if ins {
		g.firstIns[i] = min(g.firstIns[i], at)
	}
	if del {
		g.lastDel[i] = max(g.lastDel[i], at)
	}
}

// finish sets each key's kind, as KeyRead's line would say it; an integer key's change
// rows, when some came out of order, are sorted and grouped first.
func (g *grouper) finish() {
	p := g.p
	if g.ints {
		if g.sorted {
			g.finishSorted()
		} else {
			g.groupInts()
		}
		return
	}
	for i := range p.keys {
		switch {
		case g.lastDel[i] == p.at[i]:
			p.kind[i] = conflict.KindDelete
		case g.firstIns[i] == g.first[i]:
			p.kind[i] = conflict.KindInsert
		}
	}
	g.at = nil
}

// finishSorted completes the keys merged in order: their kinds, and their texts, cut
// from one string.
func (g *grouper) finishSorted() {
	p := g.p
	if g.hasCur {
		g.emit()
		g.hasCur = false
	}
	p.kind = make([]conflict.Kind, len(p.ints))
	for i, f := range g.flags {
		c := intChange{ins: f&intIns != 0, del: f&intDel != 0}
		p.kind[i] = c.kind()
	}
	p.keys = intTexts(p.ints, g.text[:0])
	g.firsts, g.flags = nil, nil
}

// intTexts returns the texts of ns (in increasing order), cut from one string (built in
// buf, grown once to their size).
func intTexts(ns []int64, buf []byte) []string {
	if len(ns) > 0 {
		w := max(len(strconv.FormatInt(ns[0], 10)), len(strconv.FormatInt(ns[len(ns)-1], 10)))
		buf = slices.Grow(buf[:0], w*len(ns))
	}
	ends := make([]int32, len(ns))
	for i, n := range ns {
		buf = strconv.AppendInt(buf, n, 10)
		ends[i] = int32(len(buf))
	}
	all := string(buf)
	out := make([]string, len(ns))
	start := int32(0)
	for i, e := range ends {
		out[i], start = all[start:e], e
	}
	return out
}

// groupInts sorts the change rows of integer keys by key and merges each key's.
func (g *grouper) groupInts() {
	rows := mergeIntChanges(g.rows)
	p := g.p
	n := len(rows)
	p.ints, p.at = make([]int64, n), make([]int64, n)
	p.kind, p.need = make([]conflict.Kind, n), make([]uint64, n)
	for i := range rows {
		c := &rows[i]
		p.ints[i], p.at[i], p.kind[i], p.need[i] = c.n, c.last, c.kind(), c.need
	}
	p.keys = intTexts(p.ints, g.text[:0])
	g.rows = nil
}

// mergeIntChanges sorts change rows by key and merges each key's into one, in place of
// rows (or of the slice the sort returned).
func mergeIntChanges(rows []intChange) []intChange {
	rows = sortIntChanges(rows)
	n := 0
	for i, c := range rows {
		if i > 0 && c.n == rows[n-1].n {
			rows[n-1].merge(c)
			continue
		}
		rows[n] = c
		n++
	}
	return rows[:n]
}

// sortIntChanges sorts change rows by key: as they are when they came in order, by
// counting when their keys are dense (a span of at most 4 per row), else by comparing.
func sortIntChanges(rows []intChange) []intChange {
	if len(rows) < 2 || slices.IsSortedFunc(rows, cmpIntChange) {
		return rows
	}
	lo, hi := rows[0].n, rows[0].n
	for _, c := range rows {
		lo, hi = min(lo, c.n), max(hi, c.n)
	}
	if span := uint64(hi - lo); span >= 4*uint64(len(rows)) {
		slices.SortFunc(rows, cmpIntChange)
		return rows
	}
	at := make([]int32, hi-lo+2) // key n's rows start at at[n-lo]
	for _, c := range rows {
		at[c.n-lo+1]++
	}
	for i := 1; i < len(at); i++ {
		at[i] += at[i-1]
	}
	out := make([]intChange, len(rows))
	for _, c := range rows {
		out[at[c.n-lo]] = c
		at[c.n-lo]++
	}
	return out
}

func cmpIntChange(a, b intChange) int { return cmp.Compare(a.n, b.n) }

// finishKeyRead waits for a key read and merges what the sources sent; a source that failed
// leaves the run.
func (r *runner) finishKeyRead(kr *keyRead) map[string]*keyState {
	return keyMap(r.finishKeyReadOrder(kr))
}

// finishKeyReadOrder is finishKeyRead, with the keys' order when there is one (see
// keyOrder): the map is then nil when not made yet (see mergeOne).
func (r *runner) finishKeyReadOrder(kr *keyRead) (map[string]*keyState, *keyOrder) {
	kr.wg.Wait()
	if kr.merged != nil || kr.order != nil {
		return kr.merged, kr.order
	}
	for _, a := range r.members {
		if kr.errs[a.idx] != nil {
			r.drop(a, fmt.Errorf("db %s: reading changes of %s: %w", a.name, kr.t.name, kr.errs[a.idx]))
			kr.parts[a.idx] = nil
			continue
		}
		if p := kr.parts[a.idx]; p != nil {
			r.voidChanges(kr.t, a, p)
		}
	}
	return mergeParts(r.members, kr.parts)
}

// mergeParts merges what each source (by member index) sent of a bucket's keys into their
// states, and returns their order when one source sent them all (see keyOrder; nil
// otherwise); the map is then nil when the keys are integers in order (see mergeOne). It
// reads nothing but members' names and indexes and parts.
func mergeParts(members []*member, parts []*keyPart) (map[string]*keyState, *keyOrder) {
	// The keys' states and first changes are cut from two blocks, sized for every key
	// each source sent (one allocation each rather than two per key).
	n := 0
	for _, p := range parts {
		if p != nil {
			n += len(p.keys)
		}
	}
	if keys, order := mergeOne(members, parts, n); keys != nil || order != nil {
		return keys, order
	}
	keys := make(map[string]*keyState, n)
	states := make([]keyState, 0, n)
	changes := make([]conflict.Change, 0, n)
	for _, a := range members {
		p := parts[a.idx]
		if p == nil {
			continue
		}
		for i, k := range p.keys {
			ch := conflict.Change{DB: a.name, At: p.at[i], Kind: p.kind[i]}
			ks := keys[k]
			switch {
			case ks == nil && len(states) < cap(states):
				states = append(states, keyState{winner: -1})
				ks = &states[len(states)-1]
				changes = append(changes, ch)
				ks.changes = changes[len(changes)-1 : len(changes) : len(changes)]
				keys[k] = ks
			case ks == nil:
				ks = &keyState{winner: -1, changes: []conflict.Change{ch}}
				keys[k] = ks
			default:
				ks.changes = append(ks.changes, ch)
			}
			ks.changer |= bit(a.idx)
			ks.need |= p.need[i]
			if p.sums != nil {
				x := ks.extra()
				if x.sums == nil {
					x.sums = map[int][]string{}
				}
				x.sums[a.idx] = p.sums[i]
			}
			if p.cols != nil {
				x := ks.extra()
				if x.cols == nil {
					x.cols = map[int]string{}
				}
				x.cols[a.idx] = p.cols[i]
			}
			if p.old != nil && p.old[i] != "" {
				x := ks.extra()
				if x.old == nil {
					x.old = map[int]string{}
				}
				x.old[a.idx] = p.old[i]
			}
		}
	}
	return keys, nil
}

// mergeOne is mergeParts when one source sent all n keys of a bucket, each once (a key
// read groups its change rows by key): every key gets a state of its own without a lookup
// first. It returns nil when more than one source sent keys, or when a key came twice
// (mergeParts merges them then). The keys' order is that of the source's. Integer keys
// the run grouped (keyPart.ints, in increasing order: each once) get no map: the batch
// finds their states by value (keyIndex), and makes the map only when it needs one
// (keyOrder.index).
func mergeOne(members []*member, parts []*keyPart, n int) (map[string]*keyState, *keyOrder) {
	var a *member
	for _, m := range members {
		if p := parts[m.idx]; p != nil && len(p.keys) > 0 {
			if a != nil {
				return nil, nil
			}
			a = m
		}
	}
	if a == nil {
		return nil, nil
	}
	p := parts[a.idx]
	if p.sums != nil || p.cols != nil || p.old != nil {
		return nil, nil
	}
	states := make([]keyState, n)
	changes := make([]conflict.Change, n)
	for i := range p.keys {
		changes[i] = conflict.Change{DB: a.name, At: p.at[i], Kind: p.kind[i]}
		ks := &states[i]
		ks.winner, ks.changes = -1, changes[i:i+1:i+1]
		ks.changer, ks.need = bit(a.idx), p.need[i]
	}
	order := &keyOrder{names: p.keys, states: states}
	if increasing(p.ints) && len(p.ints) == n {
		return nil, order
	}
	keys := order.index()
	if len(keys) != n {
		return nil, nil
	}
	return keys, order
}

// increasing reports whether ns are in strictly increasing order.
func increasing(ns []int64) bool {
	for i := 1; i < len(ns); i++ {
		if ns[i] <= ns[i-1] {
			return false
		}
	}
	return true
}

// index makes the map of o's keys to their states.
func (o *keyOrder) index() map[string]*keyState {
	keys := make(map[string]*keyState, len(o.names))
	for i, k := range o.names {
		keys[k] = &o.states[i]
	}
	return keys
}

// keyMap is keys, or, when only their order is known (see mergeOne), the map of its keys.
func keyMap(keys map[string]*keyState, order *keyOrder) map[string]*keyState {
	if keys == nil && order != nil {
		return order.index()
	}
	return keys
}

// batchLen is how many keys a batch has: len(keys), or order's when keys is nil.
func batchLen(keys map[string]*keyState, order *keyOrder) int {
	if keys == nil && order != nil {
		return len(order.names)
	}
	return len(keys)
}

// readAhead starts reading bucket b of t on the sources' key sessions (opened here, in
// parallel, on first use). It returns nil when a key session cannot be opened: the bucket
// is then read when its turn comes.
func (r *runner) readAhead(ctx context.Context, t *table, b, nb int) *keyRead {
	r.settleConsume(ctx) // the key sessions may be consuming the previous table's batches
	var need []*member
	for _, a := range r.sources() {
		a.adopt()
		if a.kconn == nil {
			need = append(need, a)
		}
	}
	errs := r.each(need, func(a *member) (err error) {
		a.kconn, err = a.dial(ctx, nil)
		return err
	})
	if errors.Join(errs...) != nil {
		return nil
	}
	kr := r.startKeyRead(ctx, t, b, nb, true)
	r.ahead = kr
	return kr
}
