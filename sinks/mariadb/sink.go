// Package mariadb is the sink of a receiving MariaDB (10.6 or later) or MySQL (8) database,
// db type mariadb or mysql: one sink, MySQL-compatible SQL wherever that costs nothing.
//
// A sink owns one connection (database/sql's Conn, go-sql-driver/mysql) whose session is
// set up once: sql_mode STRICT_ALL_TABLES (and the zero-date checks), time_zone '+00:00',
// foreign_key_checks=0 (rows of several tables arrive in any order within a unit; the
// unit as a whole keeps the source's references), unique_checks=1 (left on: a secondary
// unique index must stay true), transaction isolation READ COMMITTED, charset utf8mb4.
// A unit is one InnoDB transaction on it (START TRANSACTION ... COMMIT).
//
// A batch loads its rows with LOAD DATA LOCAL INFILE ... REPLACE, converting the COPY
// text stream into LOAD DATA's format on the fly (see load.go), and then deletes the keys
// no row came for (batch.go, keys.go); a whole-table copy is DELETE FROM (not TRUNCATE,
// which would commit) and a plain load. Every value is converted by its
// column's PostgreSQL type (types.go); a value the target cannot hold exactly is refused
// with an error naming the table, the column and the value's kind. Names map as TableName
// says. Under on_error=skip a batch is written otherwise, so that a refused row is left out
// instead of failing it (skip.go).
package mariadb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/ibexrepl/ibex/sinks"
)

var (
	_ sinks.Sink      = (*Sink)(nil)
	_ sinks.Truncater = (*Sink)(nil)
	_ sinks.Checker   = (*Sink)(nil)
	_ sinks.Closer    = (*Sink)(nil)
)

// sessionSetup is run once on the sink's connection.
var sessionSetup = []string{
	`SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'`,
	`SET SESSION time_zone = '+00:00'`,
	`SET SESSION foreign_key_checks = 0`,
	`SET SESSION unique_checks = 1`,
	`SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED`,
}

// Sink is the MariaDB/MySQL sink. It is not safe for concurrent use.
type Sink struct {
	db      string // the db's name in ibex, for messages
	schema  string // the MariaDB database written (param dbname)
	pool    *sql.DB
	conn    *sql.Conn
	mariadb bool // the server is MariaDB (else MySQL)
	log     *slog.Logger
	tx      bool
	batch   *batch
	loads   int64                  // LOAD DATA statements run, for unique reader names
	modes   map[string]replaceMode // by table (ident), looked up once
	// skip: on_error=skip (SkipRejected, skip.go); rejected, the rows the last batch left
	// out; spool, the rows of the batch under way; triggers, whether a table (ident) has
	// triggers, looked up once.
	skip     bool
	rejected []sinks.Rejected
	spool    sinks.Spool
	triggers map[string]bool
}

// batch is the state of the batch (or whole-table copy) under way.
type batch struct {
	t       *sinks.Table
	conv    *converter
	skipped bool  // ReplaceTable left a non-empty table alone
	sent    int64 // rows WriteRows took
	written int64 // rows LOAD DATA wrote
	deleted int64 // rows ReplaceTable or deleteFirst deleted
	// keys is the batch's keys and which got a row, when its rows replace theirs (LOAD
	// DATA ... REPLACE); nil for a whole-table copy and a deleteFirst table, whose rows
	// are loaded with plain LOAD DATA into a table without them.
	keys     *keySet
	existed  int64 // keys of the batch that existed before it, when keys is set
	replaced int64 // rows REPLACE deleted (a row it replaced by an identical one aside)
	// skip is the state of a batch under on_error=skip; nil otherwise.
	skip *skipBatch
}

// Open connects to the db c describes, within its connect_timeout (default 10 s), and
// sets up the session. Errors name the db and never hold the password.
func Open(ctx context.Context, c sinks.Config) (*Sink, error) {
	cfg, err := parseParams(c.Params)
	if err != nil {
		return nil, fmt.Errorf("db %s: %w", c.DB, err)
	}
	cfg.Passwd = c.Password
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("db %s: %w", c.DB, scrub(err, c.Password))
	}
	s := &Sink{db: c.DB, schema: cfg.DBName, pool: sql.OpenDB(connector), log: c.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.pool.SetMaxIdleConns(1)
	cctx, cancel := context.WithTimeout(ctx, cfg.Timeout) // dial, handshake and setup
	defer cancel()
	if err := s.connect(cctx); err != nil {
		_ = s.pool.Close()
		return nil, fmt.Errorf("db %s: connecting to %s as %s, database %s: %w", c.DB, cfg.Addr, cfg.User, cfg.DBName, scrub(err, c.Password))
	}
	var version string
	if err := s.conn.QueryRowContext(cctx, `SELECT VERSION()`).Scan(&version); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("db %s: %w", c.DB, err)
	}
	s.mariadb = strings.Contains(strings.ToLower(version), "mariadb")
	s.log.Debug("connected", "db", c.DB, "version", version)
	return s, nil
}

// connect takes a connection from the pool and sets up its session.
func (s *Sink) connect(ctx context.Context) error {
	conn, err := s.pool.Conn(ctx)
	if err != nil {
		return err
	}
	for _, q := range sessionSetup {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			_ = conn.Close()
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	s.conn = conn
	return nil
}

// scrub removes the password from an error's text (the driver never puts it there; this
// is a guard).
func scrub(err error, password string) error {
	if password == "" || !strings.Contains(err.Error(), password) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), password, "********"))
}

// Close rolls back an open unit and closes the connection.
func (s *Sink) Close() error {
	s.Rollback(context.Background())
	_ = s.spool.Close()
	if s.conn != nil {
		_ = s.conn.Close()
		s.conn = nil
	}
	return s.pool.Close()
}

// Begin opens the unit's transaction; it is a no-op when one is open. A connection lost
// by an earlier unit is replaced.
func (s *Sink) Begin(ctx context.Context) error {
	if s.tx {
		return nil
	}
	if s.conn == nil {
		if err := s.connect(ctx); err != nil {
			return fmt.Errorf("db %s: reconnecting: %w", s.db, err)
		}
	}
	if _, err := s.conn.ExecContext(ctx, `START TRANSACTION`); err != nil {
		s.drop(err)
		return fmt.Errorf("db %s: beginning: %w", s.db, err)
	}
	s.tx = true
	return nil
}

// Commit commits the unit's transaction; it is a no-op when none is open.
func (s *Sink) Commit(ctx context.Context) error {
	if !s.tx {
		return nil
	}
	s.tx, s.batch = false, nil
	if _, err := s.conn.ExecContext(ctx, `COMMIT`); err != nil {
		s.drop(err)
		return fmt.Errorf("db %s: committing: %w", s.db, err)
	}
	return nil
}

// Rollback rolls the unit's transaction back, best effort, within 10 s whatever the
// run's context; it is a no-op when none is open.
func (s *Sink) Rollback(context.Context) {
	if !s.tx {
		return
	}
	s.tx, s.batch = false, nil
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.conn.ExecContext(ctx, `ROLLBACK`); err != nil {
		s.drop(err)
	}
}

// drop forgets a connection that failed at the connection level (the server rolls its
// transaction back): the next Begin takes a new one.
func (s *Sink) drop(err error) {
	if s.conn == nil {
		return
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return // the server answered: the connection is fine
	}
	_ = s.conn.Close()
	s.conn = nil
	s.tx = false
}

// inTx returns ErrNoTransaction, naming db and t, when no transaction is open.
func (s *Sink) inTx(t *sinks.Table) error {
	if s.tx && s.conn != nil {
		return nil
	}
	return s.errf(t, "", sinks.ErrNoTransaction)
}

// errf wraps err with the db, what was done, and t.
func (s *Sink) errf(t *sinks.Table, doing string, err error) error {
	return sinks.TableErr(s.db, t, doing, err)
}

// current returns the batch of t under way.
func (s *Sink) current(t *sinks.Table) (*batch, error) {
	b := s.batch
	if b == nil || !t.Same(b.t) {
		return nil, sinks.ErrNoBatch
	}
	return b, nil
}
