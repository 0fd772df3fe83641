package control

import (
	"context"
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

// UnlockSync releases the run lock of sync s that the session of q holds.
func UnlockSync(ctx context.Context, q Querier, s *Sync) error {
	if _, err := q.Exec(ctx, unlockSQL, SyncLockNamespace, s.ID); err != nil {
		return fmt.Errorf("releasing the lock of sync %q: %w", s.Name, err)
	}
	return nil
}

// UnlockSyncAfter returns what queues UnlockSync's statement on a batch (EndRun's also).
func UnlockSyncAfter(s *Sync) func(*pgx.Batch) {
	return func(b *pgx.Batch) { b.Queue(unlockSQL, SyncLockNamespace, s.ID) }
}

const unlockSQL = `SELECT pg_advisory_unlock($1, $2)`
