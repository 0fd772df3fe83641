package job_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/job"
)

// testCustomCols: a target gets the key and a select list's columns, an expression
// evaluated on the sending db; its extra column keeps its default and the columns left out
// are not written; a list that does not parse, or names a column the target lacks, is
// refused and changes nothing; onetimecopy copies through the list too.
func testCustomCols(t *testing.T, f *farm) {
	c := f.cluster(t, "customcols", 3)
	for _, db := range []string{"t1", "t2", "t3"} {
		c.on(db, `CREATE TABLE item (id int PRIMARY KEY, a text, b text, c text); INSERT INTO item VALUES (1, 'a1', 'b1', 'c1'), (2, 'a2', 'b2', 'c2')`)
	}
	c.configure([]string{"item"}, []string{"t1:source", "t2:source", "t3:target"})
	c.on("t3", `DELETE FROM item`)
	code, _, errs := c.ibexCmd("add", "customcols", c.q("item"), "SELECT id, a, upper(c AS c", "db=t3")
	if code == 0 || !strings.Contains(errs, "invalid customcols: table "+c.qual("item")+": SELECT id, a, upper(c AS c: db t1: ERROR: syntax error") {
		t.Errorf("a list that does not parse: exit %d, %q", code, errs)
	}
	code, _, errs = c.ibexCmd("add", "customcols", c.q("item"), "SELECT id, a", "db=t1")
	if code == 0 || !strings.Contains(errs, "applies to db t1, a source of sync customcols: customcols are for targets") {
		t.Errorf("customcols on a source: exit %d, %q", code, errs)
	}
	if out := c.ibex("list", "customcols"); strings.Contains(out, c.qual("item")) {
		t.Errorf("refused customcols were stored: %q", out)
	}
	out := c.ibex("add", "customcols", c.q("item"), "SELECT id, a, upper(c) AS c", "db=t3")
	if !strings.HasPrefix(out, "Added customcols ") {
		t.Errorf("add customcols said %q", out)
	}
	// The target has its own columns now: no b, an extra one with a default.
	c.on("t3", `ALTER TABLE item DROP COLUMN b, ADD COLUMN extra text NOT NULL DEFAULT 'dflt'`)
	code, _, errs = c.ibexCmd("add", "customcols", c.q("item"), "SELECT id, a, b", "db=t3", "sync="+c.sync)
	if code == 0 || !strings.Contains(errs, `table `+c.qual("item")+` on db t3 has no column "b"`) {
		t.Errorf("a column the target lacks: exit %d, %q", code, errs)
	}
	if out := c.ibex("list", "customcols"); strings.Count(out, c.qual("item")) != 1 {
		t.Errorf("a refused customcols was stored: %q", out)
	}
	c.ibex("update", "sync", c.sync, "onetimecopy=1")
	c.mustRun(control.StateGood, job.Options{})
	if got, want := c.rows("t3", "item", "id"), []string{"(1,a1,C1,dflt)", "(2,a2,C2,dflt)"}; !cmp.Equal(got, want) {
		t.Errorf("t3 after onetimecopy: %v, want %v", got, want)
	}
	// The target's own column is left alone when a row is updated.
	c.on("t3", `UPDATE item SET extra = 'mine' WHERE id IN (1, 2)`)
	c.on("t1", `UPDATE item SET b = 'b1x', c = 'c1x' WHERE id = 1; INSERT INTO item VALUES (3, 'a3', 'b3', 'c3')`)
	c.on("t2", `DELETE FROM item WHERE id = 2`)
	res := c.mustRun(control.StateGood, job.Options{})
	if got, want := c.rows("t3", "item", "id"), []string{"(1,a1,C1X,mine)", "(3,a3,C3,dflt)"}; !cmp.Equal(got, want) {
		t.Errorf("t3: %v, want %v", got, want)
	}
	if st := res.Tables[c.qual("item")]; st.Inserts != 4 || st.Deletes != 4 {
		t.Errorf("run counts %+v: want 4 rows written (2 on t2, 2 on t3) and 4 deleted or replaced (1 on t1, 1 on t2, 2 on t3)", st)
	}
	for _, db := range []string{"t1", "t2"} {
		if got, want := c.rows(db, "item", "id"), []string{"(1,a1,b1x,c1x)", "(3,a3,b3,c3)"}; !cmp.Equal(got, want) {
			t.Errorf("%s: %v, want %v", db, got, want)
		}
	}
	// Under on_error=skip too: a row the target refuses is parked, the others are written
	// with the target's own column left alone.
	c.ibex("update", "sync", c.sync, "on_error=skip")
	c.on("t3", `UPDATE item SET extra = 'mine3' WHERE id = 3; ALTER TABLE item ADD CONSTRAINT a_not_bad CHECK (a <> 'bad')`)
	c.on("t1", `UPDATE item SET a = 'a3x' WHERE id = 3; INSERT INTO item VALUES (4, 'bad', 'b4', 'c4')`)
	res = c.mustRun(control.StateGood, job.Options{})
	if got, want := c.rows("t3", "item", "id"), []string{"(1,a1,C1X,mine)", "(3,a3x,C3,mine3)"}; !cmp.Equal(got, want) {
		t.Errorf("t3 under on_error=skip: %v, want %v", got, want)
	}
	if res.Parked != 1 {
		t.Errorf("parked %d rows, want 1: %s", res.Parked, res.Summary())
	}
	c.ibex("update", "sync", c.sync, "on_error=stop")
	if out, want := c.ibex("list", "tables", c.q("item")), "customcols SELECT id, a, upper(c) AS c (db t3)"; !strings.Contains(out, want) {
		t.Errorf("list tables lacks %q:\n%s", want, out)
	}
	if out, want := c.ibex("status", c.sync), "Customcols"; !strings.Contains(out, want) {
		t.Errorf("status lacks %q:\n%s", want, out)
	}
	list := c.ibex("list", "customcols", c.q("item"))
	id := strings.TrimSpace(strings.Fields(strings.Split(list, "\n")[1])[0])
	c.ibex("remove", "customcols", id)
	if out := c.ibex("list", "customcols"); strings.Contains(out, c.qual("item")) {
		t.Errorf("after remove: %q", out)
	}
}

// testScopedRowFilter: a row filter for one receiver (db=) and one for a sync's receivers
// (sync=): each receiver holds exactly the source's rows its filter matches, while a
// writer keeps moving rows in and out of the filter during the runs; a row that stops
// matching is deleted there, one that starts matching arrives in full; a filter naming an
// unknown column is refused and changes nothing.
func testScopedRowFilter(t *testing.T, f *farm) {
	c := f.cluster(t, "scopedfilter", 4)
	c.onAll(`CREATE TABLE acct (id int PRIMARY KEY, region text NOT NULL, n int NOT NULL DEFAULT 0);
INSERT INTO acct SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END FROM generate_series(1, 2000) g`)
	c.configure([]string{"acct"}, []string{"t1:source", "t2:source", "t3:target", "t4:target"})
	code, _, errs := c.ibexCmd("update", "table", c.q("acct"), "where=colour = 'red'", "db=t3")
	if code == 0 || !strings.Contains(errs, "row filter where=colour = 'red': db t1: ERROR: column \"colour\" does not exist") {
		t.Errorf("filter with an unknown column: exit %d, %q", code, errs)
	}
	if out := c.ibex("list", "rowfilters"); strings.Contains(out, c.qual("acct")) {
		t.Errorf("a refused filter was stored: %q", out)
	}
	c.ibex("update", "table", c.q("acct"), "where=region = 'eu'", "db=t3")
	c.ibex("update", "table", c.q("acct"), "where=n < 1000000", "sync="+c.sync)
	if out := c.ibex("list", "tables", c.q("acct")); !strings.Contains(out, "where=region = 'eu' (db t3)") || !strings.Contains(out, "where=n < 1000000 (sync "+c.sync+")") {
		t.Errorf("list tables lacks the filters:\n%s", out)
	}
	if out := c.ibex("status", c.sync); !strings.Contains(out, "Row filter                       : "+c.qual("acct")+": where region = 'eu' (db t3)") {
		t.Errorf("status lacks the filter:\n%s", out)
	}
	c.ibex("update", "sync", c.sync, "onetimecopy=1")
	c.on("t3", `DELETE FROM acct`)
	c.mustRun(control.StateGood, job.Options{})
	check := func(when string) {
		t.Helper()
		all := c.rows("t1", "acct", "id")
		if got := c.rows("t2", "acct", "id"); !cmp.Equal(got, all) {
			t.Errorf("%s: t2 differs from t1", when)
		}
		if got := c.rows("t4", "acct", "id"); !cmp.Equal(got, c.strs("t1", `SELECT a::text FROM acct a WHERE n < 1000000 ORDER BY id`)) {
			t.Errorf("%s: t4 differs from t1's rows with n < 1000000", when)
		}
		if got, want := c.rows("t3", "acct", "id"), c.strs("t1", `SELECT a::text FROM acct a WHERE region = 'eu' ORDER BY id`); !cmp.Equal(got, want) {
			t.Errorf("%s: t3 has %d rows, want t1's %d eu rows", when, len(got), len(want))
		}
	}
	check("after onetimecopy")
	// A writer moves rows between regions and counts them up, on both sources, while runs go on.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i, db := range []string{"t1", "t2"} {
		wg.Go(func() {
			cn, err := pgx.Connect(ctx, c.dsn(c.dbs[db]))
			if err != nil {
				t.Error(err)
				return
			}
			defer cn.Close(context.Background())
			for k := 0; ctx.Err() == nil; k++ {
				lo := (k*37 + i*1000) % 2000
				_, _ = cn.Exec(ctx, `UPDATE acct SET region = CASE region WHEN 'eu' THEN 'us' ELSE 'eu' END, n = n + 1 WHERE id BETWEEN $1 AND $1 + 20`, lo)
				time.Sleep(time.Millisecond)
				if k%10 == 0 {
					_, _ = cn.Exec(ctx, `UPDATE acct SET n = 2000000 WHERE id = $1`, lo+1) // leaves t4
				}
			}
		})
	}
	for i := 0; i < 6; i++ {
		// A source whose application keeps changing the rows being applied may leave a
		// run (bad): the next one serves it.
		if res, err := c.run(context.Background(), job.Options{}); res == nil {
			t.Fatalf("run %d under writes: %v", i, err)
		}
	}
	cancel()
	wg.Wait()
	c.mustRun(control.StateGood, job.Options{})
	c.mustRun(control.StateEmpty, job.Options{})
	check("after the writes")
	code, _, errs = c.ibexCmd("update", "table", c.q("acct"), "where=region = 'eu'", "db=t2")
	if code == 0 || !strings.Contains(errs, "applies to db t2, a source of sync "+c.sync+": a filter for one db is for targets") {
		t.Errorf("filter for a source: exit %d, %q", code, errs)
	}
	if n := c.int("t4", `SELECT count(*) FROM acct WHERE n >= 1000000`); n != 0 {
		t.Errorf("t4 holds %d rows its filter does not match", n)
	}
	// Removing t3's filter: rows changed from now on arrive there whole.
	c.ibex("update", "table", c.q("acct"), "where=", "db=t3")
	c.on("t1", `UPDATE acct SET region = 'us', n = 5 WHERE id = 1`)
	c.mustRun(control.StateGood, job.Options{})
	if got := c.rows("t3", "acct", "id"); got[0] != "(1,us,5)" {
		t.Errorf("t3 row 1 after its filter went: %v", got[0])
	}
}

// testFullcopyCustomColsFilter: a fullcopy sync copies through a target's customcols (its
// extra column takes its default) and a target's scoped row filter (its matching rows only).
func testFullcopyCustomColsFilter(t *testing.T, f *farm) {
	c := f.cluster(t, "fullcustom", 3)
	c.onAll(`CREATE TABLE item (id int PRIMARY KEY, region text, v text)`)
	c.on("t1", `INSERT INTO item VALUES (1, 'eu', 'one'), (2, 'us', 'two'), (3, 'eu', NULL)`)
	c.on("t3", `INSERT INTO item VALUES (9, 'eu', 'junk')`)
	c.ibex("add", "table", c.q("item"), "db=t1", "herd="+c.sync)
	c.ibex("add", "dbgroup", c.sync, "t1:source", "t2:fullcopy", "t3:fullcopy")
	c.ibex("add", "sync", c.sync, "herd="+c.sync, "dbs="+c.sync, "autokick=false")
	c.ibex("add", "customcols", c.q("item"), "SELECT id, coalesce(v, '?') || '@' || region AS v", "db=t2")
	c.on("t2", `ALTER TABLE item DROP COLUMN region, ADD COLUMN note text DEFAULT 'n'`)
	c.ibex("update", "table", c.q("item"), "where=region = 'eu'", "db=t3")
	c.mustRun(control.StateGood, job.Options{})
	if got, want := c.rows("t2", "item", "id"), []string{"(1,one@eu,n)", "(2,two@us,n)", "(3,?@eu,n)"}; !cmp.Equal(got, want) {
		t.Errorf("t2: %v, want %v", got, want)
	}
	if got, want := c.rows("t3", "item", "id"), []string{"(1,eu,one)", "(3,eu,)"}; !cmp.Equal(got, want) {
		t.Errorf("t3: %v, want %v", got, want)
	}
}
