package job_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/dbconn"
	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/job"
)

// testWarmSessions: runs that borrow their sessions from a pool (the scheduler's warm
// sessions) apply exactly what runs with their own sessions do, with no echo; they read
// the tables' descriptions again (a column added on one db only is refused); and sessions
// the server closed while they were kept are replaced.
func testWarmSessions(t *testing.T, f *farm) {
	c, m := f.itemCluster(t, "warm", 3, []string{"t1:source", "t2:source", "t3:target"})
	pool := dbconn.NewPool(4, time.Minute)
	defer pool.Close()
	opts := job.Options{Sessions: pool}

	for round := 1; round <= 3; round++ {
		c.apply(m, []write{{"t1", "update", round}, {"t2", "update", round + 3}, {"t2", "update", 9}, {"t1", "update", 9}})
		res := c.mustRun(control.StateGood, opts)
		if got, want := countsOf(res), (counts{I: 6, D: 6, C: 1}); got != want {
			t.Errorf("round %d: I/D/C %+v, want %+v", round, got, want)
		}
		ct := c.changeTable("item")
		for _, db := range []string{"t1", "t2"} {
			if n := c.int(db, `SELECT count(*) FROM `+ct); n != 0 {
				t.Errorf("round %d: db %s: %d change rows left (echo?)", round, db, n)
			}
		}
		c.mustRun(control.StateEmpty, opts)
		c.sameEverywhere("item", "id")
	}

	// The kept sessions are reused: take them all out, note their backends, give them back
	// and have the server close them.
	ctx := context.Background()
	var pids []int
	for _, name := range []string{"t1", "t2", "t3"} {
		db, err := control.GetDB(ctx, c.store.Q(), name)
		if err != nil {
			t.Fatal(err)
		}
		var held []*pgx.Conn
		for {
			conn, reused, err := pool.Get(ctx, name, db.Conn, db.Pass)
			if err != nil {
				t.Fatal(err)
			}
			if !reused {
				_ = conn.Close(ctx)
				break
			}
			var pid int
			if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
				t.Fatal(err)
			}
			pids = append(pids, pid)
			held = append(held, conn)
		}
		if len(held) == 0 {
			t.Errorf("db %s: no session kept after the runs", name)
		}
		for _, conn := range held {
			pool.Put(name, db.Conn, db.Pass, conn)
		}
	}
	for end := time.Now().Add(5 * time.Second); pool.Idle() < len(pids) && time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
	}
	admin := pgtest.Conn(t, pgtest.AdminDSN())
	for _, pid := range pids {
		if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend($1, 5000)`, pid); err != nil {
			t.Fatal(err)
		}
	}
	c.apply(m, []write{{"t1", "update", 7}, {"t2", "delete", 8}})
	res := c.mustRun(control.StateGood, opts)
	if got, want := countsOf(res), (counts{I: 2, D: 4}); got != want {
		t.Errorf("after the kept sessions were closed: I/D/C %+v, want %+v", got, want)
	}
	c.sameEverywhere("item", "id")

	// The tables are described again on a warm session.
	c.on("t2", `ALTER TABLE item ADD COLUMN extra int`)
	c.apply(m, []write{{"t1", "update", 2}})
	res = c.mustRun(control.StateBad, opts)
	if !strings.Contains(res.Error, `"extra"`) {
		t.Errorf("error %q does not name column extra", res.Error)
	}
	c.on("t2", `ALTER TABLE item DROP COLUMN extra`)
	c.mustRun(control.StateGood, opts)
	if rows := c.sameEverywhere("item", "id"); len(rows) != 9 || rows[1] != "(2,t1:2)" {
		t.Errorf("rows %v, want 9 with (2,t1:2) second", rows)
	}
}
