package job_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/job"
)

// model is what each db's table item holds: id -> v, a missing id is no row.
type model map[string]map[int]string

func (m model) clone() model {
	out := model{}
	for db, rows := range m {
		out[db] = map[int]string{}
		for id, v := range rows {
			out[db][id] = v
		}
	}
	return out
}

// rowsOf renders one db's rows as SELECT x::text FROM item x ORDER BY id prints them.
func rowsOf(rows map[int]string) []string {
	var ids []int
	for id := range rows {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	out := []string{}
	for _, id := range ids {
		out = append(out, fmt.Sprintf("(%d,%s)", id, rows[id]))
	}
	return out
}

// itemCluster gives a test of the farm dbs t1..tn with table item(id int primary key,
// v text) holding rows 1..10 = 'init', and its sync over members with opts.
func (f *farm) itemCluster(t *testing.T, name string, n int, members []string, opts ...string) (*cluster, model) {
	t.Helper()
	c := f.cluster(t, name, n)
	m := model{}
	for _, db := range c.names {
		c.on(db, `CREATE TABLE item (id int PRIMARY KEY, v text); INSERT INTO item SELECT g, 'init' FROM generate_series(1, 10) g`)
		m[db] = map[int]string{}
		for id := 1; id <= 10; id++ {
			m[db][id] = "init"
		}
	}
	c.configure([]string{"item"}, members, opts...)
	return c, m
}

// write is one application transaction on one db; it is applied to the db and the model.
type write struct {
	db string
	op string // update, delete, insert
	id int
}

func (c *cluster) apply(m model, ws []write) {
	c.t.Helper()
	for _, w := range ws {
		v := fmt.Sprintf("%s:%d", w.db, w.id)
		switch w.op {
		case "update":
			c.on(w.db, `UPDATE item SET v = $2 WHERE id = $1`, w.id, v)
			m[w.db][w.id] = v
		case "insert":
			c.on(w.db, `INSERT INTO item VALUES ($1, $2)`, w.id, v)
			m[w.db][w.id] = v
		case "delete":
			c.on(w.db, `DELETE FROM item WHERE id = $1`, w.id)
			delete(m[w.db], w.id)
		}
		// The next change is later by a clear margin ("$at" has microseconds).
		time.Sleep(3 * time.Millisecond)
	}
}

// check compares every db's item with the model.
func (c *cluster) check(m model) {
	c.t.Helper()
	for _, db := range c.names {
		if diff := cmp.Diff(rowsOf(m[db]), c.strs(db, `SELECT (x.id, x.v)::text FROM item x ORDER BY id`)); diff != "" {
			c.t.Errorf("db %s: item (-want +got):\n%s", db, diff)
		}
	}
}

// converge returns the model after a run applying winners (key -> db; "" leaves the key
// alone everywhere) and the I/D the run must report: every db but the winner receives the
// key (deleting its row if it has one, copying the winner's row if the winner has one).
func converge(before model, winners map[int]string) (model, counts) {
	after := before.clone()
	var ct counts
	for id, w := range winners {
		if w == "" {
			continue
		}
		v, has := before[w][id]
		for db := range before {
			if db == w {
				continue
			}
			if _, ok := before[db][id]; ok {
				ct.D++
			}
			if has {
				ct.I++
				after[db][id] = v
			} else {
				delete(after[db], id)
			}
		}
	}
	return after, ct
}

// conflictWrites: the same application writes for every strategy, in this order.
var conflictWrites = []write{
	{"t2", "update", 1}, {"t1", "update", 1}, // 1: t1 last
	{"t1", "update", 2}, {"t2", "update", 2}, // 2: t2 last
	{"t3", "update", 3}, {"t1", "update", 3}, // 3: t1 last
	{"t1", "update", 4}, {"t2", "update", 4}, {"t3", "update", 4}, // 4: t3 last
	{"t3", "update", 5},                      // 5: no conflict
	{"t2", "delete", 6}, {"t1", "update", 6}, // 6: deleted, then updated last on t1
	{"t1", "update", 7}, {"t2", "delete", 7}, // 7: updated, then deleted last on t2
	{"t2", "insert", 11}, {"t3", "insert", 11}, // 11: inserted on two, t3 last
	{"t1", "delete", 8}, {"t2", "delete", 8}, // 8: deleted on two, t2 last
}

// conflictDBs: who changed each conflicting key (sorted).
var conflictDBs = map[int][]string{
	1: {"t1", "t2"}, 2: {"t1", "t2"}, 3: {"t1", "t3"}, 4: {"t1", "t2", "t3"},
	6: {"t1", "t2"}, 7: {"t1", "t2"}, 8: {"t1", "t2"}, 11: {"t2", "t3"},
}

// conflictTypes: the type of each conflicting key.
var conflictTypes = map[int]string{
	1: conflict.TypeUpdateUpdate, 2: conflict.TypeUpdateUpdate, 3: conflict.TypeUpdateUpdate, 4: conflict.TypeUpdateUpdate,
	6: conflict.TypeUpdateDelete, 7: conflict.TypeUpdateDelete, 8: conflict.TypeDeleteDelete, 11: conflict.TypeInsertExists,
}

// conflictTypeCounts: a run's conflicts by type.
var conflictTypeCounts = map[string]int64{conflict.TypeUpdateUpdate: 4, conflict.TypeUpdateDelete: 2, conflict.TypeDeleteDelete: 1, conflict.TypeInsertExists: 1}

func wantConflicts(table, strategy, resolution string, winners map[int]string) []control.Conflict {
	var out []control.Conflict
	for id, dbs := range conflictDBs {
		w := ""
		if resolution == "applied" {
			w = winners[id]
		}
		out = append(out, control.Conflict{Table: table, Key: fmt.Sprintf("id=%d", id), Type: conflictTypes[id], DBs: dbs, Winner: w, Strategy: strategy, Resolution: resolution})
	}
	return out
}

// logged returns the sync's conflict log, dbs sorted, only the compared fields kept.
func (c *cluster) logged(run int64) []control.Conflict {
	c.t.Helper()
	cs, err := control.Conflicts(context.Background(), c.store.Q(), c.sync, 1000)
	if err != nil {
		c.t.Fatal(err)
	}
	var out []control.Conflict
	for _, x := range cs {
		if x.Run != run {
			continue
		}
		dbs := slices.Clone(x.DBs)
		sort.Strings(dbs)
		out = append(out, control.Conflict{Table: x.Table, Key: x.Key, Type: x.Type, DBs: dbs, Winner: x.Winner, Strategy: x.Strategy, Resolution: x.Resolution})
	}
	return out
}

var sortConflicts = cmpopts.SortSlices(func(a, b control.Conflict) bool { return a.Key < b.Key })

var conflictMembers = []string{"t1:source", "t2:source", "t3:source", "t4:target"}

var conflictCases = map[string]struct {
	strategy, logged string
	members          []string
	winners          map[int]string
}{
	"latest": {strategy: "latest", logged: "latest",
		winners: map[int]string{1: "t1", 2: "t2", 3: "t1", 4: "t3", 5: "t3", 6: "t1", 7: "t2", 8: "t2", 11: "t3"}},
	// The first listed db that changed the row wins, whoever changed it last (1, 4, 6,
	// 11); t3 is not listed, so it wins only rows no listed db changed (5).
	"list": {strategy: "t2 t1", logged: "t2 t1",
		winners: map[int]string{1: "t2", 2: "t2", 3: "t1", 4: "t2", 5: "t3", 6: "t2", 7: "t2", 8: "t2", 11: "t2"}},
	// The first source in dbgroup order (t3, t1, t2) that changed the row wins.
	"source": {strategy: "source", logged: "source", members: []string{"t3:source", "t1:source", "t2:source", "t4:target"},
		winners: map[int]string{1: "t1", 2: "t1", 3: "t3", 4: "t3", 5: "t3", 6: "t1", 7: "t1", 8: "t1", 11: "t3"}},
	// Conflicting rows are left as they are on every db; the rest is applied.
	"skip": {strategy: "skip", logged: "skip",
		winners: map[int]string{1: "", 2: "", 3: "", 4: "", 5: "t3", 6: "", 7: "", 8: "", 11: ""}},
}

// conflictStrategyTest applies the same conflicting writes under a strategy and checks
// the exact winner of every key, every db's rows, the run's counts and the conflict log.
func conflictStrategyTest(name string) func(*testing.T, *farm) {
	return func(t *testing.T, f *farm) {
		tc := conflictCases[name]
		ms := conflictMembers
		if tc.members != nil {
			ms = tc.members
		}
		c, m := f.itemCluster(t, "cs_"+name, 4, ms, "conflict_strategy="+tc.strategy)
		c.apply(m, conflictWrites)
		want, wantCounts := converge(m, tc.winners)
		wantCounts.C = int64(len(conflictDBs))

		res := c.mustRun(control.StateGood, job.Options{})
		if got := countsOf(res); got != wantCounts {
			t.Errorf("I/D/C %+v, want %+v", got, wantCounts)
		}
		if diff := cmp.Diff(conflictTypeCounts, res.ConflictTypes); diff != "" {
			t.Errorf("conflicts by type (-want +got):\n%s", diff)
		}
		if name == "latest" {
			// ibex status SYNC and ibex conflicts show the types.
			if out, want := c.ibex("status", c.sync), "Conflicts logged, by type        : insert_exists 1, update_update 4, update_delete 2, delete_delete 1\n"; !strings.Contains(out, want) {
				t.Errorf("status %s lacks %q:\n%s", c.sync, want, out)
			}
			out := c.ibex("conflicts", c.sync)
			if !strings.Contains(strings.SplitN(out, "\n", 2)[0], " Type ") || !strings.Contains(out, "| id=8  | delete_delete | t1,t2 ") {
				t.Errorf("ibex conflicts %s does not show the types:\n%s", c.sync, out)
			}
		}
		c.check(want)
		resolution := "applied"
		if tc.strategy == "skip" {
			resolution = "skipped"
		}
		if diff := cmp.Diff(wantConflicts(c.qual("item"), tc.logged, resolution, tc.winners), c.logged(res.RunID), sortConflicts); diff != "" {
			t.Errorf("conflict log (-want +got):\n%s", diff)
		}
		// Nothing left to do: a skipped conflict is not retried (and not logged again).
		res = c.mustRun(control.StateEmpty, job.Options{})
		if got := countsOf(res); got != (counts{}) {
			t.Errorf("second run: %+v", got)
		}
		c.check(want)
	}
}

// testConflictAbort: under abort the run fails before writing anything, logs every
// conflict, and keeps failing until the strategy changes; then the rows converge.
func testConflictAbort(t *testing.T, f *farm) {
	c, m := f.itemCluster(t, "cs_abort", 4, conflictMembers, "conflict_strategy=abort")
	c.apply(m, conflictWrites)
	for i := 0; i < 2; i++ {
		res := c.mustRun(control.StateBad, job.Options{})
		for _, s := range []string{"conflict_strategy abort", fmt.Sprintf("%d rows", len(conflictDBs)), c.qual("item") + " id="} {
			if !strings.Contains(res.Error, s) {
				t.Errorf("run %d: error %q does not say %q", i, res.Error, s)
			}
		}
		for _, part := range strings.Split(res.Error, c.qual("item")+" id=")[1:] {
			var id int
			fmt.Sscanf(part, "%d", &id)
			if conflictDBs[id] == nil {
				t.Errorf("error names id=%d, which is not a conflict: %s", id, res.Error)
			}
		}
		if res.Inserts != 0 || res.Deletes != 0 || res.Conflicts != int64(len(conflictDBs)) {
			t.Errorf("run %d: I/D/C %+v, want 0/0/%d", i, countsOf(res), len(conflictDBs))
		}
		c.check(m) // nothing applied, not even the row without conflict (id 5)
		if diff := cmp.Diff(wantConflicts(c.qual("item"), "abort", "aborted", nil), c.logged(res.RunID), sortConflicts); diff != "" {
			t.Errorf("conflict log (-want +got):\n%s", diff)
		}
	}
	c.ibex("update", "sync", c.sync, "conflict_strategy=latest")
	want, wantCounts := converge(m, conflictCases["latest"].winners)
	wantCounts.C = int64(len(conflictDBs))
	res := c.mustRun(control.StateGood, job.Options{})
	if got := countsOf(res); got != wantCounts {
		t.Errorf("after switching to latest: I/D/C %+v, want %+v", got, wantCounts)
	}
	c.check(want)
}

// testConflictOneKeyAbort: the abort error names the one conflicting key exactly.
func testConflictOneKeyAbort(t *testing.T, f *farm) {
	c, m := f.itemCluster(t, "cs_abort1", 2, []string{"t1:source", "t2:source"}, "conflict_strategy=abort")
	c.apply(m, []write{{"t1", "update", 5}, {"t2", "update", 5}, {"t1", "update", 6}})
	res := c.mustRun(control.StateBad, job.Options{})
	if !strings.Contains(res.Error, "conflict_strategy abort") || !strings.Contains(res.Error, c.qual("item")+" id=5 (changed on t1, t2)") {
		t.Errorf("error %q does not name the key %s id=5 and its dbs", res.Error, c.qual("item"))
	}
	c.check(m)
	want := []control.Conflict{{Table: c.qual("item"), Key: "id=5", Type: conflict.TypeUpdateUpdate, DBs: []string{"t1", "t2"}, Strategy: "abort", Resolution: "aborted"}}
	if diff := cmp.Diff(want, c.logged(res.RunID)); diff != "" {
		t.Errorf("conflict log (-want +got):\n%s", diff)
	}
}

// testConflictByType: a strategy per conflict type, two rows with different outcomes in
// one run: update_update by the sync's latest, update_delete skipped, insert_exists by
// source order, delete_delete by latest; then on_delete_delete=abort stops a run before it
// writes anything, and on_delete_delete=default lets it through.
func testConflictByType(t *testing.T, f *farm) {
	c, _ := f.itemCluster(t, "cs_bytype", 3, []string{"t1:source", "t2:source", "t3:target"}, "conflict_strategy=latest")
	c.ibex("update", "sync", c.sync, "on_update_delete=skip", "on_insert_exists=source")
	if out, want := c.ibex("status", c.sync), "Conflict strategy                : latest (insert_exists: source, update_delete: skip)\n"; !strings.Contains(out, want) {
		t.Errorf("status lacks %q:\n%s", want, out)
	}
	if out := c.ibex("export"); !strings.Contains(out, "conflict_by_type:\n      insert_exists: source\n      update_delete: skip\n") {
		t.Errorf("export lacks conflict_by_type:\n%s", out)
	}
	c.on("t2", `UPDATE item SET v = 't2' WHERE id = 1`)
	c.on("t1", `UPDATE item SET v = 't1' WHERE id = 1`) // latest: t1
	c.on("t1", `UPDATE item SET v = 't1' WHERE id = 2`)
	c.on("t2", `DELETE FROM item WHERE id = 2`) // skipped
	c.on("t1", `INSERT INTO item VALUES (100, 't1')`)
	c.on("t2", `INSERT INTO item VALUES (100, 't2')`) // source: t1 (latest would say t2)
	c.on("t1", `DELETE FROM item WHERE id = 3`)
	c.on("t2", `DELETE FROM item WHERE id = 3`) // latest: deleted
	res := c.mustRun(control.StateGood, job.Options{})
	rows := func(db string) []string { return c.rows(db, "item", "id") }
	rest := []string{"(4,init)", "(5,init)", "(6,init)", "(7,init)", "(8,init)", "(9,init)", "(10,init)", "(100,t1)"}
	want := map[string][]string{
		"t1": append([]string{"(1,t1)", "(2,t1)"}, rest...),
		"t2": append([]string{"(1,t1)"}, rest...),
		"t3": append([]string{"(1,t1)", "(2,init)"}, rest...),
	}
	for db, w := range want {
		if diff := cmp.Diff(w, rows(db)); diff != "" {
			t.Errorf("db %s (-want +got):\n%s", db, diff)
		}
	}
	wantLog := []control.Conflict{
		{Table: c.qual("item"), Key: "id=1", Type: conflict.TypeUpdateUpdate, DBs: []string{"t1", "t2"}, Winner: "t1", Strategy: "latest", Resolution: "applied"},
		{Table: c.qual("item"), Key: "id=100", Type: conflict.TypeInsertExists, DBs: []string{"t1", "t2"}, Winner: "t1", Strategy: "source", Resolution: "applied"},
		{Table: c.qual("item"), Key: "id=2", Type: conflict.TypeUpdateDelete, DBs: []string{"t1", "t2"}, Strategy: "skip", Resolution: "skipped"},
		{Table: c.qual("item"), Key: "id=3", Type: conflict.TypeDeleteDelete, DBs: []string{"t1", "t2"}, Winner: "t2", Strategy: "latest", Resolution: "applied"},
	}
	if diff := cmp.Diff(wantLog, c.logged(res.RunID), sortConflicts); diff != "" {
		t.Errorf("conflict log (-want +got):\n%s", diff)
	}

	// on_delete_delete=abort: a run with such a conflict writes nothing.
	c.ibex("update", "sync", c.sync, "on_delete_delete=abort")
	c.on("t1", `DELETE FROM item WHERE id = 4; UPDATE item SET v = 'a' WHERE id = 5`)
	c.on("t2", `DELETE FROM item WHERE id = 4; UPDATE item SET v = 'b' WHERE id = 5`)
	res = c.mustRun(control.StateBad, job.Options{})
	if want := "conflict_strategy abort: 1 rows were changed on more than one source, nothing was applied: " + c.qual("item") + " id=4 (changed on t1, t2)"; !strings.HasPrefix(res.Error, want) {
		t.Errorf("error %q, want it to begin with %q", res.Error, want)
	}
	if got := c.rows("t3", "item", "id"); got[2] != "(4,init)" || got[3] != "(5,init)" {
		t.Errorf("t3 after the aborted run: %v", got)
	}
	c.ibex("update", "sync", c.sync, "on_delete_delete=default")
	c.mustRun(control.StateGood, job.Options{})
	rest = []string{"(5,b)", "(6,init)", "(7,init)", "(8,init)", "(9,init)", "(10,init)", "(100,t1)"}
	want = map[string][]string{ // id 2 stays as each db had it (skipped)
		"t1": append([]string{"(1,t1)", "(2,t1)"}, rest...),
		"t2": append([]string{"(1,t1)"}, rest...),
		"t3": append([]string{"(1,t1)", "(2,init)"}, rest...),
	}
	for db, w := range want {
		if diff := cmp.Diff(w, rows(db)); diff != "" {
			t.Errorf("after on_delete_delete=default: db %s (-want +got):\n%s", db, diff)
		}
	}
	code, _, errs := c.ibexCmd("update", "sync", c.sync, "on_update_clash=skip")
	if code != 2 || !strings.Contains(errs, `unknown option "on_update_clash" (use herd, tables, dbs, conflict_strategy, on_insert_exists, on_update_update, on_update_delete, on_delete_delete,`) {
		t.Errorf("unknown type: exit %d, %q", code, errs)
	}
	code, _, errs = c.ibexCmd("update", "sync", c.sync, "on_update_delete=t9 t1")
	if code == 0 || !strings.Contains(errs, "on_update_delete:") {
		t.Errorf("unknown db in a type's strategy: exit %d, %q", code, errs)
	}
}
