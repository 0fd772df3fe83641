package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ibexrepl/ibex/internal/ibextest"
)

// tablesSQL is a database with tables of every kind of key, and awkward names.
const tablesSQL = `
CREATE SCHEMA s2;
CREATE SCHEMA "Sales Dept";
CREATE TABLE public.accounts (id int PRIMARY KEY, v text);
CREATE TABLE public.branches (id int PRIMARY KEY, code text);
CREATE TABLE public.history (v int, note text);
CREATE TABLE public.nullable_uq (a int UNIQUE, b int);
CREATE TABLE public.partial_uq (a int NOT NULL, b int);
CREATE UNIQUE INDEX ON public.partial_uq (a) WHERE b > 0;
CREATE TABLE s2.a (id int PRIMARY KEY);
CREATE TABLE s2.b (code text NOT NULL UNIQUE, v int);
CREATE TABLE s2.nokey (v int);
CREATE TABLE "Sales Dept"."Order Lines" ("Order ID" int, "Line#" int, note text, PRIMARY KEY ("Line#", "Order ID"));
CREATE TABLE public."ünï ""q"" 'tbl'" ("clé ""x""" text NOT NULL UNIQUE, v int);
CREATE TABLE public."dotted.name" (id int PRIMARY KEY);
CREATE TABLE public."MixedCase" ("Id" int PRIMARY KEY, "Other" int NOT NULL UNIQUE);
`

// relationRows is ibex.relation as text: schema, table, db, keycols, keykind, herds.
func relationRows(t *testing.T, dsn string) [][]string {
	t.Helper()
	return ibextest.Rows(t, dsn, `SELECT r.schemaname, r.tablename, coalesce(r.db, ''), array_to_string(r.keycols, '|'), r.keykind,
  coalesce((SELECT string_agg(m.herd, ',' ORDER BY m.herd) FROM ibex.herdmap m WHERE m.relation = r.id), '')
FROM ibex.relation r ORDER BY 1, 2`)
}

func herdRows(t *testing.T, dsn string) [][]string {
	t.Helper()
	return ibextest.Rows(t, dsn, `SELECT h.name, coalesce(string_agg(r.schemaname || '.' || r.tablename, ',' ORDER BY r.schemaname, r.tablename), '')
FROM ibex.herd h LEFT JOIN ibex.herdmap m ON m.herd = h.name LEFT JOIN ibex.relation r ON r.id = m.relation GROUP BY 1 ORDER BY 1`)
}

func TestAddTables(t *testing.T) {
	t.Parallel()
	ctl := newControlWith(t, tablesSQL)
	db := ctl // the tables are in the control database
	ok(t, ctl.DSN, ibextest.AddDBArgs("t1", db.Conn)...)

	out := ok(t, ctl.DSN, "add", "table", "accounts", "public.branches", "db=t1", "herd=h1")
	if want := "Added table public.accounts: primary key (id)\nAdded table public.branches: primary key (id)\nHerd h1 has the tables\n"; out != want {
		t.Errorf("add table said:\n%s\nwant:\n%s", out, want)
	}
	before := state(t, ctl.DSN)

	// No key: refused, naming the table; nothing of the command is kept (herd h2 too).
	const noKey = " has no primary key and no unique index over NOT NULL columns, so its rows cannot be identified: add a primary key, or add it with keyless=fullcopy to use it only in fullcopy syncs\n"
	for _, tc := range []struct{ arg, name string }{
		{"history", "public.history"}, {"nullable_uq", "public.nullable_uq"}, {"partial_uq", "public.partial_uq"}, {"s2.nokey", "s2.nokey"},
	} {
		msg := refused(t, ctl.DSN, 1, args("add", "table", "s2.a", tc.arg, "db=t1", "herd=h2"))
		if want := "ibex: table " + tc.name + noKey; msg != want {
			t.Errorf("add table %s:\n%s\nwant:\n%s", tc.arg, msg, want)
		}
	}
	refuseAll(t, ctl.DSN,
		rf(1, args("add", "table", "nosuch", "db=t1"), "ibex: table public.nosuch does not exist in db t1 (dbname "+db.Name+"): check the name or say db="),
		rf(1, args("add", "table", "accounts", "db=t1"), "ibex: table public.accounts already exists: use 'ibex update table public.accounts herd=...' to put it in a herd"),
		rf(1, args("add", "table", "s2.a", "s2.a", "db=t1"), "table s2.a already exists"),
		rf(1, args("add", "table", "zz*", "db=t1"), `table pattern "zz*" matches no table`),
		rf(1, args("add", "table", "s2.a", "db=nosuch"), `db "nosuch" not found: see 'ibex list dbs'`),
		rf(2, args("add", "table", "s2.a", "db=t1", "bogus=1"), `add table: unknown setting "bogus" (use db=, herd= or keyless=fullcopy)`),
		rf(2, args("add", "table", "db=t1"), "add table: name the tables"),
		rf(2, args("add", "table", "s2.a", "db=t1", "herd="), "herd= needs a name"),
		rf(1, args("add", "table", `"unbalanced`, "db=t1"), "unbalanced double quote"),
		rf(1, args("add", "table", "a.b.c", "db=t1"), `table name "a.b.c": expected table or schema.table`),
	)
	unchanged(t, ctl.DSN, before, "refused add table")

	// A pattern skips tables without a key and says so; relgroup= is herd=.
	out = ok(t, ctl.DSN, "add", "tables", "s2.*", "db=t1", "relgroup=h3")
	if want := "Added table s2.a: primary key (id)\nAdded table s2.b: unique index (code)\nSkipped table s2.nokey: no primary key or unique index\nHerd h3 has the tables\n"; out != want {
		t.Errorf("add tables s2.* said:\n%s\nwant:\n%s", out, want)
	}
	// Awkward names, quoted as in SQL; a bare name is taken as it is (no case folding).
	ok(t, ctl.DSN, "add", "table", `"Sales Dept"."Order Lines"`, `"ünï ""q"" 'tbl'"`, `"dotted.name"`, "MixedCase", "db=t1", "herd=odd")

	want := [][]string{
		{"Sales Dept", "Order Lines", "t1", "Line#|Order ID", "primary key", "odd"},
		{"public", "MixedCase", "t1", "Id", "primary key", "odd"},
		{"public", "accounts", "t1", "id", "primary key", "h1"},
		{"public", "branches", "t1", "id", "primary key", "h1"},
		{"public", "dotted.name", "t1", "id", "primary key", "odd"},
		{"public", `ünï "q" 'tbl'`, "t1", `clé "x"`, "unique index", "odd"},
		{"s2", "a", "t1", "id", "primary key", "h3"},
		{"s2", "b", "t1", "code", "unique index", "h3"},
	}
	if diff := cmp.Diff(want, relationRows(t, ctl.DSN)); diff != "" {
		t.Errorf("ibex.relation (-want +got):\n%s", diff)
	}
	wantList := `Table                    Key                             DB   Herds
Sales Dept.Order Lines | primary key (Line#, Order ID) | t1 | odd
public.MixedCase       | primary key (Id)              | t1 | odd
public.accounts        | primary key (id)              | t1 | h1
public.branches        | primary key (id)              | t1 | h1
public.dotted.name     | primary key (id)              | t1 | odd
public.ünï "q" 'tbl'   | unique index (clé "x")        | t1 | odd
s2.a                   | primary key (id)              | t1 | h3
s2.b                   | unique index (code)           | t1 | h3
`
	if got := ok(t, ctl.DSN, "list", "tables"); got != wantList {
		t.Errorf("list tables:\n%s\nwant:\n%s", got, wantList)
	}

	// update table: re-reads the key from the db, herd= adds to a herd.
	ibextest.Exec(t, db.DSN, `ALTER TABLE public.branches DROP CONSTRAINT branches_pkey, ALTER COLUMN code SET NOT NULL, ADD UNIQUE (code)`)
	if out := ok(t, ctl.DSN, "update", "table", "branches", "herd=h9"); out != "Updated table public.branches\n" {
		t.Errorf("update table said %q", out)
	}
	if diff := cmp.Diff([]string{"public", "branches", "t1", "code", "unique index", "h1,h9"}, relationRows(t, ctl.DSN)[3]); diff != "" {
		t.Errorf("branches after update (-want +got):\n%s", diff)
	}
	ibextest.Exec(t, db.DSN, `ALTER TABLE public.accounts DROP CONSTRAINT accounts_pkey`)
	before = state(t, ctl.DSN)
	refuseAll(t, ctl.DSN,
		rf(1, args("update", "table", "accounts", "db=t1"), "ibex: table public.accounts has no primary key"),
		rf(1, args("update", "table", "nosuch", "db=t1"), `table "public.nosuch" not found: see 'ibex list tables'`),
		rf(2, args("update", "table", "accounts", "keyless=fullcopy"), `update table: unknown setting "keyless"`),
	)
	unchanged(t, ctl.DSN, before, "refused update table")

	// remove table: gone from its herds too.
	if out := ok(t, ctl.DSN, "remove", "table", "s2.b", `"dotted.name"`); out != "Removed table s2.b\nRemoved table \"dotted.name\"\n" {
		t.Errorf("remove table said %q", out)
	}
	refused(t, ctl.DSN, 1, args("remove", "table", "s2.b"), `table "s2.b" not found`)
	if diff := cmp.Diff([][]string{{"h1", "public.accounts,public.branches"}, {"h3", "s2.a"}, {"h9", "public.branches"},
		{"odd", "Sales Dept.Order Lines,public.MixedCase,public.ünï \"q\" 'tbl'"}}, herdRows(t, ctl.DSN)); diff != "" {
		t.Errorf("herds after remove table (-want +got):\n%s", diff)
	}
}

func TestAddTableAllAndWhichDB(t *testing.T) {
	t.Parallel()
	ctl := newControlWith(t, tablesSQL)
	db := ctl // the tables are in the control database
	other := newDB(t, `CREATE TABLE public.only_here (id int PRIMARY KEY)`)
	ok(t, ctl.DSN, ibextest.AddDBArgs("t1", db.Conn)...)

	// With a single db, db= may be left out.
	if out := ok(t, ctl.DSN, "add", "table", "s2.a"); out != "Added table s2.a: primary key (id)\n" {
		t.Errorf("add table without db= said %q", out)
	}
	ok(t, ctl.DSN, "remove", "table", "s2.a")
	ok(t, ctl.DSN, ibextest.AddDBArgs("t2", other.Conn)...)
	before := state(t, ctl.DSN)
	refused(t, ctl.DSN, 2, args("add", "table", "s2.a"), "say which db to read the tables from with db=NAME")
	// The table is read from db=: it is not in t2.
	refused(t, ctl.DSN, 1, args("add", "table", "s2.a", "db=t2"), "table s2.a does not exist in db t2 (dbname "+other.Name+")")
	unchanged(t, ctl.DSN, before, "refused add table")

	out := ok(t, ctl.DSN, "add", "table", "all", "db=t1", "herd=everything")
	want := `Added table Sales Dept.Order Lines: primary key (Line#, Order ID)
Added table public.MixedCase: primary key (Id)
Added table public.accounts: primary key (id)
Added table public.branches: primary key (id)
Added table public.dotted.name: primary key (id)
Added table public.ünï "q" 'tbl': unique index (clé "x")
Added table s2.a: primary key (id)
Added table s2.b: unique index (code)
Skipped table public.history: no primary key or unique index
Skipped table public.nullable_uq: no primary key or unique index
Skipped table public.partial_uq: no primary key or unique index
Skipped table s2.nokey: no primary key or unique index
Herd everything has the tables
`
	if out != want {
		t.Errorf("add table all said:\n%s\nwant:\n%s", out, want)
	}
	// A wildcard without a schema means public.
	out = ok(t, ctl.DSN, "add", "table", "only_*", "db=t2", "herd=h2")
	if out != "Added table public.only_here: primary key (id)\nHerd h2 has the tables\n" {
		t.Errorf("add table only_* said %q", out)
	}
	if got := len(relationRows(t, ctl.DSN)); got != 9 {
		t.Errorf("%d tables, want 9", got)
	}

	// all again, after a new table appeared: the tables already added are skipped (and
	// said so), the new one is added; a table in another herd gets a hint.
	ibextest.Exec(t, db.DSN, `CREATE TABLE public.newer (id int PRIMARY KEY)`)
	out = ok(t, ctl.DSN, "add", "table", "all", "db=t1", "herd=everything")
	want = `Added table public.newer: primary key (id)
Skipped table Sales Dept.Order Lines: already added (db t1)
Skipped table public.MixedCase: already added (db t1)
Skipped table public.accounts: already added (db t1)
Skipped table public.branches: already added (db t1)
Skipped table public.dotted.name: already added (db t1)
Skipped table public.ünï "q" 'tbl': already added (db t1)
Skipped table s2.a: already added (db t1)
Skipped table s2.b: already added (db t1)
Skipped table public.history: no primary key or unique index
Skipped table public.nullable_uq: no primary key or unique index
Skipped table public.partial_uq: no primary key or unique index
Skipped table s2.nokey: no primary key or unique index
Herd everything has the tables
`
	if out != want {
		t.Errorf("add table all, again, said:\n%s\nwant:\n%s", out, want)
	}
	if got := herdRows(t, ctl.DSN)[0]; got[0] != "everything" || !strings.Contains(got[1], "public.newer") {
		t.Errorf("herd everything: %v, want public.newer in it", got)
	}
	want = `Skipped table public.dotted.name: already added (db t1) (use 'ibex update table public."dotted.name" herd=h5' to put it in herd h5)
Herd h5 has the tables
`
	if r := ibex(t, ctl.DSN, "add", "table", "public.dotted*", "db=t1", "herd=h5"); r.Code != 0 || r.Out != want {
		t.Errorf("add table public.dotted* herd=h5: %s\nwant:\n%s", r, want)
	}
	// Named tables are still refused when known: nothing is added.
	before = state(t, ctl.DSN)
	refused(t, ctl.DSN, 1, args("add", "table", "newer", "s2.a", "db=t1"), "table public.newer already exists")
	unchanged(t, ctl.DSN, before, "refused add table of a known table")
}

// TestAddAllTablesSelection: Bucardo's 'add all tables' with -t, -T, -n, -N and %
// wildcards; a selection that keeps nothing is refused and changes nothing; the options
// are refused for objects other than tables and sequences.
func TestAddAllTablesSelection(t *testing.T) {
	t.Parallel()
	db := newDB(t, `CREATE SCHEMA app; CREATE SCHEMA tmp;
CREATE TABLE app.pgbench_a (id int PRIMARY KEY); CREATE TABLE app.pgbench_b (id int PRIMARY KEY); CREATE TABLE app.audit_log (id int PRIMARY KEY);
CREATE TABLE public.orders (id int PRIMARY KEY); CREATE TABLE public.orders_log (id int PRIMARY KEY); CREATE TABLE public.orders2 (id int PRIMARY KEY);
CREATE TABLE tmp.x (id int PRIMARY KEY);
CREATE SEQUENCE app.s1; CREATE SEQUENCE public.s2`)
	ctl := newControl(t)
	ok(t, ctl.DSN, ibextest.AddDBArgs("t1", db.Conn)...)

	out := ok(t, ctl.DSN, "add", "all", "tables", "db=t1", "herd=h", "-n", "app", "-T", "%_log")
	if want := "Added table app.pgbench_a: primary key (id)\nAdded table app.pgbench_b: primary key (id)\nHerd h has the tables\n"; out != want {
		t.Errorf("add all tables -n app -T %%_log said %q, want %q", out, want)
	}
	out = ok(t, ctl.DSN, "add", "table", "public.orders%", "db=t1", "--exclude-table", "public.%_log", "-t", "orders?")
	if want := "Added table public.orders2: primary key (id)\n"; out != want {
		t.Errorf("add table public.orders%% -T public.%%_log -t orders? said %q, want %q", out, want)
	}
	before := state(t, ctl.DSN)
	refused(t, ctl.DSN, 1, args("add", "all", "tables", "db=t1", "-N", "app", "-N", "public", "--exclude-schema", "tmp"), "no table that -t/-T/-n/-N keep")
	refused(t, ctl.DSN, 1, args("add", "table", "zz%", "db=t1", "-n", "app"), `table pattern "zz%" matches no table that -t/-T/-n/-N keep`)
	refused(t, ctl.DSN, 2, args("add", "herd", "h2", "-t", "x"), "-t, -T, -n and -N select tables or sequences: add herd does not take them")
	unchanged(t, ctl.DSN, before, "refused selections")
	out = ok(t, ctl.DSN, "add", "all", "sequences", "db=t1", "-n", "app")
	if !strings.HasPrefix(out, "Added sequence app.s1") || strings.Contains(out, "public.s2") {
		t.Errorf("add all sequences -n app said %q", out)
	}
}

// TestCustomNameYAML: customnames are exported with their table and applied back; applying
// the same file again changes nothing; a file whose customname names a table missing on the
// target is refused and changes nothing.
func TestCustomNameYAML(t *testing.T) {
	t.Parallel()
	src := newDB(t, `CREATE TABLE item (id int PRIMARY KEY, v text)`)
	dst := newDB(t, `CREATE TABLE item (id int PRIMARY KEY, v text); CREATE TABLE item_copy (id int PRIMARY KEY, v text)`)
	ctl := newControl(t)
	ok(t, ctl.DSN, ibextest.AddDBArgs("s1", src.Conn)...)
	ok(t, ctl.DSN, ibextest.AddDBArgs("d1", dst.Conn)...)
	ok(t, ctl.DSN, "add", "table", "item", "db=s1", "herd=h")
	ok(t, ctl.DSN, "add", "dbgroup", "g", "s1:source", "d1:target")
	ok(t, ctl.DSN, "add", "sync", "s", "herd=h", "dbs=g")
	if out := ok(t, ctl.DSN, "add", "customname", "item", "public.item_copy", "db=d1"); out != "Added customname 1: public.item is written as public.item_copy on db d1 (every sync)\n" {
		t.Errorf("add customname said %q", out)
	}
	exported := ok(t, ctl.DSN, "export")
	if want := "    customnames:\n      - name: public.item_copy\n        db: d1\n"; !strings.Contains(exported, want) {
		t.Fatalf("export lacks %q:\n%s", want, exported)
	}
	ok(t, ctl.DSN, "remove", "customname", "1")
	file := filepath.Join(t.TempDir(), "ibex.yaml")
	if err := os.WriteFile(file, []byte(exported), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := ok(t, ctl.DSN, "apply", "-f", file); !strings.Contains(out, "update table public.item") {
		t.Errorf("apply said %q", out)
	}
	if out := ok(t, ctl.DSN, "list", "customnames"); !strings.Contains(out, "public.item_copy") || !strings.Contains(out, "d1") {
		t.Errorf("list customnames after apply:\n%s", out)
	}
	if out := ok(t, ctl.DSN, "apply", "-f", file); !strings.HasPrefix(out, "No changes") {
		t.Errorf("second apply said %q", out)
	}
	before := state(t, ctl.DSN)
	bad := strings.Replace(exported, "name: public.item_copy", "name: public.nowhere", 1)
	if err := os.WriteFile(file, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	refused(t, ctl.DSN, 1, args("apply", "-f", file), "table public.nowhere, the customname of public.item on db d1, does not exist there")
	unchanged(t, ctl.DSN, before, "refused apply")
}

// TestCustomColsFiltersMakeDeltaYAML: customcols, scoped row filters and makedelta (db and
// table) are exported and applied back; applying the same file again changes nothing; a
// file whose customcols names a column the target lacks, or whose filter names an unknown
// column, is refused (apply validates again) and changes nothing.
func TestCustomColsFiltersMakeDeltaYAML(t *testing.T) {
	t.Parallel()
	src := newDB(t, `CREATE TABLE item (id int PRIMARY KEY, v text, region text)`)
	dst := newDB(t, `CREATE TABLE item (id int PRIMARY KEY, v text, region text)`)
	ctl := newControl(t)
	ok(t, ctl.DSN, ibextest.AddDBArgs("s1", src.Conn)...)
	ok(t, ctl.DSN, ibextest.AddDBArgs("d1", dst.Conn)...)
	ok(t, ctl.DSN, "add", "table", "item", "db=s1", "herd=h")
	ok(t, ctl.DSN, "add", "dbgroup", "g", "s1:source", "d1:target")
	ok(t, ctl.DSN, "add", "sync", "s", "herd=h", "dbs=g")
	if out := ok(t, ctl.DSN, "add", "customcols", "item", "SELECT id, upper(v) AS v", "db=d1"); out != "Added customcols 1: public.item sends \"SELECT id, upper(v) AS v\" to db d1\n" {
		t.Errorf("add customcols said %q", out)
	}
	ibextest.Exec(t, dst.DSN, `ALTER TABLE item DROP COLUMN region, ADD COLUMN extra int DEFAULT 1`)
	refused(t, ctl.DSN, 1, args("add", "customcols", "item", "SELECT id, v, region", "db=d1", "sync=s"), `table public.item on db d1 has no column "region"`)
	ok(t, ctl.DSN, "update", "table", "item", "where=region = 'eu'", "sync=s")
	ok(t, ctl.DSN, "update", "table", "item", "makedelta=on")
	ok(t, ctl.DSN, "update", "db", "s1", "makedelta=on")
	exported := ok(t, ctl.DSN, "export")
	for _, want := range []string{"    customcols:\n      - select: SELECT id, upper(v) AS v\n        db: d1\n",
		"    rowfilters:\n      - where: region = 'eu'\n        sync: s\n", "    makedelta: true\n", "    makedelta: \"on\"\n"} {
		if !strings.Contains(exported, want) {
			t.Errorf("export lacks %q:\n%s", want, exported)
		}
	}
	ok(t, ctl.DSN, "update", "table", "item", "where=", "sync=s")
	ok(t, ctl.DSN, "update", "table", "item", "makedelta=off")
	ok(t, ctl.DSN, "remove", "customcols", "1")
	file := filepath.Join(t.TempDir(), "ibex.yaml")
	if err := os.WriteFile(file, []byte(exported), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := ok(t, ctl.DSN, "apply", "-f", file); !strings.Contains(out, "update table public.item") {
		t.Errorf("apply said %q", out)
	}
	if out := ok(t, ctl.DSN, "export"); out != exported {
		t.Errorf("export after apply differs:\n%s", out)
	}
	if out := ok(t, ctl.DSN, "apply", "-f", file); !strings.HasPrefix(out, "No changes") {
		t.Errorf("second apply said %q", out)
	}
	before := state(t, ctl.DSN)
	for _, c := range []struct{ from, to, err string }{
		{"select: SELECT id, upper(v) AS v", "select: SELECT id, region", `table public.item on db d1 has no column "region"`},
		{"where: region = 'eu'", "where: colour = 'eu'", `column "colour" does not exist`},
	} {
		bad := strings.Replace(exported, c.from, c.to, 1)
		if err := os.WriteFile(file, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		refused(t, ctl.DSN, 1, args("apply", "-f", file), c.err)
		unchanged(t, ctl.DSN, before, "refused apply")
	}
}
