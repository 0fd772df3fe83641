package faults

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/ibextest"
	"github.com/ibexrepl/ibex/internal/pgtest"
)

// writerScript is a pgbench transaction: a balance update that may conflict with the
// other source, and a row keyed uniquely per source so that lost rows can be counted.
const writerScript = `\set aid random(1, 100000)
\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
INSERT INTO ev (src, n, v) VALUES (:src, nextval('ev_n'), 'pgbench');
END;
`

// TestJobKilled proves invariant 3 for a job process that dies: ibex kick runs as a
// subprocess over a large backlog in small batches (batch_size=500) while pgbench keeps
// writing on both sources, and is SIGKILLed at several points of its run. Then the
// writers stop and one run completes: every db is identical, no row is lost (each source
// wrote uniquely keyed rows, counted exactly), no run is left recorded as running, and
// the next kick is not "already running".
func TestJobKilled(t *testing.T) {
	t.Parallel()
	bin := ibexBinary(t)
	e := newEnv(t, pgtest.ClusterOptions{})
	dsns := map[string]string{}
	const backlog = 8000
	t0 := time.Now()
	for _, name := range []string{"a", "b", "c"} {
		d := e.ctl.CreateDB(name)
		dsns[name] = d.DSN
		e.ctl.Pgbench(name, "-i", "-s", "1", "--no-vacuum", "-q")
		ibextest.Exec(t, d.DSN, `CREATE TABLE ev (src int, n bigint, v text NOT NULL, PRIMARY KEY (src, n)); CREATE SEQUENCE ev_n`)
		e.must(ibextest.AddDBArgs(name, d.Conn)...)
	}
	e.must("add", "table", "pgbench_accounts", "pgbench_branches", "pgbench_tellers", "ev", "db=a", "herd=h")
	e.must("add", "sync", "s", "herd=h", "dbs=a:source,b:source,c:target")
	e.must("update", "sync", "s", "batch_size=500")
	e.must("kick", "s")
	t.Logf("setup: %s", time.Since(t0))

	// The backlog: uniquely keyed rows on both sources, and overlapping balance updates.
	ibextest.Exec(t, dsns["a"], fmt.Sprintf(`INSERT INTO ev SELECT 1, nextval('ev_n'), 'bulk' FROM generate_series(1, %d) g;
UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid %% 10 = 0`, backlog))
	ibextest.Exec(t, dsns["b"], fmt.Sprintf(`INSERT INTO ev SELECT 2, nextval('ev_n'), 'bulk' FROM generate_series(1, %d) g;
UPDATE pgbench_accounts SET abalance = abalance - 1 WHERE aid %% 14 = 0`, backlog))

	// Writers on both sources for the whole time the runs are being killed.
	script := filepath.Join(t.TempDir(), "writer.sql")
	if err := os.WriteFile(script, []byte(writerScript), 0o644); err != nil {
		t.Fatal(err)
	}
	const perClient = 400
	type writer struct {
		cmd *exec.Cmd
		out strings.Builder
	}
	var writers []*writer
	for i, name := range []string{"a", "b"} {
		w := &writer{cmd: e.ctl.PgbenchCmd(name, "-n", "-f", script, "-c", "2", "-j", "2", "-R", "300", "-t", strconv.Itoa(perClient), "-D", fmt.Sprintf("src=%d", i+1))}
		w.cmd.Stdout, w.cmd.Stderr = &w.out, &w.out
		if err := w.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		writers = append(writers, w)
	}

	// Kick and SIGKILL at several points of the run: early (connecting, reading the
	// backlog), once a first batch has committed on c, and later in the apply.
	ctlEnv := append(os.Environ(), "IBEX_DSN="+e.dsn)
	balance := func() string { return ibextest.One(t, dsns["c"], `SELECT sum(abalance)::text FROM pgbench_accounts`) }
	type killPoint struct {
		name string
		wait func()
	}
	sleep := func(d time.Duration) func() { return func() { time.Sleep(d) } }
	points := []killPoint{
		{"after 50ms", sleep(50 * time.Millisecond)},
		{"after 150ms", sleep(150 * time.Millisecond)},
		{"after 400ms", sleep(400 * time.Millisecond)},
		{"after a first batch committed on c", func() {
			before := balance()
			ibextest.WaitFor(t, "a batch to reach c", 60*time.Second, func() bool { return balance() != before })
		}},
		{"after a batch committed on c, plus 1s", func() {
			before := balance()
			ibextest.WaitFor(t, "a batch to reach c", 60*time.Second, func() bool { return balance() != before })
			time.Sleep(time.Second)
		}},
	}
	var midApply int
	for _, p := range points {
		cmd := exec.Command(bin, "kick", "s")
		cmd.Env = ctlEnv
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		started := time.Now()
		p.wait()
		_ = cmd.Process.Signal(syscall.SIGKILL)
		p.name += fmt.Sprintf(" (%s)", time.Since(started).Round(time.Millisecond))
		err := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			if strings.HasPrefix(p.name, "after a") {
				midApply++
			}
			t.Logf("kick killed %s (%d changes captured on a)", p.name, count(t, dsns["a"], `ibex."s.public.ev"`))
		} else {
			t.Logf("kick ended by itself before being killed %s: %v\n%s", p.name, err, out.String())
		}
	}
	if midApply == 0 {
		t.Fatal("no kick was killed in the middle of its apply")
	}
	for _, w := range writers {
		if err := w.cmd.Wait(); err != nil {
			t.Fatalf("pgbench: %v\n%s", err, w.out.String())
		}
	}

	// The killed processes' sessions end (the server sees the sockets close); their runs
	// are still recorded as running until the next run closes them.
	ibextest.WaitFor(t, "the killed runs' sessions to end", 30*time.Second, func() bool {
		return ibextest.One(t, e.ctl.DSN("postgres"), `SELECT count(*)::text FROM pg_stat_activity WHERE application_name = 'ibex'`) == "0"
	})

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "kick", "s")
	cmd.Env = ctlEnv
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "Kick s: Good.") {
		t.Fatalf("the completing kick: %v\n%s", err, out)
	}
	t.Logf("completing run: %s", strings.TrimSpace(string(out)))

	for _, tbl := range []string{"pgbench_accounts", "pgbench_branches", "pgbench_tellers"} {
		ibextest.SameEverywhere(t, tbl, "", dsns)
	}
	ibextest.SameEverywhere(t, "ev", "", dsns)
	for src := 1; src <= 2; src++ {
		for db, dsn := range dsns {
			got := ibextest.One(t, dsn, `SELECT count(*)::text FROM ev WHERE src = $1`, src)
			if want := strconv.Itoa(backlog + 2*perClient); got != want {
				t.Errorf("db %s has %s rows of source %d, want %s", db, got, src, want)
			}
		}
	}
	rs := runRows(t, e.dsn, "s")
	died := 0
	for _, r := range rs {
		switch {
		case r.State == control.StateRunning:
			t.Errorf("run %d is still recorded as running", r.ID)
		case r.State == control.StateBad && strings.Contains(r.Error, "died"):
			died++
		}
	}
	if died == 0 {
		t.Errorf("no run is recorded as died: %+v", rs)
	}
	out, err = exec.Command(bin, "kick", "s", "--dsn", e.dsn).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "Kick s: Empty.") {
		t.Errorf("the kick after the completing run: %v\n%s", err, out)
	}
}
