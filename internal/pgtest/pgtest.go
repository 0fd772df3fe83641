// Package pgtest gives tests real PostgreSQL databases: uniquely named databases on the
// test server (IBEX_TEST_DSN, else the PG* variables, else 127.0.0.1:5432 user postgres),
// dropped when the test ends. Tests fail, not skip, when no server answers, unless
// IBEX_TEST_SKIP_DB=1.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Benchmark skips t unless IBEX_BENCH=1: tests that measure rather than check stay out of
// make test.
func Benchmark(t testing.TB) {
	t.Helper()
	if os.Getenv("IBEX_BENCH") != "1" {
		t.Skip("a benchmark: set IBEX_BENCH=1 to run it")
	}
}

// AdminDSN is the conninfo of the test server's maintenance database.
func AdminDSN() string {
	if v := os.Getenv("IBEX_TEST_DSN"); v != "" {
		return v
	}
	if os.Getenv("PGHOST") != "" || os.Getenv("PGPORT") != "" {
		return "dbname=postgres"
	}
	return "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
}

// Conn opens a connection to dsn and closes it when the test ends.
func Conn(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		if os.Getenv("IBEX_TEST_SKIP_DB") == "1" {
			t.Skipf("no test database: %v", err)
		}
		t.Fatalf("connecting to the test database (set IBEX_TEST_DSN): %v", err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

var nameRe = regexp.MustCompile(`[^a-z0-9_]+`)

// DB is a test database.
type DB struct {
	Name string
	DSN  string
	Conn map[string]string // libpq keywords, as an ibex db would carry them
}

// NewDB creates a fresh database (from template when not empty) and drops it when the
// test ends.
func NewDB(t testing.TB, template string) *DB {
	t.Helper()
	admin := Conn(t, AdminDSN())
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	base := nameRe.ReplaceAllString(strings.ToLower(t.Name()), "_")
	if len(base) > 30 {
		base = base[len(base)-30:]
	}
	name := "ibt_" + base + "_" + hex.EncodeToString(b)
	sql := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
	if template != "" {
		sql += " TEMPLATE " + pgx.Identifier{template}.Sanitize()
	}
	ctx := context.Background()
	var err error
	for i := 0; i < 20; i++ { // a template in use by another CREATE DATABASE is busy for a moment
		if _, err = admin.Exec(ctx, sql); err == nil || !strings.Contains(err.Error(), "is being accessed by other users") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), AdminDSN())
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	})
	cfg, err := pgx.ParseConfig(AdminDSN())
	if err != nil {
		t.Fatal(err)
	}
	conn := map[string]string{"dbname": name, "host": cfg.Host, "port": fmt.Sprint(cfg.Port), "user": cfg.User}
	return &DB{Name: name, DSN: fmt.Sprintf("host=%s port=%d user=%s dbname=%s", cfg.Host, cfg.Port, cfg.User, name), Conn: conn}
}

// Pgbench runs pgbench against db with args (e.g. "-i", "-s", "1" or "-n", "-t", "100").
func Pgbench(t testing.TB, db *DB, args ...string) string {
	t.Helper()
	cmd := exec.Command("pgbench", append(args, db.Name)...)
	cmd.Env = append(os.Environ(), "PGHOST="+db.Conn["host"], "PGPORT="+db.Conn["port"], "PGUSER="+db.Conn["user"])
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pgbench %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Exec runs SQL on dsn and fails the test on error.
func Exec(t testing.TB, dsn string, sql string, args ...any) {
	t.Helper()
	c := Conn(t, dsn)
	if _, err := c.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// TableSum returns an md5 of a table's whole content ordered by orderBy.
func TableSum(t testing.TB, dsn, table, orderBy string) string {
	t.Helper()
	c := Conn(t, dsn)
	var s string
	err := c.QueryRow(context.Background(), fmt.Sprintf(`SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY %s), '')) FROM %s x`, orderBy, table)).Scan(&s)
	if err != nil {
		t.Fatalf("summing %s: %v", table, err)
	}
	return s
}
