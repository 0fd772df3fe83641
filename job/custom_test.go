package job_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/job"
)

// testCustomCols: a target gets the key and a select list's columns, an expression
// evaluated on the sending db; its extra column keeps its default and the columns left out
// are not written; a list that does not parse, or names a column the target lacks, is
// refused and changes nothing; onetimecopy copies through the list too.
func testCustomCols(t *testing.T, f *farm) {
	c := f.cluster(t, "customcols", 3)
	for _, db := range []string{"t1", "t2", "t3"} {
		c.on(db, `CREATE TABLE item (id int PRIMARY KEY, a text, b text, c text); INSERT INTO item VALUES (1, 'a1', 'b1', 'c1'), (2, 'a2', 'b2', 'c2')`)
	}
	c.configure([]string{"item"}, []string{"t1:source", "t2:source", "t3:target"})
	c.on("t3", `DELETE FROM item`)
	code, _, errs := c.ibexCmd("add", "customcols", c.q("item"), "SELECT id, a, upper(c AS c", "db=t3")
	if code == 0 || !strings.Contains(errs, "invalid customcols: table "+c.qual("item")+": SELECT id, a, upper(c AS c: db t1: ERROR: syntax error") {
		t.Errorf("a list that does not parse: exit %d, %q", code, errs)
	}
	code, _, errs = c.ibexCmd("add", "customcols", c.q("item"), "SELECT id, a", "db=t1")
	if code == 0 || !strings.Contains(errs, "applies to db t1, a source of sync customcols: customcols are for targets") {
		t.Errorf("customcols on a source: exit %d, %q", code, errs)
	}
	if out := c.ibex("list", "customcols"); out != "No customcols\n" {
		t.Errorf("refused customcols were stored: %q", out)
	}
	out := c.ibex("add", "customcols", c.q("item"), "SELECT id, a, upper(c) AS c", "db=t3")
	if !strings.HasPrefix(out, "Added customcols ") {
		t.Errorf("add customcols said %q", out)
	}
	// The target has its own columns now: no b, an extra one with a default.
	c.on("t3", `ALTER TABLE item DROP COLUMN b, ADD COLUMN extra text NOT NULL DEFAULT 'dflt'`)
	code, _, errs = c.ibexCmd("add", "customcols", c.q("item"), "SELECT id, a, b", "db=t3", "sync="+c.sync)
	if code == 0 || !strings.Contains(errs, `table `+c.qual("item")+` on db t3 has no column "b"`) {
		t.Errorf("a column the target lacks: exit %d, %q", code, errs)
	}
	if out := c.ibex("list", "customcols"); strings.Count(out, "\n") != 2 {
		t.Errorf("a refused customcols was stored: %q", out)
	}
	c.ibex("update", "sync", c.sync, "onetimecopy=1")
	c.mustRun(control.StateGood, job.Options{})
	if got, want := c.rows("t3", "item", "id"), []string{"(1,a1,C1,dflt)", "(2,a2,C2,dflt)"}; !cmp.Equal(got, want) {
		t.Errorf("t3 after onetimecopy: %v, want %v", got, want)
	}
	c.on("t3", `UPDATE item SET extra = 'mine' WHERE id = 2`)
	c.on("t1", `UPDATE item SET b = 'b1x', c = 'c1x' WHERE id = 1; INSERT INTO item VALUES (3, 'a3', 'b3', 'c3')`)
	c.on("t2", `DELETE FROM item WHERE id = 2`)
	c.mustRun(control.StateGood, job.Options{})
	if got, want := c.rows("t3", "item", "id"), []string{"(1,a1,C1X,dflt)", "(3,a3,C3,dflt)"}; !cmp.Equal(got, want) {
		t.Errorf("t3: %v, want %v", got, want)
	}
	for _, db := range []string{"t1", "t2"} {
		if got, want := c.rows(db, "item", "id"), []string{"(1,a1,b1x,c1x)", "(3,a3,b3,c3)"}; !cmp.Equal(got, want) {
			t.Errorf("%s: %v, want %v", db, got, want)
		}
	}
	if out, want := c.ibex("list", "tables", c.q("item")), "customcols SELECT id, a, upper(c) AS c (db t3)"; !strings.Contains(out, want) {
		t.Errorf("list tables lacks %q:\n%s", want, out)
	}
	if out, want := c.ibex("status", c.sync), "Customcols"; !strings.Contains(out, want) {
		t.Errorf("status lacks %q:\n%s", want, out)
	}
	list := c.ibex("list", "customcols")
	id := strings.TrimSpace(strings.Fields(strings.Split(list, "\n")[1])[0])
	c.ibex("remove", "customcols", id)
	if out := c.ibex("list", "customcols"); out != "No customcols\n" {
		t.Errorf("after remove: %q", out)
	}
}
