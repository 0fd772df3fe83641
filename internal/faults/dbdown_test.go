package faults

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/ibextest"
	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/job"
)

// TestDBDown proves invariant 5 (isolation of faults) when a db's server crashes: the
// run that finds it down finishes quickly, serves the others and says which db it
// skipped; a sync that does not include that db is not affected; when the server comes
// back (after crash recovery) the next run brings it up to date both ways: what was
// written elsewhere while it was down reaches it, and what it had committed just before
// the crash reaches the others, with conflicts resolved as usual.
func TestDBDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, pgtest.ClusterOptions{})
	a, b := e.ctl.CreateDB("a"), e.ctl.CreateDB("b")
	cc := pgtest.StartCluster(t, pgtest.ClusterOptions{})
	c := cc.CreateDB("c")
	dsns := map[string]string{"a": a.DSN, "b": b.DSN, "c": c.DSN}

	for n, dsn := range dsns {
		ibextest.Exec(t, dsn, `CREATE TABLE kv (id int PRIMARY KEY, v text NOT NULL);
INSERT INTO kv SELECT g, 'seed' || g FROM generate_series(1, 10) g`)
		if n != "c" {
			ibextest.Exec(t, dsn, `CREATE TABLE kv2 (id int PRIMARY KEY, v text NOT NULL)`)
		}
	}
	e.must(ibextest.AddDBArgs("a", a.Conn)...)
	e.must(ibextest.AddDBArgs("b", b.Conn)...)
	e.must(ibextest.AddDBArgs("c", c.Conn)...)
	e.must("add", "table", "kv", "db=a", "herd=h1")
	e.must("add", "table", "kv2", "db=a", "herd=h2")
	e.must("add", "sync", "s1", "herd=h1", "dbs=a:source,b:source,c:source")
	e.must("add", "sync", "s2", "herd=h2", "dbs=a:source,b:source")
	s := e.store()
	mustState(t, s, "s1", job.Options{}, control.StateEmpty)
	mustState(t, s, "s2", job.Options{}, control.StateEmpty)

	// Changes on a and on c; c commits its changes and then its server crashes.
	ibextest.Exec(t, a.DSN, `UPDATE kv SET v = 'a-1' WHERE id = 1; INSERT INTO kv VALUES (101, 'a-101')`)
	ibextest.Exec(t, c.DSN, `INSERT INTO kv VALUES (301, 'c-301'); DELETE FROM kv WHERE id = 2; UPDATE kv SET v = 'c-5' WHERE id = 5`)
	cc.Kill()

	t0 := time.Now()
	res, err := kick(t, t.Context(), s, "s1", job.Options{})
	if d := time.Since(t0); d > 30*time.Second {
		t.Errorf("the run with db c down took %s, want < 30s", d)
	}
	if err == nil || res.State != control.StateBad {
		t.Fatalf("run with c down: state %q err %v, want bad and an error", res.State, err)
	}
	if got := slices.Sorted(maps.Keys(res.Skipped)); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("skipped %v, want [c]", res.Skipped)
	}
	if why := res.Skipped["c"]; !contains(why, "cannot connect to db c", "port="+cc.Conn("c")["port"]) {
		t.Errorf("skip reason %q: want it to say it cannot connect to db c and where", why)
	}
	if res.Inserts != 2 || res.Deletes != 1 || res.Conflicts != 0 {
		t.Errorf("run with c down: I/D/C %d/%d/%d, want 2/1/0 (a's two rows to b)", res.Inserts, res.Deletes, res.Conflicts)
	}
	ibextest.SameEverywhere(t, "kv", "", map[string]string{"a": a.DSN, "b": b.DSN})
	if got := ibextest.TableRows(t, b.DSN, "kv", ""); !slices.Contains(got, "(1,a-1)") || !slices.Contains(got, "(101,a-101)") {
		t.Fatalf("b did not get a's changes: %v", got)
	}

	// ibex status says so.
	out := e.must("status", "s1", "--json")
	var st struct {
		State     string `json:"state"`
		LastError string `json:"last_error"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if st.State != "Bad" || !strings.Contains(st.LastError, "db c skipped") {
		t.Errorf("status of s1: state %q, last error %q; want Bad and an error naming db c", st.State, st.LastError)
	}

	// A sync that does not include c is unaffected.
	ibextest.Exec(t, a.DSN, `INSERT INTO kv2 VALUES (1, 'a')`)
	ibextest.Exec(t, b.DSN, `INSERT INTO kv2 VALUES (2, 'b')`)
	r2 := mustState(t, s, "s2", job.Options{}, control.StateGood)
	if r2.Inserts != 2 || len(r2.Skipped) != 0 {
		t.Errorf("s2 while c is down: inserts %d skipped %v, want 2 and none", r2.Inserts, r2.Skipped)
	}
	if got := ibextest.SameEverywhere(t, "kv2", "", map[string]string{"a": a.DSN, "b": b.DSN}); int64(len(got)) != 2 {
		t.Errorf("kv2 has %d rows, want 2", int64(len(got)))
	}

	// More changes on a and b while c is down; a's update of 5 is later than c's.
	ibextest.Exec(t, a.DSN, `INSERT INTO kv VALUES (102, 'a-102'); UPDATE kv SET v = 'a-5' WHERE id = 5`)
	ibextest.Exec(t, b.DSN, `INSERT INTO kv VALUES (201, 'b-201'); UPDATE kv SET v = 'b-3' WHERE id = 3`)
	res, _ = kick(t, t.Context(), s, "s1", job.Options{})
	if res.State != control.StateBad || len(res.Skipped) != 1 || res.Skipped["c"] == "" {
		t.Fatalf("second run with c down: state %q skipped %v", res.State, res.Skipped)
	}
	ibextest.SameEverywhere(t, "kv", "", map[string]string{"a": a.DSN, "b": b.DSN})

	// c comes back (crash recovery); the next run brings everyone up to date.
	cc.Start()
	res = mustState(t, s, "s1", job.Options{}, control.StateGood)
	if len(res.Skipped) != 0 {
		t.Errorf("skipped %v after c came back", res.Skipped)
	}
	if res.Conflicts != 1 {
		t.Errorf("conflicts %d, want 1 (key 5 changed on a and on c)", res.Conflicts)
	}
	want := []string{"(1,a-1)", "(10,seed10)", "(101,a-101)", "(102,a-102)", "(201,b-201)", "(3,b-3)", "(301,c-301)", "(4,seed4)", "(5,a-5)",
		"(6,seed6)", "(7,seed7)", "(8,seed8)", "(9,seed9)"}
	ibextest.SameEverywhere(t, "kv", "", dsns)
	if diff := cmp.Diff(want, ibextest.TableRows(t, c.DSN, "kv", "")); diff != "" {
		t.Errorf("kv after c came back (-want +got):\n%s", diff)
	}
	mustState(t, s, "s1", job.Options{}, control.StateEmpty)

	var states []string
	for _, r := range runRows(t, e.dsn, "s1") {
		states = append(states, r.State)
	}
	if diff := cmp.Diff([]string{"empty", "bad", "bad", "good", "empty"}, states); diff != "" {
		t.Errorf("run history of s1 (-want +got):\n%s", diff)
	}
}
