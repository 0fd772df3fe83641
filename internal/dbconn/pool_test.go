package dbconn_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/dbconn"
	"github.com/ibexrepl/ibex/internal/pgtest"
)

// TestPool: a session given back is reset to a new session's state and lent again; one
// left in a transaction is closed; sessions idle for too long are closed.
func TestPool(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t, "")
	p := dbconn.NewPool(2, time.Minute)
	defer p.Close()

	c, reused, err := p.Get(ctx, "t1", db.Conn, "")
	if err != nil || reused {
		t.Fatalf("first Get: reused %v, %v", reused, err)
	}
	var pid int
	if err := c.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	// What a run leaves on a session: settings (a placeholder too), a temp table, an
	// advisory lock, a prepared statement, a LISTEN.
	if _, err := dbconn.ExecAll(ctx, c, `SET session_replication_role = replica; SET lock_timeout = '7s'; SELECT set_config('ibex.origin', 's1', false);
CREATE TEMP TABLE ibex_k (k int); SELECT pg_advisory_lock(4242); PREPARE p1 AS SELECT 1; LISTEN ibex_test`); err != nil {
		t.Fatal(err)
	}
	p.Put("t1", db.Conn, "", c)
	waitIdle(t, p, 1)

	c2, reused, err := p.Get(ctx, "t1", db.Conn, "")
	if err != nil || !reused {
		t.Fatalf("second Get: reused %v, %v", reused, err)
	}
	var pid2 int
	var role, lockTimeout, origin, app string
	var temps, locks, prepared, listens int
	if err := c2.QueryRow(ctx, `SELECT pg_backend_pid(), current_setting('session_replication_role'), current_setting('lock_timeout'),
  coalesce(current_setting('ibex.origin', true), ''), current_setting('application_name'),
  (SELECT count(*) FROM pg_class WHERE relname = 'ibex_k' AND relpersistence = 't'),
  (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()),
  (SELECT count(*) FROM pg_prepared_statements), (SELECT count(*) FROM pg_listening_channels())`).Scan(
		&pid2, &role, &lockTimeout, &origin, &app, &temps, &locks, &prepared, &listens); err != nil {
		t.Fatal(err)
	}
	if pid2 != pid {
		t.Errorf("lent backend %d, want the kept one %d", pid2, pid)
	}
	if role != "origin" || lockTimeout != "0" || origin != "" || app != "ibex" || temps != 0 || locks != 0 || prepared != 0 || listens != 0 {
		t.Errorf("after the reset: session_replication_role %q, lock_timeout %q, ibex.origin %q, application_name %q, temp tables %d, advisory locks %d, prepared %d, listening %d; want origin, 0, empty, ibex, 0, 0, 0, 0",
			role, lockTimeout, origin, app, temps, locks, prepared, listens)
	}

	// A session given back inside a transaction is closed, not kept.
	if _, err := c2.Exec(ctx, `BEGIN`); err != nil {
		t.Fatal(err)
	}
	p.Put("t1", db.Conn, "", c2)
	if !c2.IsClosed() || p.Idle() != 0 {
		t.Errorf("a session in a transaction: closed %v, idle %d; want closed, 0", c2.IsClosed(), p.Idle())
	}

	// Another db's settings get their own sessions.
	other := map[string]string{}
	for k, v := range db.Conn {
		other[k] = v
	}
	other["application_name"] = "ibex other"
	a, _, err := p.Get(ctx, "t1", db.Conn, "")
	if err != nil {
		t.Fatal(err)
	}
	p.Put("t1", db.Conn, "", a)
	waitIdle(t, p, 1)
	b, reused, err := p.Get(ctx, "t1", other, "")
	if err != nil || reused {
		t.Fatalf("Get with other settings: reused %v, %v", reused, err)
	}
	closeConn(b)

	// Idle for longer than the timeout: closed by Prune.
	q := dbconn.NewPool(2, 50*time.Millisecond)
	defer q.Close()
	d, _, err := q.Get(ctx, "t1", db.Conn, "")
	if err != nil {
		t.Fatal(err)
	}
	q.Put("t1", db.Conn, "", d)
	waitIdle(t, q, 1)
	time.Sleep(100 * time.Millisecond)
	q.Prune()
	if q.Idle() != 0 || !d.IsClosed() {
		t.Errorf("after Prune: idle %d, closed %v; want 0, true", q.Idle(), d.IsClosed())
	}
}

func waitIdle(t *testing.T, p *dbconn.Pool, n int) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if p.Idle() == n {
			return
		}
	}
	t.Fatalf("idle sessions: %d, want %d", p.Idle(), n)
}

func closeConn(c *pgx.Conn) { _ = c.Close(context.Background()) }
