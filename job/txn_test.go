package job_test

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/job"
)

// partitionedDDL is a table partitioned by date, with three partitions.
const partitionedDDL = `CREATE TABLE pay (id int, at date NOT NULL, amount numeric, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE pay_2022 PARTITION OF pay FOR VALUES FROM ('2022-01-01') TO ('2023-01-01');
CREATE TABLE pay_2023 PARTITION OF pay FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE pay_2024 PARTITION OF pay FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')`

// payRows: 20 rows over the three partitions.
const payRows = `INSERT INTO pay SELECT g, date '2022-03-01' + g * 40, g * 1.5 FROM generate_series(1, 20) g`

// checkPartitions fails unless every partition of pay on db holds rows.
func (c *cluster) checkPartitions(db string) {
	c.t.Helper()
	for _, p := range []string{"pay_2022", "pay_2023", "pay_2024"} {
		if n := c.int(db, `SELECT count(*) FROM `+p); n == 0 {
			c.t.Errorf("db %s: partition %s is empty", db, p)
		}
	}
}

// testFullcopyPartitioned: a fullcopy of a partitioned table copies the rows of every
// partition (it used to read FROM ONLY the parent, which has none, after emptying the
// receiver: a Good run that lost every row).
func testFullcopyPartitioned(t *testing.T, f *farm) {
	c := f.cluster(t, "fullpart", 3)
	c.onAll(partitionedDDL)
	c.on("t1", payRows)
	c.on("t2", `INSERT INTO pay VALUES (99, '2023-06-01', 0)`)
	// t3's table is not partitioned: a receiver may store it differently.
	c.on("t3", `DROP TABLE pay; CREATE TABLE pay (id int, at date NOT NULL, amount numeric, PRIMARY KEY (id, at)); INSERT INTO pay VALUES (98, '2023-06-01', 0)`)
	c.configure([]string{"pay"}, []string{"t1:source", "t2:fullcopy", "t3:fullcopy"})
	res := c.mustRun(control.StateGood, job.Options{})
	if got, want := countsOf(res), (counts{I: 40, D: 2}); got != want {
		t.Errorf("I/D/C %+v, want %+v", got, want)
	}
	if rows := c.sameEverywhere("pay", "id"); len(rows) != 20 {
		t.Errorf("%d rows, want 20", len(rows))
	}
	c.checkPartitions("t2")
	res = c.mustRun(control.StateGood, job.Options{})
	if got, want := countsOf(res), (counts{I: 40, D: 40}); got != want {
		t.Errorf("second run: I/D/C %+v, want %+v", got, want)
	}
}

// testOnetimecopyPartitioned: onetimecopy shares the copy path with fullcopy.
func testOnetimecopyPartitioned(t *testing.T, f *farm) {
	c := f.cluster(t, "otcpart", 2)
	c.onAll(partitionedDDL)
	c.on("t1", payRows)
	c.on("t2", `INSERT INTO pay VALUES (99, '2023-06-01', 0)`)
	c.configure([]string{"pay"}, []string{"t1:source", "t2:target"}, "onetimecopy=1")
	res := c.mustRun(control.StateGood, job.Options{})
	if got, want := countsOf(res), (counts{I: 20, D: 1}); got != want {
		t.Errorf("I/D/C %+v, want %+v", got, want)
	}
	if rows := c.sameEverywhere("pay", "id"); len(rows) != 20 {
		t.Errorf("%d rows, want 20", len(rows))
	}
	c.checkPartitions("t2")
}

// dropEvenRows makes a receiver's table item silently drop the rows with an even id (a
// trigger that fires for ibex's sessions too).
const dropEvenRows = `CREATE FUNCTION drop_even() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN IF NEW.id % 2 = 0 THEN RETURN NULL; END IF; RETURN NEW; END$$;
CREATE TRIGGER drop_even BEFORE INSERT ON item FOR EACH ROW EXECUTE FUNCTION drop_even();
ALTER TABLE item ENABLE ALWAYS TRIGGER drop_even`

// testCopyRowCountMismatch: a copy whose receiver writes fewer rows than the source sent
// fails the run and leaves that receiver as it was; the others are served.
func testCopyRowCountMismatch(t *testing.T, f *farm) {
	c := f.cluster(t, "copycount", 3)
	c.onAll(`CREATE TABLE item (id int PRIMARY KEY, v text); CREATE TABLE other (id int PRIMARY KEY)`)
	c.on("t1", `INSERT INTO item SELECT g, 'v' FROM generate_series(1, 10) g; INSERT INTO other VALUES (1)`)
	c.on("t2", `INSERT INTO item VALUES (100, 'old'); INSERT INTO other VALUES (100)`)
	c.on("t2", dropEvenRows)
	c.configure([]string{"other", "item"}, []string{"t1:source", "t2:fullcopy", "t3:fullcopy"})
	res := c.mustRun(control.StateBad, job.Options{})
	want := "db t2 skipped: db t2: copying " + c.qual("item") + ": 5 rows written, 10 read from db t1 (a trigger or rule on db t2 dropped rows?): rolled back"
	if res.Error != want {
		t.Errorf("error %q, want %q", res.Error, want)
	}
	// Both tables are as they were on t2: one transaction for the whole copy.
	if diff := cmp.Diff([]string{"(100,old)"}, c.rows("t2", "item", "id")); diff != "" {
		t.Errorf("t2 item (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"(100)"}, c.rows("t2", "other", "id")); diff != "" {
		t.Errorf("t2 other (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(c.rows("t1", "item", "id"), c.rows("t3", "item", "id")); diff != "" {
		t.Errorf("t3 item (-want +got):\n%s", diff)
	}
}

// testOnetimecopyStaysOn: a onetimecopy that a target did not take stays on, and the next
// run copies again (it used to be cleared, and that target never got the rows).
func testOnetimecopyStaysOn(t *testing.T, f *farm) {
	c := f.cluster(t, "otcstays", 3)
	c.onAll(`CREATE TABLE item (id int PRIMARY KEY, v text)`)
	c.on("t1", `INSERT INTO item SELECT g, 'v' FROM generate_series(1, 10) g`)
	c.on("t2", dropEvenRows)
	c.configure([]string{"item"}, []string{"t1:source", "t2:target", "t3:target"}, "onetimecopy=1")
	res := c.mustRun(control.StateBad, job.Options{})
	if res.Skipped["t2"] == "" {
		t.Errorf("skipped %v, want t2", res.Skipped)
	}
	if n := c.onetimecopy(); n != 1 {
		t.Errorf("onetimecopy is %d after a run a target failed, want 1", n)
	}
	if diff := cmp.Diff(c.rows("t1", "item", "id"), c.rows("t3", "item", "id")); diff != "" {
		t.Errorf("t3 item (-want +got):\n%s", diff)
	}
	c.on("t2", `DROP TRIGGER drop_even ON item`)
	c.mustRun(control.StateGood, job.Options{})
	if n := c.onetimecopy(); n != 0 {
		t.Errorf("onetimecopy is %d after a good run, want 0", n)
	}
	c.sameEverywhere("item", "id")
}

// testDeltaRowCountMismatch: the same check for a delta run's receivers, a target (rows
// COPYed in) and a source (rows staged, then upserted).
func testDeltaRowCountMismatch(t *testing.T, f *farm) {
	c := f.cluster(t, "deltacount", 4)
	c.onAll(`CREATE TABLE item (id int PRIMARY KEY, v text)`)
	c.configure([]string{"item"}, []string{"t1:source", "t2:target", "t3:target", "t4:source"})
	c.on("t2", dropEvenRows)
	c.on("t4", dropEvenRows)
	c.on("t1", `INSERT INTO item SELECT g, 'v' FROM generate_series(1, 10) g`)
	res := c.mustRun(control.StateBad, job.Options{})
	want := map[string]string{
		"t2": "db t2: writing rows of " + c.qual("item") + ": 5 rows written, 10 read (a trigger or rule on db t2 dropped rows?): rolled back",
		"t4": "db t4: applying " + c.qual("item") + ": 5 rows written, 10 read (a trigger or rule on db t4 dropped rows?): rolled back",
	}
	if diff := cmp.Diff(want, res.Skipped); diff != "" {
		t.Errorf("skipped (-want +got):\n%s", diff)
	}
	for _, db := range []string{"t2", "t4"} {
		if got := c.rows(db, "item", "id"); len(got) != 0 {
			t.Errorf("%s holds %v, want nothing", db, got)
		}
	}
	if diff := cmp.Diff(c.rows("t1", "item", "id"), c.rows("t3", "item", "id")); diff != "" {
		t.Errorf("t3 item (-want +got):\n%s", diff)
	}
}

// testFailedRunRollsBackReceiver: a parent and its child inserted in one source
// transaction; the child fails on one target. That target keeps neither (a state no source
// had would be parent without child); the other target gets both, and once the cause is
// gone the next run brings both.
func testFailedRunRollsBackReceiver(t *testing.T, f *farm) {
	c := f.cluster(t, "halfapplied", 3)
	c.onAll(`CREATE TABLE parent (id int PRIMARY KEY, v text);
CREATE TABLE child (id int PRIMARY KEY, parent int NOT NULL REFERENCES parent, v text)`)
	c.on("t2", `CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'child refused'; END$$;
CREATE TRIGGER refuse BEFORE INSERT ON child FOR EACH ROW EXECUTE FUNCTION refuse();
ALTER TABLE child ENABLE ALWAYS TRIGGER refuse`)
	c.configure([]string{"parent", "child"}, []string{"t1:source", "t2:target", "t3:target"})
	c.on("t1", `BEGIN; INSERT INTO parent VALUES (1, 'p'); INSERT INTO child VALUES (10, 1, 'c'); COMMIT`)
	res := c.mustRun(control.StateBad, job.Options{})
	if !strings.Contains(res.Error, "child refused") || res.Skipped["t2"] == "" {
		t.Errorf("error %q, skipped %v: want t2 skipped for 'child refused'", res.Error, res.Skipped)
	}
	for _, tb := range []string{"parent", "child"} {
		if got := c.rows("t2", tb, "id"); len(got) != 0 {
			t.Errorf("t2 %s holds %v after the failed run, want nothing", tb, got)
		}
		if diff := cmp.Diff(c.rows("t1", tb, "id"), c.rows("t3", tb, "id")); diff != "" {
			t.Errorf("t3 %s (-want +got):\n%s", tb, diff)
		}
	}
	c.on("t2", `DROP TRIGGER refuse ON child`)
	c.mustRun(control.StateGood, job.Options{})
	c.sameEverywhere("parent", "id")
	c.sameEverywhere("child", "id")
}

// testReceiverRetries: a receiver raising a serialization failure or a deadlock once has
// its transaction retried within the run, which is Good; one that keeps failing leaves the
// run after the retries, the others served.
func testReceiverRetries(t *testing.T, f *farm) {
	c := f.cluster(t, "retry", 3)
	c.onAll(`CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE b (id int PRIMARY KEY, v text)`)
	c.on("t2", `CREATE SEQUENCE once_a; CREATE SEQUENCE once_b;
CREATE FUNCTION once_a() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN IF nextval('retry.once_a') = 1 THEN RAISE EXCEPTION 'serialization, once' USING ERRCODE = 'serialization_failure'; END IF; RETURN NEW; END$$;
CREATE FUNCTION once_b() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN IF nextval('retry.once_b') = 1 THEN RAISE EXCEPTION 'deadlock, once' USING ERRCODE = 'deadlock_detected'; END IF; RETURN NEW; END$$;
CREATE TRIGGER once_a BEFORE INSERT ON a FOR EACH ROW EXECUTE FUNCTION once_a(); ALTER TABLE a ENABLE ALWAYS TRIGGER once_a;
CREATE TRIGGER once_b BEFORE INSERT ON b FOR EACH ROW EXECUTE FUNCTION once_b(); ALTER TABLE b ENABLE ALWAYS TRIGGER once_b`)
	c.configure([]string{"a", "b"}, []string{"t1:source", "t2:target", "t3:target"})
	c.on("t1", `INSERT INTO a SELECT g, 'a' FROM generate_series(1, 5) g; INSERT INTO b SELECT g, 'b' FROM generate_series(1, 5) g`)
	lc := &logCounter{msgs: map[string]int{}}
	res := c.mustRun(control.StateGood, job.Options{Logger: slog.New(lc)})
	if got, want := countsOf(res), (counts{I: 20}); got != want {
		t.Errorf("I/D/C %+v, want %+v", got, want)
	}
	if n := lc.msgs["receiver transaction failed, retrying"]; n != 2 {
		t.Errorf("%d retries logged, want 2 (%v)", n, lc.msgs)
	}
	c.sameEverywhere("a", "id")
	c.sameEverywhere("b", "id")

	// Always failing: t2 leaves the run after the retries, t3 gets the rows.
	c.on("t2", `CREATE OR REPLACE FUNCTION once_a() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'serialization, always' USING ERRCODE = 'serialization_failure'; END$$`)
	c.on("t1", `INSERT INTO a VALUES (6, 'a'); INSERT INTO b VALUES (6, 'b')`)
	res = c.mustRun(control.StateBad, job.Options{})
	if !strings.Contains(res.Skipped["t2"], "serialization, always") || !strings.Contains(res.Skipped["t2"], "after 4 attempts") {
		t.Errorf("skipped %v: want t2 for 'serialization, always' after 4 attempts", res.Skipped)
	}
	if diff := cmp.Diff(c.rows("t1", "b", "id"), c.rows("t3", "b", "id")); diff != "" {
		t.Errorf("t3 b (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"(1,a)", "(2,a)", "(3,a)", "(4,a)", "(5,a)"}, c.rows("t2", "a", "id")); diff != "" {
		t.Errorf("t2 a (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"(1,b)", "(2,b)", "(3,b)", "(4,b)", "(5,b)"}, c.rows("t2", "b", "id"), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("t2 b, rolled back with a (-want +got):\n%s", diff)
	}
}

// testTransactionsPerRun: a run's writes on a receiver are one transaction while its
// changed keys fit in the batch budget; a larger backlog commits in several, and
// single_transaction=on makes it one whatever the size.
func testTransactionsPerRun(t *testing.T, f *farm) {
	c := f.cluster(t, "txns", 2)
	c.onAll(`CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE b (id int PRIMARY KEY, v text)`)
	c.configure([]string{"a", "b"}, []string{"t1:source", "t2:target"})
	commits := func(batch int) int {
		t.Helper()
		c.on("t1", `INSERT INTO a SELECT g, 'a' FROM generate_series(1, 300) g ON CONFLICT (id) DO UPDATE SET v = excluded.v || '+';
INSERT INTO b SELECT g, 'b' FROM generate_series(1, 300) g ON CONFLICT (id) DO UPDATE SET v = excluded.v || '+'`)
		lc := &logCounter{msgs: map[string]int{}}
		c.mustRun(control.StateGood, job.Options{BatchSize: batch, Logger: slog.New(lc)})
		c.sameEverywhere("a", "id")
		c.sameEverywhere("b", "id")
		return lc.msgs["receivers committed"]
	}
	if n := commits(1000); n != 1 {
		t.Errorf("600 keys, batch 1000: %d commits, want 1", n)
	}
	if n := commits(200); n < 3 {
		t.Errorf("600 keys, batch 200: %d commits, want at least 3", n)
	}
	c.ibex("update", "sync", c.sync, "single_transaction=on")
	if n := commits(200); n != 1 {
		t.Errorf("600 keys, batch 200, single_transaction: %d commits, want 1", n)
	}
}
