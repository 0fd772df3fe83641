package job

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/capture"
	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/dbconn"
	"github.com/ibexrepl/ibex/sinks"
	pgsink "github.com/ibexrepl/ibex/sinks/postgres"
	"github.com/ibexrepl/ibex/sinks/targets"
)

// member is one db of the sync during a run.
type member struct {
	idx   int
	name  string
	role  string
	db    *control.DB
	conn  *pgx.Conn
	rconn *pgx.Conn // sources: a second session that reads rows while conn receives
	kconn *pgx.Conn // sources of a multi-batch table: reads the next batch's keys ahead
	// wconn and wkeys are where the keys a sender sends in the current batch are (see
	// shipKeys): the session that reads its rows, and the keys as a subquery there.
	wconn *pgx.Conn
	wkeys string
	// early is the opening of rconn and kconn started before they are needed (openEarly),
	// nil when none is under way; adopt takes its sessions.
	early   *earlyConns
	dead    error // why this db left the run; nil while it takes part
	snap    string
	tx      bool         // the unit's transaction is open
	sink    sinks.Sink   // writes the db when it receives (openSink)
	target  targets.Sink // a db that is not PostgreSQL: its sink, opened by connect
	replica bool         // session_replication_role = replica is in effect
	// retry is set while the member waits for the unit to be applied to it again (its
	// transaction failed with a serialization failure or a deadlock); attempts counts
	// its failed attempts in the unit.
	retry    error
	attempts int
	// recvErr is why a source stopped receiving in this run (its writes failed and were
	// rolled back, its session works): it still sends its changes, so that what the others
	// apply of them is recorded, but it receives nothing more and its own watermarks as a
	// receiver stay where they were (see runner.fail).
	recvErr error
	// pool, when set, lends the member its sessions and takes them back at the end of the
	// run (Options.Sessions).
	pool *dbconn.Pool
	// pre holds the first session of the db when the run opened it ahead (predials).
	pre *predials
	// compressReads: its read session turns on wal_compression (dbconn.WALCompressionSQL)
	// when it opens: reading a user table prunes its pages, and right after a checkpoint
	// each page pruned is written whole to the WAL.
	compressReads bool
}

// dial opens a session of m, or borrows one from the run's pool, and runs setup on it
// first (nil: none). A borrowed session whose setup fails (the server closed it while it
// was idle) is closed and a new one opened; one without setup is pinged to find out.
func (m *member) dial(ctx context.Context, setup func(*pgx.Conn) error) (*pgx.Conn, error) {
	ping := setup == nil
	if ping {
		setup = func(*pgx.Conn) error { return nil }
	}
	if c, err, ok := m.pre.take(ctx, m.name, m.db.Conn, m.db.Pass); ok {
		if err == nil {
			err = setup(c)
		}
		if err != nil {
			if c != nil {
				closeConn(c)
			}
			return nil, err
		}
		return c, nil
	}
	if m.pool != nil {
		c, reused, err := m.pool.Get(ctx, m.name, m.db.Conn, m.db.Pass)
		if err != nil {
			return nil, err
		}
		check := setup
		if reused && ping {
			check = func(c *pgx.Conn) error { return c.PgConn().Ping(ctx) }
		}
		if err = check(c); err == nil || !reused || ctx.Err() != nil {
			if err != nil {
				closeConn(c)
				return nil, err
			}
			return c, nil
		}
		closeConn(c)
	}
	c, err := dbconn.Connect(ctx, m.name, m.db.Conn, m.db.Pass)
	if err != nil {
		return nil, err
	}
	if err := setup(c); err != nil {
		closeConn(c)
		return nil, err
	}
	return c, nil
}

// release gives session c of m back to the run's pool (keep, at the end of a run), or
// closes it.
func (m *member) release(c *pgx.Conn, keep bool) {
	if c == nil {
		return
	}
	if keep && m.pool != nil {
		m.pool.Put(m.name, m.db.Conn, m.db.Pass, c)
		return
	}
	closeConn(c)
}

// closeConn closes c in bounded time.
func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = c.Close(ctx)
	cancel()
}

func (m *member) alive() bool { return m.dead == nil && (m.conn != nil || m.target != nil) }

// receiving reports whether the db takes part and receives rows in this run.
func (m *member) receiving() bool { return m.alive() && m.recvErr == nil }

// allReceiving reports whether every db of the sync takes part and receives in this run.
func (s *session) allReceiving() bool {
	for _, m := range s.members {
		if !m.receiving() {
			return false
		}
	}
	return true
}

// pg says whether the db is PostgreSQL; the others are targets written only through their
// sink (m.target), with no PostgreSQL session.
func (m *member) pg() bool { return m.db.Type.Postgres() }

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
	// sinkTables is the table as each member's sink writes it, by member index (whether it
	// is partitioned differs by db; a customname gives a target another table).
	sinkTables []*sinks.Table
	// custom is the table a target writes instead (customname), by member index; nil: t.
	custom []*control.CustomName
	// cc and rf are the customcols and the scoped row filter of each receiver, by member
	// index (nil: none); extras are the read's subqueries computing them and views what
	// each receiver gets of a row read (see custom.go).
	cc, rf []*control.Scoped
	extras []*extra
	views  []*view
}

// A row filter (where=) is an SQL condition on the table's columns, evaluated on the db
// that sends rows: a row that does not match is not sent, so a receiver deletes its key
// (a row that stops matching leaves the receivers; one that starts matching arrives in
// full, as logical replication does with row filters).

// whereClause is " WHERE (filter)", or "" without a filter.
func (t *table) whereClause() string {
	if t.rel.Where == "" {
		return ""
	}
	return " WHERE (" + t.rel.Where + ")"
}

// filtered is the table as the rows a sender sends are read from: the table, or, with a
// filter, a subquery of its matching rows (its columns unqualified, as the filter sees
// them).
func (t *table) filtered() string {
	if t.rel.Where == "" {
		return t.ident
	}
	return "(SELECT * FROM " + t.ident + t.whereClause() + ")"
}

// keepsOld reports whether capture records the old rows of changes for the sync: when its
// conflict strategy, for some conflict type, is a function (which gets them).
func keepsOld(s *control.Sync) bool {
	if strings.HasPrefix(strings.ToLower(s.ConflictStrategy), conflict.FunctionPrefix) {
		return true
	}
	for _, v := range s.ConflictByType {
		if strings.HasPrefix(strings.ToLower(v), conflict.FunctionPrefix) {
			return true
		}
	}
	return false
}

// makeDelta reports whether rows ibex applies to t on db m are captured for this sync
// too, when another sync applied them (makedelta=on on the db or on the table).
func (t *table) makeDelta(m *member) bool { return m.db.MakeDelta || t.rel.MakeDelta }

// on is the table as db m has it: its customname there, or t itself.
func (t *table) on(m *member) catalog.QualName {
	if c := t.custom[m.idx]; c != nil {
		return catalog.QualName{Schema: c.Schema, Name: c.Name}
	}
	return catalog.QualName{Schema: t.rel.Schema, Name: t.rel.Name}
}

// errInactiveDB marks a db whose status is inactive: runs leave it out.
var errInactiveDB = errors.New("db is inactive")

// errNoTables is returned by load when the herd is empty.
var errNoTables = errors.New("herd has no tables")

// readLockTimeout bounds the lock waits of a source's read session (see readConn).
const readLockTimeout = `'5s'`

// readConn returns the second session of a source, used to read rows while its first
// session receives; it is opened on first use. Its reads join a short key list to a user
// table, so hash and merge joins are off: they probe the table's key index instead.
//
// Its lock waits give up after readLockTimeout. Reading needs only ACCESS SHARE, which
// waits only behind an ACCESS EXCLUSIVE request (DDL such as CREATE TABLE ... PARTITION
// OF, DETACH PARTITION, ALTER TABLE); and when the first session of the same db holds
// locks on the table from this run's writes, that DDL waits for the run while the read
// waits for the DDL, a wait no server sees as a deadlock. Giving up lets the db leave the
// run (its writes rolled back): the DDL goes through, and the next run serves the db.
func (s *session) readConn(ctx context.Context, m *member) (*pgx.Conn, error) {
	m.adopt()
	if m.rconn == nil {
		c, err := openReadConn(ctx, m)
		if err != nil {
			return nil, err
		}
		m.rconn = c
	}
	return m.rconn, nil
}

// openReadConn opens a read session of m (see readConn).
func openReadConn(ctx context.Context, m *member) (*pgx.Conn, error) {
	return m.dial(ctx, func(c *pgx.Conn) error {
		setup := `SET enable_hashjoin = off; SET enable_mergejoin = off; SET lock_timeout = ` + readLockTimeout
		if m.compressReads {
			setup += "; " + dbconn.WALCompressionSQL(dbconn.ServerMajor(c.PgConn()))
		}
		if _, err := dbconn.ExecAll(ctx, c, setup); err != nil {
			return fmt.Errorf("db %s: %w", m.name, err)
		}
		return nil
	})
}

// earlyConns are a source's read and key sessions being opened ahead of their first use.
type earlyConns struct {
	done         chan struct{} // closed when both are opened (or failed)
	rconn, kconn *pgx.Conn     // nil: not asked for, or failed (opened again when needed)
}

// openEarly starts opening, in the background, source m's read session (with read) and
// its key session (with key), so that a run with changes to send does not wait for them at its
// first batch (they are opened while the tables are described and the first keys read).
// A session that fails to open here is opened again where it is needed, whose error
// then counts. adopt takes them.
func (m *member) openEarly(ctx context.Context, read, key bool) {
	needR, needK := read && m.rconn == nil, key && m.kconn == nil
	if m.early != nil || m.conn == nil || !(needR || needK) {
		return
	}
	e := &earlyConns{done: make(chan struct{})}
	m.early = e
	go func() {
		defer close(e.done)
		var wg sync.WaitGroup
		if needR {
			wg.Go(func() { e.rconn, _ = openReadConn(ctx, m) })
		}
		if needK {
			wg.Go(func() { e.kconn, _ = m.dial(ctx, nil) })
		}
		wg.Wait()
	}()
}

// adopt waits for the sessions openEarly is opening and makes them m's (a session m has
// already is kept, the early one closed).
func (m *member) adopt() {
	e := m.early
	if e == nil {
		return
	}
	<-e.done
	m.early = nil
	for _, p := range []struct {
		dst **pgx.Conn
		c   *pgx.Conn
	}{{&m.rconn, e.rconn}, {&m.kconn, e.kconn}} {
		switch {
		case p.c == nil:
		case *p.dst == nil:
			*p.dst = p.c
		default:
			m.release(p.c, true)
		}
	}
}

// session is a sync's dbs and tables during one run or one installation of capture: the
// definition read from the control database (load), a connection per db (connect), the
// tables described on every db (checkSchemas), and the dbs that left (drop).
type session struct {
	store    *control.Store
	sync     *control.Sync
	logger   *slog.Logger
	members  []*member
	tables   []*table
	fullcopy bool
	// names and sourceNames are the dbgroup's dbs and sources, in its order.
	names, sourceNames []string
	// ctx is the run's context: a db failing after it ended is not recorded as skipped.
	ctx context.Context
	// runID is the run's id (0 outside a run): a flatfile target names its files by it.
	runID int64
	// createTargets: checkSchemas creates on targets that are not PostgreSQL the tables
	// and columns they lack (ibex validate --create-targets); created lists them.
	createTargets bool
	created       []string
	// compressWAL: checkSchemas also turns on wal_compression on the PostgreSQL dbs
	// (dbconn.WALCompressionSQL) of the members it holds (bit(m.idx)), for a run with many
	// rows to write or read (see runner.walMembers); their read sessions turn it on too
	// (member.compressReads).
	compressWAL uint64
	// skipped records each db that left, with why (db name -> reason).
	skipped map[string]string
	// fks are the foreign keys between the tables as checkSchemas read them on each db
	// (by member index; nil: not read).
	fks []*fkeys
	// pool, when set, lends the members their PostgreSQL sessions (Options.Sessions).
	pool *dbconn.Pool
	// pre are the sessions the run opened ahead (predials), nil when none.
	pre *predials
}

// fkeys are the foreign keys between the tables names, as read on a db.
type fkeys struct {
	names []catalog.QualName
	fks   []catalog.ForeignKey
	err   error
}

// load reads the sync's dbgroup, dbs and tables from q (a control.Batcher), in one round
// trip with the queries more queues (the run's watermarks, ...).
func (s *session) load(ctx context.Context, q control.Querier, more ...func(*pgx.Batch)) error {
	bq, ok := q.(control.Batcher)
	if !ok {
		return fmt.Errorf("reading sync %s: the control database's querier %T sends no batch", s.sync.Name, q)
	}
	var (
		group                                      *control.DBGroup
		dbs                                        map[string]*control.DB
		herds                                      []control.Herd
		rels                                       []control.Relation
		cns                                        []control.CustomName
		ccs, rfs                                   []control.Scoped
		groupErr, dbsErr, herdsErr, relsErr, cnErr error
		ccErr, rfErr                               error
	)
	b := &pgx.Batch{}
	control.QueueGetDBGroup(b, s.sync.DBGroup, &group, &groupErr)
	control.QueueGroupDBs(b, s.sync.DBGroup, &dbs, &dbsErr)
	control.QueueHerds(b, &herds, &herdsErr)
	control.QueueRelations(b, &rels, &relsErr)
	control.QueueCustomNames(b, &cns, &cnErr)
	control.QueueListScoped(b, control.CustomCols, &ccs, &ccErr)
	control.QueueListScoped(b, control.RowFilters, &rfs, &rfErr)
	for _, f := range more {
		f(b)
	}
	sendErr := bq.SendBatch(ctx, b).Close()
	// The first query's error is the one that tells (the others failed after it).
	if err := cmp.Or(groupErr, dbsErr, herdsErr, relsErr, cnErr, ccErr, rfErr, sendErr); err != nil {
		return err
	}
	for i, m := range group.Members {
		db := dbs[m.DB]
		if db == nil {
			return fmt.Errorf("db %s of dbgroup %s %w: see 'ibex list dbs'", m.DB, group.Name, control.ErrNotFound)
		}
		s.members = append(s.members, &member{idx: i, name: m.DB, role: m.Role, db: db, pool: s.pool, pre: s.pre})
		s.names = append(s.names, m.DB)
		if m.Role == control.RoleSource {
			s.sourceNames = append(s.sourceNames, m.DB)
		}
		if m.Role == control.RoleFullcopy {
			s.fullcopy = true
		}
	}
	if len(s.sourceNames) == 0 {
		return fmt.Errorf("dbgroup %s has no source: add one with 'ibex update dbgroup %s NAME:source ...'", group.Name, group.Name)
	}
	byName := map[string]control.Relation{}
	for _, rel := range rels {
		byName[rel.QualName()] = rel
	}
	for _, h := range herds {
		if h.Name != s.sync.Herd {
			continue
		}
		for _, tn := range h.Tables {
			rel := byName[tn]
			if len(rel.KeyCols) == 0 && !s.fullcopy {
				return fmt.Errorf("table %s has no primary key or unique index: it can only be in a fullcopy sync", tn)
			}
			s.tables = append(s.tables, &table{rel: rel, name: tn, ident: pgx.Identifier{rel.Schema, rel.Name}.Sanitize(),
				change: capture.ChangeTable(s.sync.Name, rel.Schema, rel.Name).Sanitize()})
		}
	}
	if len(s.tables) == 0 {
		return fmt.Errorf("%w: herd %s of sync %s is empty: add tables with 'ibex add table ... herd=%s'", errNoTables, s.sync.Herd, s.sync.Name, s.sync.Herd)
	}
	if err := s.loadCustomNames(cns); err != nil {
		return err
	}
	return s.loadScoped(ccs, rfs)
}

// loadCustomNames gives each table, on each target, the customname that applies there. A
// customname that would apply to a source is refused: a source's table is the one its
// capture watches.
func (s *session) loadCustomNames(cs []control.CustomName) error {
	for _, t := range s.tables {
		t.custom = make([]*control.CustomName, len(s.members))
		for _, m := range s.members {
			c := control.PickCustomName(cs, t.name, m.name, s.sync.Name)
			if c == nil {
				continue
			}
			if m.isSource() {
				return fmt.Errorf("customname %d (%s as %s) applies to db %s, a source of sync %s: a customname is for targets; remove it with 'ibex remove customname %d'",
					c.ID, t.name, c.QualName(), m.name, s.sync.Name, c.ID)
			}
			t.custom[m.idx] = c
		}
	}
	return nil
}

// connect opens one connection per db, in parallel. An unreachable db leaves the run.
func (s *session) connect(ctx context.Context) {
	var active []*member
	for _, m := range s.members {
		if m.db.Status == control.StatusInactive {
			m.dead = errInactiveDB
			s.logger.InfoContext(ctx, "db is inactive: left out of this run", slog.String("db", m.name))
			continue
		}
		active = append(active, m)
	}
	errs := s.each(active, func(m *member) error {
		if !m.pg() {
			return s.openTarget(ctx, m)
		}
		// Rows ibex applies must not fire capture, user triggers or FK checks; and what
		// this session applies is the sync's: a makedelta trigger of another sync captures
		// it with its origin, this sync's own does not (no echo). One round trip.
		conn, err := m.dial(ctx, func(c *pgx.Conn) (err error) {
			if m.replica, err = pgsink.Configure(ctx, c, capture.SetOriginSQL(s.sync.Name)); err != nil {
				return fmt.Errorf("db %s: %w", m.name, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
		m.conn = conn
		return nil
	})
	for _, m := range active {
		if err := errs[m.idx]; err != nil {
			s.drop(m, err)
		} else if m.pg() && !m.replica {
			s.logger.WarnContext(ctx, "cannot set session_replication_role: user triggers and foreign keys fire for applied rows (GRANT SET ON PARAMETER session_replication_role to the role to avoid it)",
				slog.String("db", m.name))
		}
	}
}

// drop makes m leave: its connections close, and why is recorded unless the run was cancelled.
func (s *session) drop(m *member, err error) {
	if m.dead == nil {
		m.dead = err
	}
	if s.ctx != nil && s.ctx.Err() != nil {
		// The run was cancelled (a deadline, a signal): the db is not to blame.
		m.close(false)
		return
	}
	s.skip(m, err, "db leaves this run")
	m.close(false)
}

// skip records why db m is skipped in this run (the run is Bad, status shows it) and logs
// it once, as msg.
func (s *session) skip(m *member, err error, logMsg string) {
	if s.skipped == nil {
		s.skipped = map[string]string{}
	}
	msg := err.Error()
	if _, ok := s.skipped[m.name]; !ok {
		s.skipped[m.name] = msg
		// Outside a run (validate, removing capture) the caller reports it.
		level := slog.LevelWarn
		if s.runID == 0 {
			level = slog.LevelDebug
		}
		s.logger.Log(context.Background(), level, logMsg, slog.String("db", m.name), slog.String("reason", msg))
	}
}

// close closes m's sessions (but its key session, see closeAll), or, with keep, gives them
// back to the run's pool (Options.Sessions); a db that leaves the run closes them.
func (m *member) close(keep bool) {
	m.adopt() // sessions still opening are closed with the others
	for _, c := range []*pgx.Conn{m.conn, m.rconn} {
		m.release(c, keep)
	}
	if m.target != nil {
		_ = m.target.Close()
	}
	m.conn, m.rconn, m.sink, m.target, m.wconn = nil, nil, nil, nil, nil
}

// openTarget opens the sink of a db that is not PostgreSQL, in bounded time.
func (s *session) openTarget(ctx context.Context, m *member) error {
	pass, err := dbconn.ResolvePass(m.db.Pass)
	if err != nil {
		return fmt.Errorf("db %s: %w", m.name, err)
	}
	octx, cancel := context.WithTimeout(ctx, targetOpenTimeout)
	defer cancel()
	t, err := targets.Open(octx, m.db.Type, sinks.Config{DB: m.name, Params: m.db.Conn, Password: pass,
		Sync: s.sync.Name, Run: s.runID, Logger: s.logger.With(slog.String("db", m.name))})
	if err != nil {
		return err
	}
	if rs, ok := t.(sinks.RowSkipper); ok && s.sync.OnError == control.OnErrorSkip {
		rs.SkipRejected()
	}
	m.target, m.sink = t, t
	return nil
}

// targetOpenTimeout bounds opening a target that is not PostgreSQL (its own connect
// timeout is shorter by default).
const targetOpenTimeout = 30 * time.Second

// openSink returns m's sink, made on first use: a source whose snapshot the run took
// (it receives in a delta run) is written in source mode, any other db as a target.
func (s *session) openSink(m *member) (sinks.Sink, error) {
	if m.sink != nil {
		return m.sink, nil
	}
	var opts []pgsink.Option
	if m.isSource() && m.snap != "" {
		opts = append(opts, pgsink.WithSource(pgsink.Source{Snapshot: m.snap, ChangeTable: func(t *sinks.Table) string {
			return capture.ChangeTable(s.sync.Name, t.Schema, t.Name).Sanitize()
		}}))
	}
	sk, err := pgsink.New(m.conn, m.name, opts...)
	if err != nil {
		return nil, err
	}
	if s.sync.OnError == control.OnErrorSkip {
		sk.SkipRejected()
	}
	m.sink = sk
	return sk, nil
}

// closeAll closes every connection, or gives it back to the run's pool; no read ahead may
// be under way.
func (s *session) closeAll() {
	for _, m := range s.members {
		m.close(true)
		// The key session is closed only here, once no read ahead can be using it.
		m.release(m.kconn, true)
		m.kconn = nil
	}
}

func (s *session) alive() []*member {
	var out []*member
	for _, m := range s.members {
		if m.alive() {
			out = append(out, m)
		}
	}
	return out
}

// sources lists the live sources.
func (s *session) sources() []*member {
	var out []*member
	for _, m := range s.alive() {
		if m.isSource() {
			out = append(out, m)
		}
	}
	return out
}

// each runs fn for every member of ms at once and returns the errors by member idx (nil
// for the members not in ms).
func (s *session) each(ms []*member, fn func(m *member) error) []error {
	errs := make([]error, len(s.members))
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Go(func() { errs[m.idx] = fn(m) })
	}
	wg.Wait()
	return errs
}

// bit is member i's bit in a mask of members.
func bit(i int) uint64 { return 1 << uint(i) }

// aliveMask has a bit for every member taking part.
func (s *session) aliveMask() uint64 {
	var m uint64
	for _, x := range s.alive() {
		m |= bit(x.idx)
	}
	return m
}

// memberByName returns the member named name, or nil.
func (s *session) memberByName(name string) *member {
	for _, m := range s.members {
		if m.name == name {
			return m
		}
	}
	return nil
}
