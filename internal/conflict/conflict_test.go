package conflict_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ibexrepl/ibex/internal/conflict"
)

var (
	dbs     = []string{"t1", "t2", "t3", "t4", "t5"}
	sources = []string{"t1", "t2", "t3", "t4"}
)

func TestNormalize(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                   "latest",
		"latest":             "latest",
		" LATEST ":           "latest",
		"bucardo_latest":     "latest",
		"default":            "latest",
		"source":             "source",
		"bucardo_source":     "source",
		"abort":              "abort",
		"Bucardo_Abort":      "abort",
		"skip":               "skip",
		"bucardo_skip":       "skip",
		"t2 t1":              "t2 t1",
		"t2,t1":              "t2 t1",
		" t2 ,  t1 ,t3 ":     "t2 t1 t3",
		"T2 t1":              "T2 t1", // db names keep their case
		"bucardo_latest_all": "bucardo_latest_all",
	} {
		if got := conflict.Normalize(in); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want conflict.Strategy
	}{
		{"", conflict.Strategy{Kind: conflict.Latest}},
		{"latest", conflict.Strategy{Kind: conflict.Latest}},
		{"abort", conflict.Strategy{Kind: conflict.Abort}},
		{"bucardo_skip", conflict.Strategy{Kind: conflict.Skip}},
		{"source", conflict.Strategy{Kind: conflict.Source, Order: sources}},
		{"t2 t1", conflict.Strategy{Kind: conflict.List, Order: []string{"t2", "t1"}}},
		{"t5,t3", conflict.Strategy{Kind: conflict.List, Order: []string{"t5", "t3"}}},
		{"t4", conflict.Strategy{Kind: conflict.List, Order: []string{"t4"}}},
	} {
		got, err := conflict.Parse(tc.in, dbs, sources)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("Parse(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
	// String gives back what users write.
	for in, want := range map[string]string{"t2,t1": "t2 t1", "bucardo_source": "source", "": "latest"} {
		s, err := conflict.Parse(in, dbs, sources)
		if err != nil || s.String() != want {
			t.Errorf("Parse(%q).String() = %q, %v; want %q", in, s.String(), err, want)
		}
	}
	// Source's order is a copy: changing the caller's slice later changes nothing.
	src := []string{"t1", "t2"}
	s, _ := conflict.Parse("source", []string{"t1", "t2"}, src)
	src[0] = "zz"
	if s.Order[0] != "t1" {
		t.Errorf("Parse(source) shares the caller's slice")
	}

	for _, tc := range []struct{ in, msg string }{
		{"t2 t9", `invalid conflict_strategy "t2 t9": "t9" is not a db of this sync (its dbs: t1 t2 t3 t4 t5); use latest, source, abort, skip or a list of its db names`},
		{"t1 t1", `invalid conflict_strategy "t1 t1": db "t1" is listed twice`},
		{"newest", `invalid conflict_strategy "newest": "newest" is not a db of this sync (its dbs: t1 t2 t3 t4 t5); use latest, source, abort, skip or a list of its db names`},
		{"T1", `"T1" is not a db of this sync`},
	} {
		_, err := conflict.Parse(tc.in, dbs, sources)
		if err == nil || !errors.Is(err, conflict.ErrInvalid) {
			t.Errorf("Parse(%q): %v, want ErrInvalid", tc.in, err)
			continue
		}
		if got := err.Error(); got != tc.msg && !(len(tc.msg) < 40 && strings.Contains(got, tc.msg)) {
			t.Errorf("Parse(%q):\n%s\nwant:\n%s", tc.in, got, tc.msg)
		}
	}
}

func TestWinner(t *testing.T) {
	t.Parallel()
	parse := func(v string) conflict.Strategy {
		s, err := conflict.Parse(v, dbs, sources)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ch := func(pairs ...any) []conflict.Change {
		var out []conflict.Change
		for i := 0; i < len(pairs); i += 2 {
			out = append(out, conflict.Change{DB: pairs[i].(string), At: int64(pairs[i+1].(int))})
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		strategy string
		changes  []conflict.Change
		want     string
	}{
		{"latest: the newest change", "latest", ch("t1", 100, "t2", 300, "t3", 200), "t2"},
		{"latest: order does not matter", "latest", ch("t3", 200, "t2", 300, "t1", 100), "t2"},
		{"latest: tie goes to the first name", "latest", ch("t3", 500, "t2", 500, "t4", 100), "t2"},
		{"latest: tie, reversed", "latest", ch("t2", 500, "t3", 500), "t2"},
		{"latest: all tied", "latest", ch("t4", 7, "t3", 7, "t1", 7, "t2", 7), "t1"},
		{"latest: negative times", "latest", ch("t1", -5, "t2", -3), "t2"},
		{"list: the first listed that changed it", "t3 t1 t2", ch("t1", 900, "t2", 100, "t3", 5), "t3"},
		{"list: skips listed dbs that did not change it", "t3 t1 t2", ch("t1", 100, "t2", 900), "t1"},
		{"list: none listed changed it, latest wins", "t3", ch("t1", 100, "t2", 900), "t2"},
		{"list: none listed, tie", "t4", ch("t2", 100, "t1", 100), "t1"},
		{"source: the first source of the dbgroup", "source", ch("t4", 900, "t2", 100, "t3", 500), "t2"},
		{"source: t1 first", "source", ch("t4", 900, "t1", 1), "t1"},
		{"skip: no winner", "skip", ch("t1", 1, "t2", 2), ""},
		{"abort: no winner", "abort", ch("t1", 1, "t2", 2), ""},
	} {
		if got := parse(tc.strategy).Winner(tc.changes); got != tc.want {
			t.Errorf("%s: Winner = %q, want %q", tc.name, got, tc.want)
		}
	}
	// Deterministic: every permutation of a tie decides the same way.
	perms := [][]conflict.Change{
		ch("t1", 5, "t2", 5, "t3", 5), ch("t1", 5, "t3", 5, "t2", 5), ch("t2", 5, "t1", 5, "t3", 5),
		ch("t2", 5, "t3", 5, "t1", 5), ch("t3", 5, "t1", 5, "t2", 5), ch("t3", 5, "t2", 5, "t1", 5),
	}
	for _, p := range perms {
		if got := parse("latest").Winner(p); got != "t1" {
			t.Errorf("Winner(%v) = %q, want t1", p, got)
		}
	}
}

func TestParseFunction(t *testing.T) {
	dbs := []string{"a", "b"}
	st, err := conflict.Parse("function:public.pick_row", dbs, dbs)
	if err != nil || st.Kind != conflict.Function || st.Func != "public.pick_row" || st.String() != "function:public.pick_row" {
		t.Fatalf("Parse: %+v, %v", st, err)
	}
	d := st.Decide([]conflict.Change{{DB: "a", At: 2}, {DB: "b", At: 1}})
	if d.Winner != "a" || d.Func != "public.pick_row" || d.Whole() || strings.Join(d.Sources(), ",") != "a,b" {
		t.Fatalf("Decide: %+v (sources %v)", d, d.Sources())
	}
	for _, bad := range []string{"function:", "function:pick", "function:a.b.c", `function:"x".y`, "function:a.b;drop"} {
		if _, err := conflict.Parse(bad, dbs, dbs); err == nil || !strings.Contains(err.Error(), "schema-qualified") {
			t.Errorf("Parse(%q): %v", bad, err)
		}
	}
	ss, err := conflict.ParseAll("function:s.f", map[string]string{conflict.TypeUpdateDelete: "function:s.g", conflict.TypeInsertExists: "function:s.f"}, dbs, dbs)
	if err != nil || strings.Join(ss.Functions(), ",") != "s.f,s.g" {
		t.Fatalf("Functions: %v, %v", ss.Functions(), err)
	}
}
