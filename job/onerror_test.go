package job_test

import (
	"context"
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/job"
)

// testOnErrorSkip: a row a receiver refuses (a CHECK only that receiver has) fails the
// batch for it under on_error=stop (the default: that receiver applies nothing), and is
// parked under on_error=skip while every other row is applied: on the target, and on a
// source receiving the other source's rows; among 500 inserted rows, the one refused is
// found and the 499 others applied. Parked rows are listed by conflicts --errors, counted
// by status, and not tried again.
func testOnErrorSkip(t *testing.T, f *farm) {
	c := f.cluster(t, "onerror", 3)
	c.onAll(`CREATE TABLE item (id int PRIMARY KEY, v int, note text); INSERT INTO item SELECT g, g, 'init' FROM generate_series(1, 10) g`)
	c.on("t3", `ALTER TABLE item ADD CONSTRAINT small_v CHECK (v < 1000); ALTER TABLE item ALTER COLUMN note TYPE varchar(5)`)
	c.on("t2", `ALTER TABLE item ADD CONSTRAINT no_666 CHECK (v <> 666)`)
	c.configure([]string{"item"}, []string{"t1:source", "t2:source", "t3:target"})
	rows := func(db string) string {
		t.Helper()
		return strings.Join(c.strs(db, `SELECT id || ':' || v || ':' || note FROM item WHERE id <= 11 ORDER BY id`), " ")
	}

	// on_error=stop: t3 refuses the batch and applies nothing of it; t2 gets its rows.
	c.on("t1", `UPDATE item SET v = 5000, note = 'big' WHERE id = 1`)
	c.on("t1", `UPDATE item SET v = 20 WHERE id = 2`)
	before := rows("t3")
	res := c.mustRun(control.StateBad, job.Options{})
	if !strings.Contains(res.Error, "small_v") {
		t.Errorf("run under on_error=stop: %s, want the constraint named", res.Summary())
	}
	if got := rows("t3"); got != before {
		t.Errorf("t3 after the refused batch: %s, want it unchanged: %s", got, before)
	}

	c.ibex("update", "sync", c.sync, "on_error=skip")
	c.on("t2", `UPDATE item SET v = 30 WHERE id = 3`)
	c.on("t1", `UPDATE item SET v = 666, note = 'beast' WHERE id = 4`)
	c.on("t1", `INSERT INTO item VALUES (11, 11, 'new')`)
	c.on("t2", `UPDATE item SET note = 'too long for t3' WHERE id = 5`)
	res = c.mustRun(control.StateGood, job.Options{})
	if res.Parked != 3 {
		t.Errorf("parked %d, want 3 (%s)", res.Parked, res.Summary())
	}
	want := map[string]string{
		"t1": "1:5000:big 2:20:init 3:30:init 4:666:beast 5:5:too long for t3 6:6:init 7:7:init 8:8:init 9:9:init 10:10:init 11:11:new",
		"t2": "1:5000:big 2:20:init 3:30:init 4:4:init 5:5:too long for t3 6:6:init 7:7:init 8:8:init 9:9:init 10:10:init 11:11:new",
		"t3": "1:1:init 2:20:init 3:30:init 4:666:beast 5:5:init 6:6:init 7:7:init 8:8:init 9:9:init 10:10:init 11:11:new",
	}
	for _, db := range c.names {
		if got := rows(db); got != want[db] {
			t.Errorf("%s: %s\nwant %s", db, got, want[db])
		}
	}
	out := c.ibex("conflicts", c.sync, "--errors")
	for _, w := range []string{"id=1", "1\t5000\tbig", "small_v", "id=4", "no_666", "t3", "t2", "id=5", "value too long for type character varying(5)"} {
		if !strings.Contains(out, w) {
			t.Errorf("conflicts --errors does not show %q:\n%s", w, out)
		}
	}
	if out := c.ibex("status", c.sync); !strings.Contains(out, "skip (3 rows parked") {
		t.Errorf("status does not count the parked rows:\n%s", out)
	}
	c.mustRun(control.StateEmpty, job.Options{})

	// Many rows, one refused: the others all arrive.
	c.on("t1", `INSERT INTO item SELECT g, CASE WHEN g = 333 THEN 2000 ELSE g END, 'bulk' FROM generate_series(100, 599) g`)
	res = c.mustRun(control.StateGood, job.Options{})
	if res.Parked != 1 {
		t.Errorf("parked %d, want 1 (%s)", res.Parked, res.Summary())
	}
	if n := c.int("t3", `SELECT count(*) FROM item WHERE id >= 100`); n != 499 {
		t.Errorf("t3 holds %d of the 500 new rows, want 499", n)
	}
	if n := c.int("t3", `SELECT count(*) FROM item WHERE id = 333`); n != 0 {
		t.Errorf("t3 holds the refused row")
	}
	if n := c.int("t2", `SELECT count(*) FROM item WHERE id >= 100`); n != 500 {
		t.Errorf("t2 holds %d of the 500 new rows, want 500", n)
	}
	var parked int64
	if err := c.store.Pool.QueryRow(context.Background(), `SELECT count(*) FROM ibex.exception WHERE sync = $1`, c.sync).Scan(&parked); err != nil || parked != 4 {
		t.Errorf("ibex.exception holds %d rows of the sync (%v), want 4", parked, err)
	}
}
