package mariadb_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/sinks"
)

// A batch over keys that exist and keys that do not, with rows that change their row,
// rows equal to it (REPLACE counts those as 1 affected row, as a new row) and keys without
// a row: Deleted counts exactly the batch's keys that existed, Written the rows. The
// integer keys include runs (counted and deleted as ranges) and isolated keys.
func TestReplaceCounts(t *testing.T) {
	d := newTestDB(t)
	s := d.open(t)
	ctx := t.Context()
	for _, typ := range []string{"integer", "text"} {
		tbl := &sinks.Table{Schema: "public", Name: "rc_" + typ, Key: []string{"k"}, Cols: []string{"k", "v"},
			Columns: []catalog.Column{{Name: "k", Type: typ}, {Name: "v", Type: "text"}}}
		create(t, s, tbl)
		var seed []string
		for _, k := range []int{1, 2, 3, 4, 5, 10, 11, 12, 13, 14} {
			seed = append(seed, fmt.Sprintf("%d\told", k))
		}
		harness{d}.Seed(t, tbl, seed)
		// Existing: 1 changed, 2 equal, 3 no row, 10-12 changed, 13 no row, 14 equal.
		// New: 7 and 15-16 with a row, 8 and 17-20 without.
		var keys []string
		for _, k := range []int{1, 2, 3, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20} {
			keys = append(keys, fmt.Sprint(k))
		}
		rows := []string{"1\tnew", "2\told", "7\tnew", "10\tnew", "11\tnew", "12\tnew", "14\told", "15\tnew", "16\tnew"}
		if err := s.Begin(ctx); err != nil {
			t.Fatal(err)
		}
		c := applyBatch(t, s, tbl, keys, rows)
		if want := (sinks.Counts{Written: 9, Deleted: 8}); c != want {
			t.Errorf("%s: counts %+v, want %+v", typ, c, want)
		}
		if err := s.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		want := append([]string{"4\told", "5\told"}, rows...)
		slices.Sort(want)
		if got := readRows(t, d, tbl); !slices.Equal(got, want) {
			t.Errorf("%s: rows %q\nwant %q", typ, got, want)
		}
		// The same batch again: every key with a row exists now.
		if err := s.Begin(ctx); err != nil {
			t.Fatal(err)
		}
		if c := applyBatch(t, s, tbl, keys, rows); c != (sinks.Counts{Written: 9, Deleted: 9}) {
			t.Errorf("%s: again: counts %+v", typ, c)
		}
		if err := s.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// A table with a UNIQUE index besides its key: REPLACE would delete a row of another key
// that conflicts on it, so the sink deletes the batch's keys first and loads plainly, as
// the PostgreSQL sink does. Rows that trade their unique values within the batch pass; a
// row conflicting with a row outside the batch fails the batch (a *sinks.RowCountError)
// and leaves that row alone.
func TestSecondaryUnique(t *testing.T) {
	d := newTestDB(t)
	tbl := &sinks.Table{Schema: "public", Name: "uq", Key: []string{"k"}, Cols: []string{"k", "u"},
		Columns: []catalog.Column{{Name: "k", Type: "integer"}, {Name: "u", Type: "integer"}}}
	create(t, d.open(t), tbl)
	if _, err := d.app.ExecContext(t.Context(), "ALTER TABLE "+d.ident(tbl)+" ADD UNIQUE (u)"); err != nil {
		t.Fatal(err)
	}
	harness{d}.Seed(t, tbl, []string{"1\t10", "2\t20", "3\t30"})
	s := d.open(t) // a sink that has not looked at the table's indexes yet
	ctx := t.Context()
	if err := s.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if c := applyBatch(t, s, tbl, []string{"1", "2", "5"}, []string{"1\t20", "2\t10"}); c != (sinks.Counts{Written: 2, Deleted: 2}) {
		t.Errorf("swap: counts %+v", c)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PrepareBatch(ctx, tbl, []string{"4"}); err != nil {
		t.Fatal(err)
	}
	_, err := s.WriteRows(ctx, tbl, strings.NewReader("4\t30\n"))
	var rc *sinks.RowCountError
	if !errors.As(err, &rc) {
		t.Errorf("a row conflicting on u with a row outside the batch: %v, want a RowCountError", err)
	}
	s.Rollback(ctx)
	if got, want := readRows(t, d, tbl), []string{"1\t20", "2\t10", "3\t30"}; !slices.Equal(got, want) {
		t.Errorf("rows %q, want %q", got, want)
	}
}

// A table made by hand whose key is not a unique index: the sink deletes the keys first
// (REPLACE would not replace by key).
func TestNoPrimaryKey(t *testing.T) {
	d := newTestDB(t)
	tbl := &sinks.Table{Schema: "public", Name: "nopk", Key: []string{"k"}, Cols: []string{"k", "v"},
		Columns: []catalog.Column{{Name: "k", Type: "integer"}, {Name: "v", Type: "text"}}}
	if _, err := d.app.ExecContext(t.Context(), "CREATE TABLE "+d.ident(tbl)+" (k INT NOT NULL, v LONGTEXT)"); err != nil {
		t.Fatal(err)
	}
	harness{d}.Seed(t, tbl, []string{"1\ta", "2\tb"})
	s := d.open(t)
	ctx := t.Context()
	if err := s.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if c := applyBatch(t, s, tbl, []string{"1", "2", "3"}, []string{"1\tA", "3\tc"}); c != (sinks.Counts{Written: 2, Deleted: 2}) {
		t.Errorf("counts %+v", c)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := readRows(t, d, tbl), []string{"1\tA", "3\tc"}; !slices.Equal(got, want) {
		t.Errorf("rows %q, want %q", got, want)
	}
}
