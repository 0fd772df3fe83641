// Package sqlite is the SQLite sink: it writes a database file (type=sqlite
// path=FILE) through modernc.org/sqlite (pure Go, no cgo) on one connection of its own.
//
// A unit is one transaction opened with BEGIN IMMEDIATE: the sink takes the file's write
// lock at Begin, waiting at most busy_timeout for another writer, and so never fails
// half-way through a batch on a lock. A batch counts the rows of its keys (200 keys a
// SELECT count(*)), writes each row with a prepared upsert (INSERT ... ON CONFLICT (key)
// DO UPDATE) and deletes the keys no row came for (200 keys a DELETE); a whole-table copy
// is DELETE FROM and prepared INSERTs. Readers see the rows as of the last commit: in WAL mode (journal=wal) they are
// never blocked; with a rollback journal they are blocked while the commit writes.
//
// PostgreSQL's schema.table is the table "table" for the schema public and "schema.table"
// for any other (TableName: dots and backslashes in either part escaped by a backslash,
// so the mapping is one-to-one). Types map to SQLite's by the table in
// docs/sinks/sqlite.md: integers and booleans INTEGER, real and double precision REAL
// (NaN refused), bytea BLOB, everything else TEXT (numeric as its exact decimal text,
// timestamptz in UTC as 'YYYY-MM-DD HH:MM:SS[.ffffff]+00:00', arrays as JSON arrays).
// Tables are ordinary (not STRICT) tables, readable by any SQLite 3. Under on_error=skip a
// refused row is left out instead of failing the batch (skip.go).
package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"

	_ "modernc.org/sqlite" // the driver "sqlite"

	"github.com/ibexrepl/ibex/sinks"
)

var (
	_ sinks.Sink      = (*Sink)(nil)
	_ sinks.Truncater = (*Sink)(nil)
	_ sinks.Checker   = (*Sink)(nil)
	_ sinks.Closer    = (*Sink)(nil)
)

// Sink is the SQLite sink. It is not safe for concurrent use.
type Sink struct {
	db     string // the db's name in ibex, for messages
	p      params
	pool   *sql.DB
	conn   *sql.Conn // the one connection every statement runs on
	log    *slog.Logger
	tx     bool   // the unit's transaction is open
	failed bool   // a statement of the unit failed: Commit refuses
	batch  *batch // the batch under way, if any
	// skip: on_error=skip (SkipRejected, skip.go); rejected, the rows the last batch left
	// out; spool, the rows of the batch under way.
	skip     bool
	rejected []sinks.Rejected
	spool    sinks.Spool
}

// Open opens (creating it when missing) the database file of c.Params["path"] and sets
// the connection up: busy_timeout, and the journal mode when the journal param asks for
// one. It fails within connect_timeout (default 10 s).
func Open(ctx context.Context, c sinks.Config) (*Sink, error) {
	p, err := parseParams(c.Params)
	if err != nil {
		return nil, fmt.Errorf("db %s: %w", c.DB, err)
	}
	if c.Password != "" {
		return nil, fmt.Errorf("db %s: sqlite takes no password", c.DB)
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(ctx, p.connectTimeout)
	defer cancel()
	s, err := open(ctx, c.DB, p, log)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (connect_timeout %s)", err, p.connectTimeout)
		}
		return nil, fmt.Errorf("db %s: opening %s: %w", c.DB, p.path, err)
	}
	return s, nil
}

func open(ctx context.Context, db string, p params, log *slog.Logger) (*Sink, error) {
	pool, err := sql.Open("sqlite", dsn(p.path))
	if err != nil {
		return nil, err
	}
	pool.SetMaxOpenConns(1)
	conn, err := pool.Conn(ctx)
	if err != nil {
		pool.Close()
		return nil, err
	}
	s := &Sink{db: db, p: p, pool: pool, conn: conn, log: log}
	setup := []string{fmt.Sprintf(`PRAGMA busy_timeout = %d`, p.busyTimeout.Milliseconds())}
	if p.journal != "" {
		setup = append(setup, `PRAGMA journal_mode = `+p.journal)
	}
	for _, stmt := range setup {
		if _, err := conn.ExecContext(ctx, stmt); err != nil {
			s.Close()
			return nil, fmt.Errorf("%s: %w", stmt, err)
		}
	}
	// Read the schema: a file that is not a database fails here, not in the run.
	var mode string
	if err := conn.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema`).Scan(new(int64)); err != nil {
		s.Close()
		return nil, err
	}
	if err := conn.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
		s.Close()
		return nil, err
	}
	if p.journal != "" && mode != p.journal {
		s.Close()
		return nil, fmt.Errorf("journal mode %s asked, the file stays in %s", p.journal, mode)
	}
	log.Debug("sqlite opened", "db", db, "path", p.path, "journal_mode", mode)
	return s, nil
}

// Close closes the connection (a unit still open is rolled back).
func (s *Sink) Close() error {
	s.Rollback(context.Background())
	_ = s.spool.Close()
	err := s.conn.Close()
	if err2 := s.pool.Close(); err == nil {
		err = err2
	}
	if err != nil {
		return fmt.Errorf("db %s: closing: %w", s.db, err)
	}
	return nil
}

// Begin opens the unit's transaction with BEGIN IMMEDIATE (the write lock, waiting at
// most busy_timeout for another writer); it is a no-op when one is open.
func (s *Sink) Begin(ctx context.Context) error {
	if s.tx {
		return nil
	}
	if _, err := s.conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		return fmt.Errorf("db %s: beginning (another writer holding the file longer than busy_timeout %s?): %w", s.db, s.p.busyTimeout, err)
	}
	s.tx, s.failed = true, false
	return nil
}

// Commit commits the unit's transaction; it is a no-op when none is open. A unit in
// which a statement failed is rolled back, and Commit returns an error.
func (s *Sink) Commit(ctx context.Context) error {
	if !s.tx {
		return nil
	}
	if s.failed {
		s.Rollback(ctx)
		return fmt.Errorf("db %s: committing: a statement of the transaction had failed: rolled back", s.db)
	}
	s.closeBatch()
	if _, err := s.conn.ExecContext(ctx, `COMMIT`); err != nil {
		s.Rollback(ctx)
		return fmt.Errorf("db %s: committing: %w", s.db, err)
	}
	s.tx = false
	return nil
}

// Rollback rolls the unit's transaction back, best effort, within 10 s whatever the
// run's context; it is a no-op when none is open.
func (s *Sink) Rollback(context.Context) {
	if !s.tx {
		return
	}
	s.closeBatch()
	s.tx = false
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.conn.ExecContext(ctx, `ROLLBACK`); err != nil {
		s.log.Warn("sqlite rollback", "db", s.db, "err", err)
	}
}

// inTx returns ErrNoTransaction, naming db and t, when no transaction is open.
func (s *Sink) inTx(t *sinks.Table) error {
	if s.tx {
		return nil
	}
	return s.errf(t, "", sinks.ErrNoTransaction)
}

// errf wraps err with the db, what was done, and t.
func (s *Sink) errf(t *sinks.Table, doing string, err error) error {
	return sinks.TableErr(s.db, t, doing, err)
}

// fail marks the unit failed (Commit refuses it) and wraps err as errf does.
func (s *Sink) fail(t *sinks.Table, doing string, err error) error {
	s.failed = true
	return s.errf(t, doing, err)
}
