package control_test

import (
	"errors"
	"testing"

	"github.com/ibexrepl/ibex/internal/control"
)

func TestPickScoped(t *testing.T) {
	ss := []control.Scoped{
		{ID: 1, Table: "public.t", Text: "all"},
		{ID: 2, Table: "public.t", Text: "sync s", Sync: "s"},
		{ID: 3, Table: "public.t", Text: "db d", DB: "d"},
		{ID: 4, Table: "public.t", Text: "db d sync s", DB: "d", Sync: "s"},
		{ID: 5, Table: "public.u", Text: "other table", DB: "d", Sync: "s"},
	}
	for _, c := range []struct {
		table, db, sync string
		want            int64
	}{
		{"public.t", "d", "s", 4}, {"public.t", "d", "x", 3}, {"public.t", "e", "s", 2},
		{"public.t", "e", "x", 1}, {"public.u", "d", "s", 5}, {"public.u", "e", "s", 0},
	} {
		got := control.PickScoped(ss, c.table, c.db, c.sync)
		if (got == nil && c.want != 0) || (got != nil && got.ID != c.want) {
			t.Errorf("PickScoped(%s, %s, %s) = %+v, want id %d", c.table, c.db, c.sync, got, c.want)
		}
	}
}

func TestNormalizeCustomCols(t *testing.T) {
	for in, want := range map[string]string{
		"SELECT a, b, upper(c) AS c": "a, b, upper(c) AS c",
		"  select\n a ;":             "a",
		"a, b":                       "a, b",
		"selected_col, b":            "selected_col, b",
	} {
		if got, err := control.NormalizeCustomCols(in); err != nil || got != want {
			t.Errorf("NormalizeCustomCols(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "SELECT", " select ; "} {
		if _, err := control.NormalizeCustomCols(in); !errors.Is(err, control.ErrCustomCols) {
			t.Errorf("NormalizeCustomCols(%q): %v, want ErrCustomCols", in, err)
		}
	}
}
