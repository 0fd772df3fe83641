package conflict_test

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ibexrepl/ibex/internal/conflict"
)

// decideWant is the strategies' rule, written independently of the package: the first
// db of Order that changed the row (List, Source), else the latest change, ties to the
// name that sorts first; none for Skip and Abort.
func decideWant(s conflict.Strategy, changes []conflict.Change) string {
	if s.Kind == conflict.Skip || s.Kind == conflict.Abort {
		return ""
	}
	if s.Kind == conflict.List || s.Kind == conflict.Source {
		if i := slices.IndexFunc(s.Order, func(name string) bool {
			return slices.ContainsFunc(changes, func(c conflict.Change) bool { return c.DB == name })
		}); i >= 0 {
			return s.Order[i]
		}
	}
	sorted := slices.Clone(changes)
	slices.SortFunc(sorted, func(a, b conflict.Change) int {
		if a.At != b.At {
			if a.At > b.At {
				return -1
			}
			return 1
		}
		return strings.Compare(a.DB, b.DB)
	})
	return sorted[0].DB
}

// TestDecideAgreesWithWinner: over many generated strategies and changes, every
// strategy's Decide is a whole-row decision (or none) whose winner is Winner's and the
// rule's.
func TestDecideAgreesWithWinner(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(2, 1))
	pool := []string{"t1", "t2", "t3", "t4", "t5", "t6"}
	srcs := pool[:4]
	for n := range 20000 {
		var strategy string
		switch rng.IntN(5) {
		case 0:
			strategy = "latest"
		case 1:
			strategy = "source"
		case 2:
			strategy = "skip"
		case 3:
			strategy = "abort"
		default:
			list := slices.Clone(pool)
			rng.Shuffle(len(list), func(i, j int) { list[i], list[j] = list[j], list[i] })
			strategy = strings.Join(list[:1+rng.IntN(len(list))], ",")
		}
		s, err := conflict.Parse(strategy, pool, srcs)
		if err != nil {
			t.Fatal(err)
		}
		dbsChanged := slices.Clone(pool)
		rng.Shuffle(len(dbsChanged), func(i, j int) { dbsChanged[i], dbsChanged[j] = dbsChanged[j], dbsChanged[i] })
		changes := make([]conflict.Change, 2+rng.IntN(len(pool)-1))
		for i := range changes {
			changes[i] = conflict.Change{DB: dbsChanged[i], At: int64(rng.IntN(7) - 3)} // small range: many ties
		}
		d := s.Decide(changes)
		want := decideWant(s, changes)
		if d.Winner != want || s.Winner(changes) != want || d.Columns != nil || d.Values != nil ||
			d.None() != (want == "") || d.Whole() != (want != "") {
			t.Fatalf("#%d %q %v: Decide = %+v, Winner = %q; want a whole-row decision for %q",
				n, strategy, changes, d, s.Winner(changes), want)
		}
	}
}

func f(s string) conflict.Field { return conflict.Field{Text: s} }

var null = conflict.Field{Null: true}

func TestBuild(t *testing.T) {
	t.Parallel()
	cols := []string{"id", "x", "y", "z"}
	a := []conflict.Field{f("1"), f("ax"), f("ay"), null}
	b := []conflict.Field{f("1"), f("bx"), f("by"), f("bz")}
	c := []conflict.Field{f("1"), null, f("cy"), f("cz")}
	versions := map[string][]conflict.Field{"a": a, "b": b, "c": c}
	for _, tc := range []struct {
		name string
		d    conflict.Decision
		want []conflict.Field
	}{
		{"whole row: the winner's fields unchanged", conflict.Decision{Winner: "b"}, b},
		{"whole row with a NULL", conflict.Decision{Winner: "a"}, a},
		{"merge: row of a, x from b, y from a",
			conflict.Decision{Winner: "a", Columns: map[string]string{"x": "b", "y": "a"}},
			[]conflict.Field{f("1"), f("bx"), f("ay"), null}},
		{"merge: two columns from two other dbs",
			conflict.Decision{Winner: "a", Columns: map[string]string{"x": "b", "y": "c"}},
			[]conflict.Field{f("1"), f("bx"), f("cy"), null}},
		{"a NULL replaces a value", conflict.Decision{Winner: "b", Columns: map[string]string{"x": "c"}},
			[]conflict.Field{f("1"), null, f("by"), f("bz")}},
		{"a value replaces a NULL", conflict.Decision{Winner: "a", Columns: map[string]string{"z": "b"}},
			[]conflict.Field{f("1"), f("ax"), f("ay"), f("bz")}},
		{"computed values beside a source column",
			conflict.Decision{Winner: "c", Columns: map[string]string{"x": "a"}, Values: map[string]conflict.Field{"y": f("42"), "z": null}},
			[]conflict.Field{f("1"), f("ax"), f("42"), null}},
		{"empty maps are a whole row", conflict.Decision{Winner: "c", Columns: map[string]string{}, Values: map[string]conflict.Field{}}, c},
	} {
		got, err := tc.d.Build(cols, versions)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
		// The result is the caller's: changing it changes no version.
		got[0] = f("changed")
		if versions["a"][0] != f("1") || versions["b"][0] != f("1") || versions["c"][0] != f("1") {
			t.Fatalf("%s: Build returned a version's slice", tc.name)
		}
	}

	for _, tc := range []struct {
		name string
		d    conflict.Decision
		cols []string
		vers map[string][]conflict.Field
		msg  string
	}{
		{"no winner", conflict.Decision{}, cols, versions, "the decision has no winner"},
		{"no winner, columns named", conflict.Decision{Columns: map[string]string{"x": "a"}}, cols, versions, "the decision has no winner"},
		{"the winner's version is missing", conflict.Decision{Winner: "d"}, cols, versions, `no version of the row from db "d"`},
		{"a column's version is missing", conflict.Decision{Winner: "a", Columns: map[string]string{"x": "d"}},
			cols, versions, `no version of the row from db "d"`},
		{"a version named only by a column is missing", conflict.Decision{Winner: "a", Columns: map[string]string{"y": "b"}},
			cols, map[string][]conflict.Field{"a": a}, `no version of the row from db "b"`},
		{"unknown column", conflict.Decision{Winner: "a", Columns: map[string]string{"w": "b"}}, cols, versions, `unknown column "w"`},
		{"unknown column, case differs", conflict.Decision{Winner: "a", Columns: map[string]string{"X": "b"}}, cols, versions, `unknown column "X"`},
		{"unknown column of a value", conflict.Decision{Winner: "a", Values: map[string]conflict.Field{"w": f("1")}}, cols, versions, `unknown column "w"`},
		{"source and value", conflict.Decision{Winner: "a", Columns: map[string]string{"x": "b"}, Values: map[string]conflict.Field{"x": f("1")}},
			cols, versions, `column "x" has both a source and a value`},
		{"the winner's version is short", conflict.Decision{Winner: "a"}, cols, map[string][]conflict.Field{"a": a[:3]},
			`db "a"'s version has 3 fields, the table 4 columns`},
		{"a column's version is long", conflict.Decision{Winner: "a", Columns: map[string]string{"x": "b"}}, cols,
			map[string][]conflict.Field{"a": a, "b": append(slices.Clone(b), f("extra"))}, `db "b"'s version has 5 fields, the table 4 columns`},
		{"a column named twice", conflict.Decision{Winner: "a", Columns: map[string]string{"x": "b"}}, []string{"id", "x", "x", "z"},
			versions, `column "x" is named twice`},
		{"several faults: always the first column's", conflict.Decision{Winner: "a", Columns: map[string]string{"y": "q", "x": "r", "z": "s"}},
			cols, versions, `no version of the row from db "r"`},
	} {
		got, err := tc.d.Build(tc.cols, tc.vers)
		if !errors.Is(err, conflict.ErrBuild) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: Build = %v, %v; want ErrBuild: %s", tc.name, got, err, tc.msg)
		}
		if got != nil {
			t.Errorf("%s: Build returned a row with its error", tc.name)
		}
	}
}

func TestDecisionSources(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		d    conflict.Decision
		want []string
	}{
		{conflict.Decision{}, nil},
		{conflict.Decision{Winner: "b"}, []string{"b"}},
		{conflict.Decision{Winner: "b", Columns: map[string]string{"x": "c", "y": "a", "z": "c", "w": "b"}, Values: map[string]conflict.Field{"v": f("1")}},
			[]string{"a", "b", "c"}},
	} {
		if diff := cmp.Diff(tc.want, tc.d.Sources()); diff != "" {
			t.Errorf("%+v.Sources() (-want +got):\n%s", tc.d, diff)
		}
	}
	merge := conflict.Decision{Winner: "a", Columns: map[string]string{"x": "b"}}
	if merge.Whole() || merge.None() {
		t.Errorf("a merge is neither whole nor none")
	}
	if v := (conflict.Decision{Winner: "a", Values: map[string]conflict.Field{"n": f("1")}}); v.Whole() {
		t.Errorf("a decision with values is not whole")
	}
}
