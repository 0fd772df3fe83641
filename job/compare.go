package job

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ibexrepl/ibex/internal/capture"
	"github.com/ibexrepl/ibex/internal/compare"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/dbconn"
	"github.com/ibexrepl/ibex/sinks"
)

// A comparison of a sync's tables across its dbs (ibex compare), and its repair (ibex
// repair, repair.go). Every PostgreSQL db is read in one REPEATABLE READ, READ ONLY
// transaction (ACCESS SHARE locks only), the dbs in parallel. The snapshots are taken while
// the sync's run lock is held, so that no run is between its writes to two dbs: a key that
// differs either has a captured change still pending on a source in that source's
// snapshot (in flight: the next run settles it) or has diverged. The lock is released once
// the snapshots are taken, unless a db that is not PostgreSQL (which has no snapshot) takes
// part, or the caller repairs: then it is held to the end. package compare has the SQL
// and the merge.

// ErrCannotCompare is returned when the comparison could not be made (a db down, a table
// missing on a db): ibex compare exits 2.
var ErrCannotCompare = errors.New("could not compare")

// ErrUnknownTable is returned for a table named that is not in the sync's herd.
var ErrUnknownTable = errors.New("table is not in the sync")

// DefaultCompareLimit is how many differences of a table a report lists by default.
const DefaultCompareLimit = 1000

// CompareOptions are Compare's choices. The zero value is usable.
type CompareOptions struct {
	Logger *slog.Logger
	// Tables names the tables to compare (schema.table, or table when one schema has it);
	// nil: every table of the sync.
	Tables []string
	// BlockRows is the average number of rows of a block (0: compare.DefaultBlockRows).
	BlockRows int
	// Limit is how many differences per table the report lists (0: DefaultCompareLimit);
	// all are counted.
	Limit int
	// Wait is how long to wait for a run under way to end (0: 60 s).
	Wait time.Duration
}

// comparison is a compare (or a repair) under way.
type comparison struct {
	*session
	opts     CompareOptions
	lockConn *pgxpool.Conn
	locked   bool
	tables   []*table
	// compared are the dbs read, in dbgroup order; readers, by member idx, the sinks that
	// list the rows of dbs that are not PostgreSQL; snaps the snapshots of the others.
	compared []*member
	readers  []sinks.Reader
	snaps    []string
	// fast: every db compared is PostgreSQL 14 or later (compare.Scheme).
	fast   bool
	report *compare.Report
	// onDiff, when set, sees every difference (repair).
	onDiff func(t *table, d compare.Diff) error
}

// Compare compares the tables of sync syncName on all its dbs.
func Compare(ctx context.Context, store *control.Store, syncName string, opts CompareOptions) (*compare.Report, error) {
	c, err := openComparison(ctx, store, syncName, opts, false)
	if err != nil {
		return nil, err
	}
	defer c.close()
	return c.run(ctx)
}

// openComparison loads the sync, checks the tables named, takes the lock, connects and
// takes the snapshots. hold keeps the lock until close.
func openComparison(ctx context.Context, store *control.Store, syncName string, opts CompareOptions, hold bool) (*comparison, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opts.Logger = logger
	if err := store.Check(ctx); err != nil {
		return nil, err
	}
	sync, err := control.GetSync(ctx, store.Q(), syncName)
	if err != nil {
		return nil, err
	}
	c := &comparison{session: &session{store: store, sync: sync, logger: logger.With(slog.String("sync", syncName))}, opts: opts,
		report: &compare.Report{Sync: syncName, Started: time.Now()}}
	if err := c.load(ctx, store.Q()); err != nil {
		return nil, err
	}
	if c.tables, err = c.pick(opts.Tables); err != nil {
		return nil, err
	}
	c.lockConn, err = store.Pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("control database: %w", err)
	}
	if err := waitLock(ctx, c.lockConn, sync, opts.Wait); err != nil {
		c.lockConn.Release()
		return nil, err
	}
	c.locked = true
	if err := c.start(ctx); err != nil {
		c.close()
		return nil, err
	}
	if !hold && !slices.ContainsFunc(c.compared, func(m *member) bool { return !m.pg() }) {
		c.unlock()
	}
	return c, nil
}

// pick returns the tables of the sync named (all for none), or ErrUnknownTable.
func (c *comparison) pick(names []string) ([]*table, error) {
	if len(names) == 0 {
		return c.session.tables, nil
	}
	var out []*table
	for _, n := range names {
		var found []*table
		for _, t := range c.session.tables {
			if t.name == n || t.rel.Name == n {
				found = append(found, t)
			}
		}
		switch {
		case len(found) == 0:
			return nil, fmt.Errorf("table %q: %w %s (see 'ibex status %s')", n, ErrUnknownTable, c.sync.Name, c.sync.Name)
		case len(found) > 1:
			return nil, fmt.Errorf("table %q is in several schemas of sync %s: name it schema.table", n, c.sync.Name)
		}
		if !slices.Contains(out, found[0]) {
			out = append(out, found[0])
		}
	}
	return out, nil
}

// start connects to every db, checks the schemas and opens the snapshots.
func (c *comparison) start(ctx context.Context) error {
	c.connect(ctx)
	c.report.NotCompared = map[string]string{}
	for _, m := range c.members {
		switch {
		case errors.Is(m.dead, errInactiveDB):
			c.report.NotCompared[m.name] = "db is inactive"
		case m.dead != nil:
			return fmt.Errorf("%w: db %s: %v", ErrCannotCompare, m.name, m.dead)
		}
	}
	if err := c.checkSchemas(ctx, false); err != nil {
		return fmt.Errorf("%w: %w", ErrCannotCompare, err)
	}
	for db, why := range c.skipped {
		if !errors.Is(c.memberByName(db).dead, errInactiveDB) {
			return fmt.Errorf("%w: db %s: %s", ErrCannotCompare, db, why)
		}
	}
	c.readers = make([]sinks.Reader, len(c.members))
	c.snaps = make([]string, len(c.members))
	for _, m := range c.alive() {
		if !m.pg() {
			r, ok := m.target.(sinks.Reader)
			if !ok {
				c.report.NotCompared[m.name] = fmt.Sprintf("its sink (type %s) cannot list rows", m.db.Type)
				continue
			}
			c.readers[m.idx] = r
		}
		c.compared = append(c.compared, m)
		c.report.DBs = append(c.report.DBs, m.name)
	}
	if len(c.compared) < 2 {
		return fmt.Errorf("%w: fewer than two dbs of sync %s can be compared", ErrCannotCompare, c.sync.Name)
	}
	pgs := c.pgs()
	c.fast = len(pgs) == len(c.compared)
	for _, m := range pgs {
		c.fast = c.fast && dbconn.ServerMajor(m.conn.PgConn()) >= 14
	}
	errs := c.each(pgs, func(m *member) error {
		if _, err := m.conn.Exec(ctx, `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`); err != nil {
			return err
		}
		return m.conn.QueryRow(ctx, `SELECT pg_current_snapshot()::text`).Scan(&c.snaps[m.idx])
	})
	for _, m := range pgs {
		if errs[m.idx] != nil {
			return fmt.Errorf("%w: db %s: taking a snapshot: %w", ErrCannotCompare, m.name, errs[m.idx])
		}
	}
	return nil
}

func (c *comparison) unlock() {
	if c.locked {
		_ = control.UnlockSync(context.Background(), c.lockConn, c.sync)
		c.locked = false
	}
}

func (c *comparison) close() {
	c.unlock()
	if c.lockConn != nil {
		c.lockConn.Release()
		c.lockConn = nil
	}
	c.closeAll()
}

// run compares every table picked.
func (c *comparison) run(ctx context.Context) (*compare.Report, error) {
	for _, t := range c.tables {
		res, err := c.table(ctx, t)
		if err != nil {
			return nil, fmt.Errorf("%w: table %s: %w", ErrCannotCompare, t.name, err)
		}
		c.report.Tables = append(c.report.Tables, res)
		c.logger.InfoContext(ctx, "table compared", slog.String("table", t.name), slog.Int64("diverged", res.Diverged()), slog.Int64("in_flight", res.InFlight))
	}
	c.report.Duration = time.Since(c.report.Started)
	return c.report, nil
}

// from is the table as db m is compared: its rows matching the table's filter, if any.
func (c *comparison) from(t *table, m *member) string {
	on := t.on(m)
	id := pgx.Identifier{on.Schema, on.Name}.Sanitize()
	if t.rel.Where == "" {
		return id
	}
	return "(SELECT * FROM " + id + t.whereClause() + ")"
}

func (c *comparison) pgs() []*member {
	var out []*member
	for _, m := range c.compared {
		if m.pg() {
			out = append(out, m)
		}
	}
	return out
}

// firstErr returns the first error of errs among ms, naming its db.
func firstErr(ms []*member, errs []error) error {
	for _, m := range ms {
		if errs[m.idx] != nil {
			return fmt.Errorf("db %s: %w", m.name, errs[m.idx])
		}
	}
	return nil
}

// table compares one table.
func (c *comparison) table(ctx context.Context, t *table) (*compare.Table, error) {
	res := &compare.Table{Table: t.name, Rows: map[string]int64{}, Diffs: []compare.Diff{}}
	if len(t.keyCols) == 0 {
		return nil, errors.New("the table has no key (keyless=fullcopy): rows can only be compared by key")
	}
	// The number of blocks, from the largest estimate of the PostgreSQL dbs.
	pgs := c.pgs()
	ests := make([]float64, len(c.members))
	if err := firstErr(pgs, c.each(pgs, func(m *member) error {
		on := t.on(m)
		return m.conn.QueryRow(ctx, compare.Estimate, pgx.Identifier{on.Schema, on.Name}.Sanitize()).Scan(&ests[m.idx])
	})); err != nil {
		return nil, err
	}
	nb := compare.Blocks(slices.Max(ests), c.opts.BlockRows)
	res.Blocks = nb
	sch := compare.Scheme{Blocks: nb, Fast: c.fast}

	digests := make([][]compare.BlockDigest, len(c.members))
	nk := len(t.keyCols)
	if err := firstErr(c.compared, c.each(c.compared, func(m *member) error {
		d := make([]compare.BlockDigest, nb)
		digests[m.idx] = d
		if r := c.readers[m.idx]; r != nil {
			return r.ReadRows(ctx, t.sinkTables[m.idx], func(line string) error {
				l, err := compare.DecodeLine(line, nk, nb)
				if err != nil {
					return err
				}
				return d[l.Block].Add(l.Hash)
			})
		}
		rows, err := m.conn.Query(ctx, sch.Digest(c.from(t, m), t.keyCols, t.cols))
		if err != nil {
			return err
		}
		var b int32
		var bd compare.BlockDigest
		_, err = pgx.ForEachRow(rows, []any{&b, &bd.Rows, &bd.S1, &bd.S2}, func() error {
			d[b] = bd
			return nil
		})
		return err
	})); err != nil {
		return nil, err
	}
	var ordered [][]compare.BlockDigest
	for _, m := range c.compared {
		ordered = append(ordered, digests[m.idx])
		var n int64
		for _, bd := range digests[m.idx] {
			n += bd.Rows
		}
		res.Rows[m.name] = n
	}
	blocks := compare.DifferingBlocks(ordered)
	res.DifferingBlocks = len(blocks)
	if len(blocks) == 0 {
		return res, nil
	}

	// The keys with changes pending on each source, in the differing blocks.
	var sources []*member
	if !c.fullcopy {
		for _, m := range pgs {
			if m.isSource() {
				sources = append(sources, m)
			}
		}
	}
	pending := make([][]compare.Entry, len(c.members))
	truncs := make([]bool, len(c.members))
	ct := capture.ChangeTable(c.sync.Name, t.rel.Schema, t.rel.Name).Sanitize()
	if err := firstErr(sources, c.each(sources, func(m *member) error {
		if err := m.conn.QueryRow(ctx, capture.HasTruncate(ct)).Scan(&truncs[m.idx]); err != nil {
			return err
		}
		rows, err := m.conn.Query(ctx, sch.PendingKeys(capture.ChangedKeys(ct, t.keyCols), t.keyCols), blocks)
		if err != nil {
			return err
		}
		var e compare.Entry
		_, err = pgx.ForEachRow(rows, []any{&e.Block, &e.KeyText}, func() error {
			pending[m.idx] = append(pending[m.idx], e)
			return nil
		})
		return err
	})); err != nil {
		return nil, fmt.Errorf("reading pending changes: %w", err)
	}
	var pstreams []compare.Stream
	for _, m := range sources {
		pstreams = append(pstreams, compare.SliceStream(pending[m.idx]))
		res.PendingTruncate = res.PendingTruncate || truncs[m.idx]
	}

	// The rows of the differing blocks, streamed from every db in the same order.
	streams := make([]compare.Stream, len(c.members))
	want := map[int32]bool{}
	for _, b := range blocks {
		want[b] = true
	}
	var opened []pgx.Rows
	defer func() {
		for _, r := range opened {
			r.Close()
		}
	}()
	rowsOf := make([]pgx.Rows, len(c.members))
	if err := firstErr(c.compared, c.each(c.compared, func(m *member) error {
		if r := c.readers[m.idx]; r != nil {
			var es []compare.Entry
			err := r.ReadRows(ctx, t.sinkTables[m.idx], func(line string) error {
				l, err := compare.DecodeLine(line, nk, nb)
				if err != nil {
					return err
				}
				if want[l.Block] {
					es = append(es, compare.Entry{Block: l.Block, KeyText: l.KeyText, Key: l.Key, Hash: l.Hash})
				}
				return nil
			})
			streams[m.idx] = compare.SliceStream(es)
			return err
		}
		rows, err := m.conn.Query(ctx, sch.Rows(c.from(t, m), t.keyCols, t.cols), pgx.QueryResultFormats{pgx.TextFormatCode}, blocks)
		if err != nil {
			return err
		}
		rowsOf[m.idx] = rows
		streams[m.idx] = &pgStream{rows: rows, nk: nk}
		return nil
	})); err != nil {
		for _, r := range rowsOf {
			if r != nil {
				r.Close()
			}
		}
		return nil, err
	}
	for _, r := range rowsOf {
		if r != nil {
			opened = append(opened, r)
		}
	}
	var names []string
	var ordStreams []compare.Stream
	for _, m := range c.compared {
		names = append(names, m.name)
		ordStreams = append(ordStreams, streams[m.idx])
	}
	limit := c.opts.Limit
	if limit <= 0 {
		limit = DefaultCompareLimit
	}
	err := compare.Merge(names, ordStreams, pstreams, res.PendingTruncate, func(d compare.Diff) error {
		res.Count(d)
		if len(res.Diffs) < limit {
			res.Diffs = append(res.Diffs, d)
		} else {
			res.Truncated = true
		}
		if c.onDiff != nil {
			return c.onDiff(t, d)
		}
		return nil
	})
	return res, err
}

// pgStream is the rows of compare.Rows as a compare.Stream.
type pgStream struct {
	rows pgx.Rows
	nk   int
}

func (p *pgStream) Next() (compare.Entry, bool, error) {
	if !p.rows.Next() {
		p.rows.Close()
		return compare.Entry{}, false, p.rows.Err()
	}
	vals := p.rows.RawValues()
	if len(vals) != p.nk+3 {
		return compare.Entry{}, false, fmt.Errorf("compare: %d columns read, want %d", len(vals), p.nk+3)
	}
	b, err := strconv.ParseInt(string(vals[0]), 10, 32)
	if err != nil {
		return compare.Entry{}, false, fmt.Errorf("compare: block %q: %w", vals[0], err)
	}
	e := compare.Entry{Block: int32(b), KeyText: string(vals[1]), Key: make([]string, p.nk), Hash: string(vals[p.nk+2])}
	for i := range e.Key {
		e.Key[i] = string(vals[2+i])
	}
	return e, true, nil
}
