package job_test

import (
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/job"
)

// testTruncateOrder: a TRUNCATE on source t1 against changes on source t2, in both orders
// (latest wins, by the time capture recorded): t2's change before the TRUNCATE is void,
// its change after it survives everywhere, rows inserted after it on either source arrive,
// and t1's own change before its TRUNCATE does not come back. The target t3 is emptied
// with one TRUNCATE, not row by row.
func testTruncateOrder(t *testing.T, f *farm) {
	c, _ := f.itemCluster(t, "trunc_order", 3, []string{"t1:source", "t2:source", "t3:target"}, "conflict_strategy=latest")
	tick := func() { time.Sleep(5 * time.Millisecond) } // distinct capture times
	item := func(rows ...string) []string { return rows }

	// t2 changes before the TRUNCATE, t1 changes then truncates, then both write after.
	c.on("t2", `UPDATE item SET v = 't2 before' WHERE id = 3`)
	tick()
	c.on("t1", `UPDATE item SET v = 't1 before' WHERE id = 1; INSERT INTO item VALUES (50, 't1 before')`)
	tick()
	c.on("t1", `TRUNCATE item`)
	tick()
	c.on("t1", `INSERT INTO item VALUES (100, 't1 after')`)
	c.on("t2", `UPDATE item SET v = 't2 after' WHERE id = 2; INSERT INTO item VALUES (200, 't2 after')`)
	res := c.mustRun(control.StateGood, job.Options{})
	want := item("(2,\"t2 after\")", "(100,\"t1 after\")", "(200,\"t2 after\")")
	if diff := cmp.Diff(want, c.sameEverywhere("item", "id")); diff != "" {
		t.Errorf("after truncate then changes (-want +got):\n%s", diff)
	}
	if res.Truncates != 2 || res.Tables[c.qual("item")].Truncates != 2 {
		t.Errorf("truncates %d (table %d), want 2: t2 and t3 emptied (%s)", res.Truncates, res.Tables[c.qual("item")].Truncates, res.Summary())
	}
	// Nothing left pending, nothing comes back.
	if res := c.mustRun(control.StateEmpty, job.Options{}); res.Inserts+res.Deletes != 0 {
		t.Errorf("second run: %s", res.Summary())
	}
	for _, db := range []string{"t1", "t2"} {
		if n := c.int(db, `SELECT count(*) FROM `+c.changeTable("item")); n != 0 {
			t.Errorf("db %s: %d change rows left", db, n)
		}
	}

	// The other order: t2 changes, then t1 truncates: t2's changes are void; t2's later
	// insert arrives.
	c.on("t2", `UPDATE item SET v = 't2 early' WHERE id = 2; INSERT INTO item VALUES (300, 't2 early')`)
	tick()
	c.on("t1", `TRUNCATE item`)
	tick()
	c.on("t2", `INSERT INTO item VALUES (301, 't2 late')`)
	c.mustRun(control.StateGood, job.Options{})
	if diff := cmp.Diff(item(`(301,"t2 late")`), c.sameEverywhere("item", "id")); diff != "" {
		t.Errorf("after changes then truncate (-want +got):\n%s", diff)
	}

	// Truncates on both sources: the later one decides; a receiver whose own TRUNCATE is
	// later keeps what it wrote after it.
	c.on("t1", `INSERT INTO item VALUES (400, 't1')`)
	c.on("t1", `TRUNCATE item`)
	tick()
	c.on("t2", `INSERT INTO item VALUES (401, 't2')`)
	tick()
	c.on("t2", `TRUNCATE item`)
	tick()
	c.on("t2", `INSERT INTO item VALUES (402, 't2 after both')`)
	c.on("t1", `INSERT INTO item VALUES (403, 't1 after both')`)
	c.mustRun(control.StateGood, job.Options{})
	if diff := cmp.Diff(item(`(402,"t2 after both")`, `(403,"t1 after both")`), c.sameEverywhere("item", "id")); diff != "" {
		t.Errorf("after truncates on both sources (-want +got):\n%s", diff)
	}
}

// testTruncateCascade: TRUNCATE ... RESTART IDENTITY CASCADE of a parent on t1 empties the
// child too (both herd tables, with a foreign key between them on every db): each
// receiver empties both in one statement, and the rows inserted after arrive.
func testTruncateCascade(t *testing.T, f *farm) {
	c := f.cluster(t, "trunc_cascade", 3)
	c.onAll(`CREATE TABLE parent (id serial PRIMARY KEY, v text);
CREATE TABLE child (id int PRIMARY KEY, pid int NOT NULL REFERENCES parent, v text);
INSERT INTO parent (v) SELECT 'p' || g FROM generate_series(1, 5) g;
INSERT INTO child SELECT g, 1 + g % 5, 'c' || g FROM generate_series(1, 20) g`)
	c.configure([]string{"parent", "child"}, []string{"t1:source", "t2:source", "t3:target"})
	c.on("t1", `TRUNCATE parent RESTART IDENTITY CASCADE`)
	c.on("t1", `INSERT INTO parent (v) VALUES ('new'); INSERT INTO child VALUES (100, 1, 'new child')`)
	res := c.mustRun(control.StateGood, job.Options{})
	if diff := cmp.Diff([]string{`(1,new)`}, c.sameEverywhere("parent", "id")); diff != "" {
		t.Errorf("parent (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{`(100,1,"new child")`}, c.sameEverywhere("child", "id")); diff != "" {
		t.Errorf("child (-want +got):\n%s", diff)
	}
	if res.Truncates != 4 {
		t.Errorf("truncates %d, want 4 (two tables on t2 and t3): %s", res.Truncates, res.Summary())
	}
	// TRUNCATE of both named in one statement on t2.
	c.on("t2", `TRUNCATE child, parent`)
	c.mustRun(control.StateGood, job.Options{})
	if n := len(c.sameEverywhere("parent", "id")) + len(c.sameEverywhere("child", "id")); n != 0 {
		t.Errorf("%d rows left after TRUNCATE child, parent", n)
	}
}

// testTruncateRacesPgbench: pgbench updates pgbench_accounts on t2 while t1 truncates it:
// the rows t2 changed after the TRUNCATE (by capture time) survive everywhere with t2's
// values, every other row is gone, on every db.
func testTruncateRacesPgbench(t *testing.T, f *farm) {
	c := f.cluster(t, "trunc_pgbench", 3)
	c.pgbenchInit()
	c.configure([]string{"pgbench_accounts"}, []string{"t1:source", "t2:source", "t3:target"}, "conflict_strategy=latest")
	var wg sync.WaitGroup
	var benchErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		benchErr = pgbench(c.dbs["t2"], c.schema, "-n", "-c", "2", "-T", "3", "-b", "simple-update")
	}()
	time.Sleep(1500 * time.Millisecond)
	c.on("t1", `TRUNCATE pgbench_accounts`)
	wg.Wait()
	if benchErr != nil {
		t.Fatal(benchErr)
	}
	// The rows that must survive: changed on t2 after t1's TRUNCATE, as t2 holds them.
	at := c.strs("t1", `SELECT "$at"::text FROM `+c.changeTable("pgbench_accounts")+` WHERE "$op" = 't'`)
	if len(at) != 1 {
		t.Fatalf("%d TRUNCATE change rows on t1, want 1", len(at))
	}
	want := c.strs("t2", `SELECT a::text FROM pgbench_accounts a WHERE aid IN (SELECT aid FROM `+c.changeTable("pgbench_accounts")+` WHERE "$at" > $1::timestamptz) ORDER BY aid`, at[0])
	before := c.int("t2", `SELECT count(DISTINCT aid) FROM `+c.changeTable("pgbench_accounts")+` WHERE "$at" <= $1::timestamptz`, at[0])
	if len(want) == 0 || before == 0 {
		t.Fatalf("pgbench changed %d rows after the TRUNCATE and %d before: the race did not happen", len(want), before)
	}
	c.mustRun(control.StateGood, job.Options{})
	got := c.sameEverywhere("pgbench_accounts", "aid")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pgbench_accounts (-want +got):\n%s", diff)
	}
	t.Logf("%d rows changed on t2 before the TRUNCATE (void), %d after (kept)", before, len(want))
}
