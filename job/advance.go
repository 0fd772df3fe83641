package job

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

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

// consumeCommitted consumes, between units, every table's batches committed by every db and
// not consumed yet.
func (r *runner) consumeCommitted(ctx context.Context) {
	for _, t := range r.tables {
		if t.consumed < t.committed {
			r.consume(ctx, t, t.consumed, t.committed-1, t.nb)
			t.consumed = t.committed
		}
	}
}

// advance records the watermarks of every source and receiver that took part in the whole
// run, then purges change rows every receiver of the sync has applied.
func (r *runner) advance(ctx context.Context) error {
	if !r.allReceiving() {
		r.consumeCommitted(ctx) // a db left after the last unit
	}
	tx, err := r.ctlBegin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	cctx := r.ctlCtx(ctx)
	for _, a := range r.alive() {
		if !a.isSource() || a.snap == "" {
			continue
		}
		for _, m := range r.alive() {
			if m == a || !m.receiving() {
				continue
			}
			if err := control.SetWatermark(cctx, tx, r.sync.Name, a.name, m.name, a.snap); err != nil {
				return fmt.Errorf("recording watermarks: %w", err)
			}
			r.wm[[2]string{a.name, m.name}] = a.snap
		}
	}
	if err := tx.Commit(cctx); err != nil {
		return fmt.Errorf("recording watermarks: %w", err)
	}
	var srcs []*member
	purge := make([]string, len(r.members))
	for _, a := range r.sources() {
		// Every receiver of the sync, taking part in this run or not.
		var wms []string
		for _, m := range r.members {
			if m != a {
				wms = append(wms, r.wm[[2]string{a.name, m.name}])
			}
		}
		var stmts []string
		for _, t := range r.tables {
			if sql := capture.Purge(t.change, wms); sql != "" {
				stmts = append(stmts, sql)
			}
		}
		if len(stmts) == 0 {
			continue
		}
		srcs, purge[a.idx] = append(srcs, a), strings.Join(stmts, "; ")
	}
	r.each(srcs, func(a *member) error {
		if _, err := dbconn.ExecAll(ctx, a.conn, purge[a.idx]); err != nil {
			r.logger.WarnContext(ctx, "purging applied changes failed", slog.String("db", a.name), slog.String("error", err.Error()))
		}
		return nil
	})
	return nil
}
