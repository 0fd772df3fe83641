// Package job runs a sync once: the stateless, idempotent job every entry point (ibex
// kick, runonce, the scheduler, the Lambda handler) calls.
//
// A run of sync S takes an advisory lock for S on the control database (if another run
// holds it, Run returns at once with AlreadyRunning), reads S's definition, connects to
// every db of S, checks that their tables agree, and then, table by table and in bounded
// batches, drains the captured changes of every source, resolves conflicts and applies the
// winning rows to every other db. It records the run in the control database and
// releases the lock. No state lives in the process between runs: what has been applied is
// kept as per (source, receiver) snapshot watermarks in the control database.
package job

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/dbconn"
)

// DefaultBatchSize is the number of changed keys per batch when the sync sets none.
const DefaultBatchSize = 50000

// ErrInactive is returned for a sync whose status is inactive.
var ErrInactive = errors.New("sync is inactive")

// Options tune a run. The zero value is usable.
type Options struct {
	// Logger receives progress; nil discards.
	Logger *slog.Logger
	// BatchSize overrides the sync's batch_size (changed keys per batch).
	BatchSize int
	// Deadline, when set, makes the run stop taking new batches once less than
	// DeadlineMargin remains (the Lambda's deadline).
	Deadline       time.Time
	DeadlineMargin time.Duration
	// Force runs an inactive sync.
	Force bool
	// SchemaChecked says the caller has just checked the control schema's version
	// (control.Store.Check): Run does not check it again.
	SchemaChecked bool
	// Sessions, when set, lends the run its sessions to the sync's PostgreSQL dbs and takes
	// them back, reset, at its end (a long-lived caller: the scheduler keeps them warm
	// between runs). The run relies on nothing they held before (see dbconn.Pool).
	Sessions *dbconn.Pool
	// Progress, when set, is called after each batch and each copied table.
	Progress func(table string, done, total int)
	// decide, when set, decides conflicts instead of the sync's strategy (tests of the
	// built-row path, through export_test.go).
	decide func([]conflict.Change) conflict.Decision
}

// Result is what a run did.
type Result struct {
	Sync           string `json:"sync"`
	RunID          int64  `json:"run_id,omitempty"`
	State          string `json:"state"` // good, empty, bad, already running
	AlreadyRunning bool   `json:"already_running,omitempty"`
	Inserts        int64  `json:"inserts"`
	Deletes        int64  `json:"deletes"`
	Conflicts      int64  `json:"conflicts"`
	Truncates      int64  `json:"truncates,omitempty"` // tables emptied on a receiver for a TRUNCATE
	// Parked counts the rows receivers refused under on_error=skip (ibex conflicts SYNC
	// --errors lists them).
	Parked int64 `json:"parked,omitempty"`
	// ConflictTypes counts the conflicts by type (conflict.Types).
	ConflictTypes map[string]int64  `json:"conflict_types,omitempty"`
	Tables        map[string]Stats  `json:"tables,omitempty"`
	Skipped       map[string]string `json:"skipped,omitempty"` // db -> reason
	Partial       bool              `json:"partial,omitempty"`
	Sequences     int64             `json:"sequences,omitempty"` // sequences raised, over all dbs (job/sequences.go)
	Started       time.Time         `json:"started"`
	Duration      time.Duration     `json:"duration_ns"`
	Error         string            `json:"error,omitempty"`
}

// addConflicts counts conflicts by type (their count per table goes through add).
func (r *Result) addConflicts(cs []control.Conflict) {
	for _, c := range cs {
		if r.ConflictTypes == nil {
			r.ConflictTypes = map[string]int64{}
		}
		r.ConflictTypes[c.Type]++
	}
}

// Stats counts one table's work.
type Stats struct {
	Inserts   int64 `json:"inserts"`
	Deletes   int64 `json:"deletes"`
	Conflicts int64 `json:"conflicts"`
	Truncates int64 `json:"truncates,omitempty"` // receivers that emptied the table for a TRUNCATE
}

func (r *Result) add(table string, s Stats) {
	if r.Tables == nil {
		r.Tables = map[string]Stats{}
	}
	t := r.Tables[table]
	t.Inserts += s.Inserts
	t.Deletes += s.Deletes
	t.Conflicts += s.Conflicts
	t.Truncates += s.Truncates
	r.Tables[table] = t
	r.Truncates += s.Truncates
	r.Inserts += s.Inserts
	r.Deletes += s.Deletes
	r.Conflicts += s.Conflicts
}

// Summary is the one-line human form of a result.
func (r *Result) Summary() string {
	if r.AlreadyRunning {
		return fmt.Sprintf("sync %s is already running: nothing to do", r.Sync)
	}
	s := fmt.Sprintf("sync %s: %s, inserts %d, deletes %d, conflicts %d, time %s",
		r.Sync, r.State, r.Inserts, r.Deletes, r.Conflicts, r.Duration.Round(time.Millisecond))
	if r.Truncates > 0 {
		s += fmt.Sprintf(", truncates %d", r.Truncates)
	}
	if r.Parked > 0 {
		s += fmt.Sprintf("; %d rows refused by a receiver and parked (ibex conflicts %s --errors)", r.Parked, r.Sync)
	}
	if len(r.Skipped) > 0 {
		var parts []string
		for db, why := range r.Skipped {
			parts = append(parts, db+" ("+why+")")
		}
		s += "; skipped " + strings.Join(parts, ", ")
	}
	if r.Sequences > 0 {
		s += fmt.Sprintf("; sequences set %d", r.Sequences)
	}
	if r.Error != "" && r.State == control.StateBad {
		s += "; error: " + r.Error
	}
	return s
}

// Run runs sync once. A returned error means the run could not start (unknown sync,
// control database unreachable) or failed; the Result says which and is recorded.
func Run(ctx context.Context, store *control.Store, syncName string, opts Options) (*Result, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	res := &Result{Sync: syncName, Started: time.Now()}
	lockConn, err := store.Pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("control database: %w", err)
	}
	defer lockConn.Release()
	// Taking the lock and recording the run are not cut by the caller's context: a query
	// cancelled there closes its session, whose lock the server then drops only when it
	// notices, so that the next run could find the sync "already running" for a moment.
	// The run itself stops at once when the context has ended.
	lctx, lcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer lcancel()
	// The control schema's version (unless checked already), the sync, its dbs and its
	// lock in one round trip.
	sync, dbs, got, err := control.GetSyncAndLock(lctx, lockConn, syncName, !opts.SchemaChecked)
	if err != nil {
		return nil, err
	}
	unlocked := !got // by EndRun's round trip, or never taken
	defer func() {
		// A lost connection releases the lock by itself; otherwise unlock on the same session.
		if !unlocked {
			_ = control.UnlockSync(context.WithoutCancel(ctx), lockConn, sync)
		}
	}()
	if sync.Status != control.StatusActive && !opts.Force {
		return nil, fmt.Errorf("sync %q: %w: run 'ibex update sync %s status=active' first", syncName, ErrInactive, syncName)
	}
	if !got {
		res.State = control.StateAlreadyRunning
		res.AlreadyRunning = true
		res.Duration = time.Since(res.Started)
		logger.InfoContext(ctx, "sync is already running", slog.String("sync", syncName))
		return res, nil
	}
	// The first session of each db opens while the run is recorded and its definition
	// read (only under the lock: kicks that find the sync running open none).
	var pre *predials
	if opts.Sessions == nil {
		pre = startPredials(ctx, dbs)
		defer pre.close()
	}

	host, _ := os.Hostname()
	r := &runner{session: session{store: store, sync: sync, logger: logger.With(slog.String("sync", syncName)), pool: opts.Sessions, pre: pre}, opts: opts, res: res,
		ctl: lockConn, host: host}
	// The run is recorded in the round trip that reads its definition (runner.load), or,
	// when that failed before it, here, with the error.
	runErr := r.run(ctx)
	if r.runID == 0 {
		if r.runID, err = control.StartRun(lctx, lockConn, syncName, host, os.Getpid()); err != nil {
			return nil, fmt.Errorf("recording the run of sync %s: %w", syncName, errors.Join(runErr, err))
		}
		r.started()
	}
	runID := r.runID
	res.Duration = time.Since(res.Started)
	defer r.closeAll() // after the run's end is recorded: closeAll may vacuum change tables
	if n := r.noDeltas.Load(); n > 0 {
		logger.WarnContext(ctx, "counters: some keys had changes captured before their columns were counters, and were decided as whole rows", slog.String("sync", syncName), slog.Int64("keys", n))
	}
	if ctx.Err() != nil {
		// Cancelled (a deadline, a signal) before it finished: batches committed before
		// are kept, the rest is pending for the next run.
		res.Partial = true
		runErr = fmt.Errorf("the run was stopped before it finished (%w): the batches it committed are kept, the next run goes on", context.Cause(ctx))
	}

	rec := &control.Run{ID: runID, Inserts: res.Inserts, Deletes: res.Deletes, Conflicts: res.Conflicts,
		Details: map[string]any{"tables": res.Tables, "skipped": res.Skipped, "partial": res.Partial, "sequences": res.Sequences}}
	switch {
	case runErr != nil:
		res.State = control.StateBad
		res.Error = runErr.Error()
	case len(res.Skipped) > 0:
		res.State = control.StateBad
		var parts []string
		for db, why := range res.Skipped {
			parts = append(parts, "db "+db+" skipped: "+why)
		}
		res.Error = strings.Join(parts, "; ")
	case res.Inserts+res.Deletes+res.Conflicts+res.Truncates == 0:
		res.State = control.StateEmpty
	default:
		res.State = control.StateGood
	}
	rec.State, rec.Error = res.State, res.Error
	if err := control.EndRun(context.WithoutCancel(ctx), lockConn, rec, control.UnlockSyncAfter(sync)); err != nil {
		logger.ErrorContext(ctx, "recording the end of the run failed", slog.String("error", err.Error()))
	} else {
		unlocked = true
	}
	logger.InfoContext(ctx, "run ended", slog.String("sync", syncName), slog.Int64("run", runID), slog.String("state", res.State),
		slog.Int64("inserts", res.Inserts), slog.Int64("deletes", res.Deletes), slog.Int64("conflicts", res.Conflicts),
		slog.Duration("duration", res.Duration))
	if runErr != nil {
		return res, runErr
	}
	if res.State == control.StateBad {
		return res, errors.New(res.Error)
	}
	return res, nil
}

// The run's own statements on the control database (its definition, watermarks,
// conflicts, sequences) go through the session that holds the sync's lock (runner.ctl)
// rather than the pool: the pool would open a second session for them, which costs a
// short run more than all its control statements. Nothing else uses that session during
// the run (the run's control statements are all made one after another; the copy of a
// unit's conflicts made while its later batches are applied, conflictlog.go, is made only
// when no conflict function needs the session meanwhile, and waited for before the next
// control statement).
//
// They are not cut by the run's context: a statement cancelled there closes the session,
// which would drop the lock and keep the run from being recorded (see Run). A control
// database that stops answering still fails them after its reply_timeout.

// ctlQuerier runs statements on the lock session, detached from the caller's context.
type ctlQuerier struct{ c *pgxpool.Conn }

func (q ctlQuerier) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return q.c.Exec(context.WithoutCancel(ctx), sql, args...)
}

func (q ctlQuerier) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return q.c.Query(context.WithoutCancel(ctx), sql, args...)
}

func (q ctlQuerier) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return q.c.QueryRow(context.WithoutCancel(ctx), sql, args...)
}

func (q ctlQuerier) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	return q.c.SendBatch(context.WithoutCancel(ctx), b)
}

// ctlQ is the querier of the run's control statements.
func (r *runner) ctlQ() control.Querier {
	if r.ctl != nil {
		return ctlQuerier{r.ctl}
	}
	return r.store.Q()
}

// ctlBegin opens a transaction for the run's control statements; its statements take the
// context ctlCtx returns.
func (r *runner) ctlBegin(ctx context.Context) (pgx.Tx, error) {
	if r.ctl != nil {
		return r.ctl.Begin(context.WithoutCancel(ctx))
	}
	return r.store.Pool.Begin(ctx)
}

// ctlBatch sends b, a transaction (BEGIN ... COMMIT), with the run's control statements
// in one round trip; when it fails, the transaction is rolled back.
func (r *runner) ctlBatch(ctx context.Context, b *pgx.Batch) error {
	q := r.ctlQ().(control.BatchQuerier)
	err := q.SendBatch(ctx, b).Close()
	if err != nil {
		_, _ = q.Exec(ctx, `ROLLBACK`) // out of the failed transaction, if it is still open
	}
	return err
}

// ctlCtx is the context of the statements of a transaction from ctlBegin.
func (r *runner) ctlCtx(ctx context.Context) context.Context {
	if r.ctl != nil {
		return context.WithoutCancel(ctx)
	}
	return ctx
}
