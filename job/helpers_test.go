package job_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/capture"
	"github.com/ibexrepl/ibex/internal/cli"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/job"
)

// cluster is one test's control database plus the dbs of one sync.
type cluster struct {
	t     *testing.T
	ctl   *pgtest.DB
	store *control.Store
	sync  string
	dbs   map[string]*pgtest.DB // by ibex db name
	names []string              // ibex db names in the order they were added
	conns map[string]*pgx.Conn  // cached, main test goroutine only
	start time.Time
}

// logf logs with the time since the test began (to see where time goes).
func (c *cluster) logf(format string, args ...any) {
	c.t.Helper()
	c.t.Logf("%6.2fs "+format, append([]any{time.Since(c.start).Seconds()}, args...)...)
}

// newCluster creates a control database with the ibex schema installed. Every test gets
// its own, so tests can run in parallel (the CLI gets --dsn, not IBEX_DSN).
func newCluster(t *testing.T, sync string) *cluster {
	t.Helper()
	c := &cluster{start: time.Now(), t: t, ctl: pgtest.NewDB(t, ""), sync: sync, dbs: map[string]*pgtest.DB{}, conns: map[string]*pgx.Conn{}}
	c.ibex("install")
	store, err := control.Open(context.Background(), c.ctl.DSN, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	c.store = store
	t.Cleanup(func() {
		for _, cn := range c.conns {
			_ = cn.Close(context.Background())
		}
	})
	return c
}

// ibexCmd runs one ibex command in process and returns its exit code and output.
func (c *cluster) ibexCmd(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := cli.Main(append([]string{"--dsn", c.ctl.DSN}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// ibex runs one ibex command and fails the test if it fails.
func (c *cluster) ibex(args ...string) string {
	c.t.Helper()
	code, out, errs := c.ibexCmd(args...)
	if code != 0 {
		c.t.Fatalf("ibex %q: exit %d\n%s%s", args, code, out, errs)
	}
	return out
}

// newDB creates a database (from template when not empty), runs setup on it and adds it
// to ibex as name.
func (c *cluster) newDB(name, template string, setup ...string) *pgtest.DB {
	c.t.Helper()
	db := pgtest.NewDB(c.t, template)
	for _, s := range setup {
		c.exec(db, s)
	}
	c.addDB(name, db)
	return db
}

func (c *cluster) addDB(name string, db *pgtest.DB) {
	c.t.Helper()
	// Commits need not wait for the disk in tests: visibility is the same, tests are faster.
	c.exec(db, "ALTER DATABASE "+pgx.Identifier{db.Name}.Sanitize()+" SET synchronous_commit = off")
	c.ibex("add", "db", name, "dbname="+db.Name, "host="+db.Conn["host"], "port="+db.Conn["port"], "user="+db.Conn["user"])
	c.dbs[name] = db
	c.names = append(c.names, name)
}

// configure adds tables (read on the first db) to herd h, dbgroup g with members and the
// sync with options.
func (c *cluster) configure(tables, members []string, opts ...string) {
	c.t.Helper()
	c.ibex(append(append([]string{"add", "table"}, tables...), "db="+c.names[0], "herd=h")...)
	c.ibex(append([]string{"add", "dbgroup", "g"}, members...)...)
	c.ibex(append([]string{"add", "sync", c.sync, "herd=h", "dbs=g", "autokick=false"}, opts...)...)
}

// conn is a cached connection to db name (for the test goroutine only).
func (c *cluster) conn(name string) *pgx.Conn {
	c.t.Helper()
	if cn := c.conns[name]; cn != nil {
		return cn
	}
	db := c.dbs[name]
	if db == nil {
		c.t.Fatalf("no db %s", name)
	}
	cn, err := pgx.Connect(context.Background(), db.DSN)
	if err != nil {
		c.t.Fatal(err)
	}
	c.conns[name] = cn
	return cn
}

// exec runs sql on a database that may not be registered (a fresh connection).
func (c *cluster) exec(db *pgtest.DB, sql string, args ...any) {
	c.t.Helper()
	cn, err := pgx.Connect(context.Background(), db.DSN)
	if err != nil {
		c.t.Fatal(err)
	}
	defer cn.Close(context.Background())
	if _, err := cn.Exec(context.Background(), sql, args...); err != nil {
		c.t.Fatalf("%s: %v", sql, err)
	}
}

// on runs sql on db name.
func (c *cluster) on(name, sql string, args ...any) {
	c.t.Helper()
	if _, err := c.conn(name).Exec(context.Background(), sql, args...); err != nil {
		c.t.Fatalf("db %s: %s: %v", name, sql, err)
	}
}

// strs returns the first column of every row as text (NULL as "<NULL>").
func (c *cluster) strs(name, sql string, args ...any) []string {
	c.t.Helper()
	rows, err := c.conn(name).Query(context.Background(), sql, args...)
	if err != nil {
		c.t.Fatalf("db %s: %s: %v", name, sql, err)
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
		c.t.Fatalf("db %s: %s: %v", name, sql, err)
	}
	return out
}

func (c *cluster) int(name, sql string, args ...any) int64 {
	c.t.Helper()
	var n int64
	if err := c.conn(name).QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		c.t.Fatalf("db %s: %s: %v", name, sql, err)
	}
	return n
}

// rows returns a table's rows as text, ordered by orderBy (over alias x).
func (c *cluster) rows(name, table, orderBy string) []string {
	c.t.Helper()
	return c.strs(name, fmt.Sprintf(`SELECT x::text FROM %s x ORDER BY %s`, table, orderBy))
}

// sum is pgtest.TableSum on a cached connection.
func (c *cluster) sum(name, table, orderBy string) string {
	c.t.Helper()
	var s string
	q := fmt.Sprintf(`SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY %s), '')) FROM %s x`, orderBy, table)
	if err := c.conn(name).QueryRow(context.Background(), q).Scan(&s); err != nil {
		c.t.Fatalf("db %s: summing %s: %v", name, table, err)
	}
	return s
}

// sameEverywhere fails unless table has the same content on every db; it returns the
// content of the first.
func (c *cluster) sameEverywhere(table, orderBy string) []string {
	c.t.Helper()
	ref := c.rows(c.names[0], table, orderBy)
	for _, n := range c.names[1:] {
		got := c.rows(n, table, orderBy)
		if !slices.Equal(ref, got) {
			c.t.Errorf("table %s differs between %s and %s:\n%s", table, c.names[0], n, diffLines(ref, got))
		}
	}
	return ref
}

// diffLines is a short description of how two row lists differ.
func diffLines(a, b []string) string {
	inA := map[string]int{}
	for _, s := range a {
		inA[s]++
	}
	inB := map[string]int{}
	for _, s := range b {
		inB[s]++
	}
	var out []string
	for _, s := range a {
		if inB[s] == 0 {
			out = append(out, "- "+clip(s))
		} else {
			inB[s]--
		}
	}
	for _, s := range b {
		if inA[s] == 0 {
			out = append(out, "+ "+clip(s))
		} else {
			inA[s]--
		}
	}
	if len(out) > 20 {
		out = append(out[:20], fmt.Sprintf("... (%d lines differ)", len(out)))
	}
	return fmt.Sprintf("%d vs %d rows\n%s", len(a), len(b), strings.Join(out, "\n"))
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + fmt.Sprintf("...(%d bytes)", len(s))
	}
	return s
}

// changeTable is the quoted change table of a table of the cluster's sync.
func (c *cluster) changeTable(schema, table string) string {
	return capture.ChangeTable(c.sync, schema, table).Sanitize()
}

// run runs the sync once.
func (c *cluster) run(ctx context.Context, opts job.Options) (*job.Result, error) {
	return job.Run(ctx, c.store, c.sync, opts)
}

// mustRun runs the sync and fails unless it ends in state want without error (want
// "bad": with an error).
func (c *cluster) mustRun(want string, opts job.Options) *job.Result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := c.run(ctx, opts)
	if res == nil {
		c.t.Fatalf("run of %s could not start: %v", c.sync, err)
	}
	if res.State != want {
		c.t.Fatalf("run of %s: state %q, want %q (error %v; %s)", c.sync, res.State, want, err, res.Summary())
	}
	if (err != nil) != (want == control.StateBad) {
		c.t.Fatalf("run of %s: state %s, error %v", c.sync, res.State, err)
	}
	return res
}

// counts is the I/D/C of a result, for comparisons.
type counts struct{ I, D, C int64 }

func countsOf(r *job.Result) counts { return counts{r.Inserts, r.Deletes, r.Conflicts} }

// runningRuns counts runs of the sync still recorded as running.
func (c *cluster) runningRuns() int64 {
	c.t.Helper()
	var n int64
	if err := c.store.Pool.QueryRow(context.Background(), `SELECT count(*) FROM ibex.run WHERE sync = $1 AND state = 'running'`, c.sync).Scan(&n); err != nil {
		c.t.Fatal(err)
	}
	return n
}

// pgbench runs pgbench and returns its error with its output (usable off the test goroutine).
func pgbench(db *pgtest.DB, args ...string) error {
	cmd := exec.Command("pgbench", append(args, db.Name)...)
	cmd.Env = append(os.Environ(), "PGHOST="+db.Conn["host"], "PGPORT="+db.Conn["port"], "PGUSER="+db.Conn["user"],
		"PGOPTIONS=-c synchronous_commit=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pgbench %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}
