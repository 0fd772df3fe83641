// Package ibextest holds the helpers ibex's tests share: reading rows as text, one value,
// comparing a table across dbs row for row, running the ibex command line in process and
// the arguments of 'ibex add db' for a test database.
//
// It builds on pgtest, which makes the databases and clusters; ibextest only reads and
// writes them and drives ibex. It is a package of its own because it imports the ibex
// command line (internal/cli, and through it job and control), which pgtest must not:
// pgtest stays a leaf that any package's tests can import.
//
// Every helper that can fail takes a testing.TB, calls t.Helper and fails the test
// (t.Fatal) on error. The helpers that take a dsn open a connection of their own and close
// it before they return (unlike pgtest.Conn and pgtest.Exec, whose connection stays open
// until the test ends); those whose name ends in On run on a connection the caller holds.
// Every query is bounded by Timeout. There is no package state.
package ibextest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/cli"
)

// Timeout bounds each helper's work on the database (connecting and running its SQL).
const Timeout = 60 * time.Second

// Null is how the helpers read SQL NULL.
const Null = "<NULL>"

// Querier is a connection the On helpers run SQL on: a *pgx.Conn, a *pgxpool.Pool or a
// pgx.Tx.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// connect opens a connection to dsn; the caller closes it.
func connect(t testing.TB, ctx context.Context, dsn, sql string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connecting to %s to run %q: %v", dsn, sql, err)
	}
	return c
}

// where names the database a Querier is connected to, for error messages ("" when it
// cannot tell).
func where(q Querier) string {
	if c, ok := q.(interface{ Config() *pgx.ConnConfig }); ok {
		return "database " + c.Config().Database + ": "
	}
	return ""
}

// Exec runs sql on dsn, on a connection of its own.
func Exec(t testing.TB, dsn, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	c := connect(t, ctx, dsn, sql)
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// Rows runs sql on dsn, on a connection of its own, and returns every row with each
// column as text. The columns must be text (cast them: ::text); NULL reads as Null. No
// rows is an empty slice, never nil.
func Rows(t testing.TB, dsn, sql string, args ...any) [][]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	c := connect(t, ctx, dsn, sql)
	defer c.Close(context.Background())
	return rowsOn(t, ctx, c, sql, args...)
}

// RowsOn is Rows on q.
func RowsOn(t testing.TB, q Querier, sql string, args ...any) [][]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	return rowsOn(t, ctx, q, sql, args...)
}

func rowsOn(t testing.TB, ctx context.Context, q Querier, sql string, args ...any) [][]string {
	t.Helper()
	rs, err := q.Query(ctx, sql, args...)
	if err != nil {
		t.Fatalf("%s%s: %v", where(q), sql, err)
	}
	out, err := pgx.CollectRows(rs, func(r pgx.CollectableRow) ([]string, error) {
		vals := make([]*string, len(r.FieldDescriptions()))
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := r.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := make([]string, len(vals))
		for i, v := range vals {
			row[i] = Null
			if v != nil {
				row[i] = *v
			}
		}
		return row, nil
	})
	if err != nil {
		t.Fatalf("%s%s: %v", where(q), sql, err)
	}
	if out == nil {
		out = [][]string{}
	}
	return out
}

// Column runs sql, which must select exactly one column (text), on dsn and returns its
// value in every row (NULL as Null).
func Column(t testing.TB, dsn, sql string, args ...any) []string {
	t.Helper()
	return column(t, sql, Rows(t, dsn, sql, args...))
}

// ColumnOn is Column on q.
func ColumnOn(t testing.TB, q Querier, sql string, args ...any) []string {
	t.Helper()
	return column(t, sql, RowsOn(t, q, sql, args...))
}

func column(t testing.TB, sql string, rows [][]string) []string {
	t.Helper()
	out := make([]string, 0, len(rows))
	for _, r := range rows {
		if len(r) != 1 {
			t.Fatalf("%s: %d columns, want 1", sql, len(r))
		}
		out = append(out, r[0])
	}
	return out
}

// One runs sql on dsn and returns the one value it selects: exactly one row of one
// column (text; NULL as Null), or the test fails.
func One(t testing.TB, dsn, sql string, args ...any) string {
	t.Helper()
	return one(t, sql, Rows(t, dsn, sql, args...))
}

// OneOn is One on q.
func OneOn(t testing.TB, q Querier, sql string, args ...any) string {
	t.Helper()
	return one(t, sql, RowsOn(t, q, sql, args...))
}

func one(t testing.TB, sql string, rows [][]string) string {
	t.Helper()
	if len(rows) != 1 || len(rows[0]) != 1 {
		t.Fatalf("%s: want one value, got %v", sql, rows)
	}
	return rows[0][0]
}

// tableQuery selects a table's rows as text (ROW(x.*)::text), ordered by orderBy over
// alias x; orderBy "" is the rows' text in collation "C" (a total order whatever the
// table's keys and the database's collation).
func tableQuery(table, orderBy string) string {
	if orderBy == "" {
		orderBy = `ROW(x.*)::text COLLATE "C"`
	}
	return fmt.Sprintf(`SELECT ROW(x.*)::text FROM %s x ORDER BY %s`, table, orderBy)
}

// TableRows returns the rows of table (a quoted, possibly qualified name) on dsn, each as
// the text of the row ("(1,a)"), ordered by orderBy over alias x (e.g. "id"; "" orders by
// the rows' text in collation "C").
func TableRows(t testing.TB, dsn, table, orderBy string) []string {
	t.Helper()
	return Column(t, dsn, tableQuery(table, orderBy))
}

// TableRowsOn is TableRows on q.
func TableRowsOn(t testing.TB, q Querier, table, orderBy string) []string {
	t.Helper()
	return ColumnOn(t, q, tableQuery(table, orderBy))
}

// Summary is a table's row count and an md5 of its rows' text in order: cheaper to
// compare than the rows when tables are big.
type Summary struct {
	Count int64
	MD5   string
}

// SumOn is the Summary of table on q, its rows ordered by orderBy over alias x (as
// TableRows).
func SumOn(t testing.TB, q Querier, table, orderBy string) Summary {
	t.Helper()
	if orderBy == "" {
		orderBy = `ROW(x.*)::text COLLATE "C"`
	}
	r := RowsOn(t, q, fmt.Sprintf(`SELECT count(*)::text, md5(coalesce(string_agg(ROW(x.*)::text, '|' ORDER BY %s), '')) FROM %s x`, orderBy, table))
	var s Summary
	if _, err := fmt.Sscan(r[0][0], &s.Count); err != nil {
		t.Fatalf("summing %s: %v", table, err)
	}
	s.MD5 = r[0][1]
	return s
}

// SameEverywhere fails the test (t.Fatal) unless table (a quoted, possibly qualified
// name) has the same rows, in the same order (orderBy, as TableRows), on every db of
// dbs (name -> dsn); it returns those rows. The dbs are compared with the first name in
// sorted order, and a failure shows how the rows differ.
func SameEverywhere(t testing.TB, table, orderBy string, dbs map[string]string) []string {
	t.Helper()
	if len(dbs) == 0 {
		t.Fatalf("SameEverywhere(%s): no dbs", table)
	}
	names := make([]string, 0, len(dbs))
	for n := range dbs {
		names = append(names, n)
	}
	slices.Sort(names)
	ref := TableRows(t, dbs[names[0]], table, orderBy)
	for _, n := range names[1:] {
		if got := TableRows(t, dbs[n], table, orderBy); !slices.Equal(ref, got) {
			t.Fatalf("table %s differs between db %s and db %s (-%s +%s): %s", table, names[0], n, names[0], n, DiffLines(ref, got))
		}
	}
	return ref
}

// DiffLines describes how two lists of rows differ: their lengths, then the rows only in
// a (-) and only in b (+), counting duplicates, at most 20 of them, each clipped to 200
// bytes.
func DiffLines(a, b []string) string {
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
	if len(out) == 0 && !slices.Equal(a, b) {
		out = append(out, "the same rows in another order")
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

// ConnArgs renders libpq keywords as 'ibex add db' settings, key=value, sorted by key.
func ConnArgs(conn map[string]string) []string {
	out := make([]string, 0, len(conn))
	for k, v := range conn {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

// AddDBArgs is the command line 'ibex add db name' for a database reached with the libpq
// keywords conn (e.g. a pgtest.DB's Conn), then extra settings.
func AddDBArgs(name string, conn map[string]string, extra ...string) []string {
	a := append([]string{"add", "db", name}, ConnArgs(conn)...)
	return append(a, extra...)
}

// Ibex runs the ibex command line in process (cli.Main) against the control database dsn
// (--dsn, before args; with dsn "" there is no --dsn and IBEX_DSN or the PG* variables
// name it) and returns its output and exit code. It is safe to call from any goroutine.
func Ibex(dsn string, args ...string) (stdout, stderr string, code int) {
	if dsn != "" {
		args = append([]string{"--dsn", dsn}, args...)
	}
	var o, e bytes.Buffer
	code = cli.Main(args, &o, &e)
	return o.String(), e.String(), code
}

// WaitFor polls cond every 20ms until it is true, and fails the test if timeout passes
// first (what says what was awaited).
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
