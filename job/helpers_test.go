package job_test

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/capture"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/ibextest"
	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/job"
)

// cluster is what one test works with: a control database, the dbs of its sync, and the
// schema its tables are in. Its herd and dbgroup are named like its sync.
type cluster struct {
	t      *testing.T
	ctl    *pgtest.DB
	store  *control.Store
	sync   string
	schema string                // where the test's tables are
	farm   *farm                 // the shared databases
	dbs    map[string]*pgtest.DB // by ibex db name
	names  []string              // ibex db names of the test, in order
	conns  map[string]*pgx.Conn  // cached, main test goroutine only
	start  time.Time
}

// logf logs with the time since the test began (to see where time goes).
func (c *cluster) logf(format string, args ...any) {
	c.t.Helper()
	c.t.Logf("%6.2fs "+format, append([]any{time.Since(c.start).Seconds()}, args...)...)
}

func (c *cluster) open() {
	store, err := control.Open(context.Background(), c.ctl.DSN, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(store.Close)
	c.store = store
	c.t.Cleanup(func() {
		for _, cn := range c.conns {
			_ = cn.Close(context.Background())
		}
	})
}

// farm is a control database and five dbs t1..t5 shared by the tests that need only
// tables of their own: each works in a schema of its own, with its own herd, dbgroup and
// sync. The dbs t2 and t3 have default settings (datestyle, timezone, bytea_output,
// intervalstyle, extra_float_digits) that print values differently from the others.
type farm struct {
	ctl *pgtest.DB
	dbs map[string]*pgtest.DB
	// role is a plain role (not superuser) with CREATE on the dbs and USAGE, CREATE on their
	// schema ibex (as if it had created it).
	role string
	// mu serialises the commands that install capture (concurrent GRANTs on the same
	// schema can fail with "tuple concurrently updated").
	mu sync.Mutex
}

func newFarm(t *testing.T) *farm {
	var rb [4]byte
	_, _ = crand.Read(rb[:])
	role := "ibt_owner_" + hex.EncodeToString(rb[:])
	admin := pgtest.Conn(t, pgtest.AdminDSN())
	if _, err := admin.Exec(context.Background(), `CREATE ROLE `+role+` LOGIN`); err != nil {
		t.Fatal(err)
	}
	// Registered before the databases are created, so it runs after they are dropped.
	t.Cleanup(func() {
		cn, err := pgx.Connect(context.Background(), pgtest.AdminDSN())
		if err != nil {
			return
		}
		defer cn.Close(context.Background())
		_, _ = cn.Exec(context.Background(), `DROP ROLE IF EXISTS `+role)
	})
	f := &farm{ctl: pgtest.NewDB(t, ""), dbs: map[string]*pgtest.DB{}, role: role}
	c := &cluster{t: t, ctl: f.ctl, schema: "public", dbs: map[string]*pgtest.DB{}, conns: map[string]*pgx.Conn{}}
	c.ibex("install")
	for i := 1; i <= 5; i++ {
		name := fmt.Sprintf("t%d", i)
		db := pgtest.NewDB(t, "")
		ident := pgx.Identifier{db.Name}.Sanitize()
		ibextest.Exec(c.t, db.DSN, `CREATE SCHEMA ibex; GRANT CREATE ON DATABASE `+ident+` TO `+role+`; GRANT USAGE, CREATE ON SCHEMA ibex TO `+role+`; GRANT USAGE ON SCHEMA ibex TO PUBLIC`)
		if i == 2 || i == 3 {
			ibextest.Exec(c.t, db.DSN, `ALTER DATABASE `+ident+` SET datestyle = 'SQL, DMY'; ALTER DATABASE `+ident+` SET timezone = 'Asia/Kolkata';
ALTER DATABASE `+ident+` SET bytea_output = 'escape'; ALTER DATABASE `+ident+` SET intervalstyle = 'sql_standard';
ALTER DATABASE `+ident+` SET extra_float_digits = -3`)
		}
		c.addDB(name, db)
		f.dbs[name] = db
	}
	return f
}

// pgbenchInit runs pgbench -i -s 1 in the test's schema on each of its dbs, at once: the
// same deterministic content everywhere.
func (c *cluster) pgbenchInit() {
	c.t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(c.names))
	for i, n := range c.names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = pgbench(c.dbs[n], c.schema, "-i", "-q", "-s", "1", "-I", "dtGvp")
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			c.t.Fatal(err)
		}
	}
}

// cluster gives a test of the farm its schema (named like the test, also its sync's
// name) on dbs t1..tn.
func (f *farm) cluster(t *testing.T, name string, n int) *cluster {
	t.Helper()
	c := &cluster{start: time.Now(), t: t, ctl: f.ctl, sync: name, schema: name, farm: f, dbs: map[string]*pgtest.DB{}, conns: map[string]*pgx.Conn{}}
	c.open()
	for i := 1; i <= n; i++ {
		db := fmt.Sprintf("t%d", i)
		c.dbs[db] = f.dbs[db]
		c.names = append(c.names, db)
		c.on(db, `CREATE SCHEMA `+pgx.Identifier{name}.Sanitize())
	}
	return c
}

// q qualifies a table name (as typed on the command line) with the test's schema.
func (c *cluster) q(table string) string {
	if c.schema == "public" {
		return table
	}
	return c.schema + "." + table
}

// qual is the table name as ibex reports it (schema.table).
func (c *cluster) qual(table string) string { return c.schema + "." + table }

// onAll runs sql on every db of the test.
func (c *cluster) onAll(sql string, args ...any) {
	c.t.Helper()
	for _, n := range c.names {
		c.on(n, sql, args...)
	}
}

// ibexCmd runs one ibex command in process and returns its exit code and output.
func (c *cluster) ibexCmd(args ...string) (int, string, string) {
	if c.farm != nil && len(args) > 1 && (args[0] == "add" || args[0] == "update" || args[0] == "validate" || args[0] == "remove" || args[0] == "ddl") {
		c.farm.mu.Lock()
		defer c.farm.mu.Unlock()
	}
	out, errs, code := ibextest.Ibex(c.ctl.DSN, args...)
	return code, out, errs
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

func (c *cluster) addDB(name string, db *pgtest.DB) {
	c.t.Helper()
	// Commits need not wait for the disk in tests: visibility is the same, tests are faster.
	ibextest.Exec(c.t, db.DSN, "ALTER DATABASE "+pgx.Identifier{db.Name}.Sanitize()+" SET synchronous_commit = off")
	c.ibex(ibextest.AddDBArgs(name, db.Conn)...)
	c.dbs[name] = db
	c.names = append(c.names, name)
}

// addAsRole adds the farm's dbs t1..tn to ibex as prefix1..prefixn, reached as the farm's
// plain role (not superuser), and returns their names.
func (c *cluster) addAsRole(f *farm, prefix string, n int) []string {
	c.t.Helper()
	var names []string
	for i := 1; i <= n; i++ {
		db := f.dbs[fmt.Sprintf("t%d", i)]
		as := *db
		as.Conn = map[string]string{"dbname": db.Name, "host": db.Conn["host"], "port": db.Conn["port"], "user": f.role}
		as.DSN = strings.Replace(db.DSN, "user="+db.Conn["user"], "user="+f.role, 1)
		name := fmt.Sprintf("%s%d", prefix, i)
		c.ibex(ibextest.AddDBArgs(name, as.Conn)...)
		c.dbs[name] = &as
		c.names = append(c.names, name)
		names = append(names, name)
	}
	return names
}

// configure adds tables (in the test's schema, read on its first db) to a herd, a
// dbgroup with members and the sync with options, all three named like the sync.
func (c *cluster) configure(tables, members []string, opts ...string) {
	c.t.Helper()
	var qs []string
	for _, tb := range tables {
		if strings.Contains(tb, `"."`) || (!strings.Contains(tb, `"`) && strings.Contains(tb, ".")) {
			qs = append(qs, tb) // already qualified
		} else {
			qs = append(qs, c.q(tb))
		}
	}
	c.ibex(append(append([]string{"add", "table"}, qs...), "db="+c.names[0], "herd="+c.sync)...)
	c.ibex(append([]string{"add", "dbgroup", c.sync}, members...)...)
	c.ibex(append([]string{"add", "sync", c.sync, "herd=" + c.sync, "dbs=" + c.sync, "autokick=false"}, opts...)...)
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
	cn, err := pgx.Connect(context.Background(), c.dsn(db))
	if err != nil {
		c.t.Fatal(err)
	}
	c.conns[name] = cn
	return cn
}

// dsn is the conninfo of the test's connections to db: values print the same way on
// every db whatever its own settings, and unqualified table names are the test's.
func (c *cluster) dsn(db *pgtest.DB) string {
	return db.DSN + " timezone=UTC datestyle='ISO, MDY' intervalstyle=postgres bytea_output=hex extra_float_digits=3 search_path=" + c.schema
}

// on runs sql on db name.
func (c *cluster) on(name, sql string, args ...any) {
	c.t.Helper()
	if _, err := c.conn(name).Exec(context.Background(), sql, args...); err != nil {
		c.t.Fatalf("db %s: %s: %v", name, sql, err)
	}
}

// strs returns the one (text) column of every row on db name (NULL as ibextest.Null).
func (c *cluster) strs(name, sql string, args ...any) []string {
	c.t.Helper()
	return ibextest.ColumnOn(c.t, c.conn(name), sql, args...)
}

func (c *cluster) int(name, sql string, args ...any) int64 {
	c.t.Helper()
	var n int64
	if err := c.conn(name).QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		c.t.Fatalf("db %s: %s: %v", name, sql, err)
	}
	return n
}

// rows returns a table's rows on db name as text, ordered by orderBy (over alias x).
func (c *cluster) rows(name, table, orderBy string) []string {
	c.t.Helper()
	return ibextest.TableRowsOn(c.t, c.conn(name), table, orderBy)
}

// sum is the md5 of a table's rows on db name, ordered by orderBy (over alias x).
func (c *cluster) sum(name, table, orderBy string) string {
	c.t.Helper()
	return ibextest.SumOn(c.t, c.conn(name), table, orderBy).MD5
}

// sameEverywhere fails the test unless table has the same rows on every db of the test;
// it returns them (ibextest.SameEverywhere).
func (c *cluster) sameEverywhere(table, orderBy string) []string {
	c.t.Helper()
	dsns := map[string]string{}
	for _, n := range c.names {
		dsns[n] = c.dsn(c.dbs[n])
	}
	return ibextest.SameEverywhere(c.t, table, orderBy, dsns)
}

// changeTable is the quoted change table of a table (in the test's schema) of its sync.
func (c *cluster) changeTable(table string) string {
	return capture.ChangeTable(c.sync, c.schema, table).Sanitize()
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

// pgbench runs pgbench with its tables in schema (and commits that do not wait for the
// disk), and returns its error with its output (usable off the test goroutine).
func pgbench(db *pgtest.DB, schema string, args ...string) error {
	cmd := exec.Command("pgbench", append(args, db.Name)...)
	cmd.Env = append(os.Environ(), "PGHOST="+db.Conn["host"], "PGPORT="+db.Conn["port"], "PGUSER="+db.Conn["user"],
		"PGOPTIONS=-c synchronous_commit=off -c search_path="+schema)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pgbench %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}
