package job

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/dbconn"
)

// A schema change across a sync (ibex ddl): the statements are applied on every
// PostgreSQL db of the sync in one transaction per db, while the sync's run lock is held,
// so that no run sees some dbs changed and others not. Every transaction is open and has
// run the statements before any commits: a failure on any db rolls all of them back.
// Capture is then refreshed (Validate), with the missing columns created on the targets
// that are not PostgreSQL.
//
// Changes captured before the DDL are not lost: capture records keys only, and a run
// reads the rows as they are then, so the next run applies them in the new shape.

// ErrSyncBusy is returned when a run of the sync kept its lock for the whole wait.
var ErrSyncBusy = errors.New("a run of the sync is under way")

// DDLOptions are ApplyDDL's choices.
type DDLOptions struct {
	Logger *slog.Logger
	// Wait is how long to wait for a run under way to end (0: 60 s).
	Wait time.Duration
}

// DDLResult says what ApplyDDL did.
type DDLResult struct {
	Sync string `json:"sync"`
	// DBs are the dbs the statements were committed on, in dbgroup order.
	DBs []string `json:"dbs"`
	// Validate is the capture refresh that followed.
	Validate *ValidateResult `json:"validate"`
}

// ApplyDDL applies sql (one or more statements) on every PostgreSQL db of sync syncName,
// all or none, under the sync's run lock, then refreshes the sync's capture.
func ApplyDDL(ctx context.Context, store *control.Store, syncName, sql string, opts DDLOptions) (*DDLResult, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if strings.TrimSpace(sql) == "" {
		return nil, errors.New("no statements to apply")
	}
	sync, err := control.GetSync(ctx, store.Q(), syncName)
	if err != nil {
		return nil, err
	}
	lockConn, err := store.Pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("control database: %w", err)
	}
	defer lockConn.Release()
	if err := waitLock(ctx, lockConn, sync, opts.Wait); err != nil {
		return nil, err
	}
	defer func() { _ = control.UnlockSync(context.WithoutCancel(ctx), lockConn, sync) }()

	s := &session{store: store, sync: sync, logger: logger}
	defer s.closeAll()
	if err := s.load(ctx, store.Q()); err != nil {
		return nil, err
	}
	var pgs []*member
	for _, m := range s.members {
		if m.pg() {
			pgs = append(pgs, m)
		}
	}
	// Every db, inactive ones too: a db left out would differ from the others.
	errs := s.each(pgs, func(m *member) error {
		conn, err := dbconn.Connect(ctx, m.name, m.db.Conn, m.db.Pass)
		if err != nil {
			return err
		}
		m.conn = conn
		// Rows the statements change are changed on every db: not captured.
		_, err = dbconn.ExecAll(ctx, conn, `SET ibex.applying = on; BEGIN`)
		return err
	})
	if err := errors.Join(errs...); err != nil {
		s.rollbackDDL(pgs)
		return nil, fmt.Errorf("%w: nothing was changed", err)
	}
	errs = s.each(pgs, func(m *member) error {
		if _, err := dbconn.ExecAll(ctx, m.conn, sql); err != nil {
			return fmt.Errorf("db %s: %w", m.name, err)
		}
		return s.keysKept(ctx, m)
	})
	if err := errors.Join(errs...); err != nil {
		s.rollbackDDL(pgs)
		return nil, fmt.Errorf("%w: rolled back on every db, nothing was changed", err)
	}
	res := &DDLResult{Sync: syncName}
	var failed []string
	for _, m := range pgs {
		if _, err := m.conn.Exec(ctx, `COMMIT`); err != nil {
			failed = append(failed, fmt.Sprintf("db %s: committing: %v", m.name, err))
			continue
		}
		res.DBs = append(res.DBs, m.name)
	}
	if len(failed) > 0 {
		return res, fmt.Errorf("the statements were committed on %s but not on the others (%s): apply them there by hand, then run 'ibex validate %s'",
			strings.Join(res.DBs, ", "), strings.Join(failed, "; "), syncName)
	}
	logger.InfoContext(ctx, "schema change applied", slog.String("sync", syncName), slog.String("dbs", strings.Join(res.DBs, ", ")))
	s.closeAll()
	res.Validate, err = ValidateWith(ctx, store, store.Q(), syncName, logger, ValidateOptions{CreateTargets: true})
	if err != nil {
		return res, fmt.Errorf("the statements were applied on every db, but refreshing capture failed (run 'ibex validate %s'): %w", syncName, err)
	}
	return res, nil
}

// waitLock takes the run lock of sync, waiting up to wait for a run under way to end.
func waitLock(ctx context.Context, q control.Querier, sync *control.Sync, wait time.Duration) error {
	if wait <= 0 {
		wait = time.Minute
	}
	deadline := time.Now().Add(wait)
	for {
		got, err := control.TryLockSync(ctx, q, sync)
		if err != nil {
			return err
		}
		if got {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sync %s: %w after %s: try again later", sync.Name, ErrSyncBusy, wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// keysKept checks, inside m's transaction, that every table of the sync is still there
// with the key ibex knows: a key change would recreate the change tables and lose the
// changes pending in them.
func (s *session) keysKept(ctx context.Context, m *member) error {
	for _, t := range s.tables {
		d, err := catalog.Describe(ctx, m.conn, t.on(m))
		if err != nil {
			return fmt.Errorf("db %s: table %s after the statements: %w", m.name, t.name, err)
		}
		if !slices.Equal(d.KeyCols, t.rel.KeyCols) {
			return fmt.Errorf("db %s: the statements change the key of %s from (%s) to (%s), which ibex ddl does not do: remove the table from its herd, change it, then add it again",
				m.name, t.name, strings.Join(t.rel.KeyCols, ", "), strings.Join(d.KeyCols, ", "))
		}
	}
	return nil
}

// rollbackDDL rolls back every open DDL transaction, best effort.
func (s *session) rollbackDDL(ms []*member) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, m := range ms {
		if m.conn != nil {
			_, _ = m.conn.Exec(ctx, `ROLLBACK`)
		}
	}
}
