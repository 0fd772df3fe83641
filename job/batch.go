package job

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/dbconn"
	"github.com/ibexrepl/ibex/sinks"
)

// errRetryBatch means a db that sends rows failed mid-batch: every db rolled the batch
// back and the batch runs again without it.
var errRetryBatch = errors.New("retry batch")

// batchResult is what one batch wrote on each receiver (by member index), not yet
// committed, and the conflicts it resolved.
type batchResult struct {
	keys             int
	inserts, deletes []int64
	conflicts        []control.Conflict
	// rejected are the rows each receiver (member idx) refused under on_error=skip.
	rejected [][]control.Exception
}

// batch applies one bucket of one table in the receivers' open transactions (the unit
// commits them): keys, with their order when known (see keyOrder; keys is then nil when
// its map is not made yet: it is made here when needed), or both nil to read them.
// It returns errRetryBatch when a sending db failed: every receiver's transaction was
// rolled back and the unit must run again without it. A receiver that
// fails leaves the batch through fail (rolled back; retried with the unit or left out of
// the run); the others go on.
func (r *runner) batch(ctx context.Context, t *table, b, nb int, keys map[string]*keyState, order *keyOrder) (batchResult, error) {
	res := batchResult{inserts: make([]int64, len(r.members)), deletes: make([]int64, len(r.members)), rejected: make([][]control.Exception, len(r.members))}
	t0 := time.Now()
	if keys == nil && order == nil {
		keys = r.readKeys(ctx, t, b, nb)
	}
	n := batchLen(keys, order)
	if n == 0 {
		return res, nil
	}
	res.keys = n
	// Without unique indexes, each key is resolved in the pass that lists it below.
	inPass := len(t.desc.Uniques) == 0
	// The map of the keys, made once when first needed (from several goroutines) when the
	// keys came without one.
	keyMapOnce := sync.OnceValue(func() map[string]*keyState { return keyMap(keys, order) })
	if !inPass {
		keys = keyMapOnce()
		res.conflicts = r.resolve(t, keys)
		clashes, err := r.uniqueClashes(ctx, t, keys, res.rejected)
		if err != nil {
			r.rollbackAll()
			return res, fmt.Errorf("table %s: %w", t.name, err)
		}
		res.conflicts = append(res.conflicts, clashes...)
	}

	// Receivers and what each gets from each winner (or, for a built row, from each db
	// whose version it is built from): the keys each receiver gets and each sender
	// sends, counted in one pass (which resolves each key), listed in a second.
	recvKeys, send, fromWinner, ix := r.listKeys(t, keys, order, inPass, &res)
	index := ix.index()
	t1 := time.Now()
	// While phase 2 runs, each winner's read session opens and receives the keys it sends.
	var winners []*member
	for _, w := range r.alive() {
		if fromWinner[w.idx] != 0 {
			winners = append(winners, w)
		}
	}
	shipped := make(chan []error, 1)
	plans := make([]readPlan, len(r.members))
	// A winner that receives nothing in this batch and has no transaction open sends on
	// its first session: it needs no second one. (Decided here: phase 2 opens
	// transactions meanwhile.)
	mainFree := make([]bool, len(r.members))
	for _, w := range winners {
		mainFree[w.idx] = !w.tx && len(recvKeys[w.idx]) == 0
	}
	// A winner that reads a full key range starts its COPY now (see prefetch.go); what
	// the batch does not take is dropped when it returns, before its sessions are used
	// again.
	pres := make([]*prefetch, len(r.members))
	shipDone := make(chan struct{})
	defer func() {
		<-shipDone
		for _, p := range pres {
			if p != nil {
				p.discard()
			}
		}
	}()
	go func() {
		defer close(shipDone)
		shipped <- r.each(winners, func(w *member) error {
			var err error
			plans[w.idx], err = r.shipKeys(ctx, w, t, send[w.idx], mainFree[w.idx], true)
			if err == nil && plans[w.idx].full && len(t.rel.Counters) == 0 {
				pres[w.idx] = startPrefetch(ctx, w.wconn, t.fullRangeSQL(plans[w.idx]))
			}
			return err
		})
	}()
	// Phase 2: each receiver's sink readies the batch (a target deletes the keys; a source
	// leaves out those its own application changed since the run's snapshot: they win
	// next run).
	var receivers []*member
	for _, m := range r.alive() {
		if len(recvKeys[m.idx]) > 0 {
			receivers = append(receivers, m)
		}
	}
	late := make([][]string, len(r.members))
	errs := r.each(receivers, func(m *member) error {
		p, err := r.beginAndPrepare(ctx, m, t, recvKeys[m.idx]) // a sink's errors name its db
		late[m.idx] = p.Skipped
		if err != nil || len(t.rel.Counters) == 0 || !m.isSource() {
			return err
		}
		// A source may skip keys: it still adds the other sources' counter deltas to them.
		lines := r.skippedDeltas(t, keyMapOnce(), recvKeys[m.idx], m)
		if len(lines) == 0 {
			return nil
		}
		adder, ok := m.sink.(sinks.SkippedAdder)
		if !ok {
			return fmt.Errorf("db %s: its sink cannot add counter deltas to the rows it skips", m.name)
		}
		return adder.AddToSkipped(ctx, t.sinkTables[m.idx], t.rel.Counters, lines)
	})
	shipErrs := <-shipped
	for _, m := range r.members {
		if shipErrs[m.idx] != nil {
			// A winner that cannot send: it leaves the run, and the batch runs without it.
			r.rollback(m)
			r.drop(m, fmt.Errorf("db %s: reading rows of %s: %w", m.name, t.name, shipErrs[m.idx]))
			return r.retry(res)
		}
		if errs[m.idx] != nil {
			if p := pres[m.idx]; p != nil {
				// Its sessions may be closed (it leaves the run): its read ends first. A
				// sender that stays reads its rows again below.
				p.discard()
				pres[m.idx] = nil
			}
			r.fail(ctx, m, errs[m.idx])
			if !m.alive() && fromWinner[m.idx] != 0 {
				return r.retry(res)
			}
		}
		for _, k := range late[m.idx] {
			keyMapOnce()[k].recv &^= bit(m.idx)
		}
	}

	t2 := time.Now()
	// Phase 3: stream the winners' current rows, all winners at once, to the receivers.
	var senders []sender
	for _, w := range r.members {
		if fromWinner[w.idx] == 0 || !w.alive() {
			continue
		}
		// The keys in their order (DISTINCT also folds equal keys that print differently,
		// which would match one row twice): the index and the table are read in order.
		sql := fmt.Sprintf(`COPY (SELECT %s%s FROM %s w JOIN %s t ON %s%s) TO STDOUT`,
			catalog.QuoteCols("t.", t.cols), t.extraCols(), w.wkeys, t.filtered(), catalog.KeyJoin("w", "t", t.keyCols), t.laterals())
		switch p := plans[w.idx]; {
		case len(t.rel.Counters) > 0:
			sql = t.readAsOf(w.snap, w.wkeys)
		case p.full:
			// The keys are (nearly) all of their range: the range is read as it is, with no
			// keys shipped; the route leaves out the rows of keys not in the batch. Its
			// COPY started during phase 2 (pres) unless the sender failed there.
			sql = t.fullRangeSQL(p)
		case p.dense:
			// The keys fill their range: the range of the key index is read once, merged
			// with the keys (enable_mergejoin is on for this read, see shipKeys).
			sql = fmt.Sprintf(`COPY (SELECT %s FROM pg_temp.ibex_w w JOIN %s t ON %s WHERE %s) TO STDOUT`,
				catalog.QuoteCols("t.", t.cols), t.ident, catalog.KeyJoin("w", "t", t.keyCols), t.inRange(p))
		}
		widx := w.idx
		senders = append(senders, sender{m: w, conn: w.wconn, sql: sql, pre: pres[w.idx], route: func(key []byte) (uint64, bool) {
			ks, ok := index.get(key)
			if !ok {
				ks = keyMapOnce()[string(key)] // no copy of key for the lookup
			}
			if ks == nil || ks.senders()&bit(widx) == 0 {
				return 0, false
			}
			return ks.recv, ks.built
		}})
	}
	var recvs []*member
	for _, m := range r.alive() {
		if len(recvKeys[m.idx]) > 0 && m.tx {
			recvs = append(recvs, m)
		}
	}
	if len(senders) > 0 && len(recvs) > 0 {
		out := r.fanout(ctx, t, len(t.keyCols), senders, recvs, func(versions map[string]map[int][]byte) ([]routedLine, error) {
			return r.buildRows(ctx, t, keyMapOnce(), versions)
		})
		if out.buildErr != nil {
			r.rollbackAll()
			return res, fmt.Errorf("table %s: %w", t.name, out.buildErr)
		}
		if out.senderErrs != nil {
			r.rollbackAll()
			for idx, err := range out.senderErrs {
				r.drop(r.members[idx], fmt.Errorf("db %s: reading rows of %s: %w", r.members[idx].name, t.name, err))
			}
			return r.retry(res)
		}
		for _, m := range recvs {
			if err := out.check(m, ""); err != nil {
				r.fail(ctx, m, fmt.Errorf("db %s: writing rows of %s: %w", m.name, t.name, err))
			}
		}
	}
	tApply := time.Now()
	// Phase 4: each receiver's sink finishes the batch (a source writes its staged rows)
	// and says what it wrote.
	var finishing []*member
	for _, m := range recvs {
		if m.alive() && m.tx {
			finishing = append(finishing, m)
		}
	}
	errs = r.each(finishing, func(m *member) error {
		n, err := m.sink.FinishBatch(ctx, t.sinkTables[m.idx])
		res.inserts[m.idx], res.deletes[m.idx] = n.Written, n.Deleted
		if rs, ok := m.sink.(sinks.RowSkipper); ok && err == nil {
			for _, rej := range rs.Rejected() {
				res.rejected[m.idx] = append(res.rejected[m.idx], control.Exception{Sync: r.sync.Name, Table: t.name, DB: m.name,
					Key: keyText(t, rej.Key), Row: rej.Row, Error: rej.Error})
			}
		}
		return err
	})
	for _, m := range finishing {
		if errs[m.idx] != nil {
			r.fail(ctx, m, errs[m.idx])
		}
	}
	var st Stats
	for _, m := range r.members {
		if !m.tx {
			// Rolled back (or not a receiver): what it wrote is gone.
			res.inserts[m.idx], res.deletes[m.idx] = 0, 0
		}
		st.Inserts += res.inserts[m.idx]
		st.Deletes += res.deletes[m.idx]
	}
	r.logger.Debug("batch applied", slog.String("table", t.name), slog.Int("bucket", b), slog.Int("keys", n),
		slog.Int64("inserts", st.Inserts), slog.Int64("deletes", st.Deletes), slog.Int("conflicts", len(res.conflicts)),
		slog.Duration("read", t1.Sub(t0)), slog.Duration("delete", t2.Sub(t1)), slog.Duration("copy", tApply.Sub(t2)), slog.Duration("apply", time.Since(tApply)))
	return res, nil
}

// listKeys resolves, when inPass, each key of a batch (its conflicts go to res) and
// lists, by member index, the keys each receiver gets and each sender sends, the
// receivers each sender sends to, and the index of the keys sent. The keys are walked in
// memory order when their order is known (order; the keys are then those of the map:
// nothing added any; keys may be nil then), else in the map's, fixed once: a first pass counts each member's
// keys, a second lists them into slices of that size; a member that gets (or sends)
// every key, in the order walked, shares that order's list of names instead (read only:
// planRead copies what it sorts).
func (r *runner) listKeys(t *table, keys map[string]*keyState, order *keyOrder, inPass bool, res *batchResult) (recvKeys, send [][]string, fromWinner []uint64, ix keyIndexer) {
	var names []string
	var states []*keyState // without order: the map's states, in names' order
	inOrder := inPass && order != nil && (keys == nil || len(order.names) == len(keys))
	if inOrder {
		names = order.names
	} else {
		names, states = make([]string, 0, len(keys)), make([]*keyState, 0, len(keys))
		for k, ks := range keys {
			names, states = append(names, k), append(states, ks)
		}
	}
	state := func(i int) *keyState {
		if inOrder {
			return &order.states[i]
		}
		return states[i]
	}
	nm := len(r.members)
	recvKeys, send, fromWinner = make([][]string, nm), make([][]string, nm), make([]uint64, nm)
	nRecv, nSend := make([]int, nm), make([]int, nm)
	ix.init(t, len(names))
	mask := r.routeMask()
	for i, k := range names {
		ks := state(i)
		if inPass {
			if c, ok := r.resolveKey(t, k, ks, mask); ok {
				res.conflicts = append(res.conflicts, c)
			}
		}
		if ks.winner < 0 || ks.recv == 0 {
			continue
		}
		ix.add(k, ks)
		from := ks.senders()
		for _, m := range r.members {
			if ks.recv&bit(m.idx) != 0 {
				nRecv[m.idx]++
			}
			if from&bit(m.idx) != 0 {
				fromWinner[m.idx] |= ks.recv
				nSend[m.idx]++
			}
		}
	}
	var fill uint64 // members whose lists are made here
	all := names[:len(names):len(names)]
	for _, m := range r.members {
		switch n := nRecv[m.idx]; {
		case n == len(names):
			recvKeys[m.idx] = all
		case n > 0:
			recvKeys[m.idx], fill = make([]string, 0, n), fill|bit(m.idx)
		}
		switch n := nSend[m.idx]; {
		case n == len(names):
			send[m.idx] = all
		case n > 0:
			send[m.idx], fill = make([]string, 0, n), fill|bit(m.idx)
		}
	}
	if fill == 0 {
		return recvKeys, send, fromWinner, ix
	}
	for i, k := range names {
		ks := state(i)
		if ks.winner < 0 || ks.recv == 0 {
			continue
		}
		from := ks.senders()
		for _, m := range r.members {
			if fill&bit(m.idx) == 0 {
				continue
			}
			if ks.recv&bit(m.idx) != 0 && nRecv[m.idx] < len(names) {
				recvKeys[m.idx] = append(recvKeys[m.idx], k)
			}
			if from&bit(m.idx) != 0 && nSend[m.idx] < len(names) {
				send[m.idx] = append(send[m.idx], k)
			}
		}
	}
	return recvKeys, send, fromWinner, ix
}

// beginAndPrepare opens m's transaction if none is open and prepares its batch of t, in
// one round trip where the sink can (sinks.BeginPreparer).
func (r *runner) beginAndPrepare(ctx context.Context, m *member, t *table, keys []string) (sinks.Prepared, error) {
	if !m.tx {
		sk, err := r.openSink(m)
		if err != nil {
			return sinks.Prepared{}, err
		}
		if bp, ok := sk.(sinks.BeginPreparer); ok {
			m.tx = true // rolled back on failure, as after a failed PrepareBatch
			return bp.BeginAndPrepare(ctx, t.sinkTables[m.idx], keys)
		}
	}
	if err := r.begin(ctx, m); err != nil {
		return sinks.Prepared{}, err
	}
	return m.sink.PrepareBatch(ctx, t.sinkTables[m.idx], keys)
}

func (r *runner) retry(res batchResult) (batchResult, error) {
	r.rollbackAll()
	return res, errRetryBatch
}

// orderedKeys is a subquery listing the key columns of a temp key table in key order, so
// that a nested loop over it probes the user table's index (and heap) in order.
func orderedKeys(from string, t *table, distinct bool) string {
	d := ""
	if distinct {
		d = "DISTINCT "
	}
	cols := catalog.QuoteCols("", t.keyCols)
	return fmt.Sprintf(`(SELECT %s%s FROM %s ORDER BY %s)`, d, cols, from, cols)
}

// shipKeys readies the keys w sends in this batch on the session that will read its rows
// (w.wconn), and returns how they are read. A short key list is written into the reading
// statement (w.wkeys is then a subquery of the table's own keys, whose size the planner
// knows), and read on w's first session when mainFree (nothing else uses it meanwhile): a
// short run then needs no second session. A longer list is loaded into the temp table
// ibex_w of w's read session (opened if needed), whose join plans are fixed (see
// readConn), as planRead says: integer keys shipped distinct and in order are read as they
// are, merge joins are allowed for a dense read only (set in the same round trip), and
// with asRange, keys that fill their range (readPlan.full) are not shipped at all: the
// caller reads the range (w.wkeys is not set), on w's first session when mainFree, as a
// short list. Without asRange, full is never returned.
func (r *runner) shipKeys(ctx context.Context, w *member, t *table, keys []string, mainFree, asRange bool) (readPlan, error) {
	in, inline := catalog.KeyIn("", t.keyCols, keys)
	var p readPlan
	if !inline {
		p, keys = planRead(t, keys, asRange)
	}
	// A range read as it is needs no temp table either.
	asIs := p.full && asRange
	if (inline || asIs) && mainFree && w.conn != nil {
		w.wconn = w.conn
	} else {
		rc, err := r.readConn(ctx, w)
		if err != nil {
			return readPlan{}, err
		}
		w.wconn = rc
	}
	keyCols := catalog.QuoteCols("", t.keyCols)
	if inline {
		w.wkeys = fmt.Sprintf(`(SELECT DISTINCT %s FROM %s WHERE %s ORDER BY %s)`, keyCols, t.ident, in, keyCols)
		return readPlan{}, nil
	}
	if asIs {
		return p, nil // read as a range: nothing to ship
	}
	p.full = false
	merge := "off"
	if p.dense {
		merge = "on"
	}
	w.wkeys = orderedKeys("pg_temp.ibex_w", t, true)
	if p.sorted {
		w.wkeys = "pg_temp.ibex_w" // distinct and in order already
	}
	return p, loadTempKeys(ctx, w.wconn, "SET enable_mergejoin = "+merge, "ibex_w", keyCols, t.ident, keys)
}

// readPlan is how a sender reads the rows of a batch's keys.
type readPlan struct {
	// sorted: the keys are distinct integers, shipped in increasing order.
	sorted bool
	// dense: besides, they are at least denseShare of the integers from lo to hi, so
	// that reading that range of the key index (at most 1/denseShare entries per key)
	// merged with the keys costs less than probing the index once per key.
	dense bool
	// full: besides, they are at least fullShare of that range, so that reading the
	// whole range (at most 1/fullShare rows per key, the others left out by the route)
	// costs less than shipping the keys to join them.
	full   bool
	lo, hi int64
}

// fullRangeSQL is the COPY of the rows of p's key range (readPlan.full): every column of
// t, by a bitmap scan (fullRangeRead).
func (t *table) fullRangeSQL(p readPlan) string {
	return fmt.Sprintf(fullRangeRead+`COPY (SELECT %s FROM %s t WHERE %s) TO STDOUT`,
		catalog.QuoteCols("t.", t.cols), t.ident, t.inRange(p))
}

// inRange is the condition of the rows of t (as t) whose integer key is in p's range.
func (t *table) inRange(p readPlan) string {
	return fmt.Sprintf(`t.%s BETWEEN %d AND %d`, catalog.QuoteCols("", t.keyCols), p.lo, p.hi)
}

// fullRangeRead precedes the COPY of a full key range (readPlan.full), in the same
// round trip and the same implicit transaction, which the settings last for: the range is
// read by a bitmap scan, which visits the heap pages holding its rows once each, in
// order. A plain index scan visits them in key order: after the rows were updated (a
// backlog is rows just updated), the old and new versions of each key sit in different
// pages, and reading 50,000 keys of pgbench_accounts so took 93-123 ms instead of 45-53
// ms (psql, freshly updated table); on a table just rewritten the two are alike (37-58
// vs 27-50 ms). A sequential scan is off too: with stale statistics the planner could
// pick it to read a small range of a large table.
const fullRangeRead = `SET LOCAL enable_indexscan = off; SET LOCAL enable_seqscan = off; `

// fullShare is the share of a key range that a batch's keys must fill for its rows to be
// read as that range, without shipping the keys (see readPlan).
const fullShare = 0.75

// denseShare is the share of a key range that a batch's keys must fill for its rows to be
// read by a merge with that range (see readPlan).
const denseShare = 0.25

// planRead decides how the rows of keys (a sender's keys of a batch of t) are read, and
// returns the keys to ship: integers in increasing order (keys itself when they are in
// order already, else a sorted copy: keys is not written, other goroutines may read it),
// else keys as they are. Only a one-column integer key written as COPY writes it
// qualifies (each value has one text, so distinct texts are distinct keys), and only a
// plain read: no counters, customcols, row filter or partitioned table. With asRange,
// keys that fill their range (full) are not sorted: they are not shipped.
func planRead(t *table, keys []string, asRange bool) (readPlan, []string) {
	if len(keys) == 0 || rangeKind(t) != integerKey {
		return readPlan{}, keys
	}
	ns := make([]int64, len(keys))
	var buf [20]byte
	lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
	inOrder := true
	for i, k := range keys {
		n, ok := atoi(k)
		if !ok || string(strconv.AppendInt(buf[:0], n, 10)) != k {
			return readPlan{}, keys
		}
		inOrder = inOrder && (i == 0 || n > ns[i-1])
		ns[i], lo, hi = n, min(lo, n), max(hi, n)
	}
	p := readPlan{lo: lo, hi: hi}
	plain := len(t.rel.Counters) == 0 && len(t.extras) == 0 && t.rel.Where == ""
	if span := float64(p.hi) - float64(p.lo) + 1; plain && float64(len(ns)) >= denseShare*span {
		p.dense = true
		p.full = float64(len(ns)) >= fullShare*span
	}
	if p.full && asRange {
		return p, keys
	}
	p.sorted = true
	if inOrder {
		return p, keys
	}
	type intKey struct {
		n int64
		k string
	}
	sorted := make([]intKey, len(keys))
	for i, k := range keys {
		sorted[i] = intKey{ns[i], k}
	}
	slices.SortFunc(sorted, func(a, b intKey) int { return cmp.Compare(a.n, b.n) })
	out := make([]string, len(keys))
	for i := range sorted {
		out[i] = sorted[i].k
	}
	return p, out
}

// loadTempKeys (re)creates the temp table pg_temp.<name>, empty, with the columns cols
// (quoted, comma-separated) of table like, and loads lines into it (copyKeys): two round
// trips. before, when not "", is sent first in the first one (a setting, or a DROP).
func loadTempKeys(ctx context.Context, conn *pgx.Conn, before, name, cols, like string, lines []string) error {
	create := fmt.Sprintf(`DROP TABLE IF EXISTS pg_temp.%s; CREATE TEMP TABLE %s AS SELECT %s FROM %s LIMIT 0`, name, name, cols, like)
	if before != "" {
		create = before + "; " + create
	}
	if _, err := dbconn.ExecAll(ctx, conn, create); err != nil {
		return err
	}
	return copyKeys(ctx, conn, "pg_temp."+name, cols, lines)
}

// copyKeys loads keys (tab-separated COPY text, as the change rows print them) into a
// temp table.
func copyKeys(ctx context.Context, conn *pgx.Conn, into, keyCols string, keys []string) error {
	pr, pw := io.Pipe()
	go func() {
		bw := newBufWriter(pw)
		for _, k := range keys {
			bw.WriteString(k)
			bw.WriteByte('\n')
		}
		pw.CloseWithError(bw.Flush())
	}()
	_, err := conn.PgConn().CopyFrom(ctx, pr, fmt.Sprintf(`COPY %s (%s) FROM STDIN`, into, keyCols))
	pr.CloseWithError(err)
	return err
}
