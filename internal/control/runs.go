package control

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// Run is one row of the run history.
type Run struct {
	ID        int64          `json:"id"`
	Sync      string         `json:"sync"`
	State     string         `json:"state"`
	Started   time.Time      `json:"started"`
	Ended     *time.Time     `json:"ended,omitempty"`
	Inserts   int64          `json:"inserts"`
	Deletes   int64          `json:"deletes"`
	Conflicts int64          `json:"conflicts"`
	Details   map[string]any `json:"details,omitempty"`
	Error     string         `json:"error,omitempty"`
}

// Duration is the run's wall time (0 while running).
func (r *Run) Duration() time.Duration {
	if r.Ended == nil {
		return 0
	}
	return r.Ended.Sub(r.Started)
}

// StartRun records a running run and returns its id. The caller holds the sync's lock, so
// runs of the same sync still marked running were left by a process that died: they are
// closed as bad first.
func StartRun(ctx context.Context, q Querier, sync, host string, pid int) (int64, error) {
	// One statement (one round trip, one commit): the runs of sync still recorded as
	// running died (the caller holds the sync's lock), then the new run.
	var id int64
	err := q.QueryRow(ctx, startRunSQL, sync, host, pid, StateBad, StateRunning).Scan(&id)
	return id, err
}

// QueueStartRun queues StartRun in b: *id and *err are set when b's results are read. Put
// last in a batch, it runs only when the statements before it succeeded.
func QueueStartRun(b *pgx.Batch, sync, host string, pid int, id *int64, err *error) {
	b.Queue(startRunSQL, sync, host, pid, StateBad, StateRunning).QueryRow(func(row pgx.Row) error {
		*err = row.Scan(id)
		return nil
	})
}

// startRunSQL is StartRun's statement. The runs still running are found by the partial
// index run_running_idx (migration 19), not among the sync's whole history: with a
// million runs recorded (about eleven hours of autokick at 25 runs a second), the
// statement took 72-81 ms.
const startRunSQL = `WITH dead AS (
  UPDATE ibex.run SET state = $4, ended = clock_timestamp(), error = 'the process running it died before it ended (killed, timed out or lost its connection)'
  WHERE sync = $1 AND state = $5 RETURNING id)
INSERT INTO ibex.run (sync, host, pid) SELECT $1, $2, $3 FROM (SELECT count(*) FROM dead) d RETURNING id`

// BatchQuerier is a Querier that also sends batches (a session, the pool, a transaction).
type BatchQuerier interface {
	Querier
	Batcher
}

// EndRun records the outcome of a run, in one round trip.
//
// Its commit does not wait for the WAL to reach the disk (synchronous_commit = off, for
// this transaction only): the run's record is bookkeeping, and losing it in a crash of
// the control database's server costs nothing but the record (the run stays "running",
// and the next run of the sync closes it as bad). What the run did is kept by the commits
// that recorded it (watermarks, consumed change rows, the receivers' rows), which do wait.
//
// The statements of also (UnlockSyncAfter) go in the same round trip, after the COMMIT:
// they run only when the record was committed.
func EndRun(ctx context.Context, q BatchQuerier, r *Run, also ...func(*pgx.Batch)) error {
	details := r.Details
	if details == nil {
		details = map[string]any{}
	}
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	b.Queue(`SET LOCAL synchronous_commit = off`)
	b.Queue(`UPDATE ibex.run SET state = $2, ended = clock_timestamp(), inserts = $3, deletes = $4,
conflicts = $5, details = $6, error = $7 WHERE id = $1`, r.ID, r.State, r.Inserts, r.Deletes, r.Conflicts, details, r.Error)
	b.Queue(`COMMIT`)
	for _, f := range also {
		f(b)
	}
	if err := q.SendBatch(ctx, b).Close(); err != nil {
		_, _ = q.Exec(ctx, `ROLLBACK`) // out of the failed transaction, if it is still open
		return err
	}
	return nil
}

const runCols = `id, sync, state, started, ended, inserts, deletes, conflicts, details, error`

func scanRun(r pgx.CollectableRow) (Run, error) {
	var x Run
	err := r.Scan(&x.ID, &x.Sync, &x.State, &x.Started, &x.Ended, &x.Inserts, &x.Deletes, &x.Conflicts, &x.Details, &x.Error)
	return x, err
}

// LastRun returns the latest run of a sync in one of the given states, or nil.
func LastRun(ctx context.Context, q Querier, sync string, states ...string) (*Run, error) {
	rows, err := q.Query(ctx, `SELECT `+runCols+` FROM ibex.run WHERE sync = $1 AND state = ANY($2) ORDER BY id DESC LIMIT 1`, sync, states)
	if err != nil {
		return nil, err
	}
	r, err := pgx.CollectExactlyOneRow(rows, scanRun)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	return &r, err
}

// Runs returns the latest runs of a sync, newest first.
func Runs(ctx context.Context, q Querier, sync string, limit int) ([]Run, error) {
	rows, err := q.Query(ctx, `SELECT `+runCols+` FROM ibex.run WHERE sync = $1 ORDER BY id DESC LIMIT $2`, sync, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanRun)
}

// Conflict is one row of the conflict log.
type Conflict struct {
	ID         int64    `json:"id"`
	Run        int64    `json:"run"`
	Sync       string   `json:"sync"`
	Table      string   `json:"table"`
	Key        string   `json:"key"`
	Type       string   `json:"type"` // insert_exists, update_update, update_delete, delete_delete (conflict.Types)
	DBs        []string `json:"dbs"`
	Winner     string   `json:"winner,omitempty"`
	Strategy   string   `json:"strategy"`
	Resolution string   `json:"resolution"`
	// Row is the full row of the version that lost, COPY text, where the conflict removed
	// it (an orphan deleted); "" otherwise.
	Row string    `json:"row,omitempty"`
	At  time.Time `json:"at"`
}

// RecordConflicts appends conflicts to the log with COPY.
func RecordConflicts(ctx context.Context, tx pgx.Tx, cs []Conflict) error {
	if len(cs) == 0 {
		return nil
	}
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"ibex", "conflict"},
		[]string{"run", "sync", "relation", "key", "type", "dbs", "winner", "strategy", "resolution", "row_text"},
		pgx.CopyFromSlice(len(cs), func(i int) ([]any, error) {
			c := cs[i]
			var w any
			if c.Winner != "" {
				w = c.Winner
			}
			var row any
			if c.Row != "" {
				row = c.Row
			}
			return []any{c.Run, c.Sync, c.Table, c.Key, c.Type, c.DBs, w, c.Strategy, c.Resolution, row}, nil
		}))
	return err
}

// Conflicts returns the latest conflicts of a sync, newest first.
func Conflicts(ctx context.Context, q Querier, sync string, limit int) ([]Conflict, error) {
	rows, err := q.Query(ctx, `SELECT id, run, sync, relation, key, type, dbs, coalesce(winner, ''), strategy, resolution, coalesce(row_text, ''), at
FROM ibex.conflict WHERE sync = $1 ORDER BY id DESC LIMIT $2`, sync, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Conflict, error) {
		var c Conflict
		err := r.Scan(&c.ID, &c.Run, &c.Sync, &c.Table, &c.Key, &c.Type, &c.DBs, &c.Winner, &c.Strategy, &c.Resolution, &c.Row, &c.At)
		return c, err
	})
}

// Watermarks returns snap by (source, receiver) for a sync.
func Watermarks(ctx context.Context, q Querier, sync string) (map[[2]string]string, error) {
	rows, err := q.Query(ctx, watermarksSQL, sync)
	if err != nil {
		return nil, err
	}
	return scanWatermarks(rows)
}

// QueueWatermarks queues Watermarks' query (see Batcher).
func QueueWatermarks(b *pgx.Batch, sync string, out *map[[2]string]string, err *error) {
	b.Queue(watermarksSQL, sync).Query(func(rows pgx.Rows) error {
		*out, *err = scanWatermarks(rows)
		return nil
	})
}

const watermarksSQL = `SELECT source, receiver, snap FROM ibex.watermark WHERE sync = $1`

func scanWatermarks(rows pgx.Rows) (map[[2]string]string, error) {
	defer rows.Close()
	out := map[[2]string]string{}
	for rows.Next() {
		var s, r, snap string
		if err := rows.Scan(&s, &r, &snap); err != nil {
			return nil, err
		}
		out[[2]string{s, r}] = snap
	}
	return out, rows.Err()
}

// SetWatermark records that receiver has applied every change of source visible in snap.
func SetWatermark(ctx context.Context, q Querier, sync, source, receiver, snap string) error {
	_, err := q.Exec(ctx, setWatermarkSQL, sync, source, receiver, snap)
	return err
}

// QueueSetWatermark queues SetWatermark's statement (see Batcher).
func QueueSetWatermark(b *pgx.Batch, sync, source, receiver, snap string) {
	b.Queue(setWatermarkSQL, sync, source, receiver, snap)
}

const setWatermarkSQL = `INSERT INTO ibex.watermark (sync, source, receiver, snap) VALUES ($1, $2, $3, $4)
ON CONFLICT (sync, source, receiver) DO UPDATE SET snap = excluded.snap, updated = clock_timestamp()`

// ClearWatermarks forgets a sync's watermarks (its change tables were recreated).
func ClearWatermarks(ctx context.Context, q Querier, sync string) error {
	_, err := q.Exec(ctx, `DELETE FROM ibex.watermark WHERE sync = $1`, sync)
	return err
}

// ConflictCounts counts a sync's logged conflicts by type ("" for those logged before
// conflicts had types).
func ConflictCounts(ctx context.Context, q Querier, sync string) (map[string]int64, error) {
	rows, err := q.Query(ctx, `SELECT type, count(*) FROM ibex.conflict WHERE sync = $1 GROUP BY type`, sync)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	var typ string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&typ, &n}, func() error {
		out[typ] = n
		return nil
	})
	return out, err
}

// on_error values.
const (
	OnErrorStop = "stop" // a row a receiver refuses fails the batch (the default)
	OnErrorSkip = "skip" // it is left out there and parked in the exception log
)

// on_orphan values.
const (
	OnOrphanDelete  = "delete"  // an orphan child row is deleted everywhere (the default)
	OnOrphanKeep    = "keep"    // orphans are left alone (no check)
	OnOrphanRestore = "restore" // the parent row is brought back everywhere
)

// unique_clash_loser values.
const (
	UniqueLoserDelete = "delete" // the losing row of a unique clash is deleted everywhere (the default)
	UniqueLoserPark   = "park"   // ... and parked in the exception log with its row
)

// Exception is a row a receiver refused under on_error=skip, parked in ibex.exception.
type Exception struct {
	ID    int64
	Run   int64
	Sync  string
	Table string
	DB    string // the receiver that refused it
	Key   string
	Row   string // the row refused, COPY text; "" for a delete
	Error string
	At    time.Time
}

// RecordExceptions logs parked rows.
func RecordExceptions(ctx context.Context, tx pgx.Tx, es []Exception) error {
	if len(es) == 0 {
		return nil
	}
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"ibex", "exception"},
		[]string{"run", "sync", "relation", "db", "key", "row_text", "error"},
		pgx.CopyFromSlice(len(es), func(i int) ([]any, error) {
			e := es[i]
			var row any
			if e.Row != "" {
				row = e.Row
			}
			return []any{e.Run, e.Sync, e.Table, e.DB, e.Key, row, e.Error}, nil
		}))
	return err
}

// Exceptions returns the latest parked rows of a sync, newest first.
func Exceptions(ctx context.Context, q Querier, sync string, limit int) ([]Exception, error) {
	rows, err := q.Query(ctx, `SELECT id, run, sync, relation, db, key, coalesce(row_text, ''), error, at
FROM ibex.exception WHERE sync = $1 ORDER BY id DESC LIMIT $2`, sync, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Exception, error) {
		var e Exception
		err := r.Scan(&e.ID, &e.Run, &e.Sync, &e.Table, &e.DB, &e.Key, &e.Row, &e.Error, &e.At)
		return e, err
	})
}

// ExceptionCount counts the parked rows of a sync.
func ExceptionCount(ctx context.Context, q Querier, sync string) (int64, error) {
	var n int64
	err := q.QueryRow(ctx, `SELECT count(*) FROM ibex.exception WHERE sync = $1`, sync).Scan(&n)
	return n, err
}
