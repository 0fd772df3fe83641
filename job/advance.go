package job

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/capture"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/dbconn"
)

// consumeEvery is how often a multi-batch table's applied change rows are deleted.
const consumeEvery = 5 * time.Second

// consume deletes the change rows of batches lo to hi of t, which every db of the sync
// committed (see table.committed), so that the progress of a run killed or stopped later
// is kept, and a db that stops receiving later in the run is not given them again next
// run: the watermarks recorded at the end of the run leave that db out, so change rows it
// did apply would stay pending for it (a counter's delta added a second time). A source
// whose session is gone keeps its change rows: they are applied again next run.
func (r *runner) consume(ctx context.Context, t *table, lo, hi, nb int) {
	var srcs []*member
	for _, a := range r.sources() {
		if a.snap != "" {
			srcs = append(srcs, a)
		}
	}
	errs := r.each(srcs, func(a *member) error {
		sql := capture.Consume(t.change, r.bucketsCond(t, changeAlias, lo, hi, nb), a.snap)
		_, err := a.conn.Exec(ctx, sql)
		if err != nil {
			r.logger.WarnContext(ctx, "removing applied changes failed", slog.String("db", a.name), slog.String("table", t.name), slog.String("error", err.Error()))
		}
		return err
	})
	// A db whose connection broke here leaves the run with this error (the changes it
	// keeps are applied again next run, which is harmless for whole rows).
	for _, a := range r.members {
		if errs[a.idx] != nil && a.conn != nil && a.conn.IsClosed() {
			r.drop(a, fmt.Errorf("db %s: removing applied changes of %s: %w", a.name, t.name, errs[a.idx]))
		}
	}
}

// aheadConsume is the consume of a table's committed batches under way on the sources'
// key sessions, while the table's last batch is applied (consumeAhead).
type aheadConsume struct {
	t      *table
	hi     int // batches up to hi are consumed
	srcs   []*member
	errs   []error
	done   chan struct{}
	cancel context.CancelFunc
}

// consumeAhead starts consuming the committed batches of t that are not consumed yet on
// the sources' key sessions, when only t's last batch is left to apply: its keys are read,
// so those sessions have nothing else to do, and the purge at the end of the run is left
// with the last batch's change rows instead of the whole backlog's. settleConsume waits
// for it; until then t.consumed does not move.
func (r *runner) consumeAhead(ctx context.Context, t *table) {
	if r.consuming != nil || r.ahead != nil || t.committed != t.nb-1 || t.consumed >= t.committed || r.truncatable(t) {
		return
	}
	var srcs []*member
	for _, a := range r.sources() {
		if a.snap == "" {
			continue
		}
		a.adopt() // opened early when the backlog was counted
		if a.kconn == nil {
			return // a source without a key session: the purge does it all
		}
		srcs = append(srcs, a)
	}
	if len(srcs) == 0 {
		return
	}
	cctx, cancel := context.WithCancel(ctx)
	c := &aheadConsume{t: t, hi: t.committed, srcs: srcs, errs: make([]error, len(r.members)), done: make(chan struct{}), cancel: cancel}
	sqls := make([]string, len(r.members))
	for _, a := range srcs {
		sqls[a.idx] = capture.Consume(t.change, r.bucketsCond(t, changeAlias, t.consumed, t.committed-1, t.nb), a.snap)
	}
	r.consuming = c
	go func() {
		defer close(c.done)
		var wg sync.WaitGroup
		for _, a := range srcs {
			wg.Go(func() {
				_, c.errs[a.idx] = a.kconn.Exec(cctx, sqls[a.idx])
			})
		}
		wg.Wait()
	}()
}

// truncateRowsMax is how many changes of a table a source may have for the purge at the
// end of the run to be likely to empty its change table there by TRUNCATE (at most
// capture.TruncateMaxBytes): about 100 bytes a change row, 60 with a one-column integer key.
const truncateRowsMax = capture.TruncateMaxBytes / 100

// truncatable says whether the purge at the end of the run will likely empty t's change
// table by TRUNCATE on every source that has changes of it (capture.PurgeAll, chosen by
// vacuums): consumeAhead then leaves t's committed batches to it, instead of deleting their
// change rows on the same sources while t's last batch is read there. Should the TRUNCATE
// not happen (a transaction open on the captured table), the purge deletes them all.
func (r *runner) truncatable(t *table) bool {
	some := false
	for _, a := range r.sources() {
		switch n := r.changesPending(t, a); {
		case n == 0:
		case n < vacuumMinChanges || n > truncateRowsMax:
			return false
		default:
			some = true
		}
	}
	return some
}

// settleConsume waits for a consumeAhead under way, if any: once every source has
// consumed, its table's batches count as consumed. A source where it failed keeps its
// change rows for the purge (or a consume on its first session) to remove; a key session
// that broke is closed, to be opened again when needed.
func (r *runner) settleConsume(ctx context.Context) {
	c := r.consuming
	if c == nil {
		return
	}
	r.consuming = nil
	<-c.done
	c.cancel()
	failed := false
	for _, a := range c.srcs {
		err := c.errs[a.idx]
		if err == nil {
			continue
		}
		failed = true
		r.logger.WarnContext(ctx, "removing applied changes failed", slog.String("db", a.name), slog.String("table", c.t.name), slog.String("error", err.Error()))
		if a.kconn.IsClosed() {
			a.kconn = nil
		}
	}
	if !failed {
		c.t.consumed = max(c.t.consumed, c.hi)
		r.logger.DebugContext(ctx, "consumed ahead", slog.String("table", c.t.name), slog.Int("batches", c.hi))
	}
}

// consumeCommitted consumes, between units, every table's batches committed by every db and
// not consumed yet.
func (r *runner) consumeCommitted(ctx context.Context) {
	r.settleConsume(ctx)
	for _, t := range r.tables {
		if t.consumed < t.committed {
			r.consume(ctx, t, t.consumed, t.committed-1, t.nb)
			t.consumed = t.committed
		}
	}
}

// advance records the watermarks of every source and receiver that took part in the whole
// run, and purges the change rows every receiver of the sync has applied. The purge runs
// on the sources while the watermarks are recorded on the control database: the rows it
// removes are those every receiver committed (the watermarks being recorded, and the old
// ones of receivers that did not take part), so a run that dies before its watermarks are
// recorded has removed only changes applied everywhere, as consume does between units.
func (r *runner) advance(ctx context.Context) error {
	r.settleConsume(ctx)
	if !r.allReceiving() {
		r.consumeCommitted(ctx) // a db left after the last unit
	}
	type mark struct{ source, receiver, snap string }
	var marks []mark
	wm := make(map[[2]string]string, len(r.wm))
	for k, v := range r.wm {
		wm[k] = v
	}
	for _, a := range r.alive() {
		if !a.isSource() || a.snap == "" {
			continue
		}
		for _, m := range r.alive() {
			if m == a || !m.receiving() {
				continue
			}
			marks = append(marks, mark{a.name, m.name, a.snap})
			wm[[2]string{a.name, m.name}] = a.snap
		}
	}
	var srcs []*member
	purge := make([]string, len(r.members))
	// A change table the run removed many rows of is emptied by TRUNCATE when nothing else
	// is left in it (capture.PurgeAll); it is vacuumed after the run all the same, which
	// costs next to nothing once it is empty.
	big := r.vacuums()
	for _, a := range r.sources() {
		// Every receiver of the sync, taking part in this run or not.
		var wms []string
		for _, m := range r.members {
			if m != a {
				wms = append(wms, wm[[2]string{a.name, m.name}])
			}
		}
		// PurgeAll is a transaction of its own (only on a session in none): they go first,
		// so that no other purge's DELETE joins the transaction that holds its lock.
		var all, stmts []string
		for _, t := range r.tables {
			if slices.Contains(big[a.idx], t) && a.conn != nil && a.conn.PgConn().TxStatus() == 'I' {
				if sql := capture.PurgeAll(t.change, wms); sql != "" {
					all = append(all, sql)
				}
			} else if sql := capture.Purge(t.change, wms); sql != "" {
				stmts = append(stmts, sql)
			}
		}
		stmts = append(all, stmts...)
		if len(stmts) == 0 {
			continue
		}
		srcs, purge[a.idx] = append(srcs, a), strings.Join(stmts, "; ")
	}
	purged := make(chan struct{})
	go func() {
		defer close(purged)
		r.each(srcs, func(a *member) error {
			if _, err := dbconn.ExecAll(ctx, a.conn, purge[a.idx]); err != nil {
				r.logger.WarnContext(ctx, "purging applied changes failed", slog.String("db", a.name), slog.String("error", err.Error()))
			}
			return nil
		})
	}()
	defer func() { <-purged }()
	if len(marks) > 0 {
		// One transaction, sent in one round trip; its commit waits for the WAL flush as any.
		b := &pgx.Batch{}
		b.Queue(`BEGIN`)
		for _, k := range marks {
			control.QueueSetWatermark(b, r.sync.Name, k.source, k.receiver, k.snap)
		}
		b.Queue(`COMMIT`)
		if err := r.ctlBatch(ctx, b); err != nil {
			return fmt.Errorf("recording watermarks: %w", err)
		}
	}
	r.wm = wm
	r.vacuum = big
	return nil
}

// vacuumMinChanges is how many of a table's changes a run must have removed from a
// source's change table for the run to vacuum it there (capture.Vacuum): about a hundred
// pages of change rows, whose scan costs each later run milliseconds until they are
// vacuumed.
const vacuumMinChanges = 10000

// vacuums returns, by member index, the tables whose change table is vacuumed on that
// source at the end of the run (vacuumChanges): those it had vacuumMinChanges changes or
// more of, all applied by this run.
func (r *runner) vacuums() [][]*table {
	out := make([][]*table, len(r.members))
	for _, t := range r.tables {
		for _, a := range r.sources() {
			if a.snap != "" && r.changesPending(t, a) >= vacuumMinChanges {
				out[a.idx] = append(out[a.idx], t)
			}
		}
	}
	return out
}

// vacuumChanges vacuums, on each source at once, the change tables advance chose (see
// capture.Vacuum), before the run's sessions are closed or given back: after the run's
// end is recorded (its lock let go), so that the run's duration is that of its changes,
// and a run of the same sync may already start meanwhile. A failure is only logged: the
// table is left to autovacuum.
func (r *runner) vacuumChanges() {
	vac := r.vacuum
	r.vacuum = nil
	ctx := r.ctx
	if vac == nil || ctx == nil || ctx.Err() != nil {
		return
	}
	var srcs []*member
	for _, a := range r.sources() {
		if len(vac[a.idx]) > 0 && !a.conn.IsClosed() {
			srcs = append(srcs, a)
		}
	}
	r.each(srcs, func(a *member) error {
		var changes, names []string
		var n int64
		for _, t := range vac[a.idx] {
			changes, names = append(changes, t.change), append(names, t.name)
			n += r.changesPending(t, a)
		}
		t0 := time.Now()
		if _, err := a.conn.Exec(ctx, capture.Vacuum(changes...)); err != nil {
			r.logger.WarnContext(ctx, "vacuuming change tables failed", slog.String("db", a.name), slog.String("tables", strings.Join(names, ", ")), slog.String("error", err.Error()))
			return nil
		}
		r.logger.DebugContext(ctx, "vacuumed", slog.String("db", a.name), slog.String("tables", strings.Join(names, ", ")), slog.Int64("changes", n), slog.Duration("took", time.Since(t0)))
		return nil
	})
}
