// Package faults holds ibex's fault-injection tests: dbs that go down, network faults
// between ibex and a db, jobs killed mid-run, concurrent runs, bad input, least
// privilege, secrets and hostile identifiers. Each test runs on clusters of its own
// (pgtest.StartCluster), so they run in parallel with each other and with the rest of
// the suite.
package faults

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/ibextest"
	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/job"
)

var (
	buildOnce sync.Once
	binDir    string // where ibexBinary built the ibex command; removed by TestMain
	buildPath string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// ibexBinary builds cmd/ibex once per test process and returns its path.
func ibexBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "ibex-faults-bin-")
		if buildErr != nil {
			return
		}
		goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goBin); err != nil {
			goBin = "go"
		}
		buildPath = filepath.Join(binDir, "ibex")
		out, err := exec.Command(goBin, "build", "-o", buildPath, "github.com/ibexrepl/ibex/cmd/ibex").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/ibex: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// env is an ibex installation: a control database on a cluster of its own.
type env struct {
	t   testing.TB
	ctl *pgtest.Cluster
	dsn string // control database
}

// newEnv starts a cluster, creates the control database ibexctl on it and installs the
// control schema.
func newEnv(t testing.TB, opts pgtest.ClusterOptions) *env {
	t.Helper()
	c := pgtest.StartCluster(t, opts)
	c.CreateDB("ibexctl")
	e := &env{t: t, ctl: c, dsn: c.DSN("ibexctl")}
	e.must("install")
	return e
}

// as returns the env reporting to t (a fuzz target's T, a subtest).
func (e *env) as(t testing.TB) *env {
	c := *e
	c.t = t
	return &c
}

// run runs one ibex command in process against the control database and returns its
// output and exit code.
func (e *env) run(args ...string) (stdout, stderr string, code int) {
	return ibextest.Ibex(e.dsn, args...)
}

// must runs an ibex command and fails the test unless it exits 0.
func (e *env) must(args ...string) string {
	e.t.Helper()
	out, errOut, code := e.run(args...)
	if code != 0 {
		e.t.Fatalf("ibex %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// store opens the control database as a job's caller would.
func (e *env) store() *control.Store {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := control.Open(ctx, e.dsn, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(s.Close)
	return s
}

// kick runs a sync in process with job.Run and returns its result (never nil).
func kick(t testing.TB, ctx context.Context, s *control.Store, sync string, opts job.Options) (*job.Result, error) {
	t.Helper()
	res, err := job.Run(ctx, s, sync, opts)
	if res == nil {
		t.Fatalf("job.Run(%s) could not start: %v", sync, err)
	}
	return res, err
}

// mustState runs a sync in process and fails unless its state is want.
func mustState(t testing.TB, s *control.Store, sync string, opts job.Options, want string) *job.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	res, err := kick(t, ctx, s, sync, opts)
	if res.State != want {
		t.Fatalf("run of %s: state %q, want %q (err %v); result %+v", sync, res.State, want, err, res)
	}
	return res
}

// count returns the number of rows of table (a quoted identifier, or more SQL after it).
func count(t testing.TB, dsn, table string) int {
	t.Helper()
	n, err := strconv.Atoi(ibextest.One(t, dsn, "SELECT count(*)::text FROM "+table))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// runRow is one row of ibex.run.
type runRow struct {
	ID      int64
	State   string
	Started time.Time
	Ended   *time.Time
	Error   string
}

func runRows(t testing.TB, dsn, sync string) []runRow {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	rs, err := c.Query(ctx, `SELECT id, state, started, ended, error FROM ibex.run WHERE sync = $1 ORDER BY id`, sync)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rs, func(r pgx.CollectableRow) (runRow, error) {
		var x runRow
		err := r.Scan(&x.ID, &x.State, &x.Started, &x.Ended, &x.Error)
		return x, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func contains(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}
