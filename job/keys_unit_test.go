package job

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/conflict"
)

// TestGrouper checks that change rows merged by the run give what KeyRead's grouping on
// the server gives: the latest time, the kind of the changes, the receivers lacking some.
func TestGrouper(t *testing.T) {
	for _, ints := range []bool{false, true} {
		testGrouper(t, ints)
	}
}

func testGrouper(t *testing.T, ints bool) {
	recvs := []*member{{idx: 1}, {idx: 2}}
	p := &keyPart{}
	g := newGrouper(p, 0, ints)
	for _, line := range []string{
		"1\t10\tt\tf\tf\tf", "1\t20\tf\tf\tt\tf", // insert then update: an insert
		"2\t7\tf\tt\tf\tt", "2\t5\tf\tf\tf\tf", // update then delete: a delete
		"3\t5\tf\tt\tf\tf", "3\t9\tt\tf\tf\tf", // delete then insert: an update
		"4\t3\tf\tf\tt\tt",                     // one update
		"5\t8\tt\tf\tf\tf", "5\t8\tf\tt\tf\tf", // insert and delete at the same time: a delete
	} {
		if err := g.add(bytes.Split([]byte(line), []byte{'\t'}), recvs); err != nil {
			t.Fatal(err)
		}
	}
	g.finish()
	want := map[string]struct {
		at   int64
		kind conflict.Kind
		need uint64
	}{
		"1": {20, conflict.KindInsert, bit(1)},
		"2": {7, conflict.KindDelete, bit(2)},
		"3": {9, conflict.KindUpdate, 0},
		"4": {3, conflict.KindUpdate, bit(1) | bit(2)},
		"5": {8, conflict.KindDelete, 0},
	}
	if len(p.keys) != len(want) {
		t.Fatalf("keys %v, want %d", p.keys, len(want))
	}
	for i, k := range p.keys {
		w := want[k]
		if p.at[i] != w.at || p.kind[i] != w.kind || p.need[i] != w.need {
			t.Errorf("key %s: at %d kind %v need %b, want %d %v %b", k, p.at[i], p.kind[i], p.need[i], w.at, w.kind, w.need)
		}
		if ints && (len(p.ints) != len(p.keys) || strconv.FormatInt(p.ints[i], 10) != k) {
			t.Errorf("key %s: ints %v", k, p.ints)
		}
	}
	if !ints && p.ints != nil {
		t.Errorf("ints %v without an integer key", p.ints)
	}
}

// TestAtoi checks the integer parsing of key reads against strconv.
func TestAtoi(t *testing.T) {
	for _, s := range []string{"0", "7", "-7", "9223372036854775807", "-9223372036854775808"} {
		n, ok := atoi([]byte(s))
		if want, _ := strconv.ParseInt(s, 10, 64); !ok || n != want {
			t.Errorf("atoi(%q) = %d, %v", s, n, ok)
		}
	}
	for _, s := range []string{"", "-", "9223372036854775808", "-9223372036854775809", "1a", "+1", "99999999999999999999"} {
		if _, ok := atoi([]byte(s)); ok {
			t.Errorf("atoi(%q) ok", s)
		}
	}
}

// TestPlanRead checks which keys are read by a merge with their range, and which as
// their range alone.
func TestPlanRead(t *testing.T) {
	tbl := &table{keyCols: []string{"id"}, desc: &catalog.Table{Columns: []catalog.Column{{Name: "id", Type: "integer"}}}}
	keys := []string{"5", "3", "4", "1"}
	p, got := planRead(tbl, keys, false)
	if !p.sorted || !p.dense || !p.full || p.lo != 1 || p.hi != 5 || !slices.Equal(got, []string{"1", "3", "4", "5"}) {
		t.Errorf("full: %+v %v", p, got)
	}
	if !slices.Equal(keys, []string{"5", "3", "4", "1"}) {
		t.Errorf("planRead wrote the keys it was given: %v", keys)
	}
	keys = []string{"1", "3", "4", "5"}
	if p, got := planRead(tbl, keys, false); !p.sorted || &got[0] != &keys[0] {
		t.Errorf("keys in order: %+v, not the keys given", p)
	}
	keys = []string{"5", "3", "4", "1"}
	if p, got := planRead(tbl, keys, true); p.sorted || !p.full || p.lo != 1 || p.hi != 5 || !slices.Equal(got, keys) {
		t.Errorf("full, read as a range: %+v %v", p, got)
	}
	if p, got := planRead(tbl, []string{"8", "1", "4", "6"}, false); !p.sorted || !p.dense || p.full || !slices.Equal(got, []string{"1", "4", "6", "8"}) {
		t.Errorf("dense: %+v %v", p, got)
	}
	if p, _ := planRead(tbl, []string{"1", "1000"}, false); !p.sorted || p.dense {
		t.Errorf("sparse: %+v", p)
	}
	if p, _ := planRead(tbl, []string{"01", "2"}, false); p.sorted {
		t.Errorf("a key printed another way: %+v", p)
	}
	tbl.rel.Where = "id > 0"
	if p, _ := planRead(tbl, []string{"1", "2"}, false); !p.sorted || p.dense {
		t.Errorf("row filter: %+v", p)
	}
}

// TestSortIntChanges checks the orders of change rows by key: in order, dense, sparse.
func TestSortIntChanges(t *testing.T) {
	for _, keys := range [][]int64{{1, 2, 2, 3}, {5, 3, 4, 3, 9, 1, 2}, {1 << 40, -7, 12, 1 << 40, 0}, {-3, -1, -2, -3}} {
		var rows []intChange
		for i, n := range keys {
			rows = append(rows, intChange{n: n, last: int64(i)})
		}
		got := sortIntChanges(slices.Clone(rows))
		if len(got) != len(rows) || !slices.IsSortedFunc(got, cmpIntChange) {
			t.Errorf("%v: %v", keys, got)
		}
		seen := map[int64]bool{}
		for _, c := range got {
			if keys[c.last] != c.n || seen[c.last] {
				t.Errorf("%v: %v", keys, got)
			}
			seen[c.last] = true
		}
	}
}

// TestKeyIndex checks the array index of a batch's integer keys: found by their text,
// absent keys nil, no index for sparse or non-canonical keys.
func TestKeyIndex(t *testing.T) {
	tbl := &table{keyCols: []string{"id"}, desc: &catalog.Table{Columns: []catalog.Column{{Name: "id", Type: "bigint"}}}}
	states := map[string]*keyState{"-2": {}, "0": {}, "1": {}, "3": {}}
	var x keyIndexer
	x.init(tbl, len(states))
	for k, ks := range states {
		x.add(k, ks)
	}
	ix := x.index()
	if ix == nil {
		t.Fatal("no index")
	}
	for _, k := range []string{"-2", "0", "1", "3", "-1", "2", "4", "-3", "99999999999"} {
		ks, ok := ix.get([]byte(k))
		if !ok || ks != states[k] {
			t.Errorf("get(%s) = %p, %v; want %p", k, ks, ok, states[k])
		}
	}
	if _, ok := ix.get([]byte("x")); ok {
		t.Error("a key that is no integer is found")
	}
	for _, keys := range [][]string{{"1", "100"}, {"1", "02"}} {
		var y keyIndexer
		y.init(tbl, len(keys))
		for _, k := range keys {
			y.add(k, &keyState{})
		}
		if y.index() != nil {
			t.Errorf("%v: an index", keys)
		}
	}
}

// TestGrouperCompacts checks that the change rows of an integer key changed many times
// are merged as they come (what is held grows with the keys), to the same result.
func TestGrouperCompacts(t *testing.T) {
	recvs := []*member{{idx: 1}}
	p := &keyPart{}
	g := newGrouper(p, 0, true)
	const changes = 5 * minCompact
	for i := range changes {
		line := fmt.Sprintf("%d\t%d\tf\tf\tf", i%3, 100+i)
		if i == 7 {
			line = "1\t50\tt\tf\tf" // key 1's first change, an insert
		}
		if err := g.add(bytes.Split([]byte(line), []byte{'\t'}), recvs); err != nil {
			t.Fatal(err)
		}
		if cap(g.rows) > 2*minCompact {
			t.Fatalf("%d change rows of 3 keys held in %d", i+1, cap(g.rows))
		}
	}
	g.finish()
	if !slices.Equal(p.keys, []string{"0", "1", "2"}) || !slices.Equal(p.ints, []int64{0, 1, 2}) {
		t.Fatalf("keys %v %v", p.keys, p.ints)
	}
	for k, want := range []conflict.Kind{conflict.KindUpdate, conflict.KindInsert, conflict.KindUpdate} {
		last := changes - 1
		for last%3 != k {
			last--
		}
		if p.kind[k] != want || p.at[k] != int64(100+last) {
			t.Errorf("key %d: kind %v at %d, want %v at %d", k, p.kind[k], p.at[k], want, 100+last)
		}
	}
}

// add merges a change row written as text, as the tests write them (key, time in
// microseconds, insert, delete, need-flags, t or f): what addBinary takes from the server.
func (g *grouper) add(f [][]byte, recvs []*member) error {
	at, ok := atoi(f[1])
	if !ok {
		return fmt.Errorf("unexpected change time %q", f[1])
	}
	var need uint64
	for i, m := range recvs {
		if isT(f[4+i]) {
			need |= bit(m.idx)
		}
	}
	if g.ints {
		n, ok := atoi(f[0])
		if !ok {
			return fmt.Errorf("unexpected integer key %q", f[0])
		}
		g.addInt(newIntChange(n, at, need, isT(f[2]), isT(f[3])))
		return nil
	}
	g.put(f[0], at, isT(f[2]), isT(f[3]), need)
	return nil
}

// TestGrouperIntsAsText checks that integer keys, merged in order as they come or, once
// a row comes out of order, sorted first, give what the grouping of keys as texts gives,
// for change rows in key order, nearly in order and shuffled.
func TestGrouperIntsAsText(t *testing.T) {
	recvs := []*member{{idx: 1}, {idx: 2}}
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 300 {
		nrows := 1 + rng.IntN(40)
		lines := make([]string, nrows)
		for i := range lines {
			bools := func() string {
				if rng.IntN(3) == 0 {
					return "t"
				}
				return "f"
			}
			lines[i] = fmt.Sprintf("%d\t%d\t%s\t%s\t%s\t%s", rng.IntN(8)-2, rng.IntN(6), bools(), bools(), bools(), bools())
		}
		switch round % 3 {
		case 0: // in key order
			slices.SortStableFunc(lines, func(a, b string) int {
				x, _ := strconv.Atoi(strings.Split(a, "\t")[0])
				y, _ := strconv.Atoi(strings.Split(b, "\t")[0])
				return x - y
			})
		case 1: // in order, then one row out of it
			slices.SortStableFunc(lines, func(a, b string) int {
				x, _ := strconv.Atoi(strings.Split(a, "\t")[0])
				y, _ := strconv.Atoi(strings.Split(b, "\t")[0])
				return x - y
			})
			if nrows > 2 {
				i := rng.IntN(nrows - 1)
				lines = append(lines[:i:i], append([]string{lines[nrows-1]}, lines[i:nrows-1]...)...)
			}
		}
		ip, tp := &keyPart{}, &keyPart{}
		gi, gt := newGrouper(ip, rng.IntN(3)*nrows, true), newGrouper(tp, 0, false)
		for _, line := range lines {
			f := bytes.Split([]byte(line), []byte{'\t'})
			if err := gi.add(f, recvs); err != nil {
				t.Fatal(err)
			}
			if err := gt.add(f, recvs); err != nil {
				t.Fatal(err)
			}
		}
		gi.finish()
		gt.finish()
		want := map[string][3]int64{}
		for i, k := range tp.keys {
			want[k] = [3]int64{tp.at[i], int64(tp.kind[i]), int64(tp.need[i])}
		}
		if len(ip.keys) != len(want) || len(ip.ints) != len(ip.keys) {
			t.Fatalf("round %d: keys %v (ints %v), want %d keys", round, ip.keys, ip.ints, len(want))
		}
		for i, k := range ip.keys {
			if i > 0 && ip.ints[i] <= ip.ints[i-1] || strconv.FormatInt(ip.ints[i], 10) != k {
				t.Fatalf("round %d: keys %v ints %v not in order", round, ip.keys, ip.ints)
			}
			if got := [3]int64{ip.at[i], int64(ip.kind[i]), int64(ip.need[i])}; got != want[k] {
				t.Errorf("round %d, key %s: at, kind, need %v, want %v (rows %q)", round, k, got, want[k], lines)
			}
		}
	}
}

// TestMergeOneLazyMap checks that one source's integer keys in order come with their
// order and no map, which keyMap then makes to the same states, and that other keys
// (texts, integers out of order) come with their map.
func TestMergeOneLazyMap(t *testing.T) {
	members := []*member{{idx: 0, name: "a"}, {idx: 1, name: "b"}}
	part := func(keys []string, ints []int64) *keyPart {
		p := &keyPart{keys: keys, ints: ints}
		for range keys {
			p.at, p.kind, p.need = append(p.at, 1), append(p.kind, conflict.KindUpdate), append(p.need, bit(1))
		}
		return p
	}
	keys, order := mergeParts(members, []*keyPart{part([]string{"1", "2", "5"}, []int64{1, 2, 5}), nil})
	if keys != nil || order == nil || batchLen(keys, order) != 3 {
		t.Fatalf("integers in order: map %v, order %v", keys, order)
	}
	m := keyMap(keys, order)
	for i, k := range order.names {
		if m[k] != &order.states[i] || m[k].changer != bit(0) || m[k].need != bit(1) || len(m[k].changes) != 1 {
			t.Errorf("key %s: state %+v", k, m[k])
		}
	}
	for _, p := range []*keyPart{part([]string{"x", "y"}, nil), part([]string{"5", "2"}, []int64{5, 2})} {
		keys, order := mergeParts(members, []*keyPart{p, nil})
		if len(keys) != 2 || order == nil || batchLen(keys, order) != 2 {
			t.Errorf("keys %v: map %v, order %v", p.keys, keys, order)
		}
	}
}
