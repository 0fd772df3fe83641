package job_test

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/ibextest"
	"github.com/ibexrepl/ibex/job"
)

// TestPartitionedParent: a herd with a declaratively partitioned table (and an ordinary
// one) gets a sync. Capture is the partitioned table's trigger; PostgreSQL clones it onto
// every partition (pg_trigger.tgparentid <> 0), and those clones are not ibex's to drop:
// adding the sync, validating it again and removing it leave them to the parent's trigger.
//
// Not tested here, as it does not work yet (partitioned tables in full are issue 11's
// 2.3): a source receiving changes of a partitioned table (multi-master) fails its apply
// with "cannot retrieve a system column in this context": the upsert's RETURNING t.xmax
// is refused on a partitioned table by PostgreSQL 15.
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
