package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/internal/scheduler/schedtest"
	"github.com/ibexrepl/ibex/job"
)

func runonce(args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return out.String(), errb.String(), code
}

func TestUsage(t *testing.T) {
	t.Setenv("IBEX_SYNC", "")
	out, _, code := runonce("--help")
	if code != 0 || !strings.Contains(out, "--sync") || !strings.Contains(out, "Exit codes") {
		t.Errorf("--help: exit %d\n%s", code, out)
	}
	for _, args := range [][]string{{}, {"--nope"}, {"--sync", "s", "extra"}, {"--sync", "s", "--log-level", "loud"}, {"--sync", "s", "--timeout", "-1s"}} {
		if _, errOut, code := runonce(args...); code != 2 {
			t.Errorf("runonce %q: exit %d, want 2\n%s", args, code, errOut)
		}
	}
	t.Setenv("IBEX_DSN", "host=127.0.0.1 port=notaport")
	if _, errOut, code := runonce("--sync", "s"); code != 2 {
		t.Errorf("invalid IBEX_DSN: exit %d, want 2\n%s", code, errOut)
	}
	db := pgtest.NewDB(t, "")
	t.Setenv("IBEX_DSN", db.DSN)
	if _, errOut, code := runonce("--sync", "s"); code != 2 || !strings.Contains(errOut, "ibex install") {
		t.Errorf("schema not installed: exit %d, want 2\n%s", code, errOut)
	}
}

func TestRunonce(t *testing.T) {
	f := schedtest.New(t, 2)
	f.AddSync(t, "s")
	t.Setenv("IBEX_DSN", f.DSN())
	t.Setenv("IBEX_SYNC", "")

	if _, errOut, code := runonce("--sync", "nosuch"); code != 2 || !strings.Contains(errOut, "not found") {
		t.Errorf("unknown sync: exit %d, want 2\n%s", code, errOut)
	}

	pgtest.Exec(t, f.DBs[0].DSN, `UPDATE pgbench_accounts SET abalance = abalance + 5 WHERE aid <= 10`)
	out, errOut, code := runonce("--sync", "s")
	if code != 0 || !strings.Contains(out, "sync s: good, inserts 10, deletes 10") {
		t.Fatalf("run: exit %d\n%s%s", code, out, errOut)
	}
	if ok, which := f.Same(t); !ok {
		t.Fatalf("not the same after the run: %s", which)
	}

	// IBEX_SYNC and --json.
	t.Setenv("IBEX_SYNC", "s")
	out, errOut, code = runonce("--json", "--timeout", "30s")
	var res job.Result
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.State != "empty" || res.Sync != "s" {
		t.Fatalf("--json: exit %d\n%s%s", code, out, errOut)
	}

	// Another run holds the lock: exit 0, nothing done.
	c := pgtest.Conn(t, f.DSN())
	if _, err := c.Exec(context.Background(), `SELECT pg_advisory_lock($1, id) FROM ibex.sync WHERE name = 's'`, control.SyncLockNamespace); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = runonce()
	if code != 0 || !strings.Contains(out, "already running") {
		t.Errorf("lock held: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := c.Exec(context.Background(), `SELECT pg_advisory_unlock($1, id) FROM ibex.sync WHERE name = 's'`, control.SyncLockNamespace); err != nil {
		t.Fatal(err)
	}

	// Inactive: not run, exit 0; --force runs it.
	f.Ibex(t, "update", "sync", "s", "status=inactive")
	if out, errOut, code = runonce(); code != 0 || !strings.Contains(out, "inactive") {
		t.Errorf("inactive: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code = runonce("--force"); code != 0 || !strings.Contains(out, "empty") {
		t.Errorf("inactive --force: exit %d\n%s%s", code, out, errOut)
	}
	f.Ibex(t, "update", "sync", "s", "status=active")

	// A db that cannot be reached: the run is bad, exit 1.
	f.Ibex(t, "update", "db", "t2", "port=1", "--force")
	out, errOut, code = runonce()
	if code != 1 || !strings.Contains(out, "bad") {
		t.Errorf("unreachable db: exit %d, want 1\n%s%s", code, out, errOut)
	}
}
