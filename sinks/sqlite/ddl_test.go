package sqlite_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/sqlite"
)

func openAt(t *testing.T, path string) *sqlite.Sink {
	t.Helper()
	s, err := sqlite.Open(t.Context(), sinks.Config{DB: "lite", Params: map[string]string{"path": path}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestCheckAndCreateTable(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "ddl.db")
	s := openAt(t, path)
	app := appDB(t, path)
	tbl := &sinks.Table{Schema: `Sch"ema`, Name: `t.1 ü`, Key: []string{"k1", "K 2"}, Cols: []string{"k1", "K 2", "v", "ts"},
		Columns: []catalog.Column{{Name: "k1", Type: "bigint", NotNull: true}, {Name: "K 2", Type: "text", NotNull: true},
			{Name: "v", Type: "numeric(10,2)", NotNull: true}, {Name: "ts", Type: "timestamp with time zone"}}}

	// Missing table: the DDL, run by hand, makes CheckTable pass.
	err := s.CheckTable(ctx, tbl)
	var me *sinks.MissingError
	if !errors.As(err, &me) || me.Columns != nil || me.DB != "lite" || me.Table != `Sch"ema.t.1 ü` {
		t.Fatalf("CheckTable of a missing table: %v", err)
	}
	wantDDL := `CREATE TABLE "main"."Sch""ema.t.1 ü" (
  "k1" INTEGER NOT NULL,
  "K 2" TEXT NOT NULL,
  "v" TEXT NOT NULL,
  "ts" TEXT,
  PRIMARY KEY ("k1", "K 2")
)`
	if me.DDL != wantDDL {
		t.Fatalf("DDL:\n%s\nexpected:\n%s", me.DDL, wantDDL)
	}
	if _, err := app.Exec(me.DDL); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckTable(ctx, tbl); err != nil {
		t.Fatalf("CheckTable after the DDL: %v", err)
	}

	// Missing columns (names compare as SQLite does: ASCII case folded).
	wide := *tbl
	wide.Cols = append(slices.Clone(tbl.Cols), "V", "new col", "arr")
	wide.Columns = append(slices.Clone(tbl.Columns), catalog.Column{Name: "V", Type: "integer"},
		catalog.Column{Name: "new col", Type: "bytea", NotNull: true}, catalog.Column{Name: "arr", Type: "integer[]"})
	err = s.CheckTable(ctx, &wide)
	if !errors.As(err, &me) || !slices.Equal(me.Columns, []string{"new col", "arr"}) {
		t.Fatalf("CheckTable with missing columns: %v", err)
	}
	wantDDL = `ALTER TABLE "main"."Sch""ema.t.1 ü" ADD COLUMN "new col" BLOB;
ALTER TABLE "main"."Sch""ema.t.1 ü" ADD COLUMN "arr" TEXT`
	if me.DDL != wantDDL {
		t.Fatalf("DDL:\n%s\nexpected:\n%s", me.DDL, wantDDL)
	}
	wantMsg := "db lite: table Sch\"ema.t.1 ü lacks column(s) new col, arr: create it with\n  " + wantDDL + "\nor run 'ibex validate SYNC --create-targets'"
	if err.Error() != wantMsg {
		t.Fatalf("message:\n%s\nexpected:\n%s", err, wantMsg)
	}
	if _, err := app.Exec(me.DDL); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckTable(ctx, &wide); err != nil {
		t.Fatalf("CheckTable after the DDL: %v", err)
	}

	// CreateTable: creates a table, adds missing columns, leaves a complete table alone.
	other := &sinks.Table{Schema: "public", Name: "created", Key: []string{"id"}, Cols: []string{"id", "a"},
		Columns: []catalog.Column{{Name: "id", Type: "integer"}, {Name: "a", Type: "double precision"}}}
	for range 2 {
		if err := s.CreateTable(ctx, other); err != nil {
			t.Fatal(err)
		}
		if err := s.CheckTable(ctx, other); err != nil {
			t.Fatal(err)
		}
	}
	more := *other
	more.Cols = append(slices.Clone(other.Cols), "b")
	more.Columns = append(slices.Clone(other.Columns), catalog.Column{Name: "b", Type: "boolean"})
	if err := s.CreateTable(ctx, &more); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckTable(ctx, &more); err != nil {
		t.Fatal(err)
	}
	var got []string
	rows, err := app.Query(`SELECT name || ' ' || type || ' ' || "notnull" || ' ' || pk FROM pragma_table_info('created')`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			t.Fatal(err)
		}
		got = append(got, l)
	}
	if want := []string{"id INTEGER 1 1", "a REAL 0 0", "b INTEGER 0 0"}; !slices.Equal(got, want) {
		t.Fatalf("columns of created: %q, expected %q", got, want)
	}

	// Not inside a unit.
	if err := s.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTable(ctx, &more); err == nil || !strings.Contains(err.Error(), "transaction is open") {
		t.Fatalf("CreateTable in a unit: %v", err)
	}
	s.Rollback(ctx)
}

func TestTableName(t *testing.T) {
	for _, c := range [][3]string{
		{"public", "orders", "orders"},
		{"sales", "orders", "sales.orders"},
		{"public", "a.b", `a\.b`},
		{"a", "b", "a.b"},
		{"a.", "b", `a\..b`},
		{"a", ".b", `a..b`},
		{"public", `x\y`, `x\\y`},
		{"Sch ema", `T"x`, `Sch ema.T"x`},
	} {
		if got := sqlite.TableName(c[0], c[1]); got != c[2] {
			t.Errorf("TableName(%q, %q) = %q, expected %q", c[0], c[1], got, c[2])
		}
	}
}

// TestRowCount: a trigger that drops rows (RAISE(IGNORE)) makes FinishBatch return a
// *sinks.RowCountError, and the unit cannot be committed.
func TestRowCount(t *testing.T) {
	ctx := t.Context()
	tbl := &sinks.Table{Schema: "public", Name: "dropped", Key: []string{"id"}, Cols: []string{"id", "v"},
		Columns: []catalog.Column{{Name: "id", Type: "integer"}, {Name: "v", Type: "text"}}}
	s, app := newSinkAt(t, tbl)
	if _, err := app.Exec(`CREATE TRIGGER drop_odd BEFORE INSERT ON dropped WHEN NEW.id % 2 = 1 BEGIN SELECT RAISE(IGNORE); END`); err != nil {
		t.Fatal(err)
	}
	if err := s.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PrepareBatch(ctx, tbl, []string{"1", "2", "3"}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.WriteRows(ctx, tbl, strings.NewReader("1\ta\n2\tb\n3\tc\n")); err != nil || n != 3 {
		t.Fatalf("WriteRows = %d, %v", n, err)
	}
	_, err := s.FinishBatch(ctx, tbl)
	var rc *sinks.RowCountError
	if !errors.As(err, &rc) || *rc != (sinks.RowCountError{DB: "lite", Written: 1, Sent: 3}) {
		t.Fatalf("FinishBatch: %v; expected a RowCountError of 1 written, 3 sent", err)
	}
	if err := s.Commit(ctx); err == nil {
		t.Fatal("Commit after a RowCountError succeeded")
	}
	var n int
	if err := app.QueryRow(`SELECT count(*) FROM dropped`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("rows: %d, %v; expected 0", n, err)
	}
}

// TestManyKeys: a batch of more keys than one DELETE takes, with a two-column key and a
// key given twice, deletes and counts each existing key once.
func TestManyKeys(t *testing.T) {
	ctx := t.Context()
	tbl := &sinks.Table{Schema: "public", Name: "many", Key: []string{"a", "b"}, Cols: []string{"a", "b", "v"},
		Columns: []catalog.Column{{Name: "a", Type: "integer"}, {Name: "b", Type: "text"}, {Name: "v", Type: "text"}}}
	s, app := newSinkAt(t, tbl)
	for i := range 450 {
		if _, err := app.Exec(`INSERT INTO many VALUES (?, ?, 'old')`, i, fmt.Sprint("k", i)); err != nil {
			t.Fatal(err)
		}
	}
	var keys []string
	for i := 100; i < 1000; i += 2 { // 450 keys, 175 of them stored (100, 102 ... 448)
		keys = append(keys, fmt.Sprintf("%d\tk%d", i, i))
	}
	keys = append(keys, "100\tk100", "101\tk999") // a key twice, a key with no row
	if err := s.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PrepareBatch(ctx, tbl, keys); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteRows(ctx, tbl, strings.NewReader("100\tk100\tnew\n")); err != nil {
		t.Fatal(err)
	}
	c, err := s.FinishBatch(ctx, tbl)
	if err != nil || c != (sinks.Counts{Written: 1, Deleted: 175}) {
		t.Fatalf("FinishBatch = %+v, %v; expected 1 written, 175 deleted", c, err)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var n, news int
	if err := app.QueryRow(`SELECT count(*), count(*) FILTER (WHERE v = 'new') FROM many`).Scan(&n, &news); err != nil || n != 450-175+1 || news != 1 {
		t.Fatalf("rows: %d (%d new), %v; expected %d (1 new)", n, news, err, 450-175+1)
	}
}
