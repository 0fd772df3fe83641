package job_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/job"
)

var pgbenchTables = []struct{ name, key string }{
	{"pgbench_accounts", "aid"}, {"pgbench_branches", "bid"}, {"pgbench_tellers", "tid"},
}

// testSeedDemoSmall is the seed demo at a small scale: five dbs from pgbench -i (each
// initialised by pgbench -i -s 1 in the test's schema: the same content as copies of the
// first), four sources and a target, 500 pgbench transactions on each source, one run,
// and all five identical. The result counts are exact: every changed key is written to
// the four other dbs, and a key changed on two or more sources is one conflict.
func testSeedDemoSmall(t *testing.T, f *farm) {
	c := f.cluster(t, "foobar", 5)
	c.pgbenchInit()
	for _, tb := range pgbenchTables {
		ref := c.sum("t1", tb.name, tb.key)
		for _, n := range c.names[1:] {
			if got := c.sum(n, tb.name, tb.key); got != ref {
				t.Fatalf("%s differs between t1 and %s before any change", tb.name, n)
			}
		}
	}
	c.configure([]string{"pgbench_accounts", "pgbench_branches", "pgbench_tellers"},
		[]string{"t1:source", "t2:source", "t3:source", "t4:source", "t5:target"})
	sources := []string{"t1", "t2", "t3", "t4"}
	c.logf("configured")

	var wg sync.WaitGroup
	errs := make([]error, len(sources))
	for i, s := range sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = pgbench(c.dbs[s], c.schema, "-n", "-t", "500")
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	c.logf("pgbench done")
	// What the run must do, from the change tables: per table, the distinct keys changed
	// on each source.
	want := counts{}
	wantTables := map[string]job.Stats{}
	for _, tb := range pgbenchTables {
		by := map[string]int{}
		for _, s := range sources {
			for _, k := range c.strs(s, fmt.Sprintf(`SELECT DISTINCT %s::text FROM %s`, tb.key, c.changeTable(tb.name))) {
				by[k]++
			}
		}
		var st job.Stats
		for _, n := range by {
			st.Inserts += 4
			st.Deletes += 4
			if n > 1 {
				st.Conflicts++
			}
		}
		if len(by) == 0 {
			t.Fatalf("no change captured for %s", tb.name)
		}
		wantTables[c.qual(tb.name)] = st
		want.I += st.Inserts
		want.D += st.Deletes
		want.C += st.Conflicts
	}

	res := c.mustRun(control.StateGood, job.Options{})
	if got := countsOf(res); got != want {
		t.Errorf("first run: I/D/C %+v, want %+v", got, want)
	}
	if diff := cmp.Diff(wantTables, res.Tables); diff != "" {
		t.Errorf("first run: per-table counts (-want +got):\n%s", diff)
	}
	if want.C == 0 {
		t.Errorf("expected some conflicts with 4 x 500 pgbench transactions at scale 1")
	}
	t.Logf("first run: %s", res.Summary())

	for _, tb := range pgbenchTables {
		ref := pgtest.TableSum(t, c.dbs["t1"].DSN, c.qual(tb.name), tb.key)
		for _, n := range c.names[1:] {
			if got := pgtest.TableSum(t, c.dbs[n].DSN, c.qual(tb.name), tb.key); got != ref {
				t.Errorf("%s differs between t1 and %s after the run", tb.name, n)
			}
		}
	}

	res2 := c.mustRun(control.StateEmpty, job.Options{})
	if got := countsOf(res2); got != (counts{}) {
		t.Errorf("second run: I/D/C %+v, want zeros", got)
	}
	for _, s := range sources {
		for _, tb := range pgbenchTables {
			if n := c.int(s, `SELECT count(*) FROM `+c.changeTable(tb.name)); n != 0 {
				t.Errorf("db %s: change table of %s has %d rows after the second run, want 0", s, tb.name, n)
			}
		}
	}
	runs, err := control.Runs(context.Background(), c.store.Q(), c.sync, 10)
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	for _, r := range runs {
		states = append(states, r.State)
	}
	if diff := cmp.Diff([]string{"empty", "good"}, states); diff != "" {
		t.Errorf("run history states (-want +got):\n%s", diff)
	}
	if len(runs) == 2 && (runs[1].Inserts != want.I || runs[1].Conflicts != want.C) {
		t.Errorf("recorded run: I %d C %d, want %d %d", runs[1].Inserts, runs[1].Conflicts, want.I, want.C)
	}
}
