package job

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/dbconn"
)

// errRetryBatch means a db that sends rows failed mid-batch: every db rolled the batch
// back and the batch runs again without it.
var errRetryBatch = errors.New("retry batch")

// keyState is what a batch knows of one changed key.
type keyState struct {
	changes []conflict.Change
	changer uint64 // members that changed the key (bit per member index)
	need    uint64 // members some changer's pending change has not reached yet
	recv    uint64 // members that receive the winner's row
	winner  int    // member index, -1: none (skip)
}

func bit(i int) uint64 { return 1 << uint(i) }

func (r *runner) runDelta(ctx context.Context) error {
	if err := r.takeSnapshots(ctx); err != nil {
		return err
	}
	if r.strategy.Kind == conflict.Abort {
		if err := r.abortCheck(ctx); err != nil {
			return err
		}
	}
	return r.applyTables(ctx)
}

// takeSnapshots records each live source's snapshot (once per run): the changes a run
// handles are those visible in it.
func (r *runner) takeSnapshots(ctx context.Context) error {
	var srcs []*member
	for _, m := range r.sources() {
		if m.snap == "" {
			srcs = append(srcs, m)
		}
	}
	snaps := make([]string, len(r.members))
	errs := r.each(srcs, func(m *member) error {
		return m.conn.QueryRow(ctx, `SELECT pg_current_snapshot()::text`).Scan(&snaps[m.idx])
	})
	for _, m := range srcs {
		if err := errs[m.idx]; err != nil {
			r.drop(m, fmt.Errorf("db %s: reading its snapshot: %w", m.name, err))
			continue
		}
		if !snapRe.MatchString(snaps[m.idx]) {
			return fmt.Errorf("db %s: unexpected snapshot %q", m.name, snaps[m.idx])
		}
		m.snap = snaps[m.idx]
	}
	return nil
}

// pending is the SQL condition selecting a source's change rows this run handles: visible
// in the run's snapshot and not yet applied by every live receiver.
func (r *runner) pending(a *member, alias string) string {
	return r.pendingAt(a, alias, "'"+a.snap+"'")
}

// pendingAt is pending as of snap, an SQL expression of type pg_snapshot.
func (r *runner) pendingAt(a *member, alias, snap string) string {
	cond := fmt.Sprintf(`pg_visible_in_snapshot(%s"$txid", %s)`, alias, snap)
	var applied []string
	for _, m := range r.members {
		if m == a || !m.alive() {
			continue
		}
		wm, ok := r.wm[[2]string{a.name, m.name}]
		if !ok {
			return cond
		}
		if c := fmt.Sprintf(`pg_visible_in_snapshot(%s"$txid", '%s')`, alias, wm); !slices.Contains(applied, c) {
			applied = append(applied, c)
		}
	}
	if len(applied) == 0 {
		return "false"
	}
	return cond + " AND NOT (" + strings.Join(applied, " AND ") + ")"
}

func (r *runner) bucketCond(t *table, alias string, b, nb int) string {
	return r.bucketsCond(t, alias, b, b, nb)
}

// bucketsCond selects buckets lo to hi of nb.
func (r *runner) bucketsCond(t *table, alias string, lo, hi, nb int) string {
	if nb <= 1 || (lo == 0 && hi == nb-1) {
		return "true"
	}
	if t.bounds != nil {
		// Key ranges: bucket b holds keys in [bounds[b-1], bounds[b]).
		k := alias + pgx.Identifier{t.keyCols[0]}.Sanitize()
		var conds []string
		if lo > 0 {
			conds = append(conds, k+" >= "+t.bounds[lo-1])
		}
		if hi < nb-1 {
			conds = append(conds, k+" < "+t.bounds[hi])
		}
		return strings.Join(conds, " AND ")
	}
	h := fmt.Sprintf(`(hashtextextended(ROW(%s)::text, 0) & 9223372036854775807) %% %d`, quoteCols(alias, t.keyCols), nb)
	if lo == hi {
		return fmt.Sprintf(`%s = %d`, h, lo)
	}
	return fmt.Sprintf(`%s BETWEEN %d AND %d`, h, lo, hi)
}

// consumeEvery is how often a multi-batch table's applied change rows are deleted.
const consumeEvery = 5 * time.Second

// buckets decides how many batches a table's backlog needs.
func (r *runner) buckets(ctx context.Context, t *table) (int, error) {
	batch := r.batchSize()
	total, counted := r.pendingN[t]
	if !counted {
		for _, a := range r.alive() {
			if !a.isSource() {
				continue
			}
			var n int64
			if err := a.conn.QueryRow(ctx, r.countSQL(t, a, "'"+a.snap+"'")).Scan(&n); err != nil {
				r.drop(a, fmt.Errorf("db %s: counting changes of %s: %w", a.name, t.name, err))
				continue
			}
			total += n
		}
	}
	nb := int((total + int64(batch) - 1) / int64(batch))
	if nb < 1 {
		nb = 1
	}
	t.bounds = nil
	split := "one batch"
	if nb > 1 {
		split = "hash buckets"
	}
	if kind := rangeKind(t); nb > 1 && kind != noRanges {
		bounds, err := r.keyRanges(ctx, t, nb, kind)
		if err != nil {
			return 0, err
		}
		if bounds != nil {
			t.bounds, nb, split = bounds, len(bounds)+1, "key ranges"
		}
	}
	t.nb, t.committed, t.consumed = nb, 0, 0
	if total > 0 {
		r.logger.Debug("backlog", slog.String("table", t.name), slog.Int64("changes", total), slog.Int("batches", nb), slog.String("split", split))
	}
	return nb, nil
}

// keyKind tells how a key's values sort, for key-range batches.
type keyKind int

const (
	noRanges   keyKind = iota // hash buckets
	integerKey                // sorts as int64
	uuidKey                   // sorts as its canonical text (PostgreSQL compares the bytes)
)

// rangeKind reports whether t's batches can be ranges of its key: one column whose values
// print one way and sort in Go as PostgreSQL sorts them, without a collation (integers,
// uuid). Rows in a key range sit together in the key index (and, when keys grow with time
// as serials and version 7 uuids do, in the table), where a hash bucket touches every page.
func rangeKind(t *table) keyKind {
	if len(t.keyCols) != 1 {
		return noRanges
	}
	for _, c := range t.desc.Columns {
		if c.Name == t.keyCols[0] {
			switch c.Type {
			case "smallint", "integer", "bigint":
				return integerKey
			case "uuid":
				return uuidKey
			}
		}
	}
	return noRanges
}

// keyRanges splits the pending changes of t into about nb ranges of its key, of about equal
// numbers of change rows: each source gives its own quantiles, weighted by its number of
// changes. It returns the nb-1 (or fewer) bounds as SQL literals, or nil when there is
// nothing to split.
func (r *runner) keyRanges(ctx context.Context, t *table, nb int, kind keyKind) ([]string, error) {
	type point struct {
		v string // as PostgreSQL prints it
		n int64  // integerKey: the value
		w float64
	}
	srcs := r.sources()
	fracs := make([]string, nb-1)
	for i := range fracs {
		fracs[i] = strconv.FormatFloat(float64(i+1)/float64(nb), 'f', -1, 64)
	}
	k := "d." + pgx.Identifier{t.keyCols[0]}.Sanitize()
	counts := make([]int64, len(r.members))
	qs := make([][]*string, len(r.members))
	errs := r.each(srcs, func(a *member) error {
		sql := fmt.Sprintf(`SELECT count(*), percentile_disc(ARRAY[%s]::float8[]) WITHIN GROUP (ORDER BY %s)::text[] FROM %s d WHERE %s`,
			strings.Join(fracs, ","), k, t.change, r.pending(a, "d."))
		return a.conn.QueryRow(ctx, sql).Scan(&counts[a.idx], &qs[a.idx])
	})
	var points []point
	var total float64
	for _, a := range srcs {
		if err := errs[a.idx]; err != nil {
			r.drop(a, fmt.Errorf("db %s: splitting the changes of %s: %w", a.name, t.name, err))
			continue
		}
		if counts[a.idx] == 0 {
			continue
		}
		w := float64(counts[a.idx]) / float64(nb)
		for _, q := range qs[a.idx] {
			if q == nil {
				continue
			}
			p := point{v: *q, w: w}
			if kind == integerKey {
				n, err := strconv.ParseInt(p.v, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("db %s: a key of %s: %w", a.name, t.name, err)
				}
				p.n = n
			}
			points = append(points, p)
		}
		total += float64(counts[a.idx])
	}
	if len(points) == 0 {
		return nil, nil
	}
	order := func(a, b point) int {
		if kind == integerKey {
			return cmp.Compare(a.n, b.n)
		}
		return strings.Compare(a.v, b.v)
	}
	slices.SortFunc(points, order)
	var bounds []string
	var last *point
	var acc float64
	next := 1
	for _, p := range points {
		acc += p.w
		for next < nb && acc >= float64(next)*total/float64(nb) {
			next++
			if last == nil || order(*last, p) < 0 {
				last = &p
				if kind == integerKey {
					bounds = append(bounds, p.v)
				} else {
					bounds = append(bounds, "'"+p.v+"'::uuid")
				}
			}
		}
	}
	return bounds, nil
}

// readKeys reads the pending keys of every live source for one bucket (phase 1).
func (r *runner) readKeys(ctx context.Context, t *table, b, nb int) (map[string]*keyState, error) {
	return r.finishKeyRead(r.startKeyRead(ctx, t, b, nb, false)), nil
}

// keyPart is what one source sent of a bucket's pending keys.
type keyPart struct {
	keys []string
	at   []int64
	need []uint64
}

// keyRead is a read of one bucket's pending keys from every live source, under way.
type keyRead struct {
	t     *table
	b     int
	alive uint64 // the members alive when it started (the flags it reads depend on them)
	parts []*keyPart
	errs  []error
	wg    sync.WaitGroup
}

// aliveMask has a bit for every member taking part.
func (r *runner) aliveMask() uint64 {
	var m uint64
	for _, x := range r.alive() {
		m |= bit(x.idx)
	}
	return m
}

// startKeyRead starts reading the pending keys of bucket b of t from every live source, on
// their first sessions, or on their key sessions when ahead (reading the next bucket while
// this one is applied: the rows it reads are not touched by that). Only the SQL is built
// here, from the run's state; the goroutines touch nothing but their sessions.
func (r *runner) startKeyRead(ctx context.Context, t *table, b, nb int, ahead bool) *keyRead {
	nk := len(t.keyCols)
	kr := &keyRead{t: t, b: b, alive: r.aliveMask(), parts: make([]*keyPart, len(r.members)), errs: make([]error, len(r.members))}
	for _, a := range r.alive() {
		if !a.isSource() {
			continue
		}
		var recvs []*member
		var flags []string
		for _, m := range r.members {
			if m == a || !m.alive() {
				continue
			}
			recvs = append(recvs, m)
			if wm, ok := r.wm[[2]string{a.name, m.name}]; ok {
				flags = append(flags, fmt.Sprintf(`bool_or(NOT pg_visible_in_snapshot(d."$txid", '%s'))`, wm))
			} else {
				flags = append(flags, "true")
			}
		}
		if len(recvs) == 0 {
			continue
		}
		// Group by the keys' text: equal values that print differently (1.5, 1.50) are
		// different keys to the run, which matches rows by their text.
		// (A key split in ranges, integer or uuid, prints one way only: it is grouped as it is.)
		var pick, group []string
		for _, k := range t.keyCols {
			q := pgx.Identifier{k}.Sanitize()
			if t.bounds != nil {
				pick, group = append(pick, "d."+q), append(group, "d."+q)
				continue
			}
			pick = append(pick, "(array_agg(d."+q+"))[1]")
			group = append(group, "d."+q+"::text")
		}
		// The key range first: it is cheaper than the visibility checks and leaves out most
		// rows of a large backlog. (The planner keeps the order of equally cheap quals.)
		where := r.pending(a, "d.") + " AND " + r.bucketCond(t, "d.", b, nb)
		if t.bounds != nil {
			where = r.bucketCond(t, "d.", b, nb) + " AND " + r.pending(a, "d.")
		}
		sql := fmt.Sprintf(`COPY (SELECT %s, (extract(epoch FROM max(d."$at")) * 1000000)::bigint, %s FROM %s d WHERE %s GROUP BY %s) TO STDOUT`,
			strings.Join(pick, ", "), strings.Join(flags, ", "), t.change, where, strings.Join(group, ", "))
		conn := a.conn
		if ahead {
			conn = a.kconn
		}
		p := &keyPart{}
		kr.parts[a.idx] = p
		kr.wg.Add(1)
		go func() {
			defer kr.wg.Done()
			lw := &lineWriter{fn: func(line []byte) error {
				f := bytes.Split(line, []byte{'\t'})
				if len(f) != nk+1+len(recvs) {
					return fmt.Errorf("unexpected change row with %d fields", len(f))
				}
				at, err := strconv.ParseInt(string(f[nk]), 10, 64)
				if err != nil {
					return err
				}
				var need uint64
				for i, m := range recvs {
					if len(f[nk+1+i]) == 1 && f[nk+1+i][0] == 't' {
						need |= bit(m.idx)
					}
				}
				p.keys = append(p.keys, string(bytes.Join(f[:nk], []byte{'\t'})))
				p.at = append(p.at, at)
				p.need = append(p.need, need)
				return nil
			}}
			_, err := conn.PgConn().CopyTo(ctx, lw, sql)
			if err == nil {
				err = lw.err
			}
			kr.errs[a.idx] = err
		}()
	}
	return kr
}

// finishKeyRead waits for a key read and merges what the sources sent; a source that failed
// leaves the run.
func (r *runner) finishKeyRead(kr *keyRead) map[string]*keyState {
	kr.wg.Wait()
	keys := map[string]*keyState{}
	for _, a := range r.members {
		if kr.errs[a.idx] != nil {
			r.drop(a, fmt.Errorf("db %s: reading changes of %s: %w", a.name, kr.t.name, kr.errs[a.idx]))
			continue
		}
		p := kr.parts[a.idx]
		if p == nil {
			continue
		}
		for i, k := range p.keys {
			ks := keys[k]
			if ks == nil {
				ks = &keyState{winner: -1}
				keys[k] = ks
			}
			ks.changes = append(ks.changes, conflict.Change{DB: a.name, At: p.at[i]})
			ks.changer |= bit(a.idx)
			ks.need |= p.need[i]
		}
	}
	return keys
}

// readAhead starts reading bucket b of t on the sources' key sessions (opened here, in
// parallel, on first use). It returns nil when a key session cannot be opened: the bucket
// is then read when its turn comes.
func (r *runner) readAhead(ctx context.Context, t *table, b, nb int) *keyRead {
	var need []*member
	for _, a := range r.sources() {
		if a.kconn == nil {
			need = append(need, a)
		}
	}
	errs := r.each(need, func(a *member) (err error) {
		a.kconn, err = dbconn.Connect(ctx, a.name, a.db.Conn, a.db.Pass)
		return err
	})
	if errors.Join(errs...) != nil {
		return nil
	}
	kr := r.startKeyRead(ctx, t, b, nb, true)
	r.ahead = kr
	return kr
}

func (r *runner) memberByName(name string) *member {
	for _, m := range r.members {
		if m.name == name {
			return m
		}
	}
	return nil
}

// resolve picks each key's winner and receivers; it returns the conflicts.
func (r *runner) resolve(t *table, keys map[string]*keyState) []control.Conflict {
	var out []control.Conflict
	for k, ks := range keys {
		if len(ks.changes) == 1 {
			ks.winner = r.memberByName(ks.changes[0].DB).idx
		} else {
			w := r.strategy.Winner(ks.changes)
			c := control.Conflict{Sync: r.sync.Name, Table: t.name, Key: keyText(t, k), Strategy: r.strategy.String(), Resolution: "applied"}
			for _, ch := range ks.changes {
				c.DBs = append(c.DBs, ch.DB)
			}
			if w == "" {
				c.Resolution = "skipped"
				if r.strategy.Kind == conflict.Abort {
					c.Resolution = "aborted"
				}
			} else {
				c.Winner = w
				ks.winner = r.memberByName(w).idx
			}
			out = append(out, c)
		}
		if ks.winner < 0 {
			continue
		}
		for _, m := range r.members {
			if m.idx == ks.winner || !m.alive() || !r.receives(m) {
				continue
			}
			if ks.changer&bit(m.idx) != 0 || ks.need&bit(m.idx) != 0 {
				ks.recv |= bit(m.idx)
			}
		}
	}
	return out
}

// keyText renders a key for the conflict log: col=value pairs.
func keyText(t *table, k string) string {
	f := strings.Split(k, "\t")
	parts := make([]string, len(f))
	for i := range f {
		parts[i] = t.keyCols[i] + "=" + f[i]
	}
	return strings.Join(parts, ", ")
}

// batchResult is what one batch wrote on each receiver (by member index), not yet
// committed, and the conflicts it resolved.
type batchResult struct {
	keys             int
	inserts, deletes []int64
	conflicts        []control.Conflict
}

// batch applies one bucket of one table in the receivers' open transactions (the unit
// commits them). It returns errRetryBatch when a sending db failed: every receiver's
// transaction was rolled back and the unit must run again without it. A receiver that
// fails leaves the batch through fail (rolled back; retried with the unit or left out of
// the run); the others go on.
func (r *runner) batch(ctx context.Context, t *table, b, nb int, keys map[string]*keyState) (batchResult, error) {
	res := batchResult{inserts: make([]int64, len(r.members)), deletes: make([]int64, len(r.members))}
	t0 := time.Now()
	if keys == nil {
		var err error
		if keys, err = r.readKeys(ctx, t, b, nb); err != nil {
			return res, err
		}
	}
	if len(keys) == 0 {
		return res, nil
	}
	res.keys = len(keys)
	res.conflicts = r.resolve(t, keys)

	// Receivers and what each gets from each winner.
	recvKeys := make([][]string, len(r.members))
	fromWinner := make([]uint64, len(r.members)) // winner idx -> receivers
	for k, ks := range keys {
		if ks.winner < 0 {
			continue
		}
		for _, m := range r.members {
			if ks.recv&bit(m.idx) != 0 {
				recvKeys[m.idx] = append(recvKeys[m.idx], k)
				fromWinner[ks.winner] |= bit(m.idx)
			}
		}
	}

	t1 := time.Now()
	// While phase 2 runs, each winner's read session opens and receives the keys it sends.
	var winners []*member
	send := make([][]string, len(r.members))
	for _, w := range r.alive() {
		if fromWinner[w.idx] == 0 {
			continue
		}
		winners = append(winners, w)
		for k, ks := range keys {
			if ks.winner == w.idx && ks.recv != 0 {
				send[w.idx] = append(send[w.idx], k)
			}
		}
	}
	shipped := make(chan []error, 1)
	go func() {
		shipped <- r.each(winners, func(w *member) error { return r.shipKeys(ctx, w, t, send[w.idx]) })
	}()
	// Phase 2: each receiver locks the keys it will overwrite, drops those its own
	// application changed since the run's snapshot (they win next run), and deletes the rest.
	var receivers []*member
	for _, m := range r.alive() {
		if len(recvKeys[m.idx]) > 0 {
			receivers = append(receivers, m)
		}
	}
	late := make([][]string, len(r.members))
	errs := r.each(receivers, func(m *member) (err error) {
		res.deletes[m.idx], late[m.idx], err = r.prepareReceiver(ctx, m, t, recvKeys[m.idx])
		return err
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
			r.fail(ctx, m, fmt.Errorf("db %s: applying %s: %w", m.name, t.name, errs[m.idx]))
			if !m.alive() && fromWinner[m.idx] != 0 {
				return r.retry(res)
			}
		}
		for _, k := range late[m.idx] {
			keys[k].recv &^= bit(m.idx)
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
		sql := fmt.Sprintf(`COPY (SELECT %s FROM %s w JOIN %s t ON %s) TO STDOUT`,
			quoteCols("t.", t.cols), orderedKeys("pg_temp.ibex_w", t, true), t.ident, keyJoin("w", "t", t.keyCols))
		widx := w.idx
		senders = append(senders, sender{m: w, conn: w.rconn, sql: sql, route: func(key string) uint64 {
			ks := keys[key]
			if ks == nil || ks.winner != widx {
				return 0
			}
			return ks.recv
		}})
	}
	var recvs []*member
	for _, m := range r.alive() {
		if len(recvKeys[m.idx]) > 0 && m.tx {
			recvs = append(recvs, m)
		}
	}
	if len(senders) > 0 && len(recvs) > 0 {
		out := r.fanout(ctx, t, len(t.keyCols), senders, recvs)
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
				continue
			}
			res.inserts[m.idx] = out.written[m.idx]
		}
	}
	tApply := time.Now()
	// Phase 4: sources write their staged rows.
	var appliers []*member
	for _, m := range recvs {
		if m.alive() && m.tx && m.isSource() && m.snap != "" {
			appliers = append(appliers, m)
		}
	}
	errs = r.each(appliers, func(m *member) (err error) {
		res.inserts[m.idx], res.deletes[m.idx], err = r.applySource(ctx, m, t)
		return err
	})
	for _, m := range appliers {
		if errs[m.idx] != nil {
			r.fail(ctx, m, fmt.Errorf("db %s: applying %s: %w", m.name, t.name, errs[m.idx]))
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
	r.logger.Debug("batch applied", slog.String("table", t.name), slog.Int("bucket", b), slog.Int("keys", len(keys)),
		slog.Int64("inserts", st.Inserts), slog.Int64("deletes", st.Deletes), slog.Int("conflicts", len(res.conflicts)),
		slog.Duration("read", t1.Sub(t0)), slog.Duration("delete", t2.Sub(t1)), slog.Duration("copy", tApply.Sub(t2)), slog.Duration("apply", time.Since(tApply)))
	return res, nil
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
	cols := quoteCols("", t.keyCols)
	return fmt.Sprintf(`(SELECT %s%s FROM %s ORDER BY %s)`, d, cols, from, cols)
}

// shipKeys opens w's read session if needed and loads the keys it sends in this batch
// into its temp table ibex_w.
func (r *runner) shipKeys(ctx context.Context, w *member, t *table, keys []string) error {
	rc, err := r.readConn(ctx, w)
	if err != nil {
		return err
	}
	keyCols := quoteCols("", t.keyCols)
	if _, err := execAll(ctx, rc, fmt.Sprintf(`DROP TABLE IF EXISTS pg_temp.ibex_w; CREATE TEMP TABLE ibex_w AS SELECT %s FROM %s LIMIT 0`, keyCols, t.ident)); err != nil {
		return err
	}
	return copyKeys(ctx, rc, "pg_temp.ibex_w", keyCols, keys)
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

func (r *runner) rollbackAll() {
	for _, m := range r.members {
		r.rollback(m)
	}
}

// prepareReceiver runs phase 2 on one receiver.
func (r *runner) prepareReceiver(ctx context.Context, m *member, t *table, keys []string) (int64, []string, error) {
	if err := r.begin(ctx, m); err != nil {
		return 0, nil, err
	}
	keyCols := quoteCols("", t.keyCols)
	source := m.isSource() && m.snap != ""
	temps := fmt.Sprintf(`DROP TABLE IF EXISTS pg_temp.ibex_k; CREATE TEMP TABLE ibex_k ON COMMIT DROP AS SELECT %s FROM %s LIMIT 0`, keyCols, t.ident)
	if source {
		// Rows for a source arrive in a stage table (see below).
		temps += fmt.Sprintf(`; DROP TABLE IF EXISTS pg_temp.ibex_s; CREATE TEMP TABLE ibex_s ON COMMIT DROP AS SELECT %s FROM %s LIMIT 0`, quoteCols("", t.cols), t.ident)
	}
	if _, err := execAll(ctx, m.conn, temps); err != nil {
		return 0, nil, err
	}
	if err := copyKeys(ctx, m.conn, "pg_temp.ibex_k", keyCols, keys); err != nil {
		return 0, nil, err
	}
	join := keyJoin("t", "k", t.keyCols)
	if !source {
		// A target: no application writes here, so delete now and COPY straight in.
		tag, err := execIndexed(ctx, m.conn, fmt.Sprintf(`DELETE FROM %s t USING %s k WHERE %s`, t.ident, orderedKeys("pg_temp.ibex_k", t, false), join))
		if err != nil {
			return 0, nil, err
		}
		return tag.RowsAffected(), nil, nil
	}
	// A source: keys its own application changed since the run's snapshot are left to the
	// next run (that change is newer), and rows arrive in a stage table: applySource writes
	// them with UPDATE semantics so that an application transaction waiting on one of
	// those rows applies its change on top instead of losing it.
	late, err := r.dropLate(ctx, m, t)
	if err != nil {
		return 0, nil, err
	}
	return 0, late, nil
}

// dropLate removes from the key list the keys this source's application changed since the
// run's snapshot, and returns them.
func (r *runner) dropLate(ctx context.Context, m *member, t *table) ([]string, error) {
	var late []string
	lw := &lineWriter{fn: func(line []byte) error { late = append(late, string(line)); return nil }}
	_, err := m.conn.PgConn().CopyTo(ctx, lw, fmt.Sprintf(`COPY (DELETE FROM pg_temp.ibex_k k USING %s d WHERE %s AND NOT pg_visible_in_snapshot(d."$txid", '%s') RETURNING %s) TO STDOUT`,
		t.change, keyJoin("k", "d", t.keyCols), m.snap, quoteCols("k.", t.keyCols)))
	if len(late) > 0 {
		r.logger.Debug("keys changed on a receiver since the run began are left for the next run", slog.String("db", m.name), slog.String("table", t.name), slog.Int("keys", len(late)))
	}
	return late, err
}

// applySource writes the staged rows into a source's table: an upsert for rows the winner
// has, a delete for keys it no longer has. Under a savepoint, it then checks that the
// application changed none of those keys between dropLate and the writes (the writes hold
// the rows now); if it did, it rolls back to the savepoint, leaves those keys out and
// writes again. It returns rows written and rows deleted or replaced.
func (r *runner) applySource(ctx context.Context, m *member, t *table) (int64, int64, error) {
	cols := quoteCols("", t.cols)
	// Key columns are set too: 1.50 replaces an equal 1.5 (identity-always columns, which
	// cannot be updated, are integers and print one way only).
	identity := map[string]bool{}
	for _, c := range t.desc.Columns {
		identity[c.Name] = c.IdentityAlways
	}
	var sets []string
	for _, c := range t.cols {
		if identity[c] {
			continue
		}
		q := pgx.Identifier{c}.Sanitize()
		sets = append(sets, q+" = excluded."+q)
	}
	onConflict := "DO NOTHING"
	if len(sets) > 0 {
		onConflict = "DO UPDATE SET " + strings.Join(sets, ", ")
	}
	// The rows to write, and their number: every one must be written (a trigger or rule
	// dropping some would leave the receiver in a state no source had).
	nStaged := fmt.Sprintf(`SELECT count(*) FROM pg_temp.ibex_s s WHERE EXISTS (SELECT 1 FROM pg_temp.ibex_k k WHERE %s)`, keyJoin("s", "k", t.keyCols))
	staged := fmt.Sprintf(`SELECT %s FROM pg_temp.ibex_s s WHERE EXISTS (SELECT 1 FROM pg_temp.ibex_k k WHERE %s) ORDER BY %s`,
		quoteCols("s.", t.cols), keyJoin("s", "k", t.keyCols), quoteCols("s.", t.keyCols))
	// xmax <> 0 tells an updated row (it replaced one) from an inserted one.
	upsert := fmt.Sprintf(`WITH w AS (INSERT INTO %s AS t (%s) OVERRIDING SYSTEM VALUE %s ON CONFLICT (%s) %s RETURNING t.xmax <> 0 AS replaced)
SELECT count(*), count(*) FILTER (WHERE replaced), (%s) FROM w`, t.ident, cols, staged, quoteCols("", t.keyCols), onConflict, nStaged)
	// When the upsert cannot be used (rows swap the values of another unique column, which
	// a row-by-row update trips over), delete the keys and insert the rows instead.
	replace := fmt.Sprintf(`DELETE FROM %s t USING %s k WHERE %s`, t.ident, orderedKeys("pg_temp.ibex_k", t, false), keyJoin("t", "k", t.keyCols))
	insert := fmt.Sprintf(`WITH w AS (INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE %s RETURNING 1) SELECT count(*), (%s) FROM w`, t.ident, cols, staged, nStaged)
	gone := fmt.Sprintf(`DROP TABLE IF EXISTS pg_temp.ibex_gone; CREATE TEMP TABLE ibex_gone ON COMMIT DROP AS SELECT %s FROM pg_temp.ibex_k k WHERE NOT EXISTS (SELECT 1 FROM pg_temp.ibex_s s WHERE %s)`,
		quoteCols("k.", t.keyCols), keyJoin("s", "k", t.keyCols))
	del := fmt.Sprintf(`DELETE FROM %s t USING %s k WHERE %s`, t.ident, orderedKeys("pg_temp.ibex_gone", t, false), keyJoin("t", "k", t.keyCols))
	check := fmt.Sprintf(`SELECT count(*) FROM pg_temp.ibex_k k JOIN %s d ON %s WHERE NOT pg_visible_in_snapshot(d."$txid", '%s')`,
		t.change, keyJoin("k", "d", t.keyCols), m.snap)
	// The rest after the upsert: delete the keys the winner no longer has, then count the
	// keys the application changed meanwhile.
	rest := gone + "; " + indexed(del) + "; " + check
	for attempt := 0; ; attempt++ {
		var written, replaced, deleted, changed, want int64
		res, err := execAll(ctx, m.conn, `SAVEPOINT ibex_apply; `+upsert+`; `+rest)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" {
			if _, err := m.conn.Exec(ctx, `ROLLBACK TO SAVEPOINT ibex_apply`); err != nil {
				return 0, 0, err
			}
			if res, err = execAll(ctx, m.conn, indexed(replace)+"; "+insert+"; "+rest); err != nil {
				return 0, 0, err
			}
			replaced = res[2].CommandTag.RowsAffected()
			if written, err = scalar(res[5], 0); err != nil {
				return 0, 0, err
			}
			if want, err = scalar(res[5], 1); err != nil {
				return 0, 0, err
			}
			res = res[6:]
		} else if err != nil {
			return 0, 0, err
		} else {
			if written, err = scalar(res[1], 0); err != nil {
				return 0, 0, err
			}
			if replaced, err = scalar(res[1], 1); err != nil {
				return 0, 0, err
			}
			if want, err = scalar(res[1], 2); err != nil {
				return 0, 0, err
			}
			if len(sets) == 0 {
				want = written // DO NOTHING: a row already there is left as it is
			}
			res = res[2:]
		}
		// res: DROP, CREATE (gone), SET, SET, DELETE, SET, SET, check
		if len(res) != 8 {
			return 0, 0, fmt.Errorf("applying %s: %d results, expected 8", t.name, len(res))
		}
		deleted = replaced + res[4].CommandTag.RowsAffected()
		if changed, err = scalar(res[7], 0); err != nil {
			return 0, 0, err
		}
		if written != want {
			return 0, 0, &rowCountError{db: m.name, written: written, sent: want}
		}
		if changed == 0 {
			// The savepoint stays until the batch commits.
			return written, deleted, nil
		}
		if attempt == 5 {
			return 0, 0, fmt.Errorf("the application keeps changing the rows of %s being applied: try again later", t.name)
		}
		if _, err := m.conn.Exec(ctx, `ROLLBACK TO SAVEPOINT ibex_apply`); err != nil {
			return 0, 0, err
		}
		if _, err := r.dropLate(ctx, m, t); err != nil {
			return 0, 0, err
		}
	}
}

// consume deletes the change rows of committed batches (buckets lo to hi) when every db of
// the sync took part in them, so that the progress of a run killed or stopped later is kept.
func (r *runner) consume(ctx context.Context, t *table, lo, hi, nb int) {
	for _, m := range r.members {
		if !m.alive() {
			return
		}
	}
	var srcs []*member
	for _, a := range r.sources() {
		if a.snap != "" {
			srcs = append(srcs, a)
		}
	}
	errs := r.each(srcs, func(a *member) error {
		sql := fmt.Sprintf(`DELETE FROM %s d WHERE %s AND pg_visible_in_snapshot(d."$txid", '%s')`, t.change, r.bucketsCond(t, "d.", lo, hi, nb), a.snap)
		_, err := a.conn.Exec(ctx, sql)
		if err != nil {
			r.logger.WarnContext(ctx, "removing applied changes failed", slog.String("db", a.name), slog.String("table", t.name), slog.String("error", err.Error()))
		}
		return err
	})
	// A db whose connection broke here leaves the run with this error (the changes it
	// keeps are applied again next run, which is harmless).
	for _, a := range r.members {
		if errs[a.idx] != nil && a.conn != nil && a.conn.IsClosed() {
			r.drop(a, fmt.Errorf("db %s: removing applied changes of %s: %w", a.name, t.name, errs[a.idx]))
		}
	}
}

// indexed wraps a statement joining the key list to a user table so that it probes the
// table's key index: its cost then follows the number of changed keys, never the table's
// size, whatever the planner guesses about the key list. It must run in a transaction.
func indexed(stmt string) string {
	return `SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; ` + stmt +
		`; SET LOCAL enable_hashjoin = on; SET LOCAL enable_mergejoin = on`
}

// execIndexed runs indexed(stmt) in one round trip and returns the statement's tag.
func execIndexed(ctx context.Context, conn *pgx.Conn, stmt string) (pgconn.CommandTag, error) {
	res, err := execAll(ctx, conn, indexed(stmt))
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	return res[2].CommandTag, nil
}

// execAll sends several statements (no parameters: values are literals) in one round
// trip and returns every statement's result.
func execAll(ctx context.Context, conn *pgx.Conn, sql string) ([]*pgconn.Result, error) {
	return conn.PgConn().Exec(ctx, sql).ReadAll()
}

// scalar reads the single integer a result holds.
func scalar(res *pgconn.Result, col int) (int64, error) {
	if len(res.Rows) != 1 || len(res.Rows[0]) <= col {
		return 0, fmt.Errorf("unexpected result of %d rows", len(res.Rows))
	}
	return strconv.ParseInt(string(res.Rows[0][col]), 10, 64)
}

func (r *runner) recordConflicts(ctx context.Context, cs []control.Conflict) error {
	if len(cs) == 0 {
		return nil
	}
	for i := range cs {
		cs[i].Run = r.res.RunID
	}
	tx, err := r.store.Pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := control.RecordConflicts(ctx, tx, cs); err != nil {
		return fmt.Errorf("recording conflicts: %w", err)
	}
	return tx.Commit(ctx)
}

// abortCheck reads every pending key (no writes) and fails the run if any row was changed
// on more than one source.
func (r *runner) abortCheck(ctx context.Context) error {
	var all []control.Conflict
	for _, t := range r.tables {
		nb, err := r.buckets(ctx, t)
		if err != nil {
			return err
		}
		for b := 0; b < nb; b++ {
			keys, err := r.readKeys(ctx, t, b, nb)
			if err != nil {
				return err
			}
			all = append(all, r.resolve(t, keys)...)
		}
	}
	if len(all) == 0 {
		return nil
	}
	if err := r.recordConflicts(ctx, all); err != nil {
		return err
	}
	r.res.Conflicts = int64(len(all))
	var ex []string
	for i, c := range all {
		if i == 5 {
			ex = append(ex, "...")
			break
		}
		ex = append(ex, fmt.Sprintf("%s %s (changed on %s)", c.Table, c.Key, strings.Join(c.DBs, ", ")))
	}
	return fmt.Errorf("conflict_strategy abort: %d rows were changed on more than one source, nothing was applied: %s; see 'ibex conflicts %s'",
		len(all), strings.Join(ex, "; "), r.sync.Name)
}

// advance records the watermarks of every source and receiver that took part in the whole
// run, then purges change rows every receiver of the sync has applied.
func (r *runner) advance(ctx context.Context) error {
	tx, err := r.store.Pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	for _, a := range r.alive() {
		if !a.isSource() || a.snap == "" {
			continue
		}
		for _, m := range r.alive() {
			if m == a {
				continue
			}
			if err := control.SetWatermark(ctx, tx, r.sync.Name, a.name, m.name, a.snap); err != nil {
				return fmt.Errorf("recording watermarks: %w", err)
			}
			r.wm[[2]string{a.name, m.name}] = a.snap
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("recording watermarks: %w", err)
	}
	var srcs []*member
	purge := make([]string, len(r.members))
	for _, a := range r.sources() {
		var conds []string
		for _, m := range r.members {
			if m == a {
				continue
			}
			wm, ok := r.wm[[2]string{a.name, m.name}]
			if !ok {
				conds = nil
				break
			}
			// Receivers that took part in the same runs share a watermark: said once.
			if c := fmt.Sprintf(`pg_visible_in_snapshot("$txid", '%s')`, wm); !slices.Contains(conds, c) {
				conds = append(conds, c)
			}
		}
		if len(conds) == 0 {
			continue
		}
		var stmts []string
		for _, t := range r.tables {
			stmts = append(stmts, `DELETE FROM `+t.change+` WHERE `+strings.Join(conds, " AND "))
		}
		srcs, purge[a.idx] = append(srcs, a), strings.Join(stmts, "; ")
	}
	r.each(srcs, func(a *member) error {
		if _, err := execAll(ctx, a.conn, purge[a.idx]); err != nil {
			r.logger.WarnContext(ctx, "purging applied changes failed", slog.String("db", a.name), slog.String("error", err.Error()))
		}
		return nil
	})
	return nil
}
