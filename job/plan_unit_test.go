package job

import (
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/control"
)

func intPoints(w float64, vs ...int64) []keyPoint {
	var ps []keyPoint
	for _, v := range vs {
		ps = append(ps, keyPoint{v: itoa(v), n: v, w: w})
	}
	return ps
}

func itoa(v int64) string { return string(appendInt(nil, v)) }

func appendInt(b []byte, v int64) []byte {
	if v < 0 {
		b = append(b, '-')
		v = -v
	}
	if v >= 10 {
		b = appendInt(b, v/10)
	}
	return append(b, byte('0'+v%10))
}

// disjoint returns the points of n sources that each changed its own range of per keys (1
// to per, per+1 to 2*per, ...), each sampling k keys at the fractions 1/k to k/k.
func disjoint(n int, per int64, k int) []keyPoint {
	var ps []keyPoint
	for s := range int64(n) {
		for i := 1; i <= k; i++ {
			v := s*per + per*int64(i)/int64(k)
			ps = append(ps, keyPoint{v: itoa(v), n: v, w: float64(per) / float64(k)})
		}
	}
	return ps
}

func TestSplitPoints(t *testing.T) {
	for _, c := range []struct {
		name   string
		points []keyPoint
		total  float64
		nb     int
		kind   keyKind
		want   []string
	}{
		{"nothing pending", nil, 0, 4, integerKey, nil},
		// One source, 400 changes, 4 batches: its quartiles are the bounds.
		{"one source", intPoints(100, 100, 200, 300), 400, 4, integerKey, []string{"100", "200", "300"}},
		// Integers sort as numbers, not as text ("1000" < "200" as text).
		{"numeric order", intPoints(100, 1000, 200, 300), 400, 4, integerKey, []string{"200", "300", "1000"}},
		{"negative keys", intPoints(100, -5, -300, 7), 400, 4, integerKey, []string{"-300", "-5", "7"}},
		// A key that holds most changes: bounds never repeat, so fewer batches.
		{"repeated quantiles", intPoints(100, 5, 5, 5), 400, 4, integerKey, []string{"5"}},
		// Two sources, one with three times the changes (a: 300 changes, points 10 20 30
		// at weight 75 each; b: 100 changes, points 1000 2000 3000 at weight 25): a bound
		// falls where the accumulated weight passes each nb-th of the total.
		{"weighted sources", append(intPoints(75, 10, 20, 30), intPoints(25, 1000, 2000, 3000)...), 400, 4, integerKey, []string{"20", "30", "3000"}},
		// Four sources that changed disjoint quarters of 1..100000, two batches: each
		// sends quantilePoints(2) = 8 keys (the ends of its eighths, its largest last),
		// each weighing 25000/8. The bound is where half the changes end: 50000.
		{"disjoint sources", disjoint(4, 25000, quantilePoints(2)), 100000, 2, integerKey, []string{"50000"}},
		{"uuid", []keyPoint{{v: "b0000000-0000-0000-0000-000000000000", w: 50}, {v: "30000000-0000-0000-0000-000000000000", w: 50}}, 100, 2, uuidKey,
			[]string{"'30000000-0000-0000-0000-000000000000'::uuid"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := splitPoints(slices.Clone(c.points), c.total, c.nb, c.kind)
			if !slices.Equal(got, c.want) {
				t.Errorf("splitPoints = %q, want %q", got, c.want)
			}
			if len(got) > c.nb-1 {
				t.Errorf("%d bounds for %d batches", len(got), c.nb)
			}
		})
	}
}

func TestRangeKind(t *testing.T) {
	tab := func(key []string, cols ...catalog.Column) *table {
		return &table{keyCols: key, desc: &catalog.Table{Columns: cols}}
	}
	id := func(typ string) catalog.Column { return catalog.Column{Name: "id", Type: typ} }
	for _, c := range []struct {
		t    *table
		want keyKind
	}{
		{tab([]string{"id"}, id("integer")), integerKey},
		{tab([]string{"id"}, id("bigint")), integerKey},
		{tab([]string{"id"}, id("smallint")), integerKey},
		{tab([]string{"id"}, id("uuid")), uuidKey},
		{tab([]string{"id"}, id("text")), noRanges},    // sorts by collation
		{tab([]string{"id"}, id("numeric")), noRanges}, // 1.5 and 1.50 print differently
		{tab([]string{"id", "b"}, id("integer"), catalog.Column{Name: "b", Type: "integer"}), noRanges},
	} {
		if got := rangeKind(c.t); got != c.want {
			t.Errorf("rangeKind(%v %v) = %v, want %v", c.t.keyCols, c.t.desc.Columns, got, c.want)
		}
	}
}

func TestBucketsCond(t *testing.T) {
	r := &runner{}
	ranged := &table{keyCols: []string{"id"}, bounds: []string{"100", "200"}}
	hashed := &table{keyCols: []string{"a", "B c"}}
	for _, c := range []struct {
		t          *table
		lo, hi, nb int
		want       string
	}{
		{ranged, 0, 0, 1, "true"},
		{ranged, 0, 2, 3, "true"},
		{ranged, 0, 0, 3, `d."id" < 100`},
		{ranged, 1, 1, 3, `d."id" >= 100 AND d."id" < 200`},
		{ranged, 2, 2, 3, `d."id" >= 200`},
		{ranged, 1, 2, 3, `d."id" >= 100`},
		{hashed, 2, 2, 4, `(hashtextextended(ROW(d."a", d."B c")::text, 0) & 9223372036854775807) % 4 = 2`},
		{hashed, 0, 1, 4, `(hashtextextended(ROW(d."a", d."B c")::text, 0) & 9223372036854775807) % 4 BETWEEN 0 AND 1`},
	} {
		if got := r.bucketsCond(c.t, "d.", c.lo, c.hi, c.nb); got != c.want {
			t.Errorf("bucketsCond(%v, %d..%d of %d) = %s, want %s", c.t.keyCols, c.lo, c.hi, c.nb, got, c.want)
		}
	}
}

// TestWALMembers: a run with many rows compresses the WAL of every member, a source that
// only sends too (its reads prune pages); a run with few rows compresses none; a copy
// (changes not counted) all.
func TestWALMembers(t *testing.T) {
	pgdb := &control.DB{Type: control.DBTypePostgres}
	mk := func(roles ...string) *runner {
		r := &runner{}
		for i, role := range roles {
			r.members = append(r.members, &member{idx: i, name: string(rune('a' + i)), role: role, db: pgdb, conn: &pgx.Conn{}}) // a session that is never used
		}
		return r
	}
	tb := &table{}
	cases := []struct {
		name    string
		roles   []string
		pending []int64 // per member; nil: not counted
		want    uint64
	}{
		{"copy", []string{control.RoleSource, control.RoleTarget}, nil, 0b11},
		{"one source sends", []string{control.RoleSource, control.RoleTarget}, []int64{5000, 0}, 0b11},
		{"few rows", []string{control.RoleSource, control.RoleTarget}, []int64{10, 0}, 0},
		{"two sources, one sends", []string{control.RoleSource, control.RoleSource, control.RoleTarget}, []int64{5000, 0, 0}, 0b111},
		{"two sources send", []string{control.RoleSource, control.RoleSource}, []int64{3000, 3000}, 0b11},
	}
	for _, c := range cases {
		r := mk(c.roles...)
		if c.pending != nil {
			r.pendingN = map[*table]int64{}
			r.changesOf = map[*table][]int64{tb: c.pending}
			for _, n := range c.pending {
				r.pendingN[tb] += n
			}
		}
		if got := r.walMembers(); got != c.want {
			t.Errorf("%s: walMembers %03b, want %03b", c.name, got, c.want)
		}
	}
}

// TestTruncatable: a table whose change table the end of the run will likely empty by
// TRUNCATE on every source with changes of it (10,000 to truncateRowsMax changes there)
// is not consumed ahead; one with fewer or more changes on some source is.
func TestTruncatable(t *testing.T) {
	pgdb := &control.DB{Type: control.DBTypePostgres}
	tb := &table{}
	cases := []struct {
		name    string
		pending []int64 // per member: two sources and a target
		want    bool
	}{
		{"100,000 on one source", []int64{100000, 0, 0}, true},
		{"on both sources", []int64{20000, 10000, 0}, true},
		{"few on one", []int64{100000, 9999, 0}, false},
		{"too many", []int64{truncateRowsMax + 1, 0, 0}, false},
		{"none", []int64{0, 0, 0}, false},
	}
	for _, c := range cases {
		r := &runner{changesOf: map[*table][]int64{tb: c.pending}}
		for i, role := range []string{control.RoleSource, control.RoleSource, control.RoleTarget} {
			r.members = append(r.members, &member{idx: i, name: string(rune('a' + i)), role: role, db: pgdb, conn: &pgx.Conn{}})
		}
		if got := r.truncatable(tb); got != c.want {
			t.Errorf("%s: truncatable %v, want %v", c.name, got, c.want)
		}
	}
}

func TestKeySessionUseful(t *testing.T) {
	pgdb := &control.DB{Type: control.DBTypePostgres}
	oneKey := control.Relation{KeyCols: []string{"id"}}
	twoKeys := control.Relation{KeyCols: []string{"a", "b"}}
	cases := []struct {
		name    string
		rel     control.Relation
		pending int64 // on the first source; pendingN is the same
		truncs  int64
		want    bool
	}{
		{"one batch", oneKey, 50000, 0, false},
		{"two batches, read in one scan, emptied by TRUNCATE", oneKey, 100000, 0, false},
		{"two batches of a two-column key: read ahead", twoKeys, 100000, 0, true},
		{"a TRUNCATE pending: read ahead", oneKey, 100000, 1, true},
		{"five batches: read ahead", oneKey, 250000, 0, true},
		{"too many to TRUNCATE: consumed ahead", oneKey, truncateRowsMax + 1, 0, true},
	}
	for _, c := range cases {
		tb := &table{rel: c.rel}
		r := &runner{changesOf: map[*table][]int64{tb: {c.pending, 0}}, pendingN: map[*table]int64{tb: c.pending}, truncN: map[*table]int64{tb: c.truncs}}
		r.tables, r.sync = []*table{tb}, &control.Sync{}
		for i, role := range []string{control.RoleSource, control.RoleTarget} {
			r.members = append(r.members, &member{idx: i, name: string(rune('a' + i)), role: role, db: pgdb, conn: &pgx.Conn{}})
		}
		if got := r.keySessionUseful(); got != c.want {
			t.Errorf("%s: keySessionUseful %v, want %v", c.name, got, c.want)
		}
	}
}
