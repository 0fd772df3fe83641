package job_test

import (
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/job"
)

// testColumnMerge: conflict_detect=columns. In one run: two sources update different
// columns of a row (merged, both changes kept, no conflict); two sources update the same
// column and different ones (only that column is a conflict, the latest wins it, the
// others merge); a row updated on one source (forwarded); an update against a delete (a
// whole-row conflict, as without columns). Then the option is shown, exported, and
// switched off again (capture stops recording the columns).
func testColumnMerge(t *testing.T, f *farm) {
	c := f.cluster(t, "colmerge", 3)
	c.onAll(`CREATE TABLE item (id int PRIMARY KEY, a text, b text, c jsonb); INSERT INTO item SELECT g, 'a', 'b', '{"n": 0}' FROM generate_series(1, 5) g`)
	c.configure([]string{"item"}, []string{"t1:source", "t2:source", "t3:target"}, "conflict_strategy=latest")
	if out := c.ibex("update", "table", c.q("item"), "conflict_detect=columns"); !strings.Contains(out, "Updated table") {
		t.Fatalf("update table conflict_detect=columns said %q", out)
	}
	if out := c.ibex("list", "tables"); !strings.Contains(out, "conflict_detect=columns") {
		t.Errorf("list tables does not show conflict_detect:\n%s", out)
	}
	if code, _, errs := c.ibexCmd("update", "table", c.q("item"), "conflict_detect=cells"); code == 0 || !strings.Contains(errs, "conflict_detect must be rows or columns") {
		t.Errorf("conflict_detect=cells: exit %d, %q", code, errs)
	}
	for _, w := range []struct{ db, sql string }{
		{"t1", `UPDATE item SET a = 'a1' WHERE id = 1`},
		{"t2", `UPDATE item SET b = 'b2', c = '{"n": 2}' WHERE id = 1`},
		{"t1", `UPDATE item SET a = 'a1', b = 'b1' WHERE id = 2`},
		{"t2", `UPDATE item SET b = 'b2', c = '{"n": 2}' WHERE id = 2`}, // later: wins b
		{"t1", `UPDATE item SET c = '{"n": 1}' WHERE id = 3`},
		{"t1", `UPDATE item SET a = 'gone?' WHERE id = 4`},
		{"t2", `DELETE FROM item WHERE id = 4`}, // later: the delete wins the row
		{"t2", `UPDATE item SET a = 'x' WHERE id = 5`},
		{"t2", `UPDATE item SET a = 'a' WHERE id = 5`}, // back to where it was: a changed, to 'a'
	} {
		c.on(w.db, w.sql)
	}
	res := c.mustRun(control.StateGood, job.Options{})
	if res.Conflicts != 2 {
		t.Errorf("conflicts %d, want 2 (id 2's column b, id 4's update against delete): %s", res.Conflicts, res.Summary())
	}
	want := `1:a1:b2:{"n": 2} 2:a1:b2:{"n": 2} 3:a:b:{"n": 1} 5:a:b:{"n": 0}`
	for _, db := range c.names {
		if got := strings.Join(c.strs(db, `SELECT id || ':' || a || ':' || b || ':' || c::text FROM item ORDER BY id`), " "); got != want {
			t.Errorf("%s: %s\nwant %s", db, got, want)
		}
	}
	c.mustRun(control.StateEmpty, job.Options{})

	// Off again: the change table no longer records columns, and the same kind of writes
	// is a whole-row conflict (the latest row wins).
	c.ibex("update", "table", c.q("item"), "conflict_detect=rows")
	ct := c.changeTable("item")
	if n := c.int("t1", `SELECT count(*) FROM pg_attribute WHERE attrelid = '`+ct+`'::regclass AND attname = '$cols' AND NOT attisdropped`); n != 0 {
		t.Errorf("the change table on t1 still has $cols")
	}
	c.on("t1", `UPDATE item SET a = 'r1' WHERE id = 1`)
	c.on("t2", `UPDATE item SET b = 'r2' WHERE id = 1`)
	res = c.mustRun(control.StateGood, job.Options{})
	if res.Conflicts != 1 {
		t.Errorf("conflicts %d, want 1: %s", res.Conflicts, res.Summary())
	}
	c.sameEverywhere("item", "id")
	if got := c.strs("t3", `SELECT a || ':' || b FROM item WHERE id = 1`); strings.Join(got, "") != "a1:r2" {
		t.Errorf("whole-row conflict on id 1: %v, want a1:r2 (t2's row, the latest)", got)
	}
}
