package faults

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/ibextest"
	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/job"
)

func qi(parts ...string) string { return pgx.Identifier(parts).Sanitize() }

// hostileTable is a table whose schema, table and column names are hostile.
type hostileTable struct {
	schema, name string
	key          []string // key columns (int or text: see ddl)
	other        []string
}

func (h hostileTable) ident() string { return qi(h.schema, h.name) }

func (h hostileTable) ddl() string {
	var cols []string
	for i, k := range h.key {
		typ := "int"
		if i%2 == 1 {
			typ = "text"
		}
		cols = append(cols, qi(k)+" "+typ)
	}
	for _, o := range h.other {
		cols = append(cols, qi(o)+" text")
	}
	var keys []string
	for _, k := range h.key {
		keys = append(keys, qi(k))
	}
	return fmt.Sprintf("CREATE SCHEMA IF NOT EXISTS %s; CREATE TABLE %s (%s, PRIMARY KEY (%s))", qi(h.schema), h.ident(), strings.Join(cols, ", "), strings.Join(keys, ", "))
}

// insert returns an INSERT of row n with values that are themselves hostile.
func (h hostileTable) insert(n int, tag string) string {
	var cols, vals []string
	for i, k := range h.key {
		cols = append(cols, qi(k))
		if i%2 == 1 {
			vals = append(vals, literal(fmt.Sprintf("k'%d\t\"\\ ;--", n)))
		} else {
			vals = append(vals, fmt.Sprint(n))
		}
	}
	for _, o := range h.other {
		cols = append(cols, qi(o))
		vals = append(vals, literal(fmt.Sprintf("%s %d: ' \" \\ \n\t ünï ; DROP TABLE x; --", tag, n)))
	}
	return fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", h.ident(), strings.Join(cols, ", "), strings.Join(vals, ", "))
}

func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

var hostileTables = []hostileTable{
	{"public", `we"ird; DROP TABLE x`, []string{`id"; --`}, []string{"a b", "ünï cödé"}},
	{"public", "ünï cödé", []string{"ключ"}, []string{`we"ird`, "%s %d %v"}},
	{`sch.ema "x"`, "a b", []string{"k 1", "K2"}, []string{"$txid", "$at", "A.B"}},
	{"public", "MixedCase", []string{"Id"}, []string{"value", "VALUE"}},
	{"public", strings.Repeat("é", 31) + "x", []string{strings.Repeat("ü", 31) + "y"}, []string{strings.Repeat("ö", 31) + "z"}}, // 63 bytes
	{"public", "t.with.dots", []string{"a.b"}, []string{"'quoted'"}},
	{"public", `back\slash`, []string{`\`}, []string{`\\n`}},
}

// TestHostileNames proves that tables, schemas and columns named with quotes,
// semicolons, spaces, dots, backslashes, format verbs, unicode, mixed case, 63-byte
// names, and ibex's own change-table column names replicate correctly between two
// sources: inserts from both, a conflict, updates and deletes; and that removing the
// sync removes every capture object again.
func TestHostileNames(t *testing.T) {
	t.Parallel()
	e := newEnv(t, pgtest.ClusterOptions{})
	dsns := map[string]string{}
	for _, db := range []string{"a", "b"} {
		d := e.ctl.CreateDB(db)
		dsns[db] = d.DSN
		for _, h := range hostileTables {
			ibextest.Exec(t, d.DSN, h.ddl())
		}
		e.must(ibextest.AddDBArgs(db, d.Conn)...)
	}
	args := []string{"add", "table"}
	for _, h := range hostileTables {
		args = append(args, h.ident())
	}
	e.must(append(args, "db=a", "herd=h")...)
	e.must("add", "sync", "s", "herd=h", "dbs=a:source,b:source")
	list := e.must("list", "tables")
	for _, h := range hostileTables {
		if !strings.Contains(list, h.name) {
			t.Errorf("list tables does not show %q:\n%s", h.name, list)
		}
	}
	s := e.store()

	for _, h := range hostileTables {
		ibextest.Exec(t, dsns["a"], h.insert(1, "a")+"; "+h.insert(3, "a"))
		ibextest.Exec(t, dsns["b"], h.insert(2, "b")+"; "+h.insert(3, "b"))
	}
	res := mustState(t, s, "s", job.Options{}, control.StateGood)
	if n := int64(len(hostileTables)); res.Conflicts != n || res.Inserts != 3*n {
		t.Errorf("first run: inserts %d conflicts %d, want %d and %d", res.Inserts, res.Conflicts, 3*n, n)
	}
	for _, h := range hostileTables {
		if got := ibextest.SameEverywhere(t, h.ident(), "", dsns); int64(len(got)) != 3 {
			t.Errorf("%s: %d rows, want 3", h.ident(), int64(len(got)))
		}
	}
	if out := e.must("conflicts", "s"); strings.Count(out, "\n") != len(hostileTables)+1 {
		t.Errorf("conflict log:\n%s", out)
	}

	for _, h := range hostileTables {
		set := qi(h.other[0]) + " = 'updated ''on a'''"
		ibextest.Exec(t, dsns["a"], fmt.Sprintf("UPDATE %s SET %s WHERE %s = 2", h.ident(), set, qi(h.key[0])))
		ibextest.Exec(t, dsns["b"], fmt.Sprintf("DELETE FROM %s WHERE %s = 1", h.ident(), qi(h.key[0])))
	}
	mustState(t, s, "s", job.Options{}, control.StateGood)
	for _, h := range hostileTables {
		if got := ibextest.SameEverywhere(t, h.ident(), "", dsns); int64(len(got)) != 2 {
			t.Errorf("%s: %d rows, want 2", h.ident(), int64(len(got)))
		}
		if got := ibextest.One(t, dsns["b"], fmt.Sprintf("SELECT %s FROM %s WHERE %s = 2", qi(h.other[0]), h.ident(), qi(h.key[0]))); got != "updated 'on a'" {
			t.Errorf("%s: row 2 has %q", h.ident(), got)
		}
	}
	mustState(t, s, "s", job.Options{}, control.StateEmpty)

	e.must("remove", "sync", "s")
	for db, dsn := range dsns {
		if got := ibextest.Column(t, dsn, `SELECT tgname::text FROM pg_trigger WHERE tgname LIKE 'ibex%'`); len(got) != 0 {
			t.Errorf("db %s: triggers left after remove sync: %v", db, got)
		}
		if got := ibextest.Column(t, dsn, `SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'ibex' AND c.relkind = 'r'`); len(got) != 0 {
			t.Errorf("db %s: change tables left after remove sync: %v", db, got)
		}
		if got := ibextest.Column(t, dsn, `SELECT p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'ibex'`); len(got) != 0 {
			t.Errorf("db %s: functions left after remove sync: %v", db, got)
		}
	}
}

// FuzzIdentifiers replicates one table whose name and key column name are fuzzed:
// whatever PostgreSQL accepts as an identifier (not empty, no NUL, valid UTF-8, at most
// 63 bytes), ibex must add, capture, replicate (an insert from each source, an update
// and a delete) and remove without a trace.
//
//	go test -run XXX -fuzz FuzzIdentifiers -fuzztime 60s ./internal/faults/
func FuzzIdentifiers(f *testing.F) {
	// More seeds are in testdata/fuzz/FuzzIdentifiers.
	for _, s := range [][2]string{
		{"t", "id"},
		{`we"ird; DROP TABLE x`, `id"; --`},
		{"ünï cödé", "ключ"},
		{"t", "$txid"},
	} {
		f.Add(s[0], s[1])
	}
	e := newEnv(f, pgtest.ClusterOptions{})
	dsns := map[string]string{}
	for _, db := range []string{"a", "b"} {
		d := e.ctl.CreateDB(db)
		dsns[db] = d.DSN
		e.must(ibextest.AddDBArgs(db, d.Conn)...)
	}
	e.must("add", "dbgroup", "g", "a:source", "b:source")
	conns := map[string]*pgx.Conn{}
	for db, dsn := range dsns {
		c, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			f.Fatal(err)
		}
		f.Cleanup(func() { c.Close(context.Background()) })
		conns[db] = c
	}
	store := e.store()

	f.Fuzz(func(t *testing.T, table, col string) {
		for _, n := range []string{table, col} {
			if n == "" || len(n) > 63 || strings.ContainsRune(n, 0) || !utf8.ValidString(n) {
				t.Skip("PostgreSQL does not accept this identifier")
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		e := e.as(t)
		tbl, c := qi("public", table), qi(col)
		exec := func(db, sql string) error {
			_, err := conns[db].Exec(ctx, sql)
			return err
		}
		for db := range dsns {
			if err := exec(db, "DROP TABLE IF EXISTS "+tbl); err != nil {
				t.Fatal(err)
			}
			if err := exec(db, fmt.Sprintf("CREATE TABLE %s (%s int PRIMARY KEY, v text)", tbl, c)); err != nil {
				t.Skipf("PostgreSQL refuses the table: %v", err)
			}
		}
		defer func() {
			for db := range dsns {
				_ = exec(db, "DROP TABLE IF EXISTS "+tbl)
			}
		}()
		cleanup := func() {
			e.run("remove", "sync", "fz")
			e.run("remove", "herd", "fz")
			e.run("remove", "table", tbl)
		}
		defer func() {
			if t.Failed() {
				return // leave the evidence
			}
			cleanup()
			for db := range dsns {
				var n int
				if err := conns[db].QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'ibex%') +
  (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'ibex')`).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n != 0 {
					t.Errorf("db %s: %d capture objects left after remove sync", db, n)
				}
			}
		}()
		e.must("add", "table", tbl, "db=a", "herd=fz")
		if out, errOut, code := e.run("add", "sync", "fz", "herd=fz", "dbs=g"); code != 0 {
			if (col == "$txid" || col == "$at") && strings.Contains(errOut, "a name ibex's change tables use for themselves") {
				return // refused, clearly: fine
			}
			t.Fatalf("ibex add sync for table %q, key %q: exit %d\n%s%s", table, col, code, out, errOut)
		}
		check := func(want []string) {
			t.Helper()
			for db := range dsns {
				rs, err := conns[db].Query(ctx, fmt.Sprintf("SELECT ROW(x.*)::text FROM %s x ORDER BY %s", tbl, c))
				if err != nil {
					t.Fatal(err)
				}
				got, err := pgx.CollectRows(rs, pgx.RowTo[string])
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Fatalf("table %q, key %q: db %s (-want +got):\n%s", table, col, db, diff)
				}
			}
		}
		if err := exec("a", fmt.Sprintf("INSERT INTO %s VALUES (1, 'a')", tbl)); err != nil {
			t.Fatal(err)
		}
		if err := exec("b", fmt.Sprintf("INSERT INTO %s VALUES (2, 'b')", tbl)); err != nil {
			t.Fatal(err)
		}
		res, err := job.Run(ctx, store, "fz", job.Options{})
		if err != nil || res.State != control.StateGood || res.Inserts != 2 {
			t.Fatalf("table %q, key %q: first run %+v: %v", table, col, res, err)
		}
		check([]string{"(1,a)", "(2,b)"})
		if err := exec("a", fmt.Sprintf("UPDATE %s SET v = 'a2' WHERE %s = 2", tbl, c)); err != nil {
			t.Fatal(err)
		}
		if err := exec("b", fmt.Sprintf("DELETE FROM %s WHERE %s = 1", tbl, c)); err != nil {
			t.Fatal(err)
		}
		res, err = job.Run(ctx, store, "fz", job.Options{})
		if err != nil || res.State != control.StateGood {
			t.Fatalf("table %q, key %q: second run %+v: %v", table, col, res, err)
		}
		check([]string{"(2,a2)"})
	})
}
