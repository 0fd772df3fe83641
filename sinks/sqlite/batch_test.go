package sqlite_test

import (
	"database/sql"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/sqlite"
)

// sinkOn opens a sink on a new file in which ddl (the application's) has run.
func sinkOn(t *testing.T, ddl string) (*sqlite.Sink, *sql.DB) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "batch.db")
	app := appDB(t, path)
	if _, err := app.Exec(ddl); err != nil {
		t.Fatal(err)
	}
	s, err := sqlite.Open(t.Context(), sinks.Config{DB: "lite", Params: map[string]string{"path": path}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, app
}

// batchOf runs one unit of one batch of tbl and returns FinishBatch's counts, or the
// first error (the unit rolled back).
func batchOf(t *testing.T, s *sqlite.Sink, tbl *sinks.Table, keys []string, rows string) (sinks.Counts, error) {
	t.Helper()
	ctx := t.Context()
	if err := s.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := func() (sinks.Counts, error) {
		if _, err := s.PrepareBatch(ctx, tbl, keys); err != nil {
			return sinks.Counts{}, err
		}
		if _, err := s.WriteRows(ctx, tbl, strings.NewReader(rows)); err != nil {
			return sinks.Counts{}, err
		}
		return s.FinishBatch(ctx, tbl)
	}()
	if err != nil {
		s.Rollback(ctx)
		return c, err
	}
	return c, s.Commit(ctx)
}

// dump is the table's rows as "col|col|..." lines, sorted.
func dump(t *testing.T, app *sql.DB, table string) []string {
	t.Helper()
	rows, err := app.Query(`SELECT * FROM ` + table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		var f []string
		for _, v := range vals {
			f = append(f, v.String)
		}
		out = append(out, strings.Join(f, "|"))
	}
	slices.Sort(out)
	return out
}

var kv = &sinks.Table{Schema: "public", Name: "kv", Key: []string{"id"}, Cols: []string{"id", "v"},
	Columns: []catalog.Column{{Name: "id", Type: "integer", NotNull: true}, {Name: "v", Type: "text"}}}

// TestBatchRowTwice: a key's second row in one batch fails the batch (an upsert would
// silently replace the first), and so does a row whose key is not the batch's (it would
// replace a row the batch did not count); the unit leaves nothing.
func TestBatchRowTwice(t *testing.T) {
	s, app := sinkOn(t, `CREATE TABLE kv (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO kv VALUES (1, 'old'), (2, 'old')`)
	for _, c := range []struct{ rows, want string }{
		{"1\ta\n2\tb\n1\tc\n", "row 3 (key \"1\") of public.kv: a second row for the same key in one batch"},
		{"1\ta\n3\tb\n", "row 2 (key \"3\") of public.kv: its key is not one of the batch's keys"},
	} {
		_, err := batchOf(t, s, kv, []string{"1", "2"}, c.rows)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("rows %q: %v; expected an error with %q", c.rows, err, c.want)
		}
		if got := dump(t, app, "kv"); !slices.Equal(got, []string{"1|old", "2|old"}) {
			t.Errorf("rows %q: the table holds %q after the failed unit", c.rows, got)
		}
	}
}

// TestBatchKeyByValue: a key and its row printed differently (a timestamptz at two
// offsets) are one key: the row stays, it is not deleted as a key without a row.
func TestBatchKeyByValue(t *testing.T) {
	tbl := &sinks.Table{Schema: "public", Name: "ev", Key: []string{"at"}, Cols: []string{"at", "v"},
		Columns: []catalog.Column{{Name: "at", Type: "timestamp with time zone", NotNull: true}, {Name: "v", Type: "text"}}}
	s, app := sinkOn(t, `CREATE TABLE ev (at TEXT PRIMARY KEY, v TEXT); INSERT INTO ev VALUES ('2024-01-01 00:00:00+00:00', 'old')`)
	c, err := batchOf(t, s, tbl, []string{"2024-01-01 01:00:00+01"}, "2024-01-01 00:00:00+00\tnew\n")
	if err != nil || c != (sinks.Counts{Written: 1, Deleted: 1}) {
		t.Fatalf("batch = %+v, %v; expected 1 written, 1 deleted", c, err)
	}
	if got := dump(t, app, "ev"); !slices.Equal(got, []string{"2024-01-01 00:00:00+00:00|new"}) {
		t.Fatalf("rows %q", got)
	}
}

// TestBatchKeyOnly: a table of key columns only: a row whose key is there counts as
// written (the upsert sets the key to itself).
func TestBatchKeyOnly(t *testing.T) {
	tbl := &sinks.Table{Schema: "public", Name: "k", Key: []string{"a", "b"}, Cols: []string{"a", "b"},
		Columns: []catalog.Column{{Name: "a", Type: "integer"}, {Name: "b", Type: "text"}}}
	s, app := sinkOn(t, `CREATE TABLE k (a INTEGER, b TEXT, PRIMARY KEY (a, b)); INSERT INTO k VALUES (1, 'x'), (2, 'y')`)
	c, err := batchOf(t, s, tbl, []string{"1\tx", "2\ty", "3\tz"}, "1\tx\n3\tz\n")
	if err != nil || c != (sinks.Counts{Written: 2, Deleted: 2}) {
		t.Fatalf("batch = %+v, %v; expected 2 written, 2 deleted", c, err)
	}
	if got := dump(t, app, "k"); !slices.Equal(got, []string{"1|x", "3|z"}) {
		t.Fatalf("rows %q", got)
	}
}

// TestBatchNoKeyConstraint: a table the application made without a PRIMARY KEY or
// UNIQUE constraint on the key columns (no upsert can name it) has its keys deleted
// first and its rows inserted, as before; a key's second row still fails.
func TestBatchNoKeyConstraint(t *testing.T) {
	s, app := sinkOn(t, `CREATE TABLE kv (id INTEGER, v TEXT); INSERT INTO kv VALUES (1, 'old'), (2, 'old'), (3, 'old')`)
	c, err := batchOf(t, s, kv, []string{"1", "2", "4"}, "1\tnew\n4\tnew\n")
	if err != nil || c != (sinks.Counts{Written: 2, Deleted: 2}) {
		t.Fatalf("batch = %+v, %v; expected 2 written, 2 deleted", c, err)
	}
	if got := dump(t, app, "kv"); !slices.Equal(got, []string{"1|new", "3|old", "4|new"}) {
		t.Fatalf("rows %q", got)
	}
	if _, err := batchOf(t, s, kv, []string{"1"}, "1\ta\n1\tb\n"); err == nil || !strings.Contains(err.Error(), "a second row for the same key") {
		t.Fatalf("a key's second row: %v", err)
	}
}

// TestBatchNoDeleteTrigger: replacing a row updates it in place: the application's
// DELETE triggers fire only for the keys the batch deletes (INSERT OR REPLACE would
// delete every replaced row, firing them when recursive_triggers is on).
func TestBatchNoDeleteTrigger(t *testing.T) {
	s, app := sinkOn(t, `CREATE TABLE kv (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO kv VALUES (1, 'old'), (2, 'old');
		CREATE TABLE gone (id INTEGER);
		CREATE TRIGGER kv_gone AFTER DELETE ON kv BEGIN INSERT INTO gone VALUES (OLD.id); END`)
	c, err := batchOf(t, s, kv, []string{"1", "2"}, "1\tnew\n")
	if err != nil || c != (sinks.Counts{Written: 1, Deleted: 2}) {
		t.Fatalf("batch = %+v, %v; expected 1 written, 2 deleted", c, err)
	}
	if got := dump(t, app, "gone"); !slices.Equal(got, []string{"2"}) {
		t.Fatalf("delete trigger fired for %q; expected 2 only", got)
	}
}
