package job_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/capture"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/job"
)

// syncPair makes, in cluster c, a herd named like the cluster holding tables and the syncs
// (with their dbgroups) named NAME_1 and NAME_2 of members1 and members2.
func (c *cluster) syncPair(tables []string, members1, members2 []string, opts ...string) (string, string) {
	c.t.Helper()
	var qs []string
	for _, tb := range tables {
		qs = append(qs, c.q(tb))
	}
	c.ibex(append(append([]string{"add", "table"}, qs...), "db="+c.names[0], "herd="+c.sync)...)
	s1, s2 := c.sync+"_1", c.sync+"_2"
	for _, s := range []struct {
		name    string
		members []string
	}{{s1, members1}, {s2, members2}} {
		c.ibex(append([]string{"add", "dbgroup", s.name}, s.members...)...)
		c.ibex(append([]string{"add", "sync", s.name, "herd=" + c.sync, "dbs=" + s.name, "autokick=false"}, opts...)...)
	}
	return s1, s2
}

// runSync runs sync name of the cluster once and requires state want.
func (c *cluster) runSync(name, want string) *job.Result {
	c.t.Helper()
	saved := c.sync
	defer func() { c.sync = saved }()
	c.sync = name
	return c.mustRun(want, job.Options{})
}

// runSyncAny runs sync name of the cluster once and requires it good or empty.
func (c *cluster) runSyncAny(name string) {
	c.t.Helper()
	saved := c.sync
	defer func() { c.sync = saved }()
	c.sync = name
	res, err := c.run(c.t.Context(), job.Options{})
	if err != nil || (res.State != control.StateGood && res.State != control.StateEmpty) {
		c.t.Fatalf("run of %s: %v %v", name, res, err)
	}
}

// testMakeDeltaCascade: A -> B (sync 1) and B -> C (sync 2) with makedelta on the table:
// what sync 1 applies on B is captured for sync 2 and reaches C, inserts, updates, deletes
// and a TRUNCATE; a run of sync 2 killed mid-batch is completed by the next; sync 1 does
// not capture again what it applied (no echo), and the runs then find nothing.
func testMakeDeltaCascade(t *testing.T, f *farm) {
	c := f.cluster(t, "cascade", 3)
	c.onAll(`CREATE TABLE acct (aid int PRIMARY KEY, abalance int NOT NULL DEFAULT 0);
INSERT INTO acct (aid) SELECT g FROM generate_series(1, 20000) g`)
	s1, s2 := c.syncPair([]string{"acct"}, []string{"t1:source", "t2:target"}, []string{"t2:source", "t3:target"})
	// Without makedelta, B's applied rows stay on B.
	c.on("t1", `UPDATE acct SET abalance = 1 WHERE aid = 1`)
	c.runSync(s1, control.StateGood)
	c.runSync(s2, control.StateEmpty)
	if got := c.int("t3", `SELECT abalance FROM acct WHERE aid = 1`); got != 0 {
		t.Errorf("without makedelta, C got B's applied row: %d", got)
	}
	out := c.ibex("update", "table", c.q("acct"), "makedelta=on")
	if !strings.Contains(out, "Updated table "+c.qual("acct")) {
		t.Errorf("update table makedelta=on said %q", out)
	}
	if out := c.ibex("list", "tables", c.q("acct")); !strings.Contains(out, "makedelta=on") {
		t.Errorf("list tables lacks makedelta=on:\n%s", out)
	}
	if out := c.ibex("status", s2); !strings.Contains(out, "Makedelta                        : table "+c.qual("acct")) {
		t.Errorf("status lacks makedelta:\n%s", out)
	}
	c.on("t3", `UPDATE acct SET abalance = 1 WHERE aid = 1`) // as it should have been
	c.on("t1", `UPDATE acct SET abalance = 2 WHERE aid <= 15000; DELETE FROM acct WHERE aid > 19990; INSERT INTO acct VALUES (30000, 7)`)
	c.runSync(s1, control.StateGood)
	// B, a target of sync 1, deletes and inserts the rows it gets: both are captured.
	if n := c.int("t2", `SELECT count(DISTINCT aid) FROM `+capChange(c, s2, "acct")+` WHERE "$origin" = $1`, s1); n != 15011 {
		t.Errorf("B captured %d keys applied by sync 1 for sync 2, want 15011", n)
	}
	// Sync 2 is killed mid-run, twice; the next run completes it.
	for i, after := range []int{1, 3} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), "IBEX_KILL_HELPER_DSN="+c.ctl.DSN, "IBEX_KILL_HELPER_SYNC="+s2, "IBEX_KILL_HELPER_BATCH=1000")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		batches := 0
		for sc.Scan() {
			if sc.Text() == "batch" {
				batches++
				if batches == after {
					_ = cmd.Process.Kill()
				}
			}
		}
		err = cmd.Wait()
		t.Logf("kill %d after batch %d: %d batches seen, %v", i, after, batches, err)
	}
	saved := c.sync
	c.sync = s2
	c.completingRun()
	c.sync = saved
	want := c.rows("t1", "acct", "aid")
	for _, db := range []string{"t2", "t3"} {
		if got := c.rows(db, "acct", "aid"); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("db %s differs from A: %d rows, want %d", db, len(got), len(want))
		}
	}
	c.runSync(s1, control.StateEmpty)
	c.runSync(s2, control.StateEmpty)
	// A TRUNCATE cascades too.
	c.on("t1", `TRUNCATE acct; INSERT INTO acct VALUES (1, 100), (2, 200)`)
	c.runSync(s1, control.StateGood)
	c.runSync(s2, control.StateGood)
	for _, db := range []string{"t2", "t3"} {
		if got := c.rows(db, "acct", "aid"); strings.Join(got, " ") != "(1,100) (2,200)" {
			t.Errorf("db %s after the TRUNCATE: %v", db, got)
		}
	}
	c.runSync(s1, control.StateEmpty)
	c.runSync(s2, control.StateEmpty)
}

// testMakeDeltaLoop: A <-> B and B <-> C, two multi-master syncs sharing B, makedelta on
// B (an ibex db of its own for the same database): changes made on all three, some on the
// same rows, reach all three; the runs then find nothing (no ping-pong).
func testMakeDeltaLoop(t *testing.T, f *farm) {
	c := f.cluster(t, "loop", 3)
	c.onAll(`CREATE TABLE item (id int PRIMARY KEY, v text); INSERT INTO item SELECT g, 'init' FROM generate_series(1, 100) g`)
	c.addDB("loopb", f.dbs["t2"])
	s1, s2 := c.syncPair([]string{"item"}, []string{"t1:source", "loopb:source"}, []string{"loopb:source", "t3:source"})
	out := c.ibex("update", "db", "loopb", "makedelta=on")
	if !strings.Contains(out, "Updated db loopb") {
		t.Errorf("update db makedelta=on said %q", out)
	}
	c.on("t1", `UPDATE item SET v = 'a' WHERE id <= 10; INSERT INTO item VALUES (101, 'a new')`)
	c.on("t2", `UPDATE item SET v = 'b' WHERE id BETWEEN 21 AND 30; DELETE FROM item WHERE id = 99`)
	c.on("t3", `UPDATE item SET v = 'c' WHERE id BETWEEN 41 AND 50; INSERT INTO item VALUES (103, 'c new')`)
	for round := 0; round < 3; round++ {
		c.runSyncAny(s1)
		c.runSyncAny(s2)
	}
	want := c.sameEverywhere("item", "id")
	if len(want) != 101 {
		t.Errorf("%d rows, want 101", len(want))
	}
	for _, r := range []string{"(1,a)", "(21,b)", "(41,c)", `(101,"a new")`, `(103,"c new")`} {
		if !strings.Contains(strings.Join(want, " "), r) {
			t.Errorf("row %s missing: %v", r, want)
		}
	}
	// Converged: runs find nothing, again and again.
	for round := 0; round < 2; round++ {
		c.runSync(s1, control.StateEmpty)
		c.runSync(s2, control.StateEmpty)
	}
	// A write on C alone travels to A through B, and stops.
	c.on("t3", `UPDATE item SET v = 'from c' WHERE id = 5`)
	c.runSync(s2, control.StateGood)
	c.runSync(s1, control.StateGood)
	c.runSync(s2, control.StateEmpty)
	c.runSync(s1, control.StateEmpty)
	if got := c.strs("t1", `SELECT v FROM item WHERE id = 5`); fmt.Sprint(got) != "[from c]" {
		t.Errorf("A's row 5: %v", got)
	}
	// The same rows changed on A, B and C at once: the syncs settle on one version each,
	// everywhere, and then find nothing.
	c.on("t1", `UPDATE item SET v = 'a2' WHERE id IN (60, 61, 62)`)
	c.on("t3", `UPDATE item SET v = 'c2' WHERE id IN (60, 62)`)
	c.on("t2", `UPDATE item SET v = 'b2' WHERE id IN (61, 62); DELETE FROM item WHERE id = 63`)
	c.on("t3", `UPDATE item SET v = 'c2' WHERE id = 63`)
	for round := 0; round < 4; round++ {
		c.runSyncAny(s1)
		c.runSyncAny(s2)
		if c.int("t1", `SELECT count(*) FROM `+capChange(c, s1, "item")) == 0 &&
			c.int("t2", `SELECT count(*) FROM `+capChange(c, s1, "item"))+c.int("t2", `SELECT count(*) FROM `+capChange(c, s2, "item"))+
				c.int("t3", `SELECT count(*) FROM `+capChange(c, s2, "item")) == 0 {
			break
		}
	}
	c.sameEverywhere("item", "id")
	for round := 0; round < 2; round++ {
		c.runSync(s1, control.StateEmpty)
		c.runSync(s2, control.StateEmpty)
	}
}

// capChange is the quoted change table of sync for a table of the cluster's schema.
func capChange(c *cluster, sync, table string) string {
	return capture.ChangeTable(sync, c.schema, table).Sanitize()
}

// testMakeDeltaCycle: one-way syncs around a cycle, A -> B, B -> C, C -> A, with makedelta
// on every db (ibex dbs of their own for the same databases). A change made on any db
// travels around the cycle to the others and stops where it started: the runs then find
// nothing (targets write applied rows in place, so a row coming back unchanged is not
// captured again).
func testMakeDeltaCycle(t *testing.T, f *farm) {
	c := f.cluster(t, "cycle", 3)
	c.onAll(`CREATE TABLE item (id int PRIMARY KEY, v text); INSERT INTO item SELECT g, 'init' FROM generate_series(1, 20) g`)
	c.addDB("cyca", f.dbs["t1"])
	c.addDB("cycb", f.dbs["t2"])
	c.addDB("cycc", f.dbs["t3"])
	c.ibex("add", "table", c.q("item"), "db=cyca", "herd="+c.sync)
	var syncs []string
	for _, hop := range [][2]string{{"cyca", "cycb"}, {"cycb", "cycc"}, {"cycc", "cyca"}} {
		name := c.sync + "_" + hop[0] + "_" + hop[1]
		c.ibex("add", "dbgroup", name, hop[0]+":source", hop[1]+":target")
		c.ibex("add", "sync", name, "herd="+c.sync, "dbs="+name, "autokick=false")
		syncs = append(syncs, name)
	}
	for _, db := range []string{"cyca", "cycb", "cycc"} {
		c.ibex("update", "db", db, "makedelta=on")
	}
	pending := func() int64 {
		var n int64
		for i, db := range []string{"t1", "t2", "t3"} {
			n += c.int(db, `SELECT count(*) FROM `+capChange(c, syncs[i], "item"))
		}
		return n
	}
	c.on("t1", `UPDATE item SET v = 'a' WHERE id <= 5; INSERT INTO item VALUES (21, 'a new'); DELETE FROM item WHERE id = 20`)
	c.on("t2", `UPDATE item SET v = 'b' WHERE id BETWEEN 6 AND 8`)
	c.on("t3", `INSERT INTO item VALUES (23, 'c new')`)
	for round := 0; round < 3; round++ {
		for _, s := range syncs {
			c.runSyncAny(s)
		}
	}
	want := c.sameEverywhere("item", "id")
	if len(want) != 21 {
		t.Errorf("%d rows, want 21: %v", len(want), want)
	}
	for _, r := range []string{"(1,a)", "(6,b)", `(21,"a new")`, `(23,"c new")`, "(19,init)"} {
		if !strings.Contains(strings.Join(want, " "), r) {
			t.Errorf("row %s missing: %v", r, want)
		}
	}
	if n := pending(); n != 0 {
		t.Errorf("%d changes still pending after three rounds: the cycle goes on", n)
	}
	for round := 0; round < 2; round++ {
		for _, s := range syncs {
			c.runSync(s, control.StateEmpty)
		}
	}

	// Autokick: a change cascaded onto B signals B's own sync (not the one that applied it).
	for _, s := range syncs {
		c.ibex("update", "sync", s, "autokick=true")
	}
	ctx := t.Context()
	l, err := pgx.Connect(ctx, f.dbs["t2"].DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(context.Background())
	if _, err := l.Exec(ctx, `LISTEN `+capture.KickChannel); err != nil {
		t.Fatal(err)
	}
	c.on("t1", `UPDATE item SET v = 'kick' WHERE id = 1`)
	c.runSync(syncs[0], control.StateGood)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var kicked []string
	for {
		n, err := l.WaitForNotification(wctx)
		if err != nil {
			break
		}
		kicked = append(kicked, n.Payload)
		if n.Payload == syncs[1] {
			break
		}
	}
	if !slices.Contains(kicked, syncs[1]) || slices.Contains(kicked, syncs[0]) {
		t.Errorf("kicks on B after sync %s applied a row there: %v, want %s only", syncs[0], kicked, syncs[1])
	}
}
