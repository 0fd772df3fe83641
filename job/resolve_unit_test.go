package job

import (
	"fmt"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/catalog"
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

// listKeys lists, after resolving each key, what every receiver gets and every sender
// sends as the one-pass listing did; a member that gets every key of an ordered batch
// shares the order's names.
func TestListKeys(t *testing.T) {
	tab := &table{name: "public.t", keyCols: []string{"id"}, desc: &catalog.Table{Columns: []catalog.Column{{Name: "id", Type: "integer"}}}}
	const a, b, c = 0, 1, 2
	one := func(db string, idx int, need uint64) keyState {
		return keyState{changes: []conflict.Change{{DB: db, At: 10}}, changer: bit(idx), need: need, winner: -1}
	}
	both := func(atA, atB int64) keyState {
		return keyState{changes: []conflict.Change{{DB: "a", At: atA}, {DB: "b", At: atB}}, changer: bit(a) | bit(b), winner: -1}
	}
	// want lists, in the walk's order, the keys each member gets and sends.
	want := func(names []string, states []*keyState) (recv, send [3][]string) {
		for i, k := range names {
			ks := states[i]
			if ks.winner < 0 || ks.recv == 0 {
				continue
			}
			for m := range 3 {
				if ks.recv&bit(m) != 0 {
					recv[m] = append(recv[m], k)
				}
				if ks.senders()&bit(m) != 0 {
					send[m] = append(send[m], k)
				}
			}
		}
		return recv, send
	}
	check := func(t *testing.T, r *runner, names []string, states []keyState, ordered bool) (recv, send [][]string) {
		t.Helper()
		keys := map[string]*keyState{}
		for i, k := range names {
			keys[k] = &states[i]
		}
		var order *keyOrder
		if ordered {
			order = &keyOrder{names: names, states: states}
		}
		var res batchResult
		recv, send, from, _ := r.listKeys(tab, keys, order, true, &res)
		walked := names // without order, the lists are compared as sets
		ptrs := make([]*keyState, len(walked))
		for i, k := range walked {
			ptrs[i] = keys[k]
		}
		wr, ws := want(walked, ptrs)
		for m := range 3 {
			gotR, gotS := recv[m], send[m]
			if !ordered {
				gotR, gotS = slices.Sorted(slices.Values(gotR)), slices.Sorted(slices.Values(gotS))
				slices.Sort(wr[m])
				slices.Sort(ws[m])
			}
			if !slices.Equal(gotR, wr[m]) || !slices.Equal(gotS, ws[m]) {
				t.Errorf("member %d: gets %v sends %v, want %v %v", m, gotR, gotS, wr[m], ws[m])
			}
			var to uint64
			for _, k := range walked {
				if ks := keys[k]; ks.winner >= 0 && ks.recv != 0 && ks.senders()&bit(m) != 0 {
					to |= ks.recv
				}
			}
			if from[m] != to {
				t.Errorf("member %d sends to %b, want %b", m, from[m], to)
			}
		}
		return recv, send
	}
	for _, ordered := range []bool{true, false} {
		t.Run(fmt.Sprintf("mixed, ordered %v", ordered), func(t *testing.T) {
			r := resolveRunner(t, "latest")
			names := []string{"1", "2", "3", "4", "5"}
			states := []keyState{one("a", a, bit(b)|bit(c)), one("b", b, bit(c)), both(10, 20), both(30, 20), one("a", a, 0)}
			check(t, r, names, states, ordered)
		})
	}
	t.Run("one source, every key to one target", func(t *testing.T) {
		r := resolveRunner(t, "latest")
		names := []string{"1", "2", "3"}
		states := []keyState{one("a", a, bit(c)), one("a", a, bit(c)), one("a", a, bit(c))}
		recv, send := check(t, r, names, states, true)
		if &recv[c][0] != &names[0] || &send[a][0] != &names[0] {
			t.Errorf("the lists of every key are not the order's names")
		}
		if cap(recv[c]) != len(names) {
			t.Errorf("a shared list can grow into the names: cap %d", cap(recv[c]))
		}
	})
}
