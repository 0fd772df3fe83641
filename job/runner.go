package job

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/capture"
	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/dbconn"
)

// member is one db of the sync during a run.
type member struct {
	idx     int
	name    string
	role    string
	db      *control.DB
	conn    *pgx.Conn
	rconn   *pgx.Conn // sources: a second session that reads rows while conn receives
	kconn   *pgx.Conn // sources of a multi-batch table: reads the next batch's keys ahead
	dead    error     // why this db left the run; nil while it takes part
	snap    string
	tx      bool // the unit's transaction is open
	replica bool // session_replication_role = replica is in effect
	// retry is set while the member waits for the unit to be applied to it again (its
	// transaction failed with a serialization failure or a deadlock); attempts counts
	// its failed attempts in the unit.
	retry    error
	attempts int
}

func (m *member) alive() bool { return m.dead == nil && m.conn != nil }
func (m *member) isSource() bool {
	return m.role == control.RoleSource
}

// table is one replicated table during a run.
type table struct {
	rel     control.Relation
	desc    *catalog.Table
	name    string // schema.table for messages
	ident   string // quoted
	keyCols []string
	cols    []string // keys first, then the other columns
	change  string   // quoted change table
	bounds  []string // batches are key ranges split at these SQL literals (nil: hash buckets)
	// nb is the number of batches of the run's backlog; batches [0, committed) are
	// committed everywhere, and the change rows of [0, consumed) deleted.
	nb, committed, consumed int
	// partitioned tells, by member index, whether the db's table is a partitioned parent.
	partitioned []bool
}

type runner struct {
	store    *control.Store
	sync     *control.Sync
	opts     Options
	logger   *slog.Logger
	res      *Result
	members  []*member
	tables   []*table
	strategy conflict.Strategy
	wm       map[[2]string]string
	fullcopy bool
	// validating: capture may be missing (validate installs it)
	validating bool
	// ctx is the run's context: a db failing after it ended is not recorded as skipped.
	ctx context.Context
	// ahead is the key read of the next batch under way, if any.
	ahead *keyRead
	// pendingN counts each table's pending changes over all sources, taken once per run
	// by countPending (nil: not taken).
	pendingN map[*table]int64
	// only, when not 0, limits the receivers written to these members (a unit applied
	// again to the receivers whose transaction failed).
	only uint64
	// lastConsume is when committed change rows were last consumed.
	lastConsume time.Time
}

var snapRe = regexp.MustCompile(`^[0-9]+:[0-9]+:[0-9,]*$`)

func (r *runner) run(ctx context.Context) error {
	r.ctx = ctx
	defer r.closeAll()
	t0 := time.Now()
	if err := r.loadFrom(ctx, r.store.Q()); err != nil {
		return err
	}
	t1 := time.Now()
	r.connect(ctx)
	t2 := time.Now()
	if !r.fullcopy && r.sync.Onetimecopy == 0 {
		if n, err := r.countPending(ctx); err == nil && n == 0 {
			r.logger.DebugContext(ctx, "no changes pending", slog.Duration("load", t1.Sub(t0)), slog.Duration("connect", t2.Sub(t1)), slog.Duration("count", time.Since(t2)))
			return nil
		}
	}
	t3 := time.Now()
	if err := r.checkSchemas(ctx); err != nil {
		return err
	}
	r.logger.DebugContext(ctx, "ready", slog.Duration("load", t1.Sub(t0)), slog.Duration("connect", t2.Sub(t1)), slog.Duration("count", t3.Sub(t2)), slog.Duration("schemas", time.Since(t3)))
	if r.fullcopy {
		return r.runFullcopy(ctx)
	}
	if r.sync.Onetimecopy > 0 {
		if err := r.runOnetimecopy(ctx); err != nil {
			return err
		}
	}
	return r.runDelta(ctx)
}

// errInactiveDB marks a db whose status is inactive: runs leave it out.
var errInactiveDB = errors.New("db is inactive")

// errNoTables is returned by loadFrom when the herd is empty.
var errNoTables = errors.New("herd has no tables")

// countSQL counts the pending changes of t on source a as of snap, an SQL expression of
// type pg_snapshot.
func (r *runner) countSQL(t *table, a *member, snap string) string {
	return `SELECT count(*) FROM ` + t.change + ` d WHERE ` + r.pendingAt(a, "d.", snap)
}

// countPending takes the sources' snapshots and counts each table's pending changes as of
// them: one query per source, all sources at once. A source that fails is left for the
// full path to report (which takes the snapshots that are missing and counts again).
func (r *runner) countPending(ctx context.Context) (total int64, err error) {
	counts := make([][]int64, len(r.members))
	snaps := make([]string, len(r.members))
	errs := r.each(r.sources(), func(a *member) error {
		var parts []string
		for _, t := range r.tables {
			parts = append(parts, `(`+r.countSQL(t, a, "x.s")+`)`)
		}
		err := a.conn.QueryRow(ctx, `SELECT x.s::text, ARRAY[`+strings.Join(parts, ", ")+`]::int8[] FROM (SELECT pg_current_snapshot() AS s) x`).Scan(&snaps[a.idx], &counts[a.idx])
		if err == nil && !snapRe.MatchString(snaps[a.idx]) {
			err = fmt.Errorf("db %s: unexpected snapshot %q", a.name, snaps[a.idx])
		}
		if err == nil {
			a.snap = snaps[a.idx]
		}
		return err
	})
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	r.pendingN = map[*table]int64{}
	for _, a := range r.sources() {
		for j, t := range r.tables {
			r.pendingN[t] += counts[a.idx][j]
			total += counts[a.idx][j]
		}
	}
	return total, nil
}

// readConn returns the second session of a source, used to read rows while its first
// session receives; it is opened on first use. Its reads join a short key list to a user
// table, so hash and merge joins are off: they probe the table's key index instead.
func (r *runner) readConn(ctx context.Context, m *member) (*pgx.Conn, error) {
	if m.rconn == nil {
		c, err := dbconn.Connect(ctx, m.name, m.db.Conn, m.db.Pass)
		if err != nil {
			return nil, err
		}
		if _, err := execAll(ctx, c, `SET enable_hashjoin = off; SET enable_mergejoin = off`); err != nil {
			_ = c.Close(ctx)
			return nil, fmt.Errorf("db %s: %w", m.name, err)
		}
		m.rconn = c
	}
	return m.rconn, nil
}

func (r *runner) loadFrom(ctx context.Context, q control.Querier) error {
	group, err := control.GetDBGroup(ctx, q, r.sync.DBGroup)
	if err != nil {
		return err
	}
	var names, sources []string
	for i, m := range group.Members {
		db, err := control.GetDB(ctx, q, m.DB)
		if err != nil {
			return err
		}
		r.members = append(r.members, &member{idx: i, name: m.DB, role: m.Role, db: db})
		names = append(names, m.DB)
		if m.Role == control.RoleSource {
			sources = append(sources, m.DB)
		}
		if m.Role == control.RoleFullcopy {
			r.fullcopy = true
		}
	}
	if len(sources) == 0 {
		return fmt.Errorf("dbgroup %s has no source: add one with 'ibex update dbgroup %s NAME:source ...'", group.Name, group.Name)
	}
	r.strategy, err = conflict.Parse(r.sync.ConflictStrategy, names, sources)
	if err != nil {
		return fmt.Errorf("sync %s: %w", r.sync.Name, err)
	}
	herds, err := control.Herds(ctx, q)
	if err != nil {
		return err
	}
	rels, err := control.Relations(ctx, q)
	if err != nil {
		return err
	}
	byName := map[string]control.Relation{}
	for _, rel := range rels {
		byName[rel.QualName()] = rel
	}
	for _, h := range herds {
		if h.Name != r.sync.Herd {
			continue
		}
		for _, tn := range h.Tables {
			rel := byName[tn]
			if len(rel.KeyCols) == 0 && !r.fullcopy {
				return fmt.Errorf("table %s has no primary key or unique index: it can only be in a fullcopy sync", tn)
			}
			r.tables = append(r.tables, &table{rel: rel, name: tn, ident: pgx.Identifier{rel.Schema, rel.Name}.Sanitize(),
				change: capture.ChangeTable(r.sync.Name, rel.Schema, rel.Name).Sanitize()})
		}
	}
	if len(r.tables) == 0 {
		return fmt.Errorf("%w: herd %s of sync %s is empty: add tables with 'ibex add table ... herd=%s'", errNoTables, r.sync.Herd, r.sync.Name, r.sync.Herd)
	}
	r.wm, err = control.Watermarks(ctx, q, r.sync.Name)
	return err
}

// connect opens one connection per db, in parallel. An unreachable db leaves the run.
func (r *runner) connect(ctx context.Context) {
	var active []*member
	for _, m := range r.members {
		if m.db.Status == control.StatusInactive {
			m.dead = errInactiveDB
			r.logger.InfoContext(ctx, "db is inactive: left out of this run", slog.String("db", m.name))
			continue
		}
		active = append(active, m)
	}
	errs := r.each(active, func(m *member) error {
		conn, err := dbconn.Connect(ctx, m.name, m.db.Conn, m.db.Pass)
		if err != nil {
			return err
		}
		m.conn = conn
		// Rows ibex applies must not fire capture, user triggers or FK checks; and their
		// WAL is compressed where the role may ask for it (dbconn.WALCompressionSQL).
		wal := dbconn.WALCompressionSQL(dbconn.ServerMajor(conn.PgConn()))
		if _, err := execAll(ctx, conn, `SET lock_timeout = '60s'; SET session_replication_role = replica; `+wal); err == nil {
			m.replica = true
		} else if _, err := execAll(ctx, conn, `SET lock_timeout = '60s'; SET ibex.applying = 'on'; `+wal); err != nil {
			return fmt.Errorf("db %s: %w", m.name, err)
		}
		return nil
	})
	for _, m := range active {
		if err := errs[m.idx]; err != nil {
			r.drop(m, err)
		} else if !m.replica {
			r.logger.WarnContext(ctx, "cannot set session_replication_role: user triggers and foreign keys fire for applied rows (GRANT SET ON PARAMETER session_replication_role to the role to avoid it)",
				slog.String("db", m.name))
		}
	}
}

func (r *runner) drop(m *member, err error) {
	if m.dead == nil {
		m.dead = err
	}
	if r.ctx != nil && r.ctx.Err() != nil {
		// The run was cancelled (a deadline, a signal): the db is not to blame.
		m.close()
		return
	}
	if r.res.Skipped == nil {
		r.res.Skipped = map[string]string{}
	}
	msg := err.Error()
	if _, ok := r.res.Skipped[m.name]; !ok {
		r.res.Skipped[m.name] = msg
		r.logger.Warn("db leaves this run", slog.String("db", m.name), slog.String("reason", msg))
	}
	m.close()
}

func (m *member) close() {
	for _, c := range []*pgx.Conn{m.conn, m.rconn} {
		if c != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = c.Close(ctx)
			cancel()
		}
	}
	m.conn, m.rconn = nil, nil
}

func (r *runner) closeAll() {
	if r.ahead != nil {
		r.ahead.wg.Wait()
		r.ahead = nil
	}
	for _, m := range r.members {
		m.close()
		// The key session is closed only here, once no read ahead can be using it.
		if m.kconn != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = m.kconn.Close(ctx)
			cancel()
			m.kconn = nil
		}
	}
}

func (r *runner) alive() []*member {
	var out []*member
	for _, m := range r.members {
		if m.alive() {
			out = append(out, m)
		}
	}
	return out
}

// sources lists the live sources.
func (r *runner) sources() []*member {
	var out []*member
	for _, m := range r.alive() {
		if m.isSource() {
			out = append(out, m)
		}
	}
	return out
}

// each runs fn for every member of ms at once and returns the errors by member idx (nil
// for the members not in ms).
func (r *runner) each(ms []*member, fn func(m *member) error) []error {
	errs := make([]error, len(r.members))
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Go(func() { errs[m.idx] = fn(m) })
	}
	wg.Wait()
	return errs
}

// checkSchemas describes every table on every reachable db and refuses to go on when
// they disagree (schema drift) or when capture is missing on a source.
func (r *runner) checkSchemas(ctx context.Context) error {
	alive := r.alive()
	if len(alive) == 0 {
		return errors.New("no db of the sync is reachable")
	}
	descs := make([][]*catalog.Table, len(r.members))
	errs := r.each(alive, func(m *member) error {
		// Every table's description and capture state in one round trip.
		b := &pgx.Batch{}
		ds := make([]*catalog.Table, len(r.tables))
		derrs := make([]error, len(r.tables))
		states := make([]*capture.State, len(r.tables))
		for i, t := range r.tables {
			catalog.QueueDescribe(b, catalog.QualName{Schema: t.rel.Schema, Name: t.rel.Name}, &ds[i], &derrs[i])
			if m.isSource() && !r.fullcopy && !r.validating {
				states[i] = capture.QueueInstalled(b, r.sync.Name, t.rel.Schema, t.rel.Name)
			}
		}
		if err := m.conn.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("db %s: describing the tables: %w", m.name, err)
		}
		for i, t := range r.tables {
			if errors.Is(derrs[i], catalog.ErrNoTable) {
				return fmt.Errorf("table %s does not exist on db %s: create it there (with the same columns) and run 'ibex validate %s'", t.name, m.name, r.sync.Name)
			} else if derrs[i] != nil {
				return fmt.Errorf("db %s: %w", m.name, derrs[i])
			}
			if st := states[i]; st != nil {
				if st.Err != nil {
					return fmt.Errorf("db %s: %w", m.name, st.Err)
				}
				if !st.Matches(ds[i]) {
					return fmt.Errorf("capture of table %s is missing or outdated on db %s: run 'ibex validate %s'", t.name, m.name, r.sync.Name)
				}
			}
		}
		descs[m.idx] = ds
		return nil
	})
	for _, m := range alive {
		if err := errs[m.idx]; err != nil {
			if m.conn.IsClosed() {
				r.drop(m, err)
				continue
			}
			return err
		}
	}
	var ref *member
	for _, m := range r.alive() {
		if ref == nil {
			ref = m
			continue
		}
		for i := range r.tables {
			if d := catalog.Compare(descs[ref.idx][i], descs[m.idx][i], ref.name, m.name); d != "" {
				return fmt.Errorf("schema drift: %s; make the tables agree, then run the sync again", d)
			}
		}
	}
	if ref == nil {
		return errors.New("no db of the sync is reachable")
	}
	for i, t := range r.tables {
		d := descs[ref.idx][i]
		t.desc = d
		t.partitioned = make([]bool, len(r.members))
		for _, m := range r.alive() {
			t.partitioned[m.idx] = descs[m.idx][i].Partitioned
		}
		if !r.fullcopy && strings.Join(d.KeyCols, ",") != strings.Join(t.rel.KeyCols, ",") && len(d.KeyCols) > 0 {
			return fmt.Errorf("the key of table %s changed (ibex has %s, db %s has %s): run 'ibex update table %s db=%s' and 'ibex validate %s'",
				t.name, strings.Join(t.rel.KeyCols, ","), ref.name, strings.Join(d.KeyCols, ","), t.name, ref.name, r.sync.Name)
		}
		for _, k := range t.rel.KeyCols {
			if k == capture.TxidCol || k == capture.AtCol {
				return fmt.Errorf("table %s has a key column named %q, a name ibex's change tables use for themselves: rename the column", t.name, k)
			}
		}
		t.keyCols = t.rel.KeyCols
		t.cols = slices.Clone(t.keyCols)
		for _, c := range d.Columns {
			if !slices.Contains(t.keyCols, c.Name) {
				t.cols = append(t.cols, c.Name)
			}
		}
	}
	return nil
}

func quoteCols(prefix string, cols []string) string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = prefix + pgx.Identifier{c}.Sanitize()
	}
	return strings.Join(out, ", ")
}

func keyJoin(a, b string, cols []string) string {
	out := make([]string, len(cols))
	for i, c := range cols {
		q := pgx.Identifier{c}.Sanitize()
		out[i] = a + "." + q + " = " + b + "." + q
	}
	return strings.Join(out, " AND ")
}

func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// begin opens the batch transaction of a member if none is open.
func (r *runner) begin(ctx context.Context, m *member) error {
	if m.tx {
		return nil
	}
	if _, err := m.conn.Exec(ctx, `BEGIN`); err != nil {
		return err
	}
	m.tx = true
	return nil
}

func (r *runner) rollback(m *member) {
	if !m.tx || m.conn == nil {
		m.tx = false
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = m.conn.Exec(ctx, `ROLLBACK`)
	m.tx = false
}

func (r *runner) commit(ctx context.Context, m *member) error {
	if !m.tx {
		return nil
	}
	m.tx = false
	_, err := m.conn.Exec(ctx, `COMMIT`)
	return err
}

func (r *runner) deadlinePassed() bool {
	if r.opts.Deadline.IsZero() {
		return false
	}
	margin := r.opts.DeadlineMargin
	if margin == 0 {
		margin = 10 * time.Second
	}
	return time.Until(r.opts.Deadline) < margin
}
