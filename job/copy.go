package job

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/control"
)

// runFullcopy replaces every fullcopy db's tables with the source's, table by table.
func (r *runner) runFullcopy(ctx context.Context) error {
	var src *member
	var dsts []*member
	for _, m := range r.members {
		switch {
		case m.role == control.RoleSource:
			src = m
		case m.role == control.RoleFullcopy && m.alive():
			dsts = append(dsts, m)
		}
	}
	if !src.alive() {
		return fmt.Errorf("the source db %s of fullcopy sync %s is unreachable: %v", src.name, r.sync.Name, src.dead)
	}
	return r.copyTables(ctx, src, dsts, false, r.tables)
}

// runOnetimecopy copies every table from the first source to the target dbs (mode 2:
// only into targets whose table is empty), then lets the run go on with deltas. The
// sync's onetimecopy goes back to 0 only when every target took the copy: one that was
// unreachable or failed gets it on the next run.
func (r *runner) runOnetimecopy(ctx context.Context) error {
	src, dsts := r.copySourceAndTargets()
	if !src.alive() {
		return fmt.Errorf("onetimecopy: the first source db %s of sync %s is unreachable: %v", src.name, r.sync.Name, src.dead)
	}
	if err := r.copyTables(ctx, src, dsts, r.sync.Onetimecopy == 2, r.tables); err != nil {
		return err
	}
	for _, m := range dsts {
		if m.dead != nil && !errors.Is(m.dead, errInactiveDB) {
			r.logger.WarnContext(ctx, "onetimecopy stays on: a target did not take the copy", slog.String("db", m.name))
			return nil
		}
	}
	if err := control.SetOnetimecopy(ctx, r.ctlQ(), r.sync.Name, 0); err != nil {
		return fmt.Errorf("clearing onetimecopy of sync %s: %w", r.sync.Name, err)
	}
	// The copy took in every table of the herd, those added since the sync was made too.
	if err := control.TakeInTables(ctx, r.ctlQ(), r.sync.Name, r.added); err != nil {
		return fmt.Errorf("sync %s: recording its tables: %w", r.sync.Name, err)
	}
	r.added = nil
	r.logger.InfoContext(ctx, "onetimecopy done", slog.String("from", src.name))
	return nil
}

// only is "ONLY " unless the table is partitioned on that db: a partitioned parent's rows
// are in its partitions, while an ordinary table's children (inheritance) are tables of
// their own.
func (t *table) only(m *member) string {
	if t.sinkTables[m.idx].Partitioned {
		return ""
	}
	return "ONLY "
}

// copyTables copies whole tables from src to dsts, read from one repeatable-read snapshot
// of the source. Each destination takes all the tables in one transaction, so that a
// failure on any table rolls back its whole copy; one that wrote another number of rows
// than the source sent fails. A destination whose transaction failed with a serialization
// failure or a deadlock is copied again from the same snapshot once the others committed.
func (r *runner) copyTables(ctx context.Context, src *member, dsts []*member, onlyEmpty bool, tables []*table) error {
	if _, err := src.conn.Exec(ctx, `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`); err != nil {
		return fmt.Errorf("db %s: %w", src.name, err)
	}
	defer func() { _, _ = src.conn.Exec(context.WithoutCancel(ctx), `COMMIT`) }()
	counts := map[*table][]Stats{}
	for _, t := range tables {
		counts[t] = make([]Stats, len(r.members))
	}
	for {
		if err := r.copyInto(ctx, src, dsts, onlyEmpty, tables, counts); err != nil {
			return err
		}
		var open, redo []*member
		for _, m := range dsts {
			if m.alive() && m.tx {
				open = append(open, m)
			}
		}
		errs := r.each(open, func(m *member) error { return r.commit(ctx, m) })
		for _, m := range open {
			if errs[m.idx] != nil {
				r.fail(ctx, m, errs[m.idx]) // a sink's errors name its db and the commit
				continue
			}
			for _, t := range tables {
				r.res.add(t.name, counts[t][m.idx])
			}
		}
		attempt := 0
		for _, m := range dsts {
			if m.alive() && m.retry != nil {
				m.retry = nil
				redo, attempt = append(redo, m), max(attempt, m.attempts)
			}
		}
		if len(redo) == 0 {
			break
		}
		wait := retryBackoff << (attempt - 1)
		select {
		case <-time.After(wait + rand.N(wait/2)):
		case <-ctx.Done():
			return ctx.Err()
		}
		dsts = redo
	}
	for _, m := range r.members {
		m.attempts = 0
	}
	return nil
}

// copyInto runs one attempt of copyTables on dsts, leaving their transactions open, and
// sets counts (by table and member index) for them.
func (r *runner) copyInto(ctx context.Context, src *member, dsts []*member, onlyEmpty bool, tables []*table, counts map[*table][]Stats) error {
	var live []*member
	for _, m := range dsts {
		if m.alive() {
			live = append(live, m)
		}
	}
	errs := r.each(live, func(m *member) error { return r.begin(ctx, m) })
	for _, m := range live {
		if errs[m.idx] != nil {
			r.fail(ctx, m, errs[m.idx]) // a sink's errors name its db
		}
	}
	for _, t := range tables {
		var ready []*member
		for _, m := range dsts {
			if m.alive() && m.tx {
				ready = append(ready, m)
			}
			counts[t][m.idx] = Stats{}
		}
		skip := make([]bool, len(r.members))
		errs := r.each(ready, func(m *member) (err error) {
			skip[m.idx], err = m.sink.ReplaceTable(ctx, t.sinkTables[m.idx], onlyEmpty)
			return err
		})
		var recvs []*member
		for _, m := range ready {
			if errs[m.idx] != nil {
				r.fail(ctx, m, errs[m.idx])
			} else if !skip[m.idx] {
				recvs = append(recvs, m)
			}
		}
		if len(recvs) == 0 {
			continue
		}
		sql := fmt.Sprintf(`COPY (SELECT %s FROM %s%s%s) TO STDOUT`, catalog.QuoteCols("", t.cols), t.only(src), t.ident, t.whereClause())
		if len(t.extras) > 0 {
			// Customcols and scoped filters: computed over each row (see custom.go).
			sql = fmt.Sprintf(`COPY (SELECT %s%s FROM (SELECT * FROM %s%s%s) t%s) TO STDOUT`,
				catalog.QuoteCols("t.", t.cols), t.extraCols(), t.only(src), t.ident, t.whereClause(), t.laterals())
		}
		out := r.fanout(ctx, t, 0, []sender{{m: src, conn: src.conn, sql: sql}}, recvs)
		if out.senderErrs != nil {
			r.rollbackAll()
			return fmt.Errorf("db %s: reading %s: %w", src.name, t.name, out.senderErrs[src.idx])
		}
		var rows int64
		for _, m := range recvs {
			if err := out.check(m, src.name); err != nil {
				r.fail(ctx, m, fmt.Errorf("db %s: copying %s: %w", m.name, t.name, err))
				continue
			}
			n, err := m.sink.FinishBatch(ctx, t.sinkTables[m.idx])
			if err != nil {
				r.fail(ctx, m, err)
				continue
			}
			counts[t][m.idx] = Stats{Inserts: n.Written, Deletes: n.Deleted}
			rows = out.sent[m.idx]
		}
		r.logger.InfoContext(ctx, "table copied", slog.String("table", t.name), slog.String("from", src.name), slog.Int("to", len(recvs)), slog.Int64("rows", rows))
	}
	return nil
}

// copyAddedTables copies, from the first source to the targets, the tables added to the
// sync's herd since the sync took in its tables (control.AddedTables), as onetimecopy=1
// does for the whole herd; then they are replicated as the others. They are recorded as
// taken in once every target (inactive ones aside) took the copy: one that was unreachable
// or failed gets it next run. A sync without targets takes them in at once (its sources
// exchange changes only: see 'ibex compare' for rows they had before).
func (r *runner) copyAddedTables(ctx context.Context) error {
	if len(r.added) == 0 {
		return nil
	}
	var ts []*table
	for _, t := range r.tables {
		if slices.Contains(r.added, t.name) {
			ts = append(ts, t)
		}
	}
	src, dsts := r.copySourceAndTargets()
	if len(dsts) > 0 && len(ts) > 0 {
		if !src.alive() {
			return fmt.Errorf("copying the tables added to sync %s: the first source db %s is unreachable: %v", r.sync.Name, src.name, src.dead)
		}
		r.logger.InfoContext(ctx, "copying the tables added to the herd", slog.String("sync", r.sync.Name), slog.String("tables", strings.Join(r.added, ", ")))
		if err := r.copyTables(ctx, src, dsts, false, ts); err != nil {
			return err
		}
		for _, m := range dsts {
			if m.dead != nil && !errors.Is(m.dead, errInactiveDB) {
				r.logger.WarnContext(ctx, "a target did not take the copy of the added tables: it is copied again next run", slog.String("db", m.name))
				return nil
			}
		}
	}
	if err := control.TakeInTables(ctx, r.ctlQ(), r.sync.Name, r.added); err != nil {
		return fmt.Errorf("sync %s: recording its tables: %w", r.sync.Name, err)
	}
	r.added = nil
	return nil
}

// copySourceAndTargets are the dbs of a onetimecopy: from the first source, to every target.
func (r *runner) copySourceAndTargets() (src *member, dsts []*member) {
	for _, m := range r.members {
		if m.role == control.RoleSource && src == nil {
			src = m
		}
		if m.role == control.RoleTarget {
			dsts = append(dsts, m)
		}
	}
	return src, dsts
}
