package job

import (
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/internal/control"
)

// resolveRunner is a run of dbs a, b (sources) and c (target), all taking part, with
// strategy s; no connection is used.
func resolveRunner(t *testing.T, s string) *runner {
	t.Helper()
	st, err := conflict.Parse(s, []string{"a", "b", "c"}, []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{session: session{sync: &control.Sync{Name: "s1"}}, strategies: conflict.Strategies{Default: st}}
	for i, n := range []string{"a", "b", "c"} {
		role := control.RoleSource
		if n == "c" {
			role = control.RoleTarget
		}
		r.members = append(r.members, &member{idx: i, name: n, role: role, conn: &pgx.Conn{}})
	}
	return r
}

func TestResolve(t *testing.T) {
	tab := &table{name: "public.t", keyCols: []string{"id", "k2"}}
	const a, b, c = 0, 1, 2
	one := func(db string, at int64, idx int, need uint64) *keyState {
		return &keyState{changes: []conflict.Change{{DB: db, At: at}}, changer: bit(idx), need: need, winner: -1}
	}
	both := func(atA, atB int64) *keyState {
		return &keyState{changes: []conflict.Change{{DB: "a", At: atA}, {DB: "b", At: atB}}, changer: bit(a) | bit(b), winner: -1}
	}

	t.Run("latest", func(t *testing.T) {
		r := resolveRunner(t, "latest")
		keys := map[string]*keyState{
			"1\tx": one("a", 10, a, bit(b)|bit(c)), // changed on a only: b and c need it
			"2\tx": one("b", 10, b, bit(c)),        // b's change already reached a
			"3\tx": both(10, 20),                   // b is later
			"4\tx": both(30, 20),                   // a is later
			"5\tx": both(20, 20),                   // a tie goes to the name that sorts first
		}
		cs := r.resolve(tab, keys)
		want := map[string]struct {
			winner int
			recv   uint64
		}{
			"1\tx": {a, bit(b) | bit(c)},
			"2\tx": {b, bit(c)},
			"3\tx": {b, bit(a)},
			"4\tx": {a, bit(b)},
			"5\tx": {a, bit(b)},
		}
		for k, w := range want {
			if keys[k].winner != w.winner || keys[k].recv != w.recv {
				t.Errorf("key %q: winner %d recv %b, want %d %b", k, keys[k].winner, keys[k].recv, w.winner, w.recv)
			}
		}
		slices.SortFunc(cs, func(x, y control.Conflict) int { return compareStrings(x.Key, y.Key) })
		if len(cs) != 3 {
			t.Fatalf("%d conflicts, want 3: %+v", len(cs), cs)
		}
		if c := cs[0]; c.Key != "id=3, k2=x" || c.Winner != "b" || c.Resolution != "applied" || c.Strategy != "latest" || c.Table != "public.t" || c.Sync != "s1" {
			t.Errorf("conflict %+v", c)
		}
		if !slices.Equal(cs[2].DBs, []string{"a", "b"}) || cs[2].Winner != "a" {
			t.Errorf("tie: %+v", cs[2])
		}
	})

	t.Run("list", func(t *testing.T) {
		r := resolveRunner(t, "b a")
		keys := map[string]*keyState{"1\tx": both(30, 20)}
		r.resolve(tab, keys)
		if keys["1\tx"].winner != b || keys["1\tx"].recv != bit(a) {
			t.Errorf("list b a: winner %d recv %b", keys["1\tx"].winner, keys["1\tx"].recv)
		}
	})

	for _, s := range []string{"skip", "abort"} {
		t.Run(s, func(t *testing.T) {
			r := resolveRunner(t, s)
			keys := map[string]*keyState{"1\tx": both(30, 20), "2\tx": one("a", 1, a, bit(b))}
			cs := r.resolve(tab, keys)
			if keys["1\tx"].winner != -1 || keys["1\tx"].recv != 0 {
				t.Errorf("conflicting key: winner %d recv %b, want none", keys["1\tx"].winner, keys["1\tx"].recv)
			}
			if keys["2\tx"].winner != a || keys["2\tx"].recv != bit(b) {
				t.Errorf("key changed once: winner %d recv %b", keys["2\tx"].winner, keys["2\tx"].recv)
			}
			want := map[string]string{"skip": "skipped", "abort": "aborted"}[s]
			if len(cs) != 1 || cs[0].Resolution != want || cs[0].Winner != "" {
				t.Errorf("conflicts %+v, want one %s", cs, want)
			}
		})
	}

	t.Run("receivers left out", func(t *testing.T) {
		r := resolveRunner(t, "latest")
		r.members[c].dead = errInactiveDB  // c left the run
		r.members[b].retry = errRetryBatch // b waits for a retry of the unit
		keys := map[string]*keyState{"1\tx": one("a", 10, a, bit(b)|bit(c))}
		r.resolve(tab, keys)
		if keys["1\tx"].recv != 0 {
			t.Errorf("recv %b, want none", keys["1\tx"].recv)
		}
		r.members[b].retry = nil
		r.only = bit(b) // a unit applied again to b alone
		keys = map[string]*keyState{"1\tx": one("a", 10, a, bit(b)|bit(c))}
		r.resolve(tab, keys)
		if keys["1\tx"].recv != bit(b) {
			t.Errorf("recv %b, want b only", keys["1\tx"].recv)
		}
	})
}

func compareStrings(x, y string) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}
