package flatfile_test

import (
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/flatfile"
)

// The index counts keys of every form it holds them in (integers, short texts, long
// texts hashed) exactly: a key that gets a row again is replaced, one without a row
// deleted, a new one neither; texts that read as the same number stay apart.
func TestIndexCounts(t *testing.T) {
	dir := t.TempDir()
	tbl := &sinks.Table{Schema: "public", Name: "t", Key: []string{"k"}, Cols: []string{"k", "v"}}
	long := strings.Repeat("long key ", 4)
	keys := []string{"1", "-9223372036854775808", "9223372036854775807", "99999999999999999999",
		"01", "+1", "-0", "short", long + "a", long + "b", `with\ttab`}
	var rows []string
	for _, k := range keys {
		rows = append(rows, row(k, "v"))
	}
	s := openSink(t, dir, 1)
	if c := unit(t, s, tbl, keys, rows); c != (sinks.Counts{Written: 11}) {
		t.Fatalf("first batch: counts %+v", c)
	}
	// Every other key gets a row again, the others none; two keys are new.
	var keys2, rows2 []string
	for i, k := range keys {
		keys2 = append(keys2, k)
		if i%2 == 0 {
			rows2 = append(rows2, row(k, "w"))
		}
	}
	keys2 = append(keys2, "2", long+"c")
	rows2 = append(rows2, row("2", "w"), row(long+"c", "w"))
	if c := unit(t, s, tbl, keys2, rows2); c != (sinks.Counts{Written: 8, Deleted: 11}) {
		t.Fatalf("second batch: counts %+v", c)
	}
	// Now the even keys, 2 and long+c are there; the odd ones are gone.
	if c := unit(t, s, tbl, keys2, nil); c != (sinks.Counts{Deleted: 8}) {
		t.Fatalf("third batch: counts %+v", c)
	}
	if c := unit(t, s, tbl, keys2, nil); c != (sinks.Counts{}) {
		t.Fatalf("fourth batch: counts %+v", c)
	}
}

// A key whose row comes twice, in a batch or a whole-table copy, fails the unit: its
// file would not replay.
func TestKeyTwice(t *testing.T) {
	ctx := t.Context()
	tbl := &sinks.Table{Schema: "public", Name: "t", Key: []string{"k"}, Cols: []string{"k", "v"}}
	s := openSink(t, t.TempDir(), 1)
	for _, copy := range []bool{false, true} {
		if err := s.Begin(ctx); err != nil {
			t.Fatal(err)
		}
		var err error
		if copy {
			_, err = s.ReplaceTable(ctx, tbl, false)
		} else {
			_, err = s.PrepareBatch(ctx, tbl, []string{"1", "2"})
		}
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.WriteRows(ctx, tbl, lines([]string{row("1", "a"), row("2", "b"), row("1", "c")}))
		if err == nil || !strings.Contains(err.Error(), "twice") {
			t.Fatalf("copy %v: a key twice: %v", copy, err)
		}
		s.Rollback(ctx)
	}
	// A key that is not one of the batch's.
	if err := s.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PrepareBatch(ctx, tbl, []string{"1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteRows(ctx, tbl, lines([]string{row("3", "a")})); err == nil || !strings.Contains(err.Error(), "not one of the batch's keys") {
		t.Fatalf("a key not in the batch: %v", err)
	}
	s.Rollback(ctx)
}

// An index of another format (format 1, the first one, or a newer one) is refused with
// advice.
func TestIndexFormat(t *testing.T) {
	for _, c := range []struct{ setup, want string }{
		{`CREATE TABLE ibex_keys (t INTEGER, k BLOB)`, "written by an older ibex in format 1"},
		{`PRAGMA user_version = 7`, "written in format 7, this ibex reads format 2"},
	} {
		dir := t.TempDir()
		db, err := sql.Open("sqlite", filepath.Join(dir, flatfile.IndexFile))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(c.setup); err != nil {
			t.Fatal(err)
		}
		db.Close()
		_, err = flatfile.Open(t.Context(), sinks.Config{DB: "ff", Params: map[string]string{"path": dir}, Sync: "t", Run: 1})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%s: Open: %v, expected %q", c.setup, err, c.want)
		}
	}
	// A current index opens again.
	dir := t.TempDir()
	_ = openSink(t, dir, 1)
	_ = openSink(t, dir, 2)
}
