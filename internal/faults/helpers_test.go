// Package faults holds ibex's fault-injection tests: dbs that go down, network faults
// between ibex and a db, jobs killed mid-run, concurrent runs, bad input, least
// privilege, secrets and hostile identifiers. Each test runs on clusters of its own
// (pgtest.StartCluster), so they run in parallel with each other and with the rest of
// the suite.
package faults

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/cli"
	"github.com/ibexrepl/ibex/internal/control"
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
	return runCLI(e.dsn, args...)
}

func runCLI(dsn string, args ...string) (stdout, stderr string, code int) {
	var o, er bytes.Buffer
	if dsn != "" {
		args = append(slices.Clone(args), "--dsn", dsn)
	}
	code = cli.Main(args, &o, &er)
	return o.String(), er.String(), code
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

// dbArgs renders libpq keywords as ibex add db arguments.
func dbArgs(conn map[string]string) []string {
	var out []string
	for k, v := range conn {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

// exec runs SQL on dsn on a connection of its own.
func execSQL(t testing.TB, dsn, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connecting to run %q: %v", sql, err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// query returns the first column of every row as text.
func query(t testing.TB, dsn, sql string, args ...any) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connecting to run %q: %v", sql, err)
	}
	defer c.Close(context.Background())
	rows, err := c.Query(ctx, sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var s *string
		err := r.Scan(&s)
		if s == nil {
			return "<NULL>", err
		}
		return *s, err
	})
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

func queryOne(t testing.TB, dsn, sql string, args ...any) string {
	t.Helper()
	r := query(t, dsn, sql, args...)
	if len(r) != 1 {
		t.Fatalf("%s: %d rows, want 1", sql, len(r))
	}
	return r[0]
}

// count returns the number of rows of table (a quoted identifier, or more SQL after it).
func count(t testing.TB, dsn, table string) int {
	t.Helper()
	n, err := strconv.Atoi(queryOne(t, dsn, "SELECT count(*)::text FROM "+table))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// rows returns a table's rows as text, ordered. table is a quoted identifier.
func rows(t testing.TB, dsn, table string) []string {
	t.Helper()
	return query(t, dsn, fmt.Sprintf(`SELECT ROW(x.*)::text FROM %s x ORDER BY ROW(x.*)::text COLLATE "C"`, table))
}

// summary is a table's row count and content digest on one db.
type summary struct {
	Count int64
	MD5   string
}

func sum(t testing.TB, dsn, table string) summary {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var s summary
	err = c.QueryRow(ctx, fmt.Sprintf(`SELECT count(*), md5(coalesce(string_agg(ROW(x.*)::text, '|' ORDER BY ROW(x.*)::text COLLATE "C"), '')) FROM %s x`, table)).Scan(&s.Count, &s.MD5)
	if err != nil {
		t.Fatalf("summing %s: %v", table, err)
	}
	return s
}

// sameEverywhere fails unless table has identical content on every dsn (named), and
// returns that content's summary.
func sameEverywhere(t testing.TB, table string, dsns map[string]string) summary {
	t.Helper()
	var names []string
	for n := range dsns {
		names = append(names, n)
	}
	slices.Sort(names)
	ref := sum(t, dsns[names[0]], table)
	for _, n := range names[1:] {
		if got := sum(t, dsns[n], table); got != ref {
			a, b := rows(t, dsns[names[0]], table), rows(t, dsns[n], table)
			diff := cmp.Diff(a, b)
			if len(diff) > 4000 {
				diff = diff[:4000] + "\n..."
			}
			t.Fatalf("table %s differs between db %s (%d rows) and db %s (%d rows) (-%s +%s):\n%s", table, names[0], ref.Count, n, got.Count, names[0], n, diff)
		}
	}
	return ref
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

// waitFor polls cond until it is true or the timeout passes.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func contains(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}
