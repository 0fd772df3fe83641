package job

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/capture"
	"github.com/ibexrepl/ibex/internal/compare"
	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/dbconn"
	"github.com/ibexrepl/ibex/sinks"
	pgsink "github.com/ibexrepl/ibex/sinks/postgres"
)

// A repair (ibex repair) compares as Compare does, holding the sync's run lock from the
// snapshots to the end, and then writes, on every db that differs, the rows it should
// hold: those of a source of truth, or (union) every row present anywhere, a key in
// several versions decided by the sync's conflict strategy. Rows in flight are left to the
// next run. Rows are written through the dbs' sinks as a run writes them (PostgreSQL:
// session_replication_role = replica, so capture does not take them again; a source in
// source mode, so that a key its application changed since the snapshot is left alone),
// one transaction per db, and the repair is recorded in the run history.

// ErrBadRepair is wrapped by errors in the repair options.
var ErrBadRepair = errors.New("invalid repair")

// RepairOptions are Repair's choices.
type RepairOptions struct {
	CompareOptions
	// SourceOfTruth names the db whose rows every other db gets (its rows are inserted or
	// updated elsewhere, rows it lacks are deleted elsewhere); Union instead brings every
	// row present anywhere everywhere (never deleting). One of the two.
	SourceOfTruth string
	Union         bool
	// DryRun lists what would be done and changes nothing.
	DryRun bool
	// InsertOnly only inserts missing rows; UpsertOnly inserts and updates, never deletes.
	InsertOnly, UpsertOnly bool
}

// Repair actions.
const (
	ActionInsert = "insert"
	ActionUpdate = "update"
	ActionDelete = "delete"
)

// RepairAction is one row a repair writes (or would write) on one db.
type RepairAction struct {
	Table  string `json:"table"`
	Key    string `json:"key"`
	DB     string `json:"db"`
	Action string `json:"action"`
	From   string `json:"from,omitempty"` // the db whose row is written; "" for a delete
}

// RepairCounts counts a repair's writes on one db.
type RepairCounts struct {
	Inserted int64 `json:"inserted"`
	Updated  int64 `json:"updated"`
	Deleted  int64 `json:"deleted"`
	// Skipped are keys the db's application changed since the snapshot (left alone).
	Skipped int64 `json:"skipped,omitempty"`
}

// RepairResult is what a repair did (or, with DryRun, would do).
type RepairResult struct {
	Sync   string `json:"sync"`
	RunID  int64  `json:"run_id,omitempty"`
	DryRun bool   `json:"dry_run"`
	// Compare is the comparison the repair acted on.
	Compare *compare.Report `json:"compare"`
	// Actions lists the writes, at most the compare limit per table.
	Actions []RepairAction `json:"actions"`
	// DBs counts the writes per db.
	DBs map[string]*RepairCounts `json:"dbs"`
	// InFlight counts the differences left to the next run; Unresolved those the
	// strategy decided no winner for (skip, abort).
	InFlight   int64 `json:"in_flight"`
	Unresolved int64 `json:"unresolved"`
}

// Written is the number of rows written (or to be written) over all dbs.
func (r *RepairResult) Written() int64 {
	var n int64
	for _, c := range r.DBs {
		n += c.Inserted + c.Updated + c.Deleted
	}
	return n
}

// plan is the work of one table on one receiver: keys by the db they come from ("": delete).
type plan struct {
	byFrom map[string][]compare.Diff
	order  []string
}

func (p *plan) add(from string, d compare.Diff) {
	if p.byFrom == nil {
		p.byFrom = map[string][]compare.Diff{}
	}
	if _, ok := p.byFrom[from]; !ok {
		p.order = append(p.order, from)
	}
	p.byFrom[from] = append(p.byFrom[from], d)
}

// Repair repairs the tables of sync syncName (see the comment above).
func Repair(ctx context.Context, store *control.Store, syncName string, opts RepairOptions) (*RepairResult, error) {
	switch {
	case opts.Union == (opts.SourceOfTruth != ""):
		return nil, fmt.Errorf("%w: give --source-of-truth DB or --union (one of the two)", ErrBadRepair)
	case opts.InsertOnly && opts.UpsertOnly:
		return nil, fmt.Errorf("%w: --insert-only and --upsert-only exclude each other", ErrBadRepair)
	}
	c, err := openComparison(ctx, store, syncName, opts.CompareOptions, true)
	if err != nil {
		return nil, err
	}
	defer c.close()
	if opts.SourceOfTruth != "" {
		m := c.memberByName(opts.SourceOfTruth)
		switch {
		case m == nil:
			return nil, fmt.Errorf("%w: db %q is not a db of sync %s (its dbs: %s)", ErrBadRepair, opts.SourceOfTruth, syncName, strings.Join(c.names, ", "))
		case !slices.Contains(c.compared, m):
			return nil, fmt.Errorf("%w: db %s cannot be read: %s", ErrCannotCompare, m.name, c.report.NotCompared[m.name])
		}
	}
	strategies, err := conflict.ParseAll(c.sync.ConflictStrategy, c.sync.ConflictByType, c.names, c.sourceNames)
	if err != nil {
		return nil, err
	}
	res := &RepairResult{Sync: syncName, DryRun: opts.DryRun, DBs: map[string]*RepairCounts{}, Actions: []RepairAction{}}
	for _, m := range c.compared {
		res.DBs[m.name] = &RepairCounts{}
	}
	plans := map[*table][]*plan{}
	limit := opts.Limit
	if limit <= 0 {
		limit = DefaultCompareLimit
	}
	listed := map[*table]int{}
	c.onDiff = func(t *table, d compare.Diff) error {
		if d.InFlight {
			res.InFlight++
			return nil
		}
		from := opts.SourceOfTruth
		if opts.Union {
			from = unionWinner(c.compared, strategies, d)
			if from == "" {
				res.Unresolved++
				return nil
			}
		}
		want, has := d.Versions[from]
		ps := plans[t]
		if ps == nil {
			ps = make([]*plan, len(c.members))
			plans[t] = ps
		}
		for _, m := range c.compared {
			if m.name == from {
				continue
			}
			got, there := d.Versions[m.name]
			var act string
			switch {
			case has && !there:
				act = ActionInsert
			case has && got != want && !opts.InsertOnly:
				act = ActionUpdate
			case !has && there && !opts.InsertOnly && !opts.UpsertOnly:
				act = ActionDelete
			default:
				continue
			}
			if ps[m.idx] == nil {
				ps[m.idx] = &plan{}
			}
			src := from
			if act == ActionDelete {
				src = ""
			}
			ps[m.idx].add(src, d)
			cnt := res.DBs[m.name]
			switch act {
			case ActionInsert:
				cnt.Inserted++
			case ActionUpdate:
				cnt.Updated++
			default:
				cnt.Deleted++
			}
			if listed[t] < limit {
				listed[t]++
				res.Actions = append(res.Actions, RepairAction{Table: t.name, Key: d.Label(), DB: m.name, Action: act, From: src})
			}
		}
		return nil
	}
	if res.Compare, err = c.run(ctx); err != nil {
		return nil, err
	}
	if opts.DryRun || res.Written() == 0 {
		return res, nil
	}
	return res, c.apply(ctx, plans, res, opts)
}

// unionWinner picks the db whose row a key gets everywhere: the one version there is, or,
// for several, the sync's strategy's winner among the dbs that have the key (no capture
// time is left for a diverged key: the latest strategy breaks the tie as runs do).
func unionWinner(dbs []*member, ss conflict.Strategies, d compare.Diff) string {
	var has []string
	versions := map[string]bool{}
	for _, m := range dbs {
		if h, ok := d.Versions[m.name]; ok {
			has = append(has, m.name)
			versions[h] = true
		}
	}
	if len(has) == 0 {
		return ""
	}
	if len(versions) == 1 {
		return has[0]
	}
	var changes []conflict.Change
	for _, n := range has {
		changes = append(changes, conflict.Change{DB: n, Kind: conflict.KindUpdate})
	}
	return ss.For(conflict.TypeUpdateUpdate).Winner(changes)
}

// apply writes the plans, one transaction per db, recorded as a run.
func (c *comparison) apply(ctx context.Context, plans map[*table][]*plan, res *RepairResult, opts RepairOptions) error {
	host, _ := os.Hostname()
	runID, err := control.StartRun(ctx, c.lockConn, c.sync.Name, host, os.Getpid())
	if err != nil {
		return fmt.Errorf("recording the repair of sync %s: %w", c.sync.Name, err)
	}
	res.RunID = runID
	started := time.Now()
	var failed []string
	for _, m := range c.compared {
		if err := c.applyOn(ctx, m, plans, res.DBs[m.name]); err != nil {
			failed = append(failed, fmt.Sprintf("db %s: %v", m.name, err))
			c.logger.ErrorContext(ctx, "repair failed on a db: rolled back", slog.String("db", m.name), slog.String("error", err.Error()))
		}
	}
	mode := "union"
	if opts.SourceOfTruth != "" {
		mode = "source-of-truth " + opts.SourceOfTruth
	}
	rec := &control.Run{ID: runID, State: control.StateGood, Details: map[string]any{"repair": map[string]any{"mode": mode,
		"insert_only": opts.InsertOnly, "upsert_only": opts.UpsertOnly, "dbs": res.DBs, "in_flight": res.InFlight,
		"unresolved": res.Unresolved, "seconds": time.Since(started).Seconds()}}}
	for _, cnt := range res.DBs {
		rec.Inserts += cnt.Inserted + cnt.Updated
		rec.Deletes += cnt.Deleted + cnt.Updated
	}
	if len(failed) > 0 {
		rec.State, rec.Error = control.StateBad, "repair: "+strings.Join(failed, "; ")
	}
	if err := control.EndRun(context.WithoutCancel(ctx), c.lockConn, rec); err != nil {
		return fmt.Errorf("recording the repair of sync %s: %w", c.sync.Name, err)
	}
	if len(failed) > 0 {
		return errors.New(rec.Error)
	}
	return nil
}

// applyOn writes m's plans in one transaction.
func (c *comparison) applyOn(ctx context.Context, m *member, plans map[*table][]*plan, cnt *RepairCounts) error {
	var work bool
	for _, ps := range plans {
		work = work || ps[m.idx] != nil
	}
	if !work {
		return nil
	}
	sink := m.sink
	if m.pg() {
		conn, err := dbconn.Connect(ctx, m.name, m.db.Conn, m.db.Pass)
		if err != nil {
			return err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		if _, err := pgsink.Configure(ctx, conn, dbconn.WALCompressionSQL(dbconn.ServerMajor(conn.PgConn()))); err != nil {
			return err
		}
		var sopts []pgsink.Option
		if m.isSource() && !c.fullcopy {
			sopts = append(sopts, pgsink.WithSource(pgsink.Source{Snapshot: c.snaps[m.idx], ChangeTable: func(t *sinks.Table) string {
				return capture.ChangeTable(c.sync.Name, t.Schema, t.Name).Sanitize()
			}}))
		}
		if sink, err = pgsink.New(conn, m.name, sopts...); err != nil {
			return err
		}
	}
	if err := sink.Begin(ctx); err != nil {
		return err
	}
	for _, t := range c.tables {
		p := plans[t][m.idx]
		if plans[t] == nil || p == nil {
			continue
		}
		st := t.sinkTables[m.idx]
		for _, from := range p.order {
			diffs := p.byFrom[from]
			keys := make([]string, len(diffs))
			for i, d := range diffs {
				keys[i] = keyLine(d.KeyFields)
			}
			prep, err := sink.PrepareBatch(ctx, st, keys)
			if err != nil {
				sink.Rollback(ctx)
				return err
			}
			cnt.Skipped += int64(len(prep.Skipped))
			var lines []string
			if from != "" {
				if lines, err = c.rowsOf(ctx, t, c.memberByName(from), diffs, prep.Skipped); err != nil {
					sink.Rollback(ctx)
					return fmt.Errorf("reading the rows of %s on db %s: %w", t.name, from, err)
				}
			}
			if _, err := sink.WriteRows(ctx, st, sinks.LinesReader(lines)); err != nil {
				sink.Rollback(ctx)
				return err
			}
			if _, err := sink.FinishBatch(ctx, st); err != nil {
				sink.Rollback(ctx)
				return err
			}
		}
	}
	return sink.Commit(ctx)
}

// keyLine is key fields as a COPY text line.
func keyLine(fields []string) string {
	fs := make([]conflict.Field, len(fields))
	for i, f := range fields {
		fs[i] = conflict.Field{Text: f}
	}
	return conflict.EncodeCopyLine(fs)
}

// rowsOf reads, in db m's snapshot, the rows of the keys of diffs (but those skipped), as
// COPY text lines.
func (c *comparison) rowsOf(ctx context.Context, t *table, m *member, diffs []compare.Diff, skipped []string) ([]string, error) {
	want := map[string]bool{}
	for _, d := range diffs {
		if k := keyLine(d.KeyFields); !slices.Contains(skipped, k) {
			want[k] = true
		}
	}
	var lines []string
	if r := c.readers[m.idx]; r != nil {
		nk := len(t.keyCols)
		err := r.ReadRows(ctx, t.sinkTables[m.idx], func(line string) error {
			fs, err := conflict.DecodeCopyLine(line)
			if err != nil {
				return err
			}
			if want[conflict.EncodeCopyLine(fs[:nk])] {
				lines = append(lines, line)
			}
			return nil
		})
		return lines, err
	}
	types := make([]string, len(t.keyCols))
	for i, k := range t.keyCols {
		for _, col := range t.desc.Columns {
			if col.Name == k {
				types[i] = col.Type
			}
		}
	}
	args := make([]any, len(t.keyCols))
	// One text[] per key column, the keys in one order.
	ks := make([]string, 0, len(want))
	for k := range want {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	for i := range args {
		vals := make([]string, len(ks))
		for j, k := range ks {
			fs, err := conflict.DecodeCopyLine(k)
			if err != nil {
				return nil, err
			}
			vals[j] = fs[i].Text
		}
		args[i] = vals
	}
	rows, err := m.conn.Query(ctx, compare.RowsByKey(c.from(t, m), t.keyCols, types, t.cols), append([]any{pgx.QueryResultFormats{pgx.TextFormatCode}}, args...)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		vals := rows.RawValues()
		fs := make([]conflict.Field, len(vals))
		for i, v := range vals {
			if v == nil {
				fs[i] = conflict.Field{Null: true}
			} else {
				fs[i] = conflict.Field{Text: string(v)}
			}
		}
		lines = append(lines, conflict.EncodeCopyLine(fs))
	}
	return lines, rows.Err()
}
