package catalog_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/pgtest"
)

const keysSQL = `
CREATE SCHEMA "My Schema";
CREATE SCHEMA s2;
-- composite primary key, declared in another order than the columns
CREATE TABLE comp (a int, b text, c int, PRIMARY KEY (c, a));
CREATE TABLE "MixedCase" ("Id" int PRIMARY KEY, "Name" text);
CREATE TABLE "My Schema"."Order Lines" ("Order ID" int, "Line No" int, note text, PRIMARY KEY ("Order ID", "Line No"));
CREATE TABLE "ünïcödé" ("ключ" int PRIMARY KEY, "值" text);
CREATE TABLE "we""ird'tbl" ("co""l'x" text NOT NULL UNIQUE, v int);
CREATE TABLE "dotted.name" ("a.b" int PRIMARY KEY);
-- unique indexes that are not keys
CREATE TABLE nullable_uq (a int UNIQUE, b int);
CREATE TABLE half_nullable_uq (a int NOT NULL, b int, UNIQUE (a, b));
CREATE TABLE partial_uq (a int NOT NULL, b int);
CREATE UNIQUE INDEX partial_uq_a ON partial_uq (a) WHERE b > 0;
CREATE TABLE expr_uq (s text NOT NULL);
CREATE UNIQUE INDEX expr_uq_lower ON expr_uq (lower(s));
CREATE TABLE deferred_uq (a int NOT NULL UNIQUE DEFERRABLE INITIALLY DEFERRED);
CREATE TABLE plain_index (a int NOT NULL);
CREATE INDEX plain_index_a ON plain_index (a);
CREATE TABLE no_key (v int);
-- the primary key wins over a narrower unique index
CREATE TABLE pk_and_uq (a int, b int, c int NOT NULL UNIQUE, PRIMARY KEY (a, b));
-- the narrowest unique index wins; among equals, the first made
CREATE TABLE uq_narrow (a int NOT NULL, b int NOT NULL, c int NOT NULL, d int NOT NULL, UNIQUE (a, b));
CREATE UNIQUE INDEX uq_narrow_d ON uq_narrow (d);
CREATE UNIQUE INDEX uq_narrow_c ON uq_narrow (c);
-- a unique index over nullable columns next to a usable one
CREATE TABLE uq_mixed (a int UNIQUE, b int NOT NULL, c int NOT NULL, UNIQUE (b, c));
-- INCLUDE columns are not part of the key
CREATE TABLE pk_include (id int, v text, PRIMARY KEY (id) INCLUDE (v));
CREATE TABLE uq_include (a int NOT NULL, b int NOT NULL, UNIQUE (a) INCLUDE (b));
-- dropped and generated columns are not columns to replicate
CREATE TABLE cols (id int PRIMARY KEY, gone int, v numeric(10,2) NOT NULL, g int GENERATED ALWAYS AS (id * 2) STORED, t timestamptz);
ALTER TABLE cols DROP COLUMN gone;
-- partitioned
CREATE TABLE parted (id int, k int, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (10);
CREATE TABLE s2.x (id bigint PRIMARY KEY);
`

func connect(t *testing.T, sql string) *pgx.Conn {
	t.Helper()
	db := pgtest.NewDB(t, "")
	c := pgtest.Conn(t, db.DSN)
	if _, err := c.Exec(context.Background(), sql); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDescribeKeys(t *testing.T) {
	t.Parallel()
	c := connect(t, keysSQL)
	ctx := context.Background()
	for _, tc := range []struct {
		name     catalog.QualName
		kind     string
		key      []string
		nColumns int
	}{
		{catalog.QualName{Schema: "public", Name: "comp"}, catalog.KeyPrimary, []string{"c", "a"}, 3},
		{catalog.QualName{Schema: "public", Name: "MixedCase"}, catalog.KeyPrimary, []string{"Id"}, 2},
		{catalog.QualName{Schema: "My Schema", Name: "Order Lines"}, catalog.KeyPrimary, []string{"Order ID", "Line No"}, 3},
		{catalog.QualName{Schema: "public", Name: "ünïcödé"}, catalog.KeyPrimary, []string{"ключ"}, 2},
		{catalog.QualName{Schema: "public", Name: `we"ird'tbl`}, catalog.KeyUnique, []string{`co"l'x`}, 2},
		{catalog.QualName{Schema: "public", Name: "dotted.name"}, catalog.KeyPrimary, []string{"a.b"}, 1},
		{catalog.QualName{Schema: "public", Name: "nullable_uq"}, catalog.KeyNone, nil, 2},
		{catalog.QualName{Schema: "public", Name: "half_nullable_uq"}, catalog.KeyNone, nil, 2},
		{catalog.QualName{Schema: "public", Name: "partial_uq"}, catalog.KeyNone, nil, 2},
		{catalog.QualName{Schema: "public", Name: "expr_uq"}, catalog.KeyNone, nil, 1},
		{catalog.QualName{Schema: "public", Name: "deferred_uq"}, catalog.KeyNone, nil, 1},
		{catalog.QualName{Schema: "public", Name: "plain_index"}, catalog.KeyNone, nil, 1},
		{catalog.QualName{Schema: "public", Name: "no_key"}, catalog.KeyNone, nil, 1},
		{catalog.QualName{Schema: "public", Name: "pk_and_uq"}, catalog.KeyPrimary, []string{"a", "b"}, 3},
		{catalog.QualName{Schema: "public", Name: "uq_narrow"}, catalog.KeyUnique, []string{"d"}, 4},
		{catalog.QualName{Schema: "public", Name: "uq_mixed"}, catalog.KeyUnique, []string{"b", "c"}, 3},
		{catalog.QualName{Schema: "public", Name: "pk_include"}, catalog.KeyPrimary, []string{"id"}, 2},
		{catalog.QualName{Schema: "public", Name: "uq_include"}, catalog.KeyUnique, []string{"a"}, 2},
		{catalog.QualName{Schema: "public", Name: "parted"}, catalog.KeyPrimary, []string{"id", "k"}, 2},
		{catalog.QualName{Schema: "s2", Name: "x"}, catalog.KeyPrimary, []string{"id"}, 1},
	} {
		tb, err := catalog.Describe(ctx, c, tc.name)
		if err != nil {
			t.Errorf("Describe(%s): %v", tc.name, err)
			continue
		}
		if tb.KeyKind != tc.kind || !cmp.Equal(tb.KeyCols, tc.key) || len(tb.Columns) != tc.nColumns {
			t.Errorf("Describe(%s): key %s %q with %d columns, want %s %q with %d", tc.name, tb.KeyKind, tb.KeyCols, len(tb.Columns), tc.kind, tc.key, tc.nColumns)
		}
		if tb.Schema != tc.name.Schema || tb.Name != tc.name.Name {
			t.Errorf("Describe(%s) names %s.%s", tc.name, tb.Schema, tb.Name)
		}
	}

	// Columns: in order, with types, without dropped or generated ones.
	tb, err := catalog.Describe(ctx, c, catalog.QualName{Schema: "public", Name: "cols"})
	if err != nil {
		t.Fatal(err)
	}
	want := []catalog.Column{{Name: "id", Type: "integer", NotNull: true}, {Name: "v", Type: "numeric(10,2)", NotNull: true}, {Name: "t", Type: "timestamp with time zone"}}
	if diff := cmp.Diff(want, tb.Columns); diff != "" {
		t.Errorf("columns of cols (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"id", "v", "t"}, tb.ColumnNames()); diff != "" {
		t.Errorf("ColumnNames (-want +got):\n%s", diff)
	}
	if got := tb.Ident().Sanitize(); got != `"public"."cols"` {
		t.Errorf("Ident: %s", got)
	}

	// Missing tables, including ones that only exist under another case.
	for _, n := range []catalog.QualName{{Schema: "public", Name: "nosuch"}, {Schema: "public", Name: "mixedcase"}, {Schema: "nosuch", Name: "comp"}} {
		if _, err := catalog.Describe(ctx, c, n); !errors.Is(err, catalog.ErrNoTable) {
			t.Errorf("Describe(%s): %v, want ErrNoTable", n, err)
		}
	}
}

// TestDescribeKeyChanges: the key follows the table's indexes as they change.
func TestDescribeKeyChanges(t *testing.T) {
	t.Parallel()
	c := connect(t, `CREATE TABLE k (a int NOT NULL, b int NOT NULL)`)
	ctx := context.Background()
	n := catalog.QualName{Schema: "public", Name: "k"}
	step := func(sql, kind string, key ...string) {
		t.Helper()
		if sql != "" {
			if _, err := c.Exec(ctx, sql); err != nil {
				t.Fatal(err)
			}
		}
		tb, err := catalog.Describe(ctx, c, n)
		if err != nil {
			t.Fatal(err)
		}
		if tb.KeyKind != kind || !cmp.Equal(tb.KeyCols, key) {
			t.Errorf("after %q: %s %q, want %s %q", sql, tb.KeyKind, tb.KeyCols, kind, key)
		}
	}
	step("", catalog.KeyNone)
	step(`CREATE UNIQUE INDEX k_b ON k (b)`, catalog.KeyUnique, "b")
	step(`ALTER TABLE k ADD PRIMARY KEY (a, b)`, catalog.KeyPrimary, "a", "b")
	step(`ALTER TABLE k DROP CONSTRAINT k_pkey`, catalog.KeyUnique, "b")
	step(`ALTER TABLE k ALTER COLUMN b DROP NOT NULL`, catalog.KeyNone)
}

func TestResolveAndListTables(t *testing.T) {
	t.Parallel()
	c := connect(t, `
CREATE SCHEMA s2;
CREATE SCHEMA ibex;
CREATE TABLE a1 (id int PRIMARY KEY);
CREATE TABLE a2 (id int PRIMARY KEY);
CREATE TABLE b1 (id int PRIMARY KEY);
CREATE TABLE s2.a1 (id int PRIMARY KEY);
CREATE TABLE ibex."sync.public.a1" (id int);
CREATE VIEW v AS SELECT 1 AS x;
CREATE TABLE parted (id int, k int) PARTITION BY RANGE (k);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (10);
`)
	ctx := context.Background()
	q := func(s, n string) catalog.QualName { return catalog.QualName{Schema: s, Name: n} }
	all, err := catalog.ListTables(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	wantAll := []catalog.QualName{q("public", "a1"), q("public", "a2"), q("public", "b1"), q("public", "parted"), q("s2", "a1")}
	if diff := cmp.Diff(wantAll, all); diff != "" {
		t.Errorf("ListTables (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		arg  string
		want []catalog.QualName
	}{
		{"all", wantAll},
		{"a*", []catalog.QualName{q("public", "a1"), q("public", "a2")}},
		{"public.a?", []catalog.QualName{q("public", "a1"), q("public", "a2")}},
		{"*.a1", []catalog.QualName{q("public", "a1"), q("s2", "a1")}},
		{"s2.*", []catalog.QualName{q("s2", "a1")}},
		{"[ab]1", []catalog.QualName{q("public", "a1"), q("public", "b1")}},
		{"a1", []catalog.QualName{q("public", "a1")}},
		{"s2.a1", []catalog.QualName{q("s2", "a1")}},
		{"nosuch", []catalog.QualName{q("public", "nosuch")}}, // names are not checked here
	} {
		got, err := catalog.Resolve(ctx, c, tc.arg, catalog.Filter{})
		if err != nil {
			t.Errorf("Resolve(%q): %v", tc.arg, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("Resolve(%q) (-want +got):\n%s", tc.arg, diff)
		}
	}
	if _, err := catalog.Resolve(ctx, c, "zz*", catalog.Filter{}); err == nil || err.Error() != `table pattern "zz*" matches no table` {
		t.Errorf("Resolve(zz*): %v", err)
	}
}

func TestParseName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want catalog.QualName
	}{
		{"t", catalog.QualName{Schema: "public", Name: "t"}},
		{"s.t", catalog.QualName{Schema: "s", Name: "t"}},
		{"MixedCase", catalog.QualName{Schema: "public", Name: "MixedCase"}},
		{`"My Schema"."Order Lines"`, catalog.QualName{Schema: "My Schema", Name: "Order Lines"}},
		{`My Schema.Order Lines`, catalog.QualName{Schema: "My Schema", Name: "Order Lines"}},
		{`"dotted.name"`, catalog.QualName{Schema: "public", Name: "dotted.name"}},
		{`"a.b"."c.d"`, catalog.QualName{Schema: "a.b", Name: "c.d"}},
		{`"we""ird'tbl"`, catalog.QualName{Schema: "public", Name: `we"ird'tbl`}},
		{`s."ünï ""q"""`, catalog.QualName{Schema: "s", Name: `ünï "q"`}},
		{"ünïcödé.таблица", catalog.QualName{Schema: "ünïcödé", Name: "таблица"}},
	} {
		got, err := catalog.ParseName(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseName(%q) = %#v, %v; want %#v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "a.b.c", `"unbalanced`, "a.", ".b", `""`} {
		if got, err := catalog.ParseName(in); err == nil {
			t.Errorf("ParseName(%q) = %#v, want an error", in, got)
		}
	}
}

func TestCompare(t *testing.T) {
	t.Parallel()
	a := &catalog.Table{Schema: "public", Name: "t", Columns: []catalog.Column{{Name: "id", Type: "integer"}, {Name: "v", Type: "text"}, {Name: "w", Type: "integer"}}}
	same := &catalog.Table{Schema: "public", Name: "t", Columns: []catalog.Column{{Name: "w", Type: "integer"}, {Name: "id", Type: "integer"}, {Name: "v", Type: "character varying(20)"}}}
	if got := catalog.Compare(a, same, "t1", "t2"); got != "" {
		t.Errorf("Compare of compatible tables: %q", got)
	}
	other := &catalog.Table{Schema: "public", Name: "t", Columns: []catalog.Column{{Name: "id", Type: "bigint"}, {Name: "v", Type: "text"}, {Name: "x", Type: "integer"}}}
	want := `table public.t differs: column "id" is integer on db t1 but bigint on db t2; column "w" is on db t1 but not on db t2; column "x" is on db t2 but not on db t1`
	if got := catalog.Compare(a, other, "t1", "t2"); got != want {
		t.Errorf("Compare:\n%s\nwant:\n%s", got, want)
	}
}

// TestDescribeAll: tables described together in one batch (missing ones among them) are
// described as one at a time, in the order asked, with their other unique indexes and
// whether they are partitioned.
func TestDescribeAll(t *testing.T) {
	t.Parallel()
	c := connect(t, keysSQL)
	ctx := context.Background()
	names := []catalog.QualName{{Schema: "public", Name: "uq_narrow"}, {Schema: "public", Name: "nosuch"}, {Schema: "public", Name: "parted"},
		{Schema: "My Schema", Name: "Order Lines"}, {Schema: "public", Name: "pk_and_uq"}, {Schema: "public", Name: "uq_mixed"}, {Schema: "public", Name: "cols"}}
	ts, errs := make([]*catalog.Table, len(names)), make([]error, len(names))
	b := &pgx.Batch{}
	catalog.QueueDescribeAll(b, names, ts, errs)
	if err := c.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	for i, n := range names {
		one, err := catalog.Describe(ctx, c, n)
		if !errors.Is(errs[i], err) && (err == nil || errs[i] == nil || err.Error() != errs[i].Error()) {
			t.Errorf("%s: error %v together, %v alone", n, errs[i], err)
		}
		if diff := cmp.Diff(one, ts[i]); diff != "" {
			t.Errorf("%s: together vs alone (-alone +together):\n%s", n, diff)
		}
	}
	if !errors.Is(errs[1], catalog.ErrNoTable) {
		t.Errorf("nosuch: %v, want ErrNoTable", errs[1])
	}
	want := map[string][][]string{"uq_narrow": {{"a", "b"}, {"c"}}, "pk_and_uq": {{"c"}}, "uq_mixed": {{"a"}}, "parted": nil, "cols": nil}
	for i, n := range names {
		if w, ok := want[n.Name]; ok && ts[i] != nil && !cmp.Equal(w, ts[i].Uniques) {
			t.Errorf("%s: other unique indexes %q, want %q", n, ts[i].Uniques, w)
		}
		if ts[i] != nil && ts[i].Partitioned != (n.Name == "parted") {
			t.Errorf("%s: partitioned %v", n, ts[i].Partitioned)
		}
	}
}
