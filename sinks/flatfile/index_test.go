package flatfile_test

import (
	"database/sql"
	"path/filepath"
	"strconv"
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

// Batches whose keys are every integer of a range (counted and added by the range) count
// exactly, whatever the index held in and around the range, and leave the index holding
// exactly the keys that got rows; a range next to other keys' forms leaves those alone.
func TestIndexCountsRange(t *testing.T) {
	dir := t.TempDir()
	tbl := &sinks.Table{Schema: "public", Name: "t", Key: []string{"k"}, Cols: []string{"k", "v"}}
	span := func(lo, hi int, rowIf func(int) bool) (keys, rows []string) {
		for i := lo; i <= hi; i++ {
			keys = append(keys, strconv.Itoa(i))
			if rowIf(i) {
				rows = append(rows, row(strconv.Itoa(i), "v"))
			}
		}
		return keys, rows
	}
	all := func(int) bool { return true }
	even := func(i int) bool { return i%2 == 0 }
	none := func(int) bool { return false }
	s := openSink(t, dir, 1)
	// Text keys that read as numbers, and a long one, are other forms: left alone.
	if c := unit(t, s, tbl, []string{"01", "+5", "short"}, []string{row("01", "v"), row("+5", "v"), row("short", "v")}); c != (sinks.Counts{Written: 3}) {
		t.Fatalf("texts: counts %+v", c)
	}
	for i, c := range []struct {
		lo, hi int
		rowIf  func(int) bool
		want   sinks.Counts
		held   int64 // keys of t in the index after
	}{
		{1, 100, all, sinks.Counts{Written: 100}, 103},
		{1, 100, even, sinks.Counts{Written: 50, Deleted: 100}, 53},
		{51, 150, all, sinks.Counts{Written: 100, Deleted: 25}, 128}, // evens 52..100 held
		{-3, 2, even, sinks.Counts{Written: 3, Deleted: 1}, 130},     // 2 held; -2, 0, 2 after
		{1, 1, none, sinks.Counts{Deleted: 0}, 130},                  // 1 was deleted already
		{-3, 150, none, sinks.Counts{Deleted: 127}, 3},               // all of them: -2, 0, evens 2..50, 51..150
		{9223372036854775806 - 200, 9223372036854775806, all, sinks.Counts{Written: 201}, 204},
	} {
		var keys, rows []string
		if c.lo > c.hi-300 {
			keys, rows = span(c.lo, c.hi, c.rowIf)
		} else {
			for n := int64(c.lo); ; n++ {
				keys = append(keys, strconv.FormatInt(n, 10))
				rows = append(rows, row(strconv.FormatInt(n, 10), "v"))
				if n == int64(c.hi) {
					break
				}
			}
		}
		if got := unit(t, s, tbl, keys, rows); got != c.want {
			t.Fatalf("batch %d (%d..%d): counts %+v, want %+v", i+1, c.lo, c.hi, got, c.want)
		}
		if n := indexKeys(t, dir); n != c.held {
			t.Fatalf("batch %d (%d..%d): the index holds %d keys, want %d", i+1, c.lo, c.hi, n, c.held)
		}
	}
}

// indexKeys counts the keys dir's index holds (every table).
func indexKeys(t *testing.T, dir string) int64 {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, flatfile.IndexFile)+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int64
	if err := db.QueryRow(`SELECT count(*) FROM ibex_keys`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
