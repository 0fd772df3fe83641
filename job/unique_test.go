package job_test

import (
	"context"
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/job"
)

// testUniqueClash: two sources insert rows of different keys with the same value in a
// secondary unique index. Under latest the later row stays everywhere and the other is
// deleted everywhere, its own source too, logged in full; rows that do not clash (other
// values, NULLs) all arrive. Under a priority list (on_unique_clash="t1 t2") t1's row stays
// although t2's is later. Under skip both stay where they are. Later runs go on.
func testUniqueClash(t *testing.T, f *farm) {
	c := f.cluster(t, "uclash", 3)
	c.onAll(`CREATE TABLE users (id int PRIMARY KEY, email text UNIQUE, name text)`)
	c.configure([]string{"users"}, []string{"t1:source", "t2:source", "t3:target"})
	users := func(db string) string {
		t.Helper()
		return strings.Join(c.strs(db, `SELECT id || ':' || coalesce(email, 'NULL') || ':' || name FROM users ORDER BY id`), " ")
	}
	c.on("t1", `INSERT INTO users VALUES (1, 'a@x', 't1'), (3, 'b@x', 't1'), (5, NULL, 't1')`)
	c.on("t2", `INSERT INTO users VALUES (2, 'a@x', 't2'), (4, 'c@x', 't2'), (6, NULL, 't2')`)
	res := c.mustRun(control.StateGood, job.Options{})
	if res.ConflictTypes["unique_clash"] != 1 {
		t.Errorf("unique clashes %d, want 1: %s", res.ConflictTypes["unique_clash"], res.Summary())
	}
	want := "2:a@x:t2 3:b@x:t1 4:c@x:t2 5:NULL:t1 6:NULL:t2"
	for _, db := range c.names {
		if got := users(db); got != want {
			t.Errorf("%s: %s\nwant %s", db, got, want)
		}
	}
	cs, err := control.Conflicts(context.Background(), c.store.Q(), c.sync, 10)
	if err != nil || len(cs) != 1 {
		t.Fatalf("conflict log: %+v, %v", cs, err)
	}
	if got := cs[0]; got.Type != "unique_clash" || got.Key != "id=1" || got.Winner != "t2" || got.Resolution != "deleted" ||
		got.Row != `{"id":1,"email":"a@x","name":"t1"}` || strings.Join(got.DBs, ",") != "t1,t2" {
		t.Errorf("logged %+v", got)
	}
	c.mustRun(control.StateEmpty, job.Options{})

	// A priority list for this type only: t1's row stays although t2's is later.
	c.ibex("update", "sync", c.sync, `on_unique_clash=t1 t2`)
	c.on("t1", `INSERT INTO users VALUES (7, 'd@x', 't1')`)
	c.on("t2", `INSERT INTO users VALUES (8, 'd@x', 't2')`)
	c.on("t2", `UPDATE users SET name = 'renamed' WHERE id = 4`)
	res = c.mustRun(control.StateGood, job.Options{})
	want = "2:a@x:t2 3:b@x:t1 4:c@x:renamed 5:NULL:t1 6:NULL:t2 7:d@x:t1"
	for _, db := range c.names {
		if got := users(db); got != want {
			t.Errorf("priority list: %s: %s\nwant %s", db, got, want)
		}
	}

	// skip: both rows stay on their sources, applied nowhere; the run is good.
	c.ibex("update", "sync", c.sync, "on_unique_clash=skip")
	c.on("t1", `INSERT INTO users VALUES (9, 'e@x', 't1')`)
	c.on("t2", `INSERT INTO users VALUES (10, 'e@x', 't2')`)
	res = c.mustRun(control.StateGood, job.Options{})
	if res.ConflictTypes["unique_clash"] != 2 {
		t.Errorf("skip: unique clashes %d, want 2 (both rows logged): %s", res.ConflictTypes["unique_clash"], res.Summary())
	}
	for db, want := range map[string]string{"t1": "9", "t2": "10", "t3": ""} {
		if got := strings.Join(c.strs(db, `SELECT id::text FROM users WHERE email = 'e@x'`), ","); got != want {
			t.Errorf("skip: %s holds %q of the clashing rows, want %q", db, got, want)
		}
	}

	// park: the winner's row stays everywhere, the loser's is deleted everywhere and parked
	// in the exception log with its row.
	c.on("t2", `DELETE FROM users WHERE id = 10`)
	c.on("t1", `UPDATE users SET name = 't1' WHERE id = 9`)
	c.ibex("update", "sync", c.sync, "on_unique_clash=t1 t2")
	if _, err := c.run(t.Context(), job.Options{}); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := c.ibexCmd("update", "sync", c.sync, "unique_clash_loser=hide"); code == 0 || !strings.Contains(errs, `unique_clash_loser must be delete or park, not "hide"`) {
		t.Errorf("a bad unique_clash_loser: exit %d, %s", code, errs)
	}
	c.ibex("update", "sync", c.sync, "unique_clash_loser=park")
	if out := c.ibex("status", c.sync); !strings.Contains(out, "Unique clash loser") || !strings.Contains(out, "park") {
		t.Errorf("status does not show unique_clash_loser:\n%s", out)
	}
	c.on("t1", `INSERT INTO users VALUES (11, 'f@x', 't1')`)
	c.on("t2", `INSERT INTO users VALUES (12, 'f@x', 't2'), (13, 'g@x', 't2')`)
	res = c.mustRun(control.StateGood, job.Options{})
	if res.ConflictTypes["unique_clash"] != 1 || res.Parked != 1 {
		t.Errorf("park: unique clashes %d, parked %d, want 1 and 1: %s", res.ConflictTypes["unique_clash"], res.Parked, res.Summary())
	}
	want = "2:a@x:t2 3:b@x:t1 4:c@x:renamed 5:NULL:t1 6:NULL:t2 7:d@x:t1 9:e@x:t1 11:f@x:t1 13:g@x:t2"
	for _, db := range c.names {
		if got := users(db); got != want {
			t.Errorf("park: %s: %s\nwant %s", db, got, want)
		}
	}
	es, err := control.Exceptions(context.Background(), c.store.Q(), c.sync, 10)
	if err != nil || len(es) != 1 {
		t.Fatalf("exception log: %+v, %v", es, err)
	}
	if e := es[0]; e.DB != "t2" || e.Key != "id=12" || e.Row != `{"id":12,"email":"f@x","name":"t2"}` ||
		!strings.HasPrefix(e.Error, "unique_clash: its values in a unique index equal those of db t1's row") {
		t.Errorf("parked %+v", e)
	}
	if out := c.ibex("conflicts", c.sync, "--errors"); !strings.Contains(out, `{"id":12,"email":"f@x","name":"t2"}`) {
		t.Errorf("conflicts --errors does not show the parked row:\n%s", out)
	}
	c.mustRun(control.StateEmpty, job.Options{})
}

// testUniqueClashBatches: clashing rows in different batches of one backlog (batch_size=2):
// two sources' rows with one value (latest wins, the other is deleted everywhere), and one
// source that moved a value from one key to another where the new key's batch comes first.
// Every run is good and every db ends up the same.
func testUniqueClashBatches(t *testing.T, f *farm) {
	c := f.cluster(t, "uclashb", 3)
	c.onAll(`CREATE TABLE users (id int PRIMARY KEY, email text UNIQUE, name text);
INSERT INTO users VALUES (50, 'z@x', 'moved'), (60, 'y@x', 'old')`)
	c.configure([]string{"users"}, []string{"t1:source", "t2:source", "t3:target"})
	c.ibex("update", "sync", c.sync, "batch_size=2")
	users := func(db string) string {
		t.Helper()
		return strings.Join(c.strs(db, `SELECT id || ':' || coalesce(email, 'NULL') || ':' || name FROM users ORDER BY id`), " ")
	}
	c.on("t1", `INSERT INTO users SELECT g, 'u' || g || '@x', 't1' FROM generate_series(2, 9) g; INSERT INTO users VALUES (1, 'a@x', 't1')`)
	c.on("t2", `INSERT INTO users VALUES (100, 'a@x', 't2')`)
	c.on("t1", `DELETE FROM users WHERE id = 50; INSERT INTO users VALUES (10, 'z@x', 'moved to 10')`)
	c.on("t2", `UPDATE users SET email = 'w@x' WHERE id = 60; INSERT INTO users VALUES (11, 'y@x', 't2')`)
	res := c.mustRun(control.StateGood, job.Options{})
	if res.ConflictTypes["unique_clash"] != 1 {
		t.Errorf("unique clashes %d, want 1: %s", res.ConflictTypes["unique_clash"], res.Summary())
	}
	want := "2:u2@x:t1 3:u3@x:t1 4:u4@x:t1 5:u5@x:t1 6:u6@x:t1 7:u7@x:t1 8:u8@x:t1 9:u9@x:t1 10:z@x:moved to 10 11:y@x:t2 60:w@x:old 100:a@x:t2"
	for _, db := range c.names {
		if got := users(db); got != want {
			t.Errorf("%s: %s\nwant %s", db, got, want)
		}
	}
	cs, err := control.Conflicts(context.Background(), c.store.Q(), c.sync, 10)
	if err != nil || len(cs) != 1 {
		t.Fatalf("conflict log: %+v, %v", cs, err)
	}
	if got := cs[0]; got.Key != "id=1" || got.Winner != "t2" || got.Resolution != "deleted" || got.Row != `{"id":1,"email":"a@x","name":"t1"}` {
		t.Errorf("logged %+v", got)
	}
	c.mustRun(control.StateEmpty, job.Options{})
}
