package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/internal/scheduler/schedtest"
)

const runAsScheduler = "IBEX_TEST_RUN_SCHEDULER"

// TestMain lets the test binary be the scheduler process of TestSIGTERM.
func TestMain(m *testing.M) {
	if os.Getenv(runAsScheduler) == "1" {
		os.Args = append([]string{"scheduler"}, os.Args[1:]...)
		main()
		return
	}
	os.Exit(m.Run())
}

func TestFlags(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "--shutdown-timeout") || !strings.Contains(out.String(), "Exit codes") {
		t.Errorf("--help: exit %d\n%s", code, out.String())
	}
	for _, args := range [][]string{{"--nope"}, {"extra"}, {"--reload", "0s"}, {"--log-format", "xml"}} {
		if code := run(context.Background(), args, io.Discard, io.Discard); code != 2 {
			t.Errorf("scheduler %q: exit %d, want 2", args, code)
		}
	}
	db := pgtest.NewDB(t, "")
	errb.Reset()
	if code := run(context.Background(), []string{"--dsn", db.DSN, "--listen", ""}, io.Discard, &errb); code != 2 || !strings.Contains(errb.String(), "ibex install") {
		t.Errorf("schema not installed: exit %d, want 2\n%s", code, errb.String())
	}
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type proc struct {
	cmd    *exec.Cmd
	logs   *bytes.Buffer
	exited chan error
}

func startBin(t *testing.T, bin, dsn string, args ...string) *proc {
	p := &proc{logs: &bytes.Buffer{}, exited: make(chan error, 1)}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), "IBEX_DSN="+dsn, runAsScheduler+"=1")
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })
	return p
}

// sigterm sends SIGTERM and waits for a clean exit.
func (p *proc) sigterm(t *testing.T) time.Duration {
	sent := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("scheduler exited with %v\n%s", err, p.logs.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("scheduler did not exit\n%s", p.logs.String())
	}
	return time.Since(sent)
}

// TestSIGTERM starts the real binary and sends SIGTERM while a run with a backlog is
// going: with a short --shutdown-timeout the run is cancelled (recorded bad, its open
// batch rolled back) and the process exits 0 at once; with the default the run ends good
// first. Either way the dbs converge.
func TestSIGTERM(t *testing.T) {
	t0 := time.Now()
	f := schedtest.New(t, 2)
	t.Logf("fixture: %s", time.Since(t0).Round(time.Millisecond))
	bin := os.Args[0] // this test binary runs main() when runAsScheduler is set (TestMain)
	f.AddSync(t, "s", "schedule=1h", "batch_size=500")
	// A backlog of 10k changed rows, so the run lasts a while.
	pgtest.Exec(t, f.DBs[0].DSN, `UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= 10000`)
	c := pgtest.Conn(t, f.DSN())
	running := func() bool {
		var n int
		_ = c.QueryRow(context.Background(), `SELECT count(*) FROM ibex.run WHERE sync = 's' AND state = 'running'`).Scan(&n)
		return n == 1
	}
	last := func() (state string, inserts int64) {
		if err := c.QueryRow(context.Background(), `SELECT state, inserts FROM ibex.run WHERE sync = 's' ORDER BY id DESC LIMIT 1`).Scan(&state, &inserts); err != nil {
			t.Fatal(err)
		}
		return
	}

	// 1. --shutdown-timeout 200ms: the run is cancelled.
	p := startBin(t, bin, f.DSN(), "--listen", "", "--shutdown-timeout", "200ms")
	if _, ok := schedtest.WaitFor(10*time.Second, running); !ok {
		t.Fatalf("no run started\n%s", p.logs.String())
	}
	d := p.sigterm(t)
	state, inserts := last()
	t.Logf("short timeout: exited %s after SIGTERM; the run ended %s after %d inserts", d.Round(time.Millisecond), state, inserts)
	if state == "running" {
		t.Errorf("the cancelled run was not recorded\n%s", p.logs.String())
	}
	if d > 10*time.Second {
		t.Errorf("took %s to exit with --shutdown-timeout 200ms", d)
	}

	// 2. Default timeout: the run finishes.
	addr := freePort(t)
	p = startBin(t, bin, f.DSN(), "--listen", addr, "--reload", "1s", "--log-level", "verbose")
	if _, ok := schedtest.WaitFor(10*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}); !ok {
		t.Fatalf("/healthz never answered\n%s", p.logs.String())
	}
	if _, ok := schedtest.WaitFor(10*time.Second, running); !ok {
		t.Fatalf("no run started\n%s", p.logs.String())
	}
	d = p.sigterm(t)
	state, inserts = last()
	t.Logf("default timeout: exited %s after SIGTERM; the run ended %s with %d inserts", d.Round(time.Millisecond), state, inserts)
	if state != "good" || inserts == 0 {
		t.Errorf("the run in progress at SIGTERM ended %s with %d inserts, want good\n%s", state, inserts, p.logs.String())
	}
	if !strings.Contains(p.logs.String(), "shutting down") {
		t.Errorf("no shutdown message in the logs:\n%s", p.logs.String())
	}
	if ok, which := f.Same(t); !ok {
		t.Error(fmt.Sprint("not converged: ", which))
	}
}
