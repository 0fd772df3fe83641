package job_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/job"
)

// hook is a log handler that calls fn (once) when the run logs msg, in the run's own
// goroutine: the run waits while fn writes.
type hook struct {
	msg  string
	fn   func()
	once sync.Once
}

func (h *hook) Enabled(context.Context, slog.Level) bool { return true }
func (h *hook) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.once.Do(h.fn)
	}
	return nil
}
func (h *hook) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *hook) WithGroup(string) slog.Handler      { return h }

// tx opens a transaction on db name of the test (its own connection) and runs sql in it.
func (c *cluster) tx(name, sql string) pgx.Tx {
	c.t.Helper()
	cn, err := pgx.Connect(context.Background(), c.dbs[name].DSN+" search_path="+c.schema)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { _ = cn.Close(context.Background()) })
	tx, err := cn.Begin(context.Background())
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := tx.Exec(context.Background(), sql); err != nil {
		c.t.Fatal(err)
	}
	return tx
}

func (c *cluster) v(db string, id int) string {
	c.t.Helper()
	got := c.strs(db, `SELECT v FROM item WHERE id = $1`, id)
	if len(got) == 0 {
		return "<none>"
	}
	return got[0]
}

// testInFlightTransactions: a transaction open before a run's snapshot and committed after
// the run, and one committed while the run is under way, are both picked up by the next
// run (invariant 1), while a later committed one is applied at once.
func testInFlightTransactions(t *testing.T, f *farm) {
	c, _ := f.itemCluster(t, "inflight", 3, []string{"t1:source", "t2:source", "t3:target"})
	a := c.tx("t1", `UPDATE item SET v = 'A' WHERE id = 1`) // xid older than B's, commits last
	c.on("t1", `UPDATE item SET v = 'B' WHERE id = 2`)
	during := c.tx("t2", `UPDATE item SET v = 'C' WHERE id = 3`)
	h := &hook{msg: "backlog", fn: func() {
		if err := during.Commit(context.Background()); err != nil {
			t.Error(err)
		}
	}}
	res := c.mustRun(control.StateGood, job.Options{Logger: slog.New(h)})
	if got, want := countsOf(res), (counts{I: 2, D: 2}); got != want {
		t.Errorf("first run: I/D/C %+v, want %+v", got, want)
	}
	for db, want := range map[string][3]string{"t1": {"init", "B", "init"}, "t2": {"init", "B", "C"}, "t3": {"init", "B", "init"}} {
		if got := [3]string{c.v(db, 1), c.v(db, 2), c.v(db, 3)}; got != want {
			t.Errorf("db %s after the first run: %v, want %v", db, got, want)
		}
	}
	if err := a.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	res = c.mustRun(control.StateGood, job.Options{})
	if got, want := countsOf(res), (counts{I: 4, D: 4}); got != want {
		t.Errorf("second run: I/D/C %+v, want %+v", got, want)
	}
	for _, db := range c.names {
		if got, want := [3]string{c.v(db, 1), c.v(db, 2), c.v(db, 3)}, [3]string{"A", "B", "C"}; got != want {
			t.Errorf("db %s after the second run: %v, want %v", db, got, want)
		}
	}
	c.mustRun(control.StateEmpty, job.Options{})
}

// testLateChangeOnReceiver: a source whose application changes a key while a run is
// bringing it another source's older change of that key keeps its own newer version, and
// the next run sends that version everywhere.
func testLateChangeOnReceiver(t *testing.T, f *farm) {
	c, _ := f.itemCluster(t, "late", 3, []string{"t1:source", "t2:source", "t3:target"})
	c.on("t1", `UPDATE item SET v = 't1' WHERE id IN (5, 6)`)
	h := &hook{msg: "backlog", fn: func() { c.on("t2", `UPDATE item SET v = 't2 late' WHERE id = 5`) }}
	c.mustRun(control.StateGood, job.Options{Logger: slog.New(h)})
	for db, want := range map[string][2]string{"t1": {"t1", "t1"}, "t2": {"t2 late", "t1"}, "t3": {"t1", "t1"}} {
		if got := [2]string{c.v(db, 5), c.v(db, 6)}; got != want {
			t.Errorf("db %s after the first run: %v, want %v", db, got, want)
		}
	}
	res := c.mustRun(control.StateGood, job.Options{})
	if got, want := countsOf(res), (counts{I: 2, D: 2}); got != want {
		t.Errorf("second run: I/D/C %+v, want %+v", got, want)
	}
	for _, db := range c.names {
		if got, want := [2]string{c.v(db, 5), c.v(db, 6)}, [2]string{"t2 late", "t1"}; got != want {
			t.Errorf("db %s after the second run: %v, want %v", db, got, want)
		}
	}
	c.mustRun(control.StateEmpty, job.Options{})
}

// testAppWaitsOnAppliedRow: an application transaction that updates a row while a run is
// writing it on that source waits for the run, then applies its change on top of the
// run's version (UPDATE semantics: a delete and insert would leave it nothing to update),
// and the next run sends the result everywhere.
func testAppWaitsOnAppliedRow(t *testing.T, f *farm) {
	c, _ := f.itemCluster(t, "appwait", 3, []string{"t1:source", "t2:source", "t3:target"})
	c.on("t1", `UPDATE item SET v = 't1' WHERE id = 5`)
	appDone := make(chan error, 1)
	h := &hook{msg: "batch written, committing", fn: func() {
		// The run holds item 5 on t2: the application's update waits for its commit.
		go func() {
			tx := c.tx("t2", `SET lock_timeout = '30s'`)
			_, err := tx.Exec(context.Background(), `UPDATE item SET v = v || ' +app' WHERE id = 5`)
			if err == nil {
				err = tx.Commit(context.Background())
			}
			appDone <- err
		}()
		for i := 0; ; i++ {
			if c.int("t2", `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'UPDATE item SET v = v || %'`) == 1 {
				return
			}
			if i == 500 {
				t.Error("the application's update never waited on the run's lock")
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}}
	c.mustRun(control.StateGood, job.Options{Logger: slog.New(h)})
	if err := <-appDone; err != nil {
		t.Fatalf("the application's update: %v", err)
	}
	if got := c.v("t2", 5); got != "t1 +app" {
		t.Fatalf("t2's item 5 = %q, want %q: the application's change belongs on top of the run's", got, "t1 +app")
	}
	c.mustRun(control.StateGood, job.Options{})
	for _, db := range c.names {
		if got := c.v(db, 5); got != "t1 +app" {
			t.Errorf("db %s after the second run: item 5 = %q, want %q", db, got, "t1 +app")
		}
	}
	c.mustRun(control.StateEmpty, job.Options{})
}

// testLatestTie: under latest, changes with equal times go to the db whose name sorts
// first, whichever really came last.
func testLatestTie(t *testing.T, f *farm) {
	c, _ := f.itemCluster(t, "tie", 3, []string{"t2:source", "t1:source", "t3:target"})
	c.on("t1", `UPDATE item SET v = 't1' WHERE id IN (1, 2)`)
	c.on("t2", `UPDATE item SET v = 't2' WHERE id IN (1, 2)`)
	for _, db := range []string{"t1", "t2"} {
		c.on(db, `UPDATE `+c.changeTable("item")+` SET "$at" = '2024-05-05 05:05:05.123456+00'`)
	}
	res := c.mustRun(control.StateGood, job.Options{})
	for _, db := range c.names {
		if got := [2]string{c.v(db, 1), c.v(db, 2)}; got != [2]string{"t1", "t1"} {
			t.Errorf("db %s: %v, want t1's rows", db, got)
		}
	}
	var want []control.Conflict
	for _, id := range []int{1, 2} {
		want = append(want, control.Conflict{Table: c.qual("item"), Key: fmt.Sprintf("id=%d", id), Type: conflict.TypeUpdateUpdate, DBs: []string{"t1", "t2"}, Winner: "t1", Strategy: "latest", Resolution: "applied"})
	}
	if diff := cmp.Diff(want, c.logged(res.RunID), sortConflicts); diff != "" {
		t.Errorf("conflict log (-want +got):\n%s", diff)
	}
}

// testInactiveReceiver: a db set inactive is left out of runs (they stay good) while the
// others go on; set active again, the next run brings it up to date with everything it
// missed, from every source.
func testInactiveReceiver(t *testing.T, f *farm) {
	// Its own ibex dbs (x1..x3) on the farm's databases, so that setting one inactive
	// touches no other test.
	c := f.cluster(t, "inact", 0)
	for i := 1; i <= 3; i++ {
		db := f.dbs[fmt.Sprintf("t%d", i)]
		name := fmt.Sprintf("x%d", i)
		c.ibex("add", "db", name, "dbname="+db.Name, "host="+db.Conn["host"], "port="+db.Conn["port"], "user="+db.Conn["user"])
		c.dbs[name] = db
		c.names = append(c.names, name)
		c.on(name, `CREATE SCHEMA inact; CREATE TABLE item (id int PRIMARY KEY, v text); INSERT INTO item SELECT g, 'init' FROM generate_series(1, 10) g`)
	}
	c.configure([]string{"item"}, []string{"x1:source", "x2:source", "x3:source"})
	c.ibex("update", "db", "x3", "status=inactive")
	c.on("x1", `UPDATE item SET v = 'x1' WHERE id <= 3`)
	res := c.mustRun(control.StateGood, job.Options{})
	if len(res.Skipped) != 0 {
		t.Errorf("an inactive db is reported skipped: %v", res.Skipped)
	}
	c.on("x2", `UPDATE item SET v = 'x2' WHERE id BETWEEN 4 AND 6`)
	c.on("x3", `UPDATE item SET v = 'x3' WHERE id = 10`) // written while x3 is left out
	c.mustRun(control.StateGood, job.Options{})
	if got := c.rows("x3", "item", "id"); !strings.Contains(strings.Join(got, " "), "(1,init)") {
		t.Errorf("x3 received changes while inactive: %v", got)
	}
	c.ibex("update", "db", "x3", "status=active")
	c.mustRun(control.StateGood, job.Options{})
	rows := c.sameEverywhere("item", "id")
	want := []string{"(1,x1)", "(2,x1)", "(3,x1)", "(4,x2)", "(5,x2)", "(6,x2)", "(7,init)", "(8,init)", "(9,init)", "(10,x3)"}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
	c.mustRun(control.StateEmpty, job.Options{})
	for _, db := range c.names {
		if n := c.int(db, `SELECT count(*) FROM `+c.changeTable("item")); n != 0 {
			t.Errorf("db %s: %d change rows left", db, n)
		}
	}
}
