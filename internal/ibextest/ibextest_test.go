package ibextest_test

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ibexrepl/ibex/internal/ibextest"
	"github.com/ibexrepl/ibex/internal/pgtest"
)

// recorder is a testing.TB that records failures instead of reporting them: Fatal ends
// only the goroutine that runs the helper (see fails).
type recorder struct {
	testing.TB
	mu     sync.Mutex
	failed []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = append(r.failed, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Fatal(args ...any) { r.Fatalf("%s", fmt.Sprint(args...)) }

// fails runs f with a recorder and returns what it failed with ("" if it did not fail).
func fails(t *testing.T, f func(tb testing.TB)) string {
	t.Helper()
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return strings.Join(r.failed, "\n")
}

func TestRowsColumnOne(t *testing.T) {
	db := pgtest.NewDB(t, "")
	ibextest.Exec(t, db.DSN, `CREATE TABLE kv (k int PRIMARY KEY, v text); INSERT INTO kv VALUES (1, 'a'), (2, NULL), (3, '')`)

	got := ibextest.Rows(t, db.DSN, `SELECT k::text, v FROM kv ORDER BY k`)
	if want := [][]string{{"1", "a"}, {"2", ibextest.Null}, {"3", ""}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("Rows = %q, want %q", got, want)
	}
	if got := ibextest.Rows(t, db.DSN, `SELECT v FROM kv WHERE k > $1`, 10); got == nil || len(got) != 0 {
		t.Errorf("Rows of nothing = %#v, want an empty slice", got)
	}
	if got, want := ibextest.Column(t, db.DSN, `SELECT v FROM kv ORDER BY k`), []string{"a", ibextest.Null, ""}; !slices.Equal(got, want) {
		t.Errorf("Column = %q, want %q", got, want)
	}
	if got := ibextest.One(t, db.DSN, `SELECT v FROM kv WHERE k = $1`, 1); got != "a" {
		t.Errorf("One = %q, want a", got)
	}

	// The On forms, on a connection the test holds.
	c := pgtest.Conn(t, db.DSN)
	if got := ibextest.OneOn(t, c, `SELECT count(*)::text FROM kv`); got != "3" {
		t.Errorf("OneOn = %q, want 3", got)
	}
	if got, want := ibextest.ColumnOn(t, c, `SELECT k::text FROM kv ORDER BY k DESC`), []string{"3", "2", "1"}; !slices.Equal(got, want) {
		t.Errorf("ColumnOn = %q, want %q", got, want)
	}
	if got := ibextest.RowsOn(t, c, `SELECT k::text, v FROM kv WHERE k = 2`); len(got) != 1 || got[0][1] != ibextest.Null {
		t.Errorf("RowsOn = %q", got)
	}

	// What each refuses.
	for _, tc := range []struct {
		name string
		f    func(tb testing.TB)
		want string
	}{
		{"One of no row", func(tb testing.TB) { ibextest.One(tb, db.DSN, `SELECT v FROM kv WHERE k = 99`) }, "want one value"},
		{"One of two rows", func(tb testing.TB) { ibextest.One(tb, db.DSN, `SELECT v FROM kv WHERE k < 3`) }, "want one value"},
		{"One of two columns", func(tb testing.TB) { ibextest.One(tb, db.DSN, `SELECT v, v FROM kv WHERE k = 1`) }, "want one value"},
		{"Column of two columns", func(tb testing.TB) { ibextest.Column(tb, db.DSN, `SELECT v, v FROM kv`) }, "2 columns, want 1"},
		{"bad SQL", func(tb testing.TB) { ibextest.Rows(tb, db.DSN, `SELECT nope FROM kv`) }, "nope"},
		{"bad SQL on a connection", func(tb testing.TB) { ibextest.RowsOn(tb, c, `SELECT nope FROM kv`) }, "database " + db.Name},
		{"Exec", func(tb testing.TB) { ibextest.Exec(tb, db.DSN, `INSERT INTO kv VALUES (1, 'dup')`) }, "duplicate key"},
		{"no server", func(tb testing.TB) { ibextest.Exec(tb, "host=127.0.0.1 port=1 connect_timeout=5", `SELECT 1`) }, "connecting to"},
	} {
		if got := fails(t, tc.f); !strings.Contains(got, tc.want) {
			t.Errorf("%s: failed with %q, want it to contain %q", tc.name, got, tc.want)
		}
	}
}

func TestTableRowsAndSameEverywhere(t *testing.T) {
	a, b, c := pgtest.NewDB(t, ""), pgtest.NewDB(t, ""), pgtest.NewDB(t, "")
	dsns := map[string]string{"a": a.DSN, "b": b.DSN, "c": c.DSN}
	for _, dsn := range dsns {
		// A column named x, like the alias the helpers give the table: the whole row counts.
		ibextest.Exec(t, dsn, `CREATE TABLE "T t" (id int PRIMARY KEY, x text, v text); INSERT INTO "T t" VALUES (2, 'b', 'two'), (1, 'a', NULL), (10, 'c', 'ten')`)
	}
	want := []string{"(1,a,)", "(2,b,two)", "(10,c,ten)"}
	if got := ibextest.TableRows(t, a.DSN, `"T t"`, "id"); !slices.Equal(got, want) {
		t.Errorf("TableRows by id = %q, want %q", got, want)
	}
	// By default, the rows' text in collation C.
	if got, want := ibextest.TableRows(t, a.DSN, `"T t"`, ""), []string{"(1,a,)", "(10,c,ten)", "(2,b,two)"}; !slices.Equal(got, want) {
		t.Errorf("TableRows = %q, want %q", got, want)
	}
	if got := ibextest.TableRowsOn(t, pgtest.Conn(t, b.DSN), `"T t"`, "x.id DESC"); !slices.Equal(got, []string{want[2], want[1], want[0]}) {
		t.Errorf("TableRowsOn by id DESC = %q", got)
	}
	if got := ibextest.SameEverywhere(t, `"T t"`, "id", dsns); !slices.Equal(got, want) {
		t.Errorf("SameEverywhere = %q, want %q", got, want)
	}
	sa, sb := ibextest.SumOn(t, pgtest.Conn(t, a.DSN), `"T t"`, ""), ibextest.SumOn(t, pgtest.Conn(t, b.DSN), `"T t"`, "")
	if sa != sb || sa.Count != 3 || len(sa.MD5) != 32 {
		t.Errorf("SumOn: %+v and %+v, want the same, 3 rows", sa, sb)
	}

	// A difference in a column that is neither the key nor named like the alias.
	ibextest.Exec(t, c.DSN, `UPDATE "T t" SET v = 'TEN' WHERE id = 10`)
	got := fails(t, func(tb testing.TB) { ibextest.SameEverywhere(tb, `"T t"`, "id", dsns) })
	for _, part := range []string{`table "T t" differs between db a and db c`, "- (10,c,ten)", "+ (10,c,TEN)", "3 vs 3 rows"} {
		if !strings.Contains(got, part) {
			t.Errorf("SameEverywhere failed with %q, want it to contain %q", got, part)
		}
	}
	if sa, sc := ibextest.SumOn(t, pgtest.Conn(t, a.DSN), `"T t"`, "id"), ibextest.SumOn(t, pgtest.Conn(t, c.DSN), `"T t"`, "id"); sa == sc {
		t.Errorf("SumOn is the same for different tables: %+v", sa)
	}
	// A missing row.
	ibextest.Exec(t, c.DSN, `UPDATE "T t" SET v = 'ten' WHERE id = 10; DELETE FROM "T t" WHERE id = 1`)
	if got := fails(t, func(tb testing.TB) { ibextest.SameEverywhere(tb, `"T t"`, "id", dsns) }); !strings.Contains(got, "3 vs 2 rows\n- (1,a,)") {
		t.Errorf("SameEverywhere failed with %q", got)
	}
	if got := fails(t, func(tb testing.TB) { ibextest.SameEverywhere(tb, `"T t"`, "id", nil) }); !strings.Contains(got, "no dbs") {
		t.Errorf("SameEverywhere of no dbs failed with %q", got)
	}
}

func TestDiffLines(t *testing.T) {
	for _, tc := range []struct {
		a, b []string
		want string
	}{
		{[]string{"1", "2", "2"}, []string{"2", "3"}, "3 vs 2 rows\n- 1\n- 2\n+ 3"},
		{[]string{"1", "2"}, []string{"2", "1"}, "2 vs 2 rows\nthe same rows in another order"},
		{nil, []string{strings.Repeat("x", 300)}, "0 vs 1 rows\n+ " + strings.Repeat("x", 200) + "...(300 bytes)"},
	} {
		if got := ibextest.DiffLines(tc.a, tc.b); got != tc.want {
			t.Errorf("DiffLines(%q, %q) = %q, want %q", tc.a, tc.b, got, tc.want)
		}
	}
	var many []string
	for i := range 30 {
		many = append(many, fmt.Sprint(i))
	}
	if got := ibextest.DiffLines(many, nil); !strings.HasSuffix(got, "\n- 19\n... (30 lines differ)") {
		t.Errorf("DiffLines of 30 rows: %q", got)
	}
}

func TestAddDBArgs(t *testing.T) {
	conn := map[string]string{"user": "u", "port": "5433", "dbname": "d", "host": "h", "sslmode": "disable"}
	if got, want := ibextest.ConnArgs(conn), []string{"dbname=d", "host=h", "port=5433", "sslmode=disable", "user=u"}; !slices.Equal(got, want) {
		t.Errorf("ConnArgs = %q, want %q", got, want)
	}
	db := &pgtest.DB{Conn: map[string]string{"dbname": "x", "host": "127.0.0.1", "port": "5432", "user": "postgres"}}
	got := ibextest.AddDBArgs("t1", db.Conn, "pass=env:PW", "status=inactive")
	want := []string{"add", "db", "t1", "dbname=x", "host=127.0.0.1", "port=5432", "user=postgres", "pass=env:PW", "status=inactive"}
	if !slices.Equal(got, want) {
		t.Errorf("AddDBArgs = %q, want %q", got, want)
	}
	if got := ibextest.ConnArgs(nil); len(got) != 0 {
		t.Errorf("ConnArgs(nil) = %q", got)
	}
}

func TestIbex(t *testing.T) {
	ctl, db := pgtest.NewDB(t, ""), pgtest.NewDB(t, "")
	if out, errs, code := ibextest.Ibex(ctl.DSN, "install"); code != 0 {
		t.Fatalf("ibex install: exit %d\n%s%s", code, out, errs)
	}
	if out, errs, code := ibextest.Ibex(ctl.DSN, ibextest.AddDBArgs("t1", db.Conn)...); code != 0 || out != "Added db t1\n" {
		t.Fatalf("ibex add db: exit %d\n%s%s", code, out, errs)
	}
	if got := ibextest.One(t, ctl.DSN, `SELECT conn::text FROM ibex.db WHERE name = 't1'`); !strings.Contains(got, db.Name) {
		t.Errorf("db t1 has conn %s, want its dbname %s", got, db.Name)
	}
	if _, errs, code := ibextest.Ibex(ctl.DSN, "add", "db", "t1", "dbname=x"); code == 0 || !strings.HasPrefix(errs, "ibex: ") {
		t.Errorf("adding db t1 again: exit %d, stderr %q", code, errs)
	}
	if _, errs, code := ibextest.Ibex(ctl.DSN, "no-such-command"); code != 2 || !strings.Contains(errs, "unknown command") {
		t.Errorf("an unknown command: exit %d, stderr %q", code, errs)
	}
}

func TestWaitFor(t *testing.T) {
	n := 0
	ibextest.WaitFor(t, "three polls", 10*time.Second, func() bool { n++; return n == 3 })
	if n != 3 {
		t.Errorf("cond polled %d times, want 3", n)
	}
	got := fails(t, func(tb testing.TB) {
		ibextest.WaitFor(tb, "nothing", 50*time.Millisecond, func() bool { return false })
	})
	if !strings.Contains(got, "timed out after 50ms waiting for nothing") {
		t.Errorf("WaitFor failed with %q", got)
	}
}
