package job_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/job"
)

// onetimecopyCluster: sources t1 and t2 with item rows 1..10 'init', target t3 with other
// rows (5..15 'junk'), target t4 empty; t1 changes id 3 and t2 id 2 before the first run.
func onetimecopyCluster(t *testing.T, f *farm, sync string, mode string) *cluster {
	c := f.cluster(t, sync, 4)
	c.onAll(`CREATE TABLE item (id int PRIMARY KEY, v text)`)
	c.on("t1", `INSERT INTO item SELECT g, 'init' FROM generate_series(1, 10) g`)
	c.on("t2", `INSERT INTO item SELECT g, 'init' FROM generate_series(1, 10) g`)
	c.on("t3", `INSERT INTO item SELECT g, 'junk' FROM generate_series(5, 15) g`)
	c.configure([]string{"item"}, []string{"t1:source", "t2:source", "t3:target", "t4:target"}, "onetimecopy="+mode)
	c.on("t1", `UPDATE item SET v = 't1' WHERE id = 3`)
	c.on("t2", `UPDATE item SET v = 't2' WHERE id = 2`)
	return c
}

func (c *cluster) onetimecopy() int {
	c.t.Helper()
	s, err := control.GetSync(context.Background(), c.store.Q(), c.sync)
	if err != nil {
		c.t.Fatal(err)
	}
	return s.Onetimecopy
}

var copied = []string{"(1,init)", "(2,t2)", "(3,t1)", "(4,init)", "(5,init)", "(6,init)", "(7,init)", "(8,init)", "(9,init)", "(10,init)"}

// testOnetimecopy1: every target becomes a copy of the first source, whatever it held;
// the run's changes then go everywhere, and the flag goes back to 0.
func testOnetimecopy1(t *testing.T, f *farm) {
	c := onetimecopyCluster(t, f, "otc1", "1")
	res := c.mustRun(control.StateGood, job.Options{})
	for _, db := range c.names {
		if diff := cmp.Diff(copied, c.rows(db, "item", "id")); diff != "" {
			t.Errorf("db %s (-want +got):\n%s", db, diff)
		}
	}
	// Copy: t3 loses its 11 rows, t3 and t4 get 10 each. Deltas: id 3 to t2 t3 t4, id 2 to
	// t1 t3 t4, each db having the row by then.
	if got, want := countsOf(res), (counts{I: 26, D: 17}); got != want {
		t.Errorf("I/D/C %+v, want %+v", got, want)
	}
	if n := c.onetimecopy(); n != 0 {
		t.Errorf("onetimecopy is %d after the run, want 0", n)
	}
	c.on("t4", `INSERT INTO item VALUES (99, 'local')`) // a target's own row is not copied over again
	c.mustRun(control.StateEmpty, job.Options{})
	if got := c.rows("t4", "item", "id"); len(got) != 11 {
		t.Errorf("t4 has %d rows, want its 11", len(got))
	}
}

// testOnetimecopy2: only empty targets are filled; a target with rows keeps them and gets
// the deltas on top.
func testOnetimecopy2(t *testing.T, f *farm) {
	c := onetimecopyCluster(t, f, "otc2", "2")
	res := c.mustRun(control.StateGood, job.Options{})
	for _, db := range []string{"t1", "t2", "t4"} {
		if diff := cmp.Diff(copied, c.rows(db, "item", "id")); diff != "" {
			t.Errorf("db %s (-want +got):\n%s", db, diff)
		}
	}
	want := []string{"(2,t2)", "(3,t1)", "(5,junk)", "(6,junk)", "(7,junk)", "(8,junk)", "(9,junk)", "(10,junk)", "(11,junk)", "(12,junk)", "(13,junk)", "(14,junk)", "(15,junk)"}
	if diff := cmp.Diff(want, c.rows("t3", "item", "id")); diff != "" {
		t.Errorf("db t3 (-want +got):\n%s", diff)
	}
	// Copy: t4 gets 10. Deltas: id 3 to t2 (has it) t3 (not) t4 (has); id 2 to t1 t3 t4 (t1, t4 have it).
	if got, want := countsOf(res), (counts{I: 16, D: 4}); got != want {
		t.Errorf("I/D/C %+v, want %+v", got, want)
	}
	if n := c.onetimecopy(); n != 0 {
		t.Errorf("onetimecopy is %d after the run, want 0", n)
	}
	c.mustRun(control.StateEmpty, job.Options{})
}

// testFullcopy: a fullcopy sync of a table without a key replaces the target's table
// whole on every run, duplicates and NULLs included.
func testFullcopy(t *testing.T, f *farm) {
	c := f.cluster(t, "full", 2) // t1 is the source, t2 the fullcopy target
	c.on("t1", `CREATE TABLE nokey (a int, b text); INSERT INTO nokey VALUES (1, 'a'), (1, 'a'), (2, NULL), (3, 'c');
CREATE TABLE withkey (id int PRIMARY KEY, v text); INSERT INTO withkey VALUES (1, 'one')`)
	c.on("t2", `CREATE TABLE nokey (a int, b text); INSERT INTO nokey VALUES (9, 'junk');
CREATE TABLE withkey (id int PRIMARY KEY, v text); INSERT INTO withkey VALUES (1, 'other'), (2, 'two')`)
	c.ibex("add", "table", c.q("withkey"), "db=t1", "herd="+c.sync)
	if code, out, errs := c.ibexCmd("add", "table", c.q("nokey"), "db=t1", "herd="+c.sync, "keyless=fullcopy"); code != 0 {
		// Reported: control.PutRelation stores a nil key list as NULL. Add the table by
		// hand so that the fullcopy run itself is still tested.
		t.Errorf("ibex add table nokey keyless=fullcopy: exit %d\n%s%s", code, out, errs)
		if _, err := c.store.Pool.Exec(context.Background(), `WITH r AS (INSERT INTO ibex.relation (schemaname, tablename, db, keycols, keykind)
VALUES ($1, 'nokey', 't1', '{}', 'none') RETURNING id) INSERT INTO ibex.herdmap (herd, relation) SELECT $1, id FROM r`, c.schema); err != nil {
			t.Fatal(err)
		}
	}
	c.ibex("add", "dbgroup", c.sync, "t1:source", "t2:fullcopy")
	c.ibex("add", "sync", c.sync, "herd="+c.sync, "dbs="+c.sync, "autokick=false")
	if n := c.int("t1", `SELECT count(*) FROM pg_trigger g JOIN pg_class r ON r.oid = g.tgrelid
WHERE r.relnamespace = $1::regnamespace AND g.tgname LIKE 'ibex%'`, c.schema); n != 0 {
		t.Errorf("a fullcopy sync installed %d capture triggers on its source", n)
	}

	res := c.mustRun(control.StateGood, job.Options{})
	if got, want := countsOf(res), (counts{I: 5, D: 3}); got != want {
		t.Errorf("I/D/C %+v, want %+v", got, want)
	}
	c.sameEverywhere("nokey", "x::text")
	c.sameEverywhere("withkey", "id")

	c.on("t1", `DELETE FROM nokey WHERE a = 3; INSERT INTO nokey VALUES (4, 'd'), (4, 'd')`)
	c.on("t2", `INSERT INTO nokey VALUES (7, 'garbage'); DELETE FROM withkey`)
	res = c.mustRun(control.StateGood, job.Options{})
	if got, want := countsOf(res), (counts{I: 6, D: 5}); got != want {
		t.Errorf("second run: I/D/C %+v, want %+v", got, want)
	}
	want := []string{"(1,a)", "(1,a)", "(2,)", "(4,d)", "(4,d)"}
	if diff := cmp.Diff(want, c.rows("t2", "nokey", "x::text")); diff != "" {
		t.Errorf("dst nokey (-want +got):\n%s", diff)
	}
	c.sameEverywhere("withkey", "id")
	// Every run copies, even without changes.
	res = c.mustRun(control.StateGood, job.Options{})
	if got, want := countsOf(res), (counts{I: 6, D: 6}); got != want {
		t.Errorf("third run: I/D/C %+v, want %+v", got, want)
	}
}
