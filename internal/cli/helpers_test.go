package cli_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/cli"
	"github.com/ibexrepl/ibex/internal/ibextest"
	"github.com/ibexrepl/ibex/internal/pgtest"
)

// The tests run the ibex command line in-process with cli.Main. They pass the control
// database with --dsn rather than IBEX_DSN so that they can run in parallel (t.Setenv
// forbids t.Parallel); TestIBEXDSN checks that IBEX_DSN works the same.

func TestMain(m *testing.M) {
	// The tests mostly wait for PostgreSQL (CREATE DATABASE, DDL, commits), not the CPU:
	// unless -parallel is given, run more of them at once than GOMAXPROCS.
	flag.Parse()
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if !given {
		_ = flag.Set("test.parallel", "4")
	}
	code := m.Run()
	dropPgbenchTemplate()
	os.Exit(code)
}

// result is what one ibex command did.
type result struct {
	Out, Err string
	Code     int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout:\n%s--- stderr:\n%s", r.Code, r.Out, r.Err)
}

// ibex runs one ibex command against the control database dsn.
func ibex(t testing.TB, dsn string, args ...string) result {
	t.Helper()
	st := time.Now()
	out, errs, code := ibextest.Ibex(dsn, args...)
	if os.Getenv("IBEX_TEST_TIMING") != "" {
		t.Logf("%6.0fms ibex %s", float64(time.Since(st).Microseconds())/1000, strings.Join(args, " "))
	}
	return result{Out: out, Err: errs, Code: code}
}

// mainNoDSN runs ibex without --dsn (IBEX_DSN or PG* name the control database).
func mainNoDSN(a []string, stdout, stderr io.Writer) int { return cli.Main(a, stdout, stderr) }

// ok runs an ibex command that must succeed and returns its standard output.
func ok(t testing.TB, dsn string, args ...string) string {
	t.Helper()
	r := ibex(t, dsn, args...)
	if r.Code != 0 {
		t.Fatalf("ibex %s: %s", strings.Join(args, " "), r)
	}
	return r.Out
}

// refused runs an ibex command that must fail with exit code code and an error message
// containing every one of parts; it returns the message.
func refused(t testing.TB, dsn string, code int, args []string, parts ...string) string {
	t.Helper()
	r := ibex(t, dsn, args...)
	if r.Code != code {
		t.Errorf("ibex %s: want exit %d, got %s", strings.Join(args, " "), code, r)
		return r.Err
	}
	// The error is the last line (log lines may come before it).
	lines := strings.Split(strings.TrimSuffix(r.Err, "\n"), "\n")
	if !strings.HasPrefix(lines[len(lines)-1], "ibex: ") {
		t.Errorf("ibex %s: the error should be a line starting with \"ibex: \": %q", strings.Join(args, " "), r.Err)
	}
	for _, p := range parts {
		if !strings.Contains(r.Err, p) {
			t.Errorf("ibex %s: the error should contain %q:\n%s", strings.Join(args, " "), p, r.Err)
		}
	}
	return r.Err
}

func args(a ...string) []string { return a }

// refusal is a command that must be refused (see refused).
type refusal struct {
	code  int
	args  []string
	parts []string
}

func rf(code int, a []string, parts ...string) refusal { return refusal{code, a, parts} }

// refuseAll runs refused commands a few at a time: they change nothing (the callers check
// that after), so their order does not matter, and each mostly waits for the server.
// Commands whose transactions write the same rows before they fail must not be run
// together (they could deadlock): give those to refused one by one.
func refuseAll(t testing.TB, dsn string, rs ...refusal) {
	t.Helper()
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			refused(t, dsn, r.code, r.args, r.parts...)
		}()
	}
	wg.Wait()
}

// newControl makes a control database with the ibex schema installed.
func newControl(t testing.TB) *pgtest.DB {
	t.Helper()
	db := pgtest.NewDB(t, "")
	ok(t, db.DSN, "install")
	return db
}

// newControlWith makes a control database that also holds user tables (sql): databases
// cost the server much (creating, and dropping above all), and a test that installs no
// capture can read its tables from the control database itself.
func newControlWith(t testing.TB, sql string) *pgtest.DB {
	t.Helper()
	db := newDB(t, sql)
	ok(t, db.DSN, "install")
	return db
}

// newDB makes a database and runs sql in it.
func newDB(t testing.TB, sql string) *pgtest.DB {
	t.Helper()
	db := pgtest.NewDB(t, "")
	if sql != "" {
		ibextest.Exec(t, db.DSN, sql)
	}
	return db
}

// controlDump is the whole content of the control schema as text, table by table.
func controlDump(t testing.TB, dsn string) string {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connecting to %s: %v", dsn, err)
	}
	defer c.Close(ctx)
	rs, err := c.Query(ctx, `SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'ibex' AND c.relkind = 'r' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rs, pgx.RowTo[string])
	if err != nil || len(tables) == 0 {
		t.Fatalf("listing the control tables: %v %v", tables, err)
	}
	var parts []string
	for _, tb := range tables {
		parts = append(parts, fmt.Sprintf(`SELECT %s AS t, x::text AS r FROM ibex.%s x`, quoteLit(tb), pgx.Identifier{tb}.Sanitize()))
	}
	rs, err = c.Query(ctx, strings.Join(parts, " UNION ALL ")+" ORDER BY 1, 2")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	last := ""
	for rs.Next() {
		var tb, r string
		if err := rs.Scan(&tb, &r); err != nil {
			t.Fatal(err)
		}
		if tb != last {
			fmt.Fprintf(&b, "== %s\n", tb)
			last = tb
		}
		b.WriteString(r + "\n")
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func quoteLit(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// state is what "changes nothing" compares: ibex export and every control table.
func state(t testing.TB, dsn string) string {
	t.Helper()
	return ok(t, dsn, "export") + controlDump(t, dsn)
}

// unchanged fails the test when the control database's state differs from before.
func unchanged(t testing.TB, dsn, before, what string) {
	t.Helper()
	if after := state(t, dsn); after != before {
		t.Errorf("%s changed the control database:\n--- before\n%s\n--- after\n%s", what, before, after)
	}
}

// triggers lists "table trigger" of the user triggers in a database.
func triggers(t testing.TB, dsn string) []string {
	t.Helper()
	var out []string
	for _, r := range ibextest.Rows(t, dsn, `SELECT tgrelid::regclass::text || ' ' || tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1`) {
		out = append(out, r[0])
	}
	return out
}

// ibexTables lists the tables in schema ibex of a (non-control) database.
func ibexTables(t testing.TB, dsn string) []string {
	t.Helper()
	var out []string
	for _, r := range ibextest.Rows(t, dsn, `SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'ibex' AND c.relkind = 'r' ORDER BY 1`) {
		out = append(out, r[0])
	}
	return out
}

// ---- a pgbench -i template, made once per test process and cloned by pgbenchDB

var pgbenchTpl struct {
	once sync.Once
	name string
	err  error
}

// pgbenchDB makes a database as 'pgbench -i -s 1' leaves it (a clone of a template made
// once with pgtest.Pgbench's settings).
func pgbenchDB(t testing.TB) *pgtest.DB {
	t.Helper()
	pgbenchTpl.once.Do(func() {
		ctx := context.Background()
		c, err := pgx.Connect(ctx, pgtest.AdminDSN())
		if err != nil {
			pgbenchTpl.err = err
			return
		}
		defer c.Close(ctx)
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		name := "ibt_cli_pgbench_tpl_" + hex.EncodeToString(b)
		if _, err := c.Exec(ctx, "CREATE DATABASE "+name); err != nil {
			pgbenchTpl.err = err
			return
		}
		pgbenchTpl.name = name
		cfg := c.Config()
		cmd := exec.Command("pgbench", "-i", "-q", "-s", "1", name)
		cmd.Env = append(os.Environ(), "PGHOST="+cfg.Host, fmt.Sprintf("PGPORT=%d", cfg.Port), "PGUSER="+cfg.User)
		if out, err := cmd.CombinedOutput(); err != nil {
			pgbenchTpl.err = fmt.Errorf("pgbench -i: %v\n%s", err, out)
		}
	})
	if pgbenchTpl.err != nil {
		t.Fatalf("making the pgbench template: %v", pgbenchTpl.err)
	}
	return pgtest.NewDB(t, pgbenchTpl.name)
}

func dropPgbenchTemplate() {
	if pgbenchTpl.name == "" {
		return
	}
	ctx := context.Background()
	c, err := pgx.Connect(ctx, pgtest.AdminDSN())
	if err != nil {
		return
	}
	defer c.Close(ctx)
	_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgbenchTpl.name+" WITH (FORCE)")
}

// checkMovedSource checks that sync s (table accounts, source a, target dst) captures on
// moved, the database db a was moved to: a row written there reaches dst with a kick.
func checkMovedSource(t *testing.T, ctl, moved, dst *pgtest.DB) {
	t.Helper()
	if trigs, cts := captureOf(t, moved, "s"); !slices.Contains(trigs, "accounts ibex_s") || !slices.Contains(cts, "s.public.accounts") {
		t.Errorf("sync s has no capture on a's new database: %v %v", trigs, cts)
	}
	ibextest.Exec(t, moved.DSN, `INSERT INTO accounts (id) VALUES (424242)`)
	if out := ok(t, ctl.DSN, "kick", "s"); !strings.HasPrefix(out, "Kick s: Good.") {
		t.Errorf("kick after the move: %s", out)
	}
	if n := ibextest.Rows(t, dst.DSN, `SELECT id::text FROM accounts WHERE id = 424242`); len(n) != 1 {
		t.Errorf("the row written on a's new database did not reach b: %v", n)
	}
}
