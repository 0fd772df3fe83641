package control_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/pgtest"
)

// twoSyncs makes syncs s14208 and s189525 (whose names have the same hashtext) on a herd
// and a dbgroup of their own.
func twoSyncs(t *testing.T, q control.Querier) []*control.Sync {
	t.Helper()
	ctx := context.Background()
	if _, err := q.Exec(ctx, `INSERT INTO ibex.db (name) VALUES ('a'); INSERT INTO ibex.herd (name) VALUES ('h');
INSERT INTO ibex.dbgroup (name) VALUES ('g'); INSERT INTO ibex.dbmap VALUES ('g', 'a', 'source', 1)`); err != nil {
		t.Fatal(err)
	}
	var out []*control.Sync
	for _, n := range []string{"s14208", "s189525"} {
		s := &control.Sync{Name: n, Herd: "h", DBGroup: "g", ConflictStrategy: "latest", Status: "active"}
		if err := control.PutSync(ctx, q, s, true); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// TestSyncLock: each sync has an id of its own that keys its run lock, so syncs whose
// names hash alike do not keep each other out.
func TestSyncLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, s := installedStore(t)
	syncs := twoSyncs(t, s.Q())
	for i, sy := range syncs {
		got, err := control.GetSync(ctx, s.Q(), sy.Name)
		if err != nil || got.ID == 0 || got.ID != sy.ID {
			t.Fatalf("GetSync(%s): id %v (PutSync gave %d), %v", sy.Name, got, sy.ID, err)
		}
		if i > 0 && sy.ID == syncs[0].ID {
			t.Fatalf("syncs %s and %s have the same id %d", syncs[0].Name, sy.Name, sy.ID)
		}
	}

	c1, c2 := pgtest.Conn(t, db.DSN), pgtest.Conn(t, db.DSN)
	try := func(c *pgx.Conn, sy *control.Sync, want bool) {
		t.Helper()
		if got, err := control.TryLockSync(ctx, c, sy); err != nil || got != want {
			t.Errorf("TryLockSync(%s) = %v, %v; want %v", sy.Name, got, err, want)
		}
	}
	try(c1, syncs[0], true)
	try(c2, syncs[1], true)  // the other name with the same hash
	try(c2, syncs[0], false) // the same sync
	if err := control.UnlockSync(ctx, c1, syncs[0]); err != nil {
		t.Fatal(err)
	}
	try(c2, syncs[0], true)
}

// TestGetSyncAndLock: the sync, its dbs and its lock in one round trip; a sync held by
// another session is read but not locked; an unknown sync leaves no lock behind.
func TestGetSyncAndLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, s := installedStore(t)
	syncs := twoSyncs(t, s.Q())
	c1, c2 := pgtest.Conn(t, db.DSN), pgtest.Conn(t, db.DSN)
	sy, dbs, locked, err := control.GetSyncAndLock(ctx, c1, syncs[0].Name, true)
	if err != nil || !locked || sy.ID != syncs[0].ID || sy.Name != syncs[0].Name || len(dbs) != 1 || dbs["a"] == nil {
		t.Fatalf("GetSyncAndLock(%s) = %+v, %v, %v, %v; want it with db a, locked", syncs[0].Name, sy, dbs, locked, err)
	}
	if got, err := control.TryLockSync(ctx, c2, syncs[0]); got || err != nil {
		t.Errorf("TryLockSync on another session while GetSyncAndLock holds it: %v, %v; want false", got, err)
	}
	sy, _, locked, err = control.GetSyncAndLock(ctx, c2, syncs[0].Name, false)
	if err != nil || locked || sy == nil || sy.ID != syncs[0].ID {
		t.Errorf("GetSyncAndLock(%s) from another session: %+v, %v, %v; want the sync, not locked", syncs[0].Name, sy, locked, err)
	}
	if n := advisoryLocks(t, c2); n != 0 {
		t.Errorf("the other session holds %d advisory locks, want 0", n)
	}
	if _, _, locked, err := control.GetSyncAndLock(ctx, c2, "nosuch", true); !errors.Is(err, control.ErrNotFound) || locked {
		t.Errorf("GetSyncAndLock(nosuch) = %v, %v; want ErrNotFound", locked, err)
	}
	if n := advisoryLocks(t, c2); n != 0 {
		t.Errorf("after an unknown sync, the session holds %d advisory locks, want 0", n)
	}
	if err := control.UnlockSync(ctx, c1, syncs[0]); err != nil {
		t.Fatal(err)
	}
	if n := advisoryLocks(t, c1); n != 0 {
		t.Errorf("after UnlockSync, %d advisory locks held, want 0", n)
	}
}

// TestUpgradeNumbersSyncs: the syncs of a control schema of version 1 get their ids when
// 'ibex upgrade' adds the column.
func TestUpgradeNumbersSyncs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t, "")
	v1, err := os.ReadFile("migration/001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	c := pgtest.Conn(t, db.DSN)
	if _, err := c.Exec(ctx, `CREATE SCHEMA ibex; CREATE TABLE ibex.schema_version (version int PRIMARY KEY, name text NOT NULL,
applied timestamptz NOT NULL DEFAULT now()); INSERT INTO ibex.schema_version (version, name) VALUES (1, '001_init.sql')`); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, string(v1)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, `INSERT INTO ibex.db (name) VALUES ('a'); INSERT INTO ibex.herd (name) VALUES ('h');
INSERT INTO ibex.dbgroup (name) VALUES ('g');
INSERT INTO ibex.sync (name, herd, dbgroup) VALUES ('s14208', 'h', 'g'), ('s189525', 'h', 'g')`); err != nil {
		t.Fatal(err)
	}

	s := open(t, db.DSN)
	applied, err := s.Migrate(ctx, false)
	if err != nil || len(applied) == 0 || applied[0] != 2 {
		t.Fatalf("upgrade from version 1: applied %v, %v", applied, err)
	}
	syncs, err := control.Syncs(ctx, s.Q())
	if err != nil {
		t.Fatal(err)
	}
	var ids []int32
	for _, sy := range syncs {
		ids = append(ids, sy.ID)
	}
	if len(ids) != 2 || slices.Contains(ids, 0) || ids[0] == ids[1] {
		t.Errorf("sync ids after the upgrade: %v, want two different ones", ids)
	}
	// A sync added afterwards gets a new id too.
	sy := &control.Sync{Name: "s3", Herd: "h", DBGroup: "g", ConflictStrategy: "latest", Status: "active"}
	if err := control.PutSync(ctx, s.Q(), sy, true); err != nil {
		t.Fatal(err)
	}
	if sy.ID == 0 || slices.Contains(ids, sy.ID) {
		t.Errorf("id of a sync added after the upgrade: %d (others %v)", sy.ID, ids)
	}
}

// installedStore is a new database with the control schema installed, and its store.
func installedStore(t *testing.T) (*pgtest.DB, *control.Store) {
	t.Helper()
	db := pgtest.NewDB(t, "")
	s := open(t, db.DSN)
	if _, err := s.Migrate(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	return db, s
}

// advisoryLocks is the number of advisory locks the session of c holds.
func advisoryLocks(t *testing.T, c *pgx.Conn) int {
	t.Helper()
	var n int
	if err := c.QueryRow(context.Background(), `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestStartRunLongHistory: with a long run history, StartRun finds the runs left running
// without reading the history (a few buffers, not thousands), and closes them as bad.
func TestStartRunLongHistory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, s := installedStore(t)
	c, err := pgx.Connect(ctx, db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, `INSERT INTO ibex.run (sync, host, pid, state, ended) SELECT 's', 'h', 1, 'empty', now() FROM generate_series(1, 200000);
		INSERT INTO ibex.run (sync, host, pid) VALUES ('s', 'h', 2);
		ANALYZE ibex.run`); err != nil {
		t.Fatal(err)
	}
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var plan []struct {
		Plan struct {
			Hit  int64 `json:"Shared Hit Blocks"`
			Read int64 `json:"Shared Read Blocks"`
		}
	}
	if err := tx.QueryRow(ctx, `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) `+control.StartRunSQL, "s", "h", 3, control.StateBad, control.StateRunning).Scan(&plan); err != nil {
		t.Fatal(err)
	}
	_ = tx.Rollback(ctx)
	if len(plan) != 1 {
		t.Fatalf("plan: %+v", plan)
	}
	if n := plan[0].Plan.Hit + plan[0].Plan.Read; n > 100 {
		t.Errorf("StartRun read %d buffers with 200,001 runs recorded, want at most 100", n)
	}
	id, err := control.StartRun(ctx, s.Q(), "s", "h", 4)
	if err != nil {
		t.Fatal(err)
	}
	var running, bad int
	if err := c.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'running'), count(*) FILTER (WHERE state = 'bad') FROM ibex.run WHERE sync = 's'`).Scan(&running, &bad); err != nil {
		t.Fatal(err)
	}
	if running != 1 || bad != 1 {
		t.Errorf("after StartRun: %d running, %d bad; want 1 (run %d) and 1 (the one left running)", running, bad, id)
	}
}
