// Package postgres is the PostgreSQL sink: it writes a receiving database through one
// pgx connection, which the run owns (it also reads on it) and the sink never closes.
//
// A target (the default) takes a batch by deleting its keys and COPYing the rows straight
// into the table. A receiver that is also a source, with ibex's capture on its tables,
// is written in source mode (WithSource): rows are staged in a temp table and upserted,
// keys the local application changed since the run's snapshot are left to the next run,
// and every staged row must be written.
//
// The session should be set up with Configure first (session_replication_role), so that
// applied rows fire neither capture nor user triggers.
package postgres

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ibexrepl/ibex/sinks"
)

var (
	_ sinks.Sink      = (*Sink)(nil)
	_ sinks.Truncater = (*Sink)(nil)
)

// Source configures source mode: the receiving db is also a source with ibex's capture.
type Source struct {
	// Snapshot is the run's snapshot of this db (pg_current_snapshot()::text): changes
	// its application made outside it are newer than the run and left to the next run.
	Snapshot string
	// ChangeTable returns the quoted change table that capture fills for t on this db.
	ChangeTable func(t *sinks.Table) string
}

// Option configures a Sink.
type Option func(*Sink)

// WithSource puts the sink in source mode (see Source).
func WithSource(src Source) Option {
	return func(s *Sink) { s.src = &src }
}

// Sink is the PostgreSQL sink. It is not safe for concurrent use.
type Sink struct {
	conn *pgx.Conn
	db   string
	src  *Source // nil: target mode
	tx   bool    // the unit's transaction is open
	// beginWith: BeginAndPrepare is under way and BEGIN is not sent yet (see begin).
	beginWith bool
	batch     *batch // the batch under way, if any
	// skip: on_error=skip (SkipRejected): batches are staged, and rows the database
	// refuses are left out (rejected) instead of failing the batch.
	skip     bool
	rejected []sinks.Rejected
	// major is the server's major version (0: not read yet); mergeRefused the tables
	// (quoted) on which it refused MERGE (see applySource).
	major        int
	mergeRefused map[string]bool
}

// batch is the state of the batch (or whole-table copy) under way.
type batch struct {
	t       *sinks.Table
	replace bool  // a whole-table copy
	skipped bool  // ReplaceTable left a non-empty table alone
	staged  bool  // source mode: rows go to pg_temp.ibex_s and FinishBatch applies them
	partial bool  // a target's table with other columns than t.Cols: staged, then updated in place
	keys    int   // keys of the batch (a source's, before those left out)
	sent    int64 // rows WriteRows took
	written int64 // rows COPY wrote
	deleted int64
	// adds are the counter columns whose deltas pg_temp.ibex_c holds for the keys the
	// batch skips (AddToSkipped); nil: none.
	adds []string
}

var snapRe = regexp.MustCompile(`^[0-9]+:[0-9]+:[0-9,]*$`)

// New returns a sink writing db (its name, for messages) through conn. The sink does not
// own conn: it neither configures (see Configure) nor closes it.
func New(conn *pgx.Conn, db string, opts ...Option) (*Sink, error) {
	s := &Sink{conn: conn, db: db}
	for _, o := range opts {
		o(s)
	}
	if s.src != nil {
		if !snapRe.MatchString(s.src.Snapshot) {
			return nil, fmt.Errorf("db %s: unexpected snapshot %q", db, s.src.Snapshot)
		}
		if s.src.ChangeTable == nil {
			return nil, fmt.Errorf("db %s: source mode needs the change tables", db)
		}
	}
	return s, nil
}

// Begin opens the unit's transaction; it is a no-op when one is open.
func (s *Sink) Begin(ctx context.Context) error {
	if s.tx {
		return nil
	}
	if _, err := s.conn.Exec(ctx, `BEGIN`); err != nil {
		return fmt.Errorf("db %s: beginning: %w", s.db, err)
	}
	s.tx = true
	return nil
}

// Commit commits the unit's transaction; it is a no-op when none is open. A transaction
// that had failed is rolled back by the server: Commit then returns an error.
func (s *Sink) Commit(ctx context.Context) error {
	if !s.tx {
		return nil
	}
	s.tx, s.batch = false, nil
	tag, err := s.conn.Exec(ctx, `COMMIT`)
	if err != nil {
		return fmt.Errorf("db %s: committing: %w", s.db, err)
	}
	if tag.String() == "ROLLBACK" {
		return fmt.Errorf("db %s: committing: the transaction had failed and was rolled back", s.db)
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
	_, _ = s.conn.Exec(ctx, `ROLLBACK`)
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

// current returns the batch of t under way.
func (s *Sink) current(t *sinks.Table) (*batch, error) {
	b := s.batch
	if b == nil || !t.Same(b.t) {
		return nil, sinks.ErrNoBatch
	}
	return b, nil
}

func ident(t *sinks.Table) string { return pgx.Identifier{t.Schema, t.Name}.Sanitize() }

// only is "ONLY " unless the table is partitioned: a partitioned parent's rows are in its
// partitions, while an ordinary table's children (inheritance) are tables of their own.
func only(t *sinks.Table) string {
	if t.Partitioned {
		return ""
	}
	return "ONLY "
}

// scalar reads the integer in column col of a result's single row.
func scalar(res *pgconn.Result, col int) (int64, error) {
	if len(res.Rows) != 1 || len(res.Rows[0]) <= col {
		return 0, fmt.Errorf("unexpected result of %d rows", len(res.Rows))
	}
	return strconv.ParseInt(string(res.Rows[0][col]), 10, 64)
}
