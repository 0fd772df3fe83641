package job_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/job"
)

// testIdentityAlwaysKey: a key that is GENERATED ALWAYS AS IDENTITY (the usual modern
// primary key) replicates between sources and to a target.
func testIdentityAlwaysKey(t *testing.T, f *farm) {
	c := f.cluster(t, "ident", 3)
	c.onAll(`CREATE TABLE ev (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text)`)
	c.configure([]string{"ev"}, []string{"t1:source", "t2:source", "t3:target"})
	c.on("t1", `INSERT INTO ev (v) VALUES ('a'), ('b'), ('c')`)
	c.on("t2", `INSERT INTO ev (id, v) OVERRIDING SYSTEM VALUE VALUES (1001, 'x')`)
	c.runTwice()
	want := []string{"(1,a)", "(2,b)", "(3,c)", "(1001,x)"}
	for _, db := range c.names {
		if diff := cmp.Diff(want, c.rows(db, "ev", "id")); diff != "" {
			t.Errorf("db %s (-want +got):\n%s", db, diff)
		}
	}
}

// testUniqueSwap: two rows swap the values of a unique column (in one transaction, through
// a temporary value); every db, sources included, ends with the swapped rows.
func testUniqueSwap(t *testing.T, f *farm) {
	c := f.cluster(t, "uswap", 3)
	c.onAll(`CREATE TABLE u (id int PRIMARY KEY, email text NOT NULL UNIQUE); INSERT INTO u VALUES (1, 'a'), (2, 'b')`)
	c.configure([]string{"u"}, []string{"t1:source", "t2:source", "t3:target"})
	c.on("t1", `BEGIN; UPDATE u SET email = 'tmp' WHERE id = 1; UPDATE u SET email = 'a' WHERE id = 2; UPDATE u SET email = 'b' WHERE id = 1; COMMIT`)
	c.runTwice()
	for _, db := range c.names {
		if diff := cmp.Diff([]string{"(1,b)", "(2,a)"}, c.rows(db, "u", "id")); diff != "" {
			t.Errorf("db %s (-want +got):\n%s", db, diff)
		}
	}
}

// testTriggersAndForeignKeys: a child row referencing a parent inserted in the same
// transaction arrives whatever the order of the tables in the herd, and the receivers'
// own triggers do not fire for applied rows (they run as replica).
func testTriggersAndForeignKeys(t *testing.T, f *farm) {
	c := f.cluster(t, "fk", 3)
	c.onAll(`CREATE TABLE parent (id int PRIMARY KEY, v text);
CREATE TABLE child (id int PRIMARY KEY, parent int NOT NULL REFERENCES parent ON DELETE CASCADE, v text);
CREATE TABLE audit (n bigserial PRIMARY KEY, what text);
CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN INSERT INTO audit (what) VALUES (TG_TABLE_NAME || ' ' || TG_OP); RETURN NULL; END$$;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON child FOR EACH ROW EXECUTE FUNCTION audit()`)
	// child first: applied before its parents.
	c.configure([]string{"child", "parent"}, []string{"t1:source", "t2:source", "t3:target"})
	c.on("t1", `BEGIN; INSERT INTO parent VALUES (1, 'p1'), (2, 'p2'); INSERT INTO child VALUES (10, 1, 'c10'), (20, 2, 'c20'); COMMIT`)
	c.mustRun(control.StateGood, job.Options{})
	c.on("t2", `DELETE FROM parent WHERE id = 1`) // cascades to child 10 on t2
	c.mustRun(control.StateGood, job.Options{})
	for _, db := range c.names {
		if diff := cmp.Diff([]string{"(2,p2)"}, c.rows(db, "parent", "id")); diff != "" {
			t.Errorf("db %s parent (-want +got):\n%s", db, diff)
		}
		if diff := cmp.Diff([]string{"(20,2,c20)"}, c.rows(db, "child", "id")); diff != "" {
			t.Errorf("db %s child (-want +got):\n%s", db, diff)
		}
	}
	// The audit trigger fired for the application's own writes only.
	for db, want := range map[string][]string{"t1": {"child INSERT", "child INSERT"}, "t2": {"child DELETE"}, "t3": {}} {
		if diff := cmp.Diff(want, c.strs(db, `SELECT what FROM audit ORDER BY n`), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("db %s audit (-want +got):\n%s", db, diff)
		}
	}
	c.mustRun(control.StateEmpty, job.Options{})
}

// runTwice runs the sync twice: the first run must be good, the second (a retry would
// happen there if the first failed) empty.
func (c *cluster) runTwice() {
	c.t.Helper()
	for i, want := range []string{control.StateGood, control.StateEmpty} {
		res, err := c.run(c.t.Context(), job.Options{})
		if err != nil || res.State != want {
			c.t.Errorf("run %d: state %s, want %s: %v", i+1, res.State, want, err)
		}
	}
}
