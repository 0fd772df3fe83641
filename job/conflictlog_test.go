package job_test

import (
	"context"
	"testing"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/job"
)

// testConflictLogUnitRetried: a unit's conflicts are copied to the control database while
// its later batches are applied (conflictlog.go). When a sender of a later batch then
// fails, the unit is applied again from its first batch without that db: the copy of the
// first attempt is rolled back, so each conflict is logged once, by the run that applied
// it. Here t1 and t2 both change every row of a (100 conflicts) and t3 alone changes b;
// b is locked on t3, so that t3's read of b's rows gives up (the read session's lock
// timeout) after the unit's batch of a was applied and its conflicts copied.
func testConflictLogUnitRetried(t *testing.T, f *farm) {
	c := f.cluster(t, "clogretry", 3)
	c.onAll(`CREATE TABLE a (id int PRIMARY KEY, v text); INSERT INTO a SELECT g, 'seed' FROM generate_series(1, 100) g;
CREATE TABLE b (id int PRIMARY KEY, v text); INSERT INTO b SELECT g, 'seed' FROM generate_series(1, 10) g`)
	c.configure([]string{"a", "b"}, []string{"t1:source", "t2:source", "t3:source"})
	c.on("t1", `UPDATE a SET v = 't1'`)
	c.on("t2", `UPDATE a SET v = 't2'`)
	c.on("t3", `UPDATE b SET v = 't3'`)
	lock := c.tx("t3", `LOCK TABLE b IN ACCESS EXCLUSIVE MODE`)
	res, err := c.run(context.Background(), job.Options{})
	if res == nil {
		t.Fatalf("the run did not start: %v", err)
	}
	if res.State != control.StateBad || res.Skipped["t3"] == "" {
		t.Fatalf("run with b locked on t3: state %q, skipped %v (err %v); want bad, t3 skipped", res.State, res.Skipped, err)
	}
	if res.Conflicts != 100 {
		t.Errorf("the run counts %d conflicts, want 100", res.Conflicts)
	}
	var n, keys int64
	if err := c.store.Pool.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT key) FROM ibex.conflict WHERE sync = $1 AND run = $2`,
		c.sync, res.RunID).Scan(&n, &keys); err != nil {
		t.Fatal(err)
	}
	if n != 100 || keys != 100 {
		t.Errorf("the conflict log holds %d conflicts of %d keys for the run, want 100 of 100 (each once)", n, keys)
	}
	if err := lock.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.mustRun(control.StateGood, job.Options{})
	for _, tb := range []string{"a", "b"} {
		if got := c.sameEverywhere(tb, "id"); len(got) != map[string]int{"a": 100, "b": 10}[tb] {
			t.Errorf("%s: %d rows everywhere after t3 came back", tb, len(got))
		}
	}
}
