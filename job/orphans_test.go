package job_test

import (
	"context"
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/job"
)

// testOrphans: a parent deleted on one source while another source inserts a child of it
// (and re-points an existing child to it) leaves, once both are applied, children without
// their parent. Under on_orphan=delete (the default) the run deletes them on every db and
// logs them as orphan conflicts with their rows; children of other parents, and children
// with a NULL reference, stay. Under on_orphan=keep they stay (today's behaviour).
func testOrphans(t *testing.T, f *farm) {
	c := f.cluster(t, "orphans", 3)
	c.onAll(`CREATE TABLE parent (id int PRIMARY KEY, name text);
CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent (id), note text);
INSERT INTO parent SELECT g, 'p' || g FROM generate_series(1, 3) g;
INSERT INTO child VALUES (1, 1, 'c1'), (2, 2, 'c2'), (3, NULL, 'loose')`)
	c.configure([]string{"parent", "child"}, []string{"t1:source", "t2:source", "t3:target"})
	if out := c.ibex("status", c.sync); !strings.Contains(out, "On orphan") || !strings.Contains(out, "delete") {
		t.Errorf("status does not show on_orphan:\n%s", out)
	}
	c.on("t1", `DELETE FROM child WHERE parent_id = 3; DELETE FROM parent WHERE id = 3`)
	c.on("t2", `INSERT INTO child VALUES (10, 3, 'new child of 3'); UPDATE child SET parent_id = 3, note = 'moved' WHERE id = 2`)
	res := c.mustRun(control.StateGood, job.Options{})
	if res.ConflictTypes["orphan"] != 2 {
		t.Errorf("orphan conflicts %d, want 2: %s", res.ConflictTypes["orphan"], res.Summary())
	}
	for _, db := range c.names {
		if got := strings.Join(c.strs(db, `SELECT id || ':' || coalesce(parent_id::text, 'NULL') || ':' || note FROM child ORDER BY id`), " "); got != "1:1:c1 3:NULL:loose" {
			t.Errorf("%s: child %s, want 1:1:c1 3:NULL:loose", db, got)
		}
		if got := strings.Join(c.strs(db, `SELECT id::text FROM parent ORDER BY id`), " "); got != "1 2" {
			t.Errorf("%s: parent %s, want 1 2", db, got)
		}
	}
	cs, err := control.Conflicts(context.Background(), c.store.Q(), c.sync, 10)
	if err != nil {
		t.Fatal(err)
	}
	var logged []string
	for _, x := range cs {
		if x.Type == "orphan" {
			logged = append(logged, x.Key+" "+x.Resolution+" "+x.Row+" "+strings.Join(x.DBs, ","))
		}
	}
	want := []string{
		`id=2 deleted {"id":2,"parent_id":3,"note":"moved"} t1,t2,t3`,
		`id=10 deleted {"id":10,"parent_id":3,"note":"new child of 3"} t1,t2,t3`,
	}
	if strings.Join(logged, "\n") != strings.Join(want, "\n") && strings.Join(logged, "\n") != want[1]+"\n"+want[0] {
		t.Errorf("orphans logged:\n%s\nwant:\n%s", strings.Join(logged, "\n"), strings.Join(want, "\n"))
	}
	c.mustRun(control.StateEmpty, job.Options{})

	// on_orphan=keep: the orphan stays everywhere.
	c.ibex("update", "sync", c.sync, "on_orphan=keep")
	c.on("t1", `DELETE FROM child WHERE parent_id = 2; DELETE FROM parent WHERE id = 2`)
	c.on("t2", `INSERT INTO child VALUES (20, 2, 'kept')`)
	res = c.mustRun(control.StateGood, job.Options{})
	if res.ConflictTypes["orphan"] != 0 {
		t.Errorf("orphan conflicts under keep: %s", res.Summary())
	}
	for _, db := range c.names {
		if n := c.int(db, `SELECT count(*) FROM child WHERE id = 20`); n != 1 {
			t.Errorf("%s: the orphan is gone under on_orphan=keep", db)
		}
	}
}

// testOrphansRestore: under on_orphan=restore, a parent deleted on one source while another
// source inserts a child of it (and re-points an existing child to it) is brought back on
// every db with the row it had before the run, logged as an orphan conflict with that row;
// a parent deleted without such children stays deleted, and a child the deleting source
// deleted too stays deleted. The restore is not captured (the next run is empty). An orphan
// whose parent went in an earlier run (no db saved it) is deleted instead.
func testOrphansRestore(t *testing.T, f *farm) {
	c := f.cluster(t, "orphans_restore", 3)
	c.onAll(`CREATE TABLE parent (id int PRIMARY KEY, name text);
CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent (id), note text);
INSERT INTO parent SELECT g, 'p' || g FROM generate_series(1, 5) g;
INSERT INTO child VALUES (1, 1, 'c1'), (2, 2, 'c2'), (3, NULL, 'loose')`)
	c.configure([]string{"parent", "child"}, []string{"t1:source", "t2:source", "t3:target"})
	if code, out, errs := c.ibexCmd("update", "sync", c.sync, "on_orphan=bring-back"); code == 0 || !strings.Contains(errs, `on_orphan must be delete, restore or keep, not "bring-back"`) {
		t.Errorf("a bad on_orphan: exit %d, %s%s", code, out, errs)
	}
	c.ibex("update", "sync", c.sync, "on_orphan=restore")
	if out := c.ibex("status", c.sync); !strings.Contains(out, "restore") {
		t.Errorf("status does not show on_orphan=restore:\n%s", out)
	}
	c.on("t1", `DELETE FROM child WHERE parent_id = 1; DELETE FROM parent WHERE id IN (1, 4)`)
	c.on("t2", `INSERT INTO child VALUES (10, 1, 'new child of 1'); UPDATE child SET parent_id = 1, note = 'moved' WHERE id = 2`)
	res := c.mustRun(control.StateGood, job.Options{})
	if res.ConflictTypes["orphan"] != 1 {
		t.Errorf("orphan conflicts %d, want 1: %s", res.ConflictTypes["orphan"], res.Summary())
	}
	for _, db := range c.names {
		if got := strings.Join(c.strs(db, `SELECT id || ':' || coalesce(parent_id::text, 'NULL') || ':' || note FROM child ORDER BY id`), " "); got != "2:1:moved 3:NULL:loose 10:1:new child of 1" {
			t.Errorf("%s: child %s, want 2:1:moved 3:NULL:loose 10:1:new child of 1", db, got)
		}
		if got := strings.Join(c.strs(db, `SELECT id || ':' || name FROM parent ORDER BY id`), " "); got != "1:p1 2:p2 3:p3 5:p5" {
			t.Errorf("%s: parent %s, want 1:p1 2:p2 3:p3 5:p5", db, got)
		}
	}
	cs, err := control.Conflicts(context.Background(), c.store.Q(), c.sync, 10)
	if err != nil {
		t.Fatal(err)
	}
	var logged []string
	for _, x := range cs {
		if x.Type == "orphan" {
			_, table, _ := strings.Cut(x.Table, ".")
			logged = append(logged, table+" "+x.Key+" "+x.Strategy+" "+x.Resolution+" "+x.Row+" "+strings.Join(x.DBs, ","))
		}
	}
	if want := `parent id=1 on_orphan=restore parent restored {"id":1,"name":"p1"} t1,t2,t3`; strings.Join(logged, "\n") != want {
		t.Errorf("orphans logged:\n%s\nwant:\n%s", strings.Join(logged, "\n"), want)
	}
	c.mustRun(control.StateEmpty, job.Options{})

	// An orphan left by an earlier run (under keep): nothing saved its parent, so restore
	// deletes it.
	c.ibex("update", "sync", c.sync, "on_orphan=keep")
	c.on("t1", `DELETE FROM parent WHERE id = 3`)
	c.on("t2", `INSERT INTO child VALUES (30, 3, 'orphan')`)
	c.mustRun(control.StateGood, job.Options{})
	c.ibex("update", "sync", c.sync, "on_orphan=restore")
	c.on("t2", `UPDATE child SET note = 'still an orphan' WHERE id = 10`)
	res = c.mustRun(control.StateGood, job.Options{})
	if res.ConflictTypes["orphan"] != 1 {
		t.Errorf("orphan conflicts %d, want 1: %s", res.ConflictTypes["orphan"], res.Summary())
	}
	for _, db := range c.names {
		if n := c.int(db, `SELECT count(*) FROM child WHERE id = 30`); n != 0 {
			t.Errorf("%s: the orphan whose parent no db saved is still there", db)
		}
		if got := strings.Join(c.strs(db, `SELECT id::text FROM parent ORDER BY id`), " "); got != "1 2 5" {
			t.Errorf("%s: parent %s, want 1 2 5", db, got)
		}
	}
}
