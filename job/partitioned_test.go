package job_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/capture"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/ibextest"
	"github.com/ibexrepl/ibex/job"
)

// TestPartitionedParent: a herd with a declaratively partitioned table (and an ordinary
// one) gets a sync. Capture is the partitioned table's trigger; PostgreSQL clones it onto
// every partition (pg_trigger.tgparentid <> 0), and those clones are not ibex's to drop:
// adding the sync, validating it again and removing it leave them to the parent's trigger.
// Partitioned sources also receive (multi-master), and receivers may be partitioned
// otherwise or not at all.
func TestPartitionedParent(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	for _, st := range []struct {
		name string
		fn   func(*testing.T, *farm)
	}{
		{"AddValidateRemove", testPartitionedAddValidateRemove},
		{"DeltaOneSourceToTarget", testPartitionedDeltaToTarget},
		{"PartitionOwnedByAnotherRole", testPartitionOwnedByAnotherRole},
		{"MultiMaster", testPartitionedMultiMaster},
		{"ConcurrentMoves", testPartitionedConcurrentMoves},
		{"DDLDuringRun", testPartitionDDLDuringRun},
		{"ReceiverLacksPartition", testReceiverLacksPartition},
	} {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			st.fn(t, f)
		})
	}
}

// partitionedTables creates on every db of the test table payment, partitioned by range
// of a date in 3 partitions of 2 rows each, and the ordinary table customer.
func (c *cluster) partitionedTables() {
	c.t.Helper()
	c.onAll(`CREATE TABLE payment (id int NOT NULL, paid date NOT NULL, amount numeric, PRIMARY KEY (id, paid)) PARTITION BY RANGE (paid);
CREATE TABLE payment_p2022_01 PARTITION OF payment FOR VALUES FROM ('2022-01-01') TO ('2022-02-01');
CREATE TABLE payment_p2022_02 PARTITION OF payment FOR VALUES FROM ('2022-02-01') TO ('2022-03-01');
CREATE TABLE payment_p2022_03 PARTITION OF payment FOR VALUES FROM ('2022-03-01') TO ('2022-04-01');
INSERT INTO payment VALUES (1, '2022-01-05', 10), (2, '2022-01-20', 20), (3, '2022-02-05', 30), (4, '2022-02-20', 40), (5, '2022-03-05', 50), (6, '2022-03-20', 60);
CREATE TABLE customer (id int PRIMARY KEY, name text);
INSERT INTO customer VALUES (1, 'ann'), (2, 'bob')`)
}

// partitionedTriggers lists the ibex triggers on the tables of the test's schema on db, as
// "table trigger own|clone" (clone: PostgreSQL's copy of a partitioned table's trigger on
// one of its partitions).
func (c *cluster) partitionedTriggers(db string) []string {
	c.t.Helper()
	return c.strs(db, `SELECT r.relname || ' ' || g.tgname || ' ' || CASE WHEN g.tgparentid = 0 THEN 'own' ELSE 'clone' END
FROM pg_trigger g JOIN pg_class r ON r.oid = g.tgrelid
WHERE r.relnamespace = $1::regnamespace AND g.tgname LIKE 'ibex%' ORDER BY 1`, c.schema)
}

// checkTriggers fails unless each db of the test has the ibex triggers of want (as
// partitionedTriggers lists them; none for a db not in want).
func (c *cluster) checkTriggers(when string, want map[string][]string) {
	c.t.Helper()
	for _, db := range c.names {
		if diff := cmp.Diff(want[db], c.partitionedTriggers(db), cmpopts.EquateEmpty()); diff != "" {
			c.t.Errorf("%s: ibex triggers on db %s (-want +got):\n%s", when, db, diff)
		}
	}
}

// checkRowTriggers is checkTriggers for the sync's capture row trigger alone (and its
// clones), whatever other triggers capture puts on the tables.
func (c *cluster) checkRowTriggers(when string, want map[string][]string) {
	c.t.Helper()
	name := " " + capture.TriggerName(c.sync) + " "
	for _, db := range c.names {
		got := slices.DeleteFunc(c.partitionedTriggers(db), func(s string) bool { return !strings.Contains(s, name) })
		if diff := cmp.Diff(want[db], got, cmpopts.EquateEmpty()); diff != "" {
			c.t.Errorf("%s: capture row triggers on db %s (-want +got):\n%s", when, db, diff)
		}
	}
}

// addSync adds the test's sync (herd and dbgroup made already) and fails unless ibex says
// exactly want.
func (c *cluster) addSync(want string) {
	c.t.Helper()
	if code, out, errs := c.ibexCmd("add", "sync", c.sync, "herd="+c.sync, "dbs="+c.sync, "autokick=false"); code != 0 || out != want {
		c.t.Fatalf("ibex add sync: exit %d, output %q, want exit 0 and %q\n%s", code, out, want, errs)
	}
}

// removeSync removes the test's sync and fails unless it goes without error, leaving no
// ibex trigger on any table of the test's schema and nothing of the sync in schema ibex.
func (c *cluster) removeSync() {
	c.t.Helper()
	want := "Removed sync " + c.sync + "\n"
	if code, out, errs := c.ibexCmd("remove", "sync", c.sync); code != 0 || out != want {
		c.t.Fatalf("ibex remove sync: exit %d, output %q, want exit 0 and %q\n%s", code, out, want, errs)
	}
	c.checkTriggers("after remove sync", nil)
	for _, db := range c.names {
		if n := c.int(db, `SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = 'ibex' AND starts_with(c.relname, $1 || '.'))
+ (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
  WHERE n.nspname = 'ibex' AND starts_with(p.proname, $1 || '.'))`, c.sync); n != 0 {
			c.t.Errorf("db %s keeps %d change tables or trigger functions of the removed sync", db, n)
		}
	}
}

// testPartitionedAddValidateRemove: sources t1 and t2, target t3; the sync is added,
// validated twice (nothing to repair, nothing stale) and removed.
func testPartitionedAddValidateRemove(t *testing.T, f *farm) {
	c := f.cluster(t, "part", 3)
	c.partitionedTables()
	c.ibex("add", "table", c.q("payment"), c.q("customer"), "db=t1", "herd="+c.sync)
	c.ibex("add", "dbgroup", c.sync, "t1:source", "t2:source", "t3:target")
	c.addSync("Added sync part: herd part, dbgroup part, conflict_strategy latest, capture on 4 tables\n")

	// On each source the parent's trigger and its clones, one per partition, and the
	// ordinary table's trigger. Nothing on the target.
	captured := []string{
		"customer ibex_part own",
		"customer ibex_truncate_part own",
		"payment ibex_part own",
		"payment ibex_truncate_part own",
		"payment_p2022_01 ibex_part clone",
		"payment_p2022_02 ibex_part clone",
		"payment_p2022_03 ibex_part clone",
	}
	c.checkTriggers("after add sync", map[string][]string{"t1": captured, "t2": captured})
	for i := range 2 {
		want := "Validated sync part: capture on 4 tables; removed stale capture from 0\n"
		if code, out, errs := c.ibexCmd("validate", c.sync); code != 0 || out != want {
			t.Fatalf("ibex validate #%d: exit %d, output %q, want exit 0 and %q\n%s", i+1, code, out, want, errs)
		}
		c.checkTriggers(fmt.Sprintf("after validate #%d", i+1), map[string][]string{"t1": captured, "t2": captured})
	}
	c.removeSync()
}

// testPartitionedDeltaToTarget: source t1, target t2. An insert, an update, a delete and
// an update moving a row to another partition (its key changes), written into the
// partitions through the parent on the source, reach the target's partitions.
func testPartitionedDeltaToTarget(t *testing.T, f *farm) {
	c := f.cluster(t, "partdelta", 2)
	c.partitionedTables()
	c.configure([]string{"payment", "customer"}, []string{"t1:source", "t2:target"})
	c.on("t1", `INSERT INTO payment VALUES (7, '2022-01-25', 70);
UPDATE payment SET amount = 31 WHERE id = 3;
DELETE FROM payment WHERE id = 5;
UPDATE payment SET paid = '2022-03-10' WHERE id = 2;
UPDATE customer SET name = 'bea' WHERE id = 2`)
	res := c.mustRun(control.StateGood, job.Options{})
	// Inserted: 7, 3, (2, 03-10), customer 2; deleted: 3, 5, (2, 01-20), customer 2.
	if got, want := countsOf(res), (counts{I: 4, D: 4}); got != want {
		t.Errorf("I/D/C %+v, want %+v", got, want)
	}
	want := map[string][]string{
		"payment":          {"(1,2022-01-05,10)", "(2,2022-03-10,20)", "(3,2022-02-05,31)", "(4,2022-02-20,40)", "(6,2022-03-20,60)", "(7,2022-01-25,70)"},
		"payment_p2022_01": {"(1,2022-01-05,10)", "(7,2022-01-25,70)"},
		"payment_p2022_02": {"(3,2022-02-05,31)", "(4,2022-02-20,40)"},
		"payment_p2022_03": {"(2,2022-03-10,20)", "(6,2022-03-20,60)"},
		"customer":         {"(1,ann)", "(2,bea)"},
	}
	for _, db := range c.names {
		for _, tb := range []string{"payment", "payment_p2022_01", "payment_p2022_02", "payment_p2022_03", "customer"} {
			if diff := cmp.Diff(want[tb], c.rows(db, tb, "id")); diff != "" {
				t.Errorf("db %s table %s after the run (-want +got):\n%s", db, tb, diff)
			}
		}
	}
	c.mustRun(control.StateEmpty, job.Options{})
	c.removeSync()
}

// testPartitionOwnedByAnotherRole: ibex's role (not superuser) owns the partitioned table
// and all partitions but one, on which it was granted TRIGGER only. Its trigger's clone
// there goes with the parent's trigger: DROP TRIGGER needs ownership of the parent only,
// so removing the sync is not refused for that partition.
func testPartitionOwnedByAnotherRole(t *testing.T, f *farm) {
	c := f.cluster(t, "partrole", 0)
	for i, name := range c.addAsRole(f, "pr", 2) {
		c.on(name, `CREATE SCHEMA partrole;
CREATE TABLE payment (id int NOT NULL, paid date NOT NULL, amount numeric, PRIMARY KEY (id, paid)) PARTITION BY RANGE (paid);
CREATE TABLE payment_p2022_01 PARTITION OF payment FOR VALUES FROM ('2022-01-01') TO ('2022-02-01');
CREATE TABLE payment_p2022_02 PARTITION OF payment FOR VALUES FROM ('2022-02-01') TO ('2022-03-01')`)
		// As the superuser: a partition ibex's role does not own.
		ibextest.Exec(c.t, f.dbs[fmt.Sprintf("t%d", i+1)].DSN, `CREATE TABLE partrole.payment_p2022_03 PARTITION OF partrole.payment FOR VALUES FROM ('2022-03-01') TO ('2022-04-01');
GRANT TRIGGER ON partrole.payment_p2022_03 TO `+f.role+`;
INSERT INTO partrole.payment VALUES (1, '2022-01-05', 10), (2, '2022-02-05', 20), (3, '2022-03-05', 30)`)
	}
	if n := c.int("pr1", `SELECT count(*) FROM pg_class WHERE oid = 'payment_p2022_03'::regclass AND NOT pg_has_role(relowner, 'USAGE')`); n != 1 {
		t.Fatalf("ibex's role owns payment_p2022_03")
	}
	c.ibex("add", "table", c.q("payment"), "db=pr1", "herd="+c.sync)
	c.ibex("add", "dbgroup", c.sync, "pr1:source", "pr2:source")
	c.addSync("Added sync partrole: herd partrole, dbgroup partrole, conflict_strategy latest, capture on 2 tables\n")
	captured := []string{"payment ibex_partrole own", "payment ibex_truncate_partrole own", "payment_p2022_01 ibex_partrole clone", "payment_p2022_02 ibex_partrole clone", "payment_p2022_03 ibex_partrole clone"}
	c.checkTriggers("after add sync", map[string][]string{"pr1": captured, "pr2": captured})
	c.removeSync()
}

// accountsTables creates the test's pgbench-like table accounts on its dbs t1..t4, keyed
// (aid, bid) (a partitioned table's key must hold its partition key): on t1 partitioned by
// range of bid, on t2 by list of bid with a default partition, on t3 by hash of aid (a
// row moving between branches stays in its partition there) and on t4 not partitioned.
// Branches 1 to 4 have partitions; rows is the accounts' VALUES.
func (c *cluster) accountsTables(rows string) {
	c.t.Helper()
	const cols = `(aid int NOT NULL, bid int NOT NULL, abalance int NOT NULL DEFAULT 0, filler text, PRIMARY KEY (aid, bid))`
	ddl := map[string]string{
		"t1": `CREATE TABLE accounts ` + cols + ` PARTITION BY RANGE (bid);
CREATE TABLE accounts_p12 PARTITION OF accounts FOR VALUES FROM (1) TO (3);
CREATE TABLE accounts_p34 PARTITION OF accounts FOR VALUES FROM (3) TO (5)`,
		"t2": `CREATE TABLE accounts ` + cols + ` PARTITION BY LIST (bid);
CREATE TABLE accounts_b1 PARTITION OF accounts FOR VALUES IN (1);
CREATE TABLE accounts_b2 PARTITION OF accounts FOR VALUES IN (2);
CREATE TABLE accounts_b34 PARTITION OF accounts FOR VALUES IN (3, 4);
CREATE TABLE accounts_bdef PARTITION OF accounts DEFAULT`,
		"t3": `CREATE TABLE accounts ` + cols + ` PARTITION BY HASH (aid);
CREATE TABLE accounts_h0 PARTITION OF accounts FOR VALUES WITH (MODULUS 3, REMAINDER 0);
CREATE TABLE accounts_h1 PARTITION OF accounts FOR VALUES WITH (MODULUS 3, REMAINDER 1);
CREATE TABLE accounts_h2 PARTITION OF accounts FOR VALUES WITH (MODULUS 3, REMAINDER 2)`,
		"t4": `CREATE TABLE accounts ` + cols,
	}
	for _, db := range c.names {
		c.on(db, ddl[db]+`;
INSERT INTO accounts (aid, bid, abalance) VALUES `+rows)
	}
}

// morePartitions gives accounts on the sources t1 and t2 partitions for branches 5 to 8:
// those of 5 and 6 created as partitions, those of 7 and 8 created as tables and then
// attached (t3 and t4 need none).
func (c *cluster) morePartitions() {
	c.t.Helper()
	c.on("t1", `CREATE TABLE accounts_p56 PARTITION OF accounts FOR VALUES FROM (5) TO (7);
CREATE TABLE accounts_p78 (LIKE accounts INCLUDING DEFAULTS);
ALTER TABLE accounts ATTACH PARTITION accounts_p78 FOR VALUES FROM (7) TO (9)`)
	c.on("t2", `CREATE TABLE accounts_b56 PARTITION OF accounts FOR VALUES IN (5, 6);
CREATE TABLE accounts_b78 (LIKE accounts INCLUDING DEFAULTS);
ALTER TABLE accounts ATTACH PARTITION accounts_b78 FOR VALUES IN (7, 8)`)
}

// accountsTriggers are the capture row triggers of sync on accounts once morePartitions
// ran, by db (as checkRowTriggers takes them), with t4 a source: the partitions of t1 and t2 carry
// clones, those made after the sync too.
func accountsTriggers(sync string) map[string][]string {
	tr := func(table, kind string) string { return table + " ibex_" + sync + " " + kind }
	return map[string][]string{
		"t1": {tr("accounts", "own"), tr("accounts_p12", "clone"), tr("accounts_p34", "clone"), tr("accounts_p56", "clone"), tr("accounts_p78", "clone")},
		"t2": {tr("accounts", "own"), tr("accounts_b1", "clone"), tr("accounts_b2", "clone"), tr("accounts_b34", "clone"),
			tr("accounts_b56", "clone"), tr("accounts_b78", "clone"), tr("accounts_bdef", "clone")},
		"t4": {tr("accounts", "own")},
	}
}

// testPartitionedMultiMaster: sources t1 and t2, partitioned differently, target t3
// (partitioned differently again) and source t4 (not partitioned, and without writes of
// its own: a plain table receiving as a source does). After the sync is added, the
// sources get partitions for new branches (created, and attached); then both sources move
// rows between partitions (an UPDATE of bid changes the row's key: PostgreSQL deletes it
// from one partition and inserts it into another, and capture records both keys), into
// the new partitions too, write a partition directly, and move the same row to two
// different branches (a conflict on its old key; each new key is a row of its own). One
// run makes every db hold exactly the same rows, each in the partition its own
// partitioning puts it in. Then a partition is detached on t1: see the README.
func testPartitionedMultiMaster(t *testing.T, f *farm) {
	c := f.cluster(t, "partmm", 4)
	c.accountsTables(`(1, 1, 0), (2, 2, 0), (3, 3, 0), (4, 4, 0), (5, 1, 0), (6, 2, 0)`)
	// A pattern adds the partitioned table, never its partitions.
	if out := c.ibex("add", "table", c.q("*"), "db=t1", "herd="+c.sync); out != "Added table partmm.accounts: primary key (aid, bid)\nHerd partmm has the tables\n" {
		t.Fatalf("add table partmm.* said %q", out)
	}
	c.ibex("add", "dbgroup", c.sync, "t1:source", "t2:source", "t3:target", "t4:source")
	c.addSync("Added sync partmm: herd partmm, dbgroup partmm, conflict_strategy latest, capture on 3 tables\n")
	c.morePartitions()
	c.checkRowTriggers("after new partitions", accountsTriggers(c.sync))

	c.on("t1", `UPDATE accounts SET bid = 3 WHERE aid = 1;
UPDATE accounts SET bid = 5, abalance = 10 WHERE aid = 2;
INSERT INTO accounts (aid, bid) VALUES (9, 7);
INSERT INTO accounts_p78 (aid, bid) VALUES (10, 8);
UPDATE accounts SET bid = 4 WHERE aid = 6`)
	c.on("t2", `UPDATE accounts SET abalance = abalance + 5 WHERE aid = 3;
UPDATE accounts SET bid = 6 WHERE aid = 4;
UPDATE accounts_b1 SET abalance = 7 WHERE aid = 5;
UPDATE accounts SET bid = 7 WHERE aid = 6`)
	res := c.mustRun(control.StateGood, job.Options{})
	// Keys of t1 alone, to t2, t3 and t4: 5 new (1|3, 2|5, 9|7, 10|8, 6|4) and 2 gone (1|1,
	// 2|2). Of t2 alone, to t1, t3 and t4: 2 replaced (3|3, 5|1), 2 new (4|6, 6|7) and 1
	// gone (4|4). Key 6|2, gone on both sources: a conflict; t2's later delete wins and
	// reaches t3 and t4 (t1 has no such row).
	if got, want := countsOf(res), (counts{I: 3*5 + 3*4, D: 3*2 + 3*3 + 2, C: 1}); got != want {
		t.Errorf("I/D/C %+v, want %+v", got, want)
	}
	want := []string{"(1,3,0,)", "(2,5,10,)", "(3,3,5,)", "(4,6,0,)", "(5,1,7,)", "(6,4,0,)", "(6,7,0,)", "(9,7,0,)", "(10,8,0,)"}
	for _, db := range c.names {
		if diff := cmp.Diff(want, c.rows(db, "accounts", "aid, bid")); diff != "" {
			t.Errorf("db %s: accounts after the run (-want +got):\n%s", db, diff)
		}
	}
	for db, parts := range map[string]map[string][]string{
		"t1": {"accounts_p12": {"(5,1,7,)"}, "accounts_p34": {"(1,3,0,)", "(3,3,5,)", "(6,4,0,)"}, "accounts_p56": {"(2,5,10,)", "(4,6,0,)"}, "accounts_p78": {"(6,7,0,)", "(9,7,0,)", "(10,8,0,)"}},
		"t2": {"accounts_b1": {"(5,1,7,)"}, "accounts_b2": nil, "accounts_b34": {"(1,3,0,)", "(3,3,5,)", "(6,4,0,)"}, "accounts_b56": {"(2,5,10,)", "(4,6,0,)"}, "accounts_b78": {"(6,7,0,)", "(9,7,0,)", "(10,8,0,)"}, "accounts_bdef": nil},
	} {
		for part, rows := range parts {
			if diff := cmp.Diff(rows, c.rows(db, part, "aid, bid"), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("db %s: partition %s (-want +got):\n%s", db, part, diff)
			}
		}
	}
	c.mustRun(control.StateEmpty, job.Options{})
	if out := c.ibex("validate", c.sync); out != "Validated sync partmm: capture on 3 tables; removed stale capture from 0\n" {
		t.Errorf("validate said %q", out)
	}
	c.checkRowTriggers("after validate", accountsTriggers(c.sync))

	// Detaching a partition on t1 takes its rows out of t1's accounts without a change to
	// capture (the other dbs keep them), and PostgreSQL drops the partition's clone of the
	// capture trigger: the detached table's later writes are not captured. Validate finds
	// nothing to repair.
	c.on("t1", `ALTER TABLE accounts DETACH PARTITION accounts_p78;
INSERT INTO accounts_p78 (aid, bid) VALUES (11, 8);
UPDATE accounts SET abalance = 1 WHERE aid = 3`)
	detached := accountsTriggers(c.sync)
	detached["t1"] = slices.DeleteFunc(detached["t1"], func(s string) bool { return strings.HasPrefix(s, "accounts_p78 ") })
	c.checkRowTriggers("after detach", detached)
	res = c.mustRun(control.StateGood, job.Options{})
	if got, want := countsOf(res), (counts{I: 3, D: 3}); got != want {
		t.Errorf("after detach: I/D/C %+v, want %+v", got, want)
	}
	want[2] = "(3,3,1,)"
	if diff := cmp.Diff(want[:6], c.rows("t1", "accounts", "aid, bid")); diff != "" {
		t.Errorf("db t1: accounts after the detach (-want +got):\n%s", diff)
	}
	for _, db := range c.names[1:] {
		if diff := cmp.Diff(want, c.rows(db, "accounts", "aid, bid")); diff != "" {
			t.Errorf("db %s: accounts after the detach on t1 (-want +got):\n%s", db, diff)
		}
	}
	if out := c.ibex("validate", c.sync); out != "Validated sync partmm: capture on 3 tables; removed stale capture from 0\n" {
		t.Errorf("validate after detach said %q", out)
	}
	c.checkRowTriggers("after validate", detached)
	c.removeSync()
}

// testPartitionDDLDuringRun: a partition is created on source t1 while a run, in one
// transaction per receiver, has written t1 and has more to read from it. The DDL waits
// for the run's writes on t1 and the run's next read on t1 waits for the DDL: a wait
// PostgreSQL cannot see as a deadlock. The read gives up (lock_timeout): t1 leaves the
// run, its writes rolled back, the DDL goes through and t2 is served; the next run
// serves t1, and both dbs end identical.
func testPartitionDDLDuringRun(t *testing.T, f *farm) {
	c := f.cluster(t, "partddl", 2)
	var values []string
	for aid := 1; aid <= 40; aid++ {
		values = append(values, fmt.Sprintf("(%d, %d, 0)", aid, 1+(aid-1)%4))
	}
	c.accountsTables(strings.Join(values, ", "))
	c.configure([]string{"accounts"}, []string{"t1:source", "t2:source"}, "single_transaction=on")
	c.on("t1", `UPDATE accounts SET abalance = 1 WHERE aid % 2 = 1`)
	c.on("t2", `UPDATE accounts SET abalance = 2 WHERE aid % 2 = 0`)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ddl := make(chan error, 1)
	started := false
	progress := func(_ string, done, total int) {
		// Once the run holds a lock on t1's accounts from its writes, with batches left.
		if started || done == total || c.int("t1", `SELECT count(*) FROM pg_locks WHERE database = (SELECT oid FROM pg_database WHERE datname = current_database())
AND relation = 'accounts'::regclass AND mode = 'RowExclusiveLock' AND granted`) == 0 {
			return
		}
		started = true
		// The DDL, on a connection of its own, waits for the run's lock on t1's accounts.
		go func() {
			cn, err := pgx.Connect(ctx, c.dsn(c.dbs["t1"]))
			if err != nil {
				ddl <- err
				return
			}
			defer cn.Close(context.Background())
			_, err = cn.Exec(ctx, `CREATE TABLE accounts_ddl56 PARTITION OF accounts FOR VALUES FROM (5) TO (7)`)
			ddl <- err
		}()
		ibextest.WaitFor(t, "the DDL waiting for a lock", 10*time.Second, func() bool {
			return c.int("t1", `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'CREATE TABLE accounts_ddl56 %'`) == 1
		})
	}
	res, err := c.run(ctx, job.Options{BatchSize: 10, Progress: progress})
	if res == nil {
		t.Fatalf("run: %v", err)
	}
	if !started {
		t.Fatal("the run never held a transaction on t1 with batches left")
	}
	if res.State != control.StateBad || len(res.Skipped) != 1 || !strings.Contains(res.Skipped["t1"], "SQLSTATE 55P03") {
		t.Fatalf("run during the DDL: %s, want bad with t1 skipped for a lock timeout", res.Summary())
	}
	if err := <-ddl; err != nil {
		t.Fatalf("the DDL: %v", err)
	}
	c.mustRun(control.StateGood, job.Options{BatchSize: 10})
	rows := c.sameEverywhere("accounts", "aid, bid")
	if len(rows) != 40 {
		t.Errorf("%d accounts, want 40", len(rows))
	}
	for _, r := range rows {
		var aid, bid, bal int
		if _, err := fmt.Sscanf(r, "(%d,%d,%d,)", &aid, &bid, &bal); err != nil || bal != 2-aid%2 {
			t.Errorf("account %s: want balance %d", r, 2-aid%2)
		}
	}
}

// testReceiverLacksPartition: a row moves on source t1 to a branch target t2 has no
// partition for. t2's apply fails (23514) and t2 leaves the run, keeping what it had; once
// t2 has the partition, the next run brings it up to date.
func testReceiverLacksPartition(t *testing.T, f *farm) {
	c := f.cluster(t, "partlack", 2)
	c.accountsTables(`(1, 1, 0), (2, 2, 0)`) // t2 partitioned by list, with a default partition
	c.on("t2", `DROP TABLE accounts_bdef`)
	c.configure([]string{"accounts"}, []string{"t1:source", "t2:target"})
	c.on("t1", `CREATE TABLE accounts_p56 PARTITION OF accounts FOR VALUES FROM (5) TO (7);
UPDATE accounts SET bid = 5 WHERE aid = 1;
UPDATE accounts SET abalance = 3 WHERE aid = 2`)
	res := c.mustRun(control.StateBad, job.Options{})
	if len(res.Skipped) != 1 || !strings.Contains(res.Skipped["t2"], "no partition of relation") || !strings.Contains(res.Skipped["t2"], "SQLSTATE 23514") {
		t.Errorf("run: %s, want t2 skipped: no partition for the row", res.Summary())
	}
	if diff := cmp.Diff([]string{"(1,1,0,)", "(2,2,0,)"}, c.rows("t2", "accounts", "aid, bid")); diff != "" {
		t.Errorf("db t2 after the failed run (-want +got):\n%s", diff)
	}
	c.on("t2", `CREATE TABLE accounts_b5 PARTITION OF accounts FOR VALUES IN (5)`)
	res = c.mustRun(control.StateGood, job.Options{})
	// 1|1 deleted, 1|5 inserted, 2|2 replaced.
	if got, want := countsOf(res), (counts{I: 2, D: 2}); got != want {
		t.Errorf("I/D/C %+v, want %+v", got, want)
	}
	want := []string{"(1,5,0,)", "(2,2,3,)"}
	for _, db := range c.names {
		if diff := cmp.Diff(want, c.rows(db, "accounts", "aid, bid")); diff != "" {
			t.Errorf("db %s: accounts (-want +got):\n%s", db, diff)
		}
	}
	if diff := cmp.Diff([]string{"(1,5,0,)"}, c.rows("t2", "accounts_b5", "aid, bid")); diff != "" {
		t.Errorf("db t2: partition accounts_b5 (-want +got):\n%s", diff)
	}
}
