package control

import (
	"cmp"
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// SyncLockNamespace is the first key of the two-int advisory lock a run of a sync holds on
// the control database; the second is the sync's id (Sync.ID), which no other sync has.
const SyncLockNamespace = 0x1be1

// TryLockSync takes the run lock of sync s on the session of q (a connection, not a pool:
// the lock is the session's until UnlockSync or the session's end). It reports false when
// another session holds it.
func TryLockSync(ctx context.Context, q Querier, s *Sync) (bool, error) {
	var got bool
	if err := q.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, $2)`, SyncLockNamespace, s.ID).Scan(&got); err != nil {
		return false, fmt.Errorf("taking the lock of sync %q: %w", s.Name, err)
	}
	return got, nil
}

// GetSyncAndLock reads sync name and the dbs of its dbgroup (by name) and tries to take
// its run lock (see TryLockSync), all in one round trip on the session of q (a
// connection); with check, the control schema's version is checked first in the same
// round trip (see Store.Check: its error is returned), which needs a session that sends
// batches unprepared (pgx.QueryExecModeExec, as the store's pool does): on a missing
// schema, preparing them first would fail before the version is read. locked reports whether this session now holds the lock; when it does and
// an error is returned, it has been released. A run opens the dbs' sessions only once it
// holds the lock, so that kicks finding their sync already running open none.
func GetSyncAndLock(ctx context.Context, q Batcher, name string, check bool) (s *Sync, dbs map[string]*DB, locked bool, err error) {
	var (
		sy                      Sync
		lockedID                *int32
		syncErr, dbErr, lockErr error
		vq                      *versionQuery
	)
	b := &pgx.Batch{}
	if check {
		vq = queueVersion(b)
	}
	b.Queue(`SELECT id, `+syncCols+` FROM ibex.sync WHERE name = $1`, name).Query(func(rows pgx.Rows) error {
		sy, syncErr = pgx.CollectExactlyOneRow(rows, scanSync)
		return nil
	})
	queueDBs(b, syncDBsSQL, name, &dbs, &dbErr)
	b.Queue(`SELECT id FROM ibex.sync WHERE name = $2 AND pg_try_advisory_lock($1, id)`, SyncLockNamespace, name).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var id int32
			if lockErr = rows.Scan(&id); lockErr != nil {
				return nil
			}
			lockedID = &id
		}
		lockErr = rows.Err()
		return nil
	})
	sendErr := q.SendBatch(ctx, b).Close()
	var versionErr error
	if vq != nil {
		v, err := vq.result(sendErr)
		versionErr = cmp.Or(err, checkVersion(v))
	}
	var replaced error
	if lockedID != nil && syncErr == nil && *lockedID != sy.ID {
		replaced = fmt.Errorf("sync %q was replaced while it was read: run again", name)
	}
	if lockedID != nil && cmp.Or(versionErr, sendErr, syncErr, dbErr, replaced) != nil {
		// Taken, but the run cannot go on with what was read: let go.
		ub := &pgx.Batch{}
		queueUnlock(ub, *lockedID)
		br := q.SendBatch(context.WithoutCancel(ctx), ub)
		_, _ = br.Exec()
		_ = br.Close()
		lockedID = nil
	}
	switch {
	case versionErr != nil:
		return nil, nil, false, versionErr
	case sendErr != nil:
		return nil, nil, false, fmt.Errorf("reading sync %q: %w", name, sendErr)
	case errors.Is(syncErr, pgx.ErrNoRows):
		return nil, nil, false, notFound("sync", name)
	case cmp.Or(syncErr, dbErr) != nil:
		return nil, nil, false, cmp.Or(syncErr, dbErr)
	case lockErr != nil:
		return nil, nil, false, fmt.Errorf("taking the lock of sync %q: %w", name, lockErr)
	case replaced != nil:
		return nil, nil, false, replaced
	}
	return &sy, dbs, lockedID != nil, nil
}

// queueUnlock queues on b the release of the run lock of the sync with id.
func queueUnlock(b *pgx.Batch, id int32) { b.Queue(unlockSQL, SyncLockNamespace, id) }

// UnlockSync releases the run lock of sync s that the session of q holds.
func UnlockSync(ctx context.Context, q Querier, s *Sync) error {
	if _, err := q.Exec(ctx, unlockSQL, SyncLockNamespace, s.ID); err != nil {
		return fmt.Errorf("releasing the lock of sync %q: %w", s.Name, err)
	}
	return nil
}

// UnlockSyncAfter returns what queues UnlockSync's statement on a batch (EndRun's also).
func UnlockSyncAfter(s *Sync) func(*pgx.Batch) {
	return func(b *pgx.Batch) { queueUnlock(b, s.ID) }
}

const unlockSQL = `SELECT pg_advisory_unlock($1, $2)`
