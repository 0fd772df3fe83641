package job_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/job"
)

// testBuiltRow: a conflict decision that builds the row (t1's version, column w from
// t2's) goes through the batch path's one place for computed rows: every db, the winner
// too, ends with the merged row; a key the winner deleted is deleted everywhere; a key
// changed on one source only is forwarded as ever.
func testBuiltRow(t *testing.T, f *farm) {
	c, _ := f.itemCluster(t, "built", 3, []string{"t1:source", "t2:source", "t3:target"})
	c.onAll(`ALTER TABLE item ADD COLUMN w text DEFAULT 'init'`)
	c.on("t1", `UPDATE item SET v = 'v1', w = 'w1' WHERE id = 1`)
	c.on("t2", `UPDATE item SET v = 'v2', w = 'w2' WHERE id = 1`)
	c.on("t1", `UPDATE item SET v = 'only t1' WHERE id = 2`)
	c.on("t1", `DELETE FROM item WHERE id = 3`)
	c.on("t2", `UPDATE item SET v = 'v2', w = 'w2' WHERE id = 3`)
	c.on("t2", `UPDATE item SET w = NULL WHERE id = 4`)
	c.on("t1", `UPDATE item SET v = E'tab\there \\ "q"' WHERE id = 4`)
	var opts job.Options
	job.SetDecide(&opts, func(changes []conflict.Change) conflict.Decision {
		return conflict.Decision{Winner: "t1", Columns: map[string]string{"w": "t2"}}
	})
	res := c.mustRun(control.StateGood, opts)
	if got, want := countsOf(res), (counts{I: 8, D: 10, C: 3}); got != want {
		t.Errorf("I/D/C %+v, want %+v", got, want)
	}
	want := []string{"1|v1|w2", "2|only t1|init", "4|tab\there \\ \"q\"|NULL", "5|init|init", "6|init|init", "7|init|init", "8|init|init", "9|init|init", "10|init|init"}
	for _, db := range c.names {
		got := c.strs(db, `SELECT id || '|' || v || '|' || coalesce(w, 'NULL') FROM item ORDER BY id`)
		if !slices.Equal(got, want) {
			t.Errorf("db %s:\n got %q\nwant %q", db, got, want)
		}
	}
	c.mustRun(control.StateEmpty, opts)

	// A decision naming a db that sent no version cannot be built: the run fails and
	// applies nothing.
	c.on("t1", `UPDATE item SET v = 'a' WHERE id = 5`)
	c.on("t2", `DELETE FROM item WHERE id = 5`)
	res = c.mustRun(control.StateBad, opts)
	if !strings.Contains(res.Error, "building the row of key id=5") || !strings.Contains(res.Error, "t2") {
		t.Errorf("error %q", res.Error)
	}
	for db, want := range map[string]string{"t1": "5|a|init", "t2": "", "t3": "5|init|init"} {
		got := c.strs(db, `SELECT id || '|' || v || '|' || coalesce(w, 'NULL') FROM item WHERE id = 5`)
		if (want == "" && len(got) != 0) || (want != "" && !slices.Equal(got, []string{want})) {
			t.Errorf("db %s after the failed run: %q, want %q", db, got, want)
		}
	}
}
