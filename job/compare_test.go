package job_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ibexrepl/ibex/internal/compare"
	"github.com/ibexrepl/ibex/internal/ibextest"
	"github.com/ibexrepl/ibex/job"
)

// compareJSON runs ibex compare --json with args and returns its exit code and report.
func (c *cluster) compareJSON(args ...string) (int, *compare.Report) {
	c.t.Helper()
	code, out, errs := c.ibexCmd(append([]string{"compare", c.sync, "--json"}, args...)...)
	if code == 2 {
		c.t.Fatalf("compare %v: exit 2: %s", args, errs)
	}
	var r compare.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		c.t.Fatalf("compare %v: exit %d: %v\n%s%s", args, code, err, out, errs)
	}
	return code, &r
}

// diffSummary renders a report's differences as sorted "table key kind where [in flight]".
func diffSummary(r *compare.Report) []string {
	var out []string
	for _, t := range r.Tables {
		for _, d := range t.Diffs {
			s := fmt.Sprintf("%s %s %s %s", t.Table, d.Label(), d.Kind, d.Where(r.DBs))
			if d.InFlight {
				s += " in-flight"
			}
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// behind runs sql on db name with capture off (session_replication_role = replica): a
// change made behind ibex's back.
func (c *cluster) behind(name, sql string) {
	c.t.Helper()
	c.on(name, `SET session_replication_role = replica`)
	defer c.on(name, `RESET session_replication_role`)
	c.on(name, sql)
}

// setupCompare makes pgbench tables and a table with a composite text key on t1..t3
// (t1, t2 sources, t3 a target) and its sync.
func setupCompare(c *cluster) {
	c.pgbenchInit()
	c.onAll(`CREATE TABLE ck (a text, b int, v text, w timestamptz, PRIMARY KEY (a, b));
INSERT INTO ck SELECT 'k ' || (i % 7) || ',"' , i, repeat('v', i % 5), '2026-01-01 00:00:00+00'::timestamptz + i * interval '1 hour' FROM generate_series(1, 500) i`)
	c.configure([]string{"pgbench_accounts", "pgbench_branches", "ck"}, []string{"t1:source", "t2:source", "t3:target"})
}

func testCompareFindsDivergence(t *testing.T, f *farm) {
	c := f.cluster(t, "cmpdiv", 3)
	setupCompare(c)
	code, r := c.compareJSON()
	if code != 0 || r.Diverged() != 0 || len(r.Tables) != 3 {
		t.Fatalf("identical dbs: exit %d, %v", code, diffSummary(r))
	}
	for _, tb := range r.Tables {
		if tb.Table == c.qual("pgbench_accounts") && (tb.Rows["t1"] != 100000 || tb.Rows["t3"] != 100000) {
			t.Fatalf("row counts %v", tb.Rows)
		}
	}
	// Divergence behind ibex's back on each db; one captured change (in flight).
	c.behind("t2", `DELETE FROM pgbench_accounts WHERE aid = 10; UPDATE pgbench_accounts SET abalance = 5 WHERE aid = 20`)
	c.behind("t3", `INSERT INTO ck VALUES ('x y', 1, NULL, NULL); UPDATE ck SET w = w + interval '1 microsecond' WHERE a = 'k 3,"' AND b = 10`)
	c.behind("t1", `UPDATE ck SET v = 'changed' WHERE a = 'k 2,"' AND b = 2; INSERT INTO pgbench_branches VALUES (99, 0, NULL)`)
	c.behind("t3", `INSERT INTO pgbench_branches VALUES (99, 0, NULL)`)
	c.on("t1", `UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 30`)
	// ibex status reads the lag: one change pending on t1.
	var st struct {
		Lag []job.SourceLag `json:"lag"`
	}
	if err := json.Unmarshal([]byte(c.ibex("status", c.sync, "--json")), &st); err != nil || len(st.Lag) != 2 ||
		st.Lag[0].DB != "t1" || st.Lag[0].Pending != 1 || st.Lag[0].Oldest == nil || st.Lag[1].Pending != 0 {
		t.Fatalf("status lag: %+v %v", st.Lag, err)
	}
	if out := c.ibex("status", c.sync); !strings.Contains(out, "Pending changes on t1            : 1 (oldest ") {
		t.Fatalf("status:\n%s", out)
	}
	if out := c.ibex("status", c.sync, "--no-lag"); strings.Contains(out, "Pending changes") {
		t.Fatalf("status --no-lag:\n%s", out)
	}
	want := []string{
		c.qual("ck") + ` ("k 2,""",2) different differs: t1 | t2,t3`,
		c.qual("ck") + ` ("k 3,""",10) different differs: t1,t2 | t3`,
		c.qual("ck") + ` ("x y",1) extra only on t3`,
		c.qual("pgbench_accounts") + ` 10 missing missing on t2`,
		c.qual("pgbench_accounts") + ` 20 different differs: t1,t3 | t2`,
		c.qual("pgbench_accounts") + ` 30 different differs: t1 | t2,t3 in-flight`,
		c.qual("pgbench_branches") + ` 99 missing missing on t2`,
	}
	code, r = c.compareJSON()
	if got := diffSummary(r); code != 1 || !slices.Equal(got, want) {
		t.Fatalf("exit %d, differences:\n%s\nwant:\n%s", code, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if r.Diverged() != 6 {
		t.Fatalf("diverged %d, want 6", r.Diverged())
	}
	// One table, by name; the text output and the HTML page.
	code, out, _ := c.ibexCmd("compare", c.sync, "pgbench_accounts", "--report", t.TempDir()+"/r.html")
	if code != 1 || !strings.Contains(out, "missing 10: missing on t2") || !strings.Contains(out, "different 30: differs: t1 | t2,t3 (in flight)") || strings.Contains(out, "ck") {
		t.Fatalf("text: exit %d\n%s", code, out)
	}
	// Bad input: exit 2, clear messages.
	for _, bad := range [][]string{{"compare", "nosuchsync"}, {"compare", c.sync, "nosuchtable"}} {
		code, _, errs := c.ibexCmd(bad...)
		if code != 2 || !strings.Contains(errs, "nosuch") {
			t.Fatalf("%v: exit %d: %s", bad, code, errs)
		}
	}
	// The run settles the one in flight.
	c.mustRun("good", job.Options{})
	_, r = c.compareJSON("pgbench_accounts")
	if got := diffSummary(r); len(got) != 2 || r.Tables[0].InFlight != 0 {
		t.Fatalf("after the run: %v", got)
	}
}

// testCompareUnderPgbench compares while pgbench writes on both sources and runs apply
// their changes: every difference is in flight, none diverged.
func testCompareUnderPgbench(t *testing.T, f *farm) {
	c := f.cluster(t, "cmppgb", 3)
	setupCompare(c)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i, db := range []string{"t1", "t2"} {
		wg.Go(func() { errs[i] = pgbench(c.dbs[db], c.schema, "-n", "-T", "6", "-c", "2") })
	}
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
			}
			if _, err := c.run(t.Context(), job.Options{}); err != nil {
				errs[2] = err
				return
			}
		}
	})
	inFlight := int64(0)
	for i := 0; i < 5; i++ {
		code, r := c.compareJSON("pgbench_accounts", "pgbench_branches")
		if code != 0 || r.Diverged() != 0 {
			close(stop)
			wg.Wait()
			t.Fatalf("compare %d under pgbench: exit %d: %v", i, code, diffSummary(r))
		}
		for _, tb := range r.Tables {
			inFlight += tb.InFlight
		}
	}
	close(stop)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if inFlight == 0 {
		t.Log("no difference in flight was seen (pgbench too slow?)")
	}
	if _, err := c.run(t.Context(), job.Options{}); err != nil {
		t.Fatal(err)
	}
	if code, r := c.compareJSON(); code != 0 || r.Diverged() != 0 || r.Tables[0].InFlight+r.Tables[1].InFlight != 0 {
		t.Fatalf("after the last run: exit %d %v", code, diffSummary(r))
	}
}

// sums is the md5 of each of the test's tables on each db, "db table md5" lines.
func (c *cluster) sums(tables map[string]string) []string {
	c.t.Helper()
	var out []string
	for _, n := range c.names {
		for tb, key := range tables {
			out = append(out, n+" "+tb+" "+c.sum(n, tb, key))
		}
	}
	sort.Strings(out)
	return out
}

var compareTables = map[string]string{"pgbench_accounts": "aid", "pgbench_branches": "bid", "ck": "a, b"}

// diverge makes the dbs differ behind ibex's back: a row deleted, one changed, one added.
func (c *cluster) diverge() {
	c.t.Helper()
	c.behind("t2", `DELETE FROM pgbench_accounts WHERE aid = 10; UPDATE pgbench_accounts SET abalance = 5 WHERE aid = 20`)
	c.behind("t3", `INSERT INTO ck VALUES ('x y', 1, NULL, NULL); DELETE FROM pgbench_branches WHERE bid = 1`)
	c.behind("t1", `UPDATE ck SET v = 'changed' WHERE a = 'k 2,"' AND b = 2`)
}

func testRepair(t *testing.T, f *farm) {
	c := f.cluster(t, "repair", 3)
	setupCompare(c)
	c.diverge()
	before := c.sums(compareTables)
	// Bad input changes nothing: exit 2.
	for _, bad := range [][]string{
		{"repair", c.sync}, {"repair", c.sync, "--union", "--source-of-truth", "t1"},
		{"repair", c.sync, "--source-of-truth", "nosuchdb"}, {"repair", c.sync, "nosuchtable", "--union"},
		{"repair", "nosuchsync", "--union"}, {"repair", c.sync, "--union", "--insert-only", "--upsert-only"},
	} {
		code, _, errs := c.ibexCmd(bad...)
		if code != 2 || errs == "" {
			t.Fatalf("%v: exit %d: %s", bad, code, errs)
		}
	}
	// A dry run lists and changes nothing.
	out := c.ibex("repair", c.sync, "--source-of-truth", "t1", "--dry-run")
	for _, want := range []string{"insert " + c.qual("pgbench_accounts") + " 10 on t2 from t1", "update " + c.qual("pgbench_accounts") + " 20 on t2 from t1",
		"delete " + c.qual("ck") + ` ("x y",1) on t3`, "update " + c.qual("ck") + ` ("k 2,""",2) on t2 from t1`, "insert " + c.qual("pgbench_branches") + " 1 on t3 from t1"} {
		if !strings.Contains(out, want) {
			t.Fatalf("dry run lacks %q:\n%s", want, out)
		}
	}
	if after := c.sums(compareTables); !slices.Equal(before, after) {
		t.Fatal("the dry run changed rows")
	}
	// --insert-only: t2 gets aid 10 back, nothing else changes.
	c.ibex("repair", c.sync, "pgbench_accounts", "--source-of-truth", "t1", "--insert-only")
	if v := c.int("t2", `SELECT count(*) FROM pgbench_accounts WHERE aid = 10`); v != 1 {
		t.Fatal("insert-only did not insert")
	}
	if v := c.int("t2", `SELECT abalance FROM pgbench_accounts WHERE aid = 20`); v != 5 {
		t.Fatal("insert-only updated")
	}
	// --source-of-truth t1: every db as t1.
	out = c.ibex("repair", c.sync, "--source-of-truth", "t1")
	if !strings.Contains(out, "recorded as run") {
		t.Fatalf("repair:\n%s", out)
	}
	if code, r := c.compareJSON(); code != 0 || r.Diverged() != 0 {
		t.Fatalf("after repair: exit %d %v", code, diffSummary(r))
	}
	for tb, key := range compareTables {
		c.sameEverywhere(tb, key)
	}
	var details string
	if err := c.store.Pool.QueryRow(t.Context(), `SELECT details->'repair'->>'mode' FROM ibex.run WHERE sync = $1 AND details ? 'repair' ORDER BY id DESC LIMIT 1`, c.sync).Scan(&details); err != nil || details != "source-of-truth t1" {
		t.Fatalf("run history: %q %v", details, err)
	}
	// No echo: the repair's writes were not captured; a run has nothing to do.
	c.mustRun("empty", job.Options{})

	// --union: every row present anywhere arrives everywhere; versions by the strategy
	// (latest, no capture time left: the db whose name sorts first, t1).
	c.diverge()
	c.behind("t3", `UPDATE pgbench_accounts SET filler = 'x' WHERE aid = 30`)
	out = c.ibex("repair", c.sync, "--union")
	if code, r := c.compareJSON(); code != 0 || r.Diverged() != 0 {
		t.Fatalf("after union: exit %d %v\n%s", code, diffSummary(r), out)
	}
	for tb, key := range compareTables {
		c.sameEverywhere(tb, key)
	}
	if n := c.int("t1", `SELECT count(*) FROM ck WHERE a = 'x y'`); n != 1 {
		t.Fatal("union lost the extra row")
	}
	if n := c.int("t3", `SELECT count(*) FROM pgbench_branches WHERE bid = 1`); n != 1 {
		t.Fatal("union did not restore the deleted row")
	}
	if v := c.int("t3", `SELECT abalance FROM pgbench_accounts WHERE aid = 20`); v != 0 {
		t.Fatalf("union picked abalance %d for aid 20, want t1's 0", v)
	}
	c.mustRun("empty", job.Options{})
}

// testCompareDBDown: a db of the sync that cannot be reached: compare and repair exit 2,
// say which db, and change nothing.
func testCompareDBDown(t *testing.T, f *farm) {
	c := f.cluster(t, "cmpdown", 2)
	c.onAll(`CREATE TABLE d (id int PRIMARY KEY, v text); INSERT INTO d SELECT i, 'v' || i FROM generate_series(1, 50) i`)
	c.configure([]string{"d"}, []string{"t1:source", "t2:source"})
	c.behind("t2", `DELETE FROM d WHERE id = 7`)
	if code, r := c.compareJSON(); code != 1 || r.Diverged() != 1 {
		t.Fatalf("compare: exit %d %v", code, diffSummary(r))
	}
	// A third db, a target, that then goes away.
	t3 := f.dbs["t3"]
	ibextest.Exec(t, t3.DSN, `CREATE SCHEMA cmpdown; CREATE TABLE cmpdown.d (id int PRIMARY KEY, v text)`)
	c.ibex(ibextest.AddDBArgs("cmpdown_x", t3.Conn)...)
	c.ibex("update", "dbgroup", c.sync, "t1:source", "t2:source", "cmpdown_x:target")
	c.ibex("update", "db", "cmpdown_x", "port=1", "connect_timeout=2", "--force")
	before := c.sum("t2", "d", "id")
	for _, args := range [][]string{{"compare", c.sync}, {"repair", c.sync, "--source-of-truth", "t1"}} {
		code, out, errs := c.ibexCmd(args...)
		if code != 2 || !strings.Contains(errs, "could not compare") || !strings.Contains(errs, "cmpdown_x") {
			t.Fatalf("%v with a db down: exit %d\n%s%s", args, code, out, errs)
		}
	}
	if c.sum("t2", "d", "id") != before {
		t.Fatal("a failed repair changed rows")
	}
}
