package job_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/job"
)

// testConflictFunction: conflict_strategy=function:schema.fn builds each conflicting row
// with an SQL function of the control database from every source's version. In one run:
// two updates (the larger balance wins, the note lists who changed the row), an update
// against a delete (the function brings the row back), inserts of one key on two sources,
// and a row changed on one source only (forwarded, no call). Then the failures: a missing
// function is refused when set, a function that raises or returns no row fails the run
// and applies nothing.
func testConflictFunction(t *testing.T, f *farm) {
	c := f.cluster(t, "conflictfn", 3)
	fn := "public.pick_" + strings.ToLower(strings.Map(func(r rune) rune {
		if (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			return r
		}
		return '_'
	}, c.sync))
	ctl := func(sql string) {
		t.Helper()
		if _, err := c.store.Pool.Exec(context.Background(), sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	t.Cleanup(func() { _, _ = c.store.Pool.Exec(context.Background(), `DROP FUNCTION IF EXISTS `+fn+`(jsonb)`) })
	c.onAll(`CREATE TABLE acct (id int PRIMARY KEY, bal int, note text); INSERT INTO acct SELECT g, 100, 'init' FROM generate_series(1, 10) g`)

	// Set before the function exists: refused, nothing changed.
	c.configure([]string{"acct"}, []string{"t1:source", "t2:source", "t3:target"})
	code, _, errs := c.ibexCmd("update", "sync", c.sync, "conflict_strategy=function:"+fn)
	if code == 0 || !strings.Contains(errs, "conflict function "+fn+"(jsonb) does not exist in the control database") {
		t.Fatalf("update sync with a missing function: exit %d, %q", code, errs)
	}
	if s, err := control.GetSync(context.Background(), c.store.Q(), c.sync); err != nil || s.ConflictStrategy != "latest" {
		t.Fatalf("the refused update changed the sync: %+v, %v", s, err)
	}
	if code, _, errs := c.ibexCmd("update", "sync", c.sync, "conflict_strategy=function:pick"); code == 0 || !strings.Contains(errs, "schema-qualified") {
		t.Fatalf("update sync with an unqualified function: exit %d, %q", code, errs)
	}

	ctl(`CREATE FUNCTION ` + fn + `(v jsonb) RETURNS jsonb LANGUAGE sql AS $$
  SELECT jsonb_build_object(
    'bal', (SELECT max((x->'row'->>'bal')::int) FROM jsonb_array_elements(v->'versions') x),
    'note', (SELECT string_agg((x->>'db') || ':' || (x->>'kind'), ',' ORDER BY x->>'db') FROM jsonb_array_elements(v->'versions') x)
             || '@' || (v->>'table') || '#' || (v->'key'->>'id'))
$$`)
	c.ibex("update", "sync", c.sync, "conflict_strategy=function:"+fn)
	for _, w := range []struct{ db, sql string }{
		{"t1", `UPDATE acct SET bal = 150, note = 'a' WHERE id = 1`},
		{"t2", `UPDATE acct SET bal = 120, note = 'b' WHERE id = 1`},
		{"t1", `UPDATE acct SET bal = 90 WHERE id = 2`},
		{"t2", `DELETE FROM acct WHERE id = 2`},
		{"t1", `UPDATE acct SET bal = 1, note = 'only t1' WHERE id = 3`},
		{"t1", `INSERT INTO acct VALUES (11, 5, 'x')`},
		{"t2", `INSERT INTO acct VALUES (11, 7, 'y')`},
	} {
		c.on(w.db, w.sql)
	}
	res := c.mustRun(control.StateGood, job.Options{})
	if res.Conflicts != 3 {
		t.Errorf("conflicts %d, want 3 (%s)", res.Conflicts, res.Summary())
	}
	want := "1:150:t1:update,t2:update@" + c.qual("acct") + "#1 2:90:t1:update,t2:delete@" + c.qual("acct") + "#2 3:1:only t1 4:100:init 5:100:init 6:100:init 7:100:init 8:100:init 9:100:init 10:100:init 11:7:t1:insert,t2:insert@" + c.qual("acct") + "#11"
	for _, db := range c.names {
		if got := c.acct(db); got != want {
			t.Errorf("%s: %s\nwant %s", db, got, want)
		}
	}
	var strategy string
	if err := c.store.Pool.QueryRow(context.Background(), `SELECT strategy FROM ibex.conflict WHERE sync = $1 LIMIT 1`, c.sync).Scan(&strategy); err != nil || strategy != "function:"+fn {
		t.Errorf("conflict log strategy %q (%v), want function:%s", strategy, err, fn)
	}

	// The old values: each version carries the row as that source's first pending change
	// found it (null for an insert), so a function can add up what each source did.
	ctl(`CREATE OR REPLACE FUNCTION ` + fn + `(v jsonb) RETURNS jsonb LANGUAGE sql AS $$
  SELECT jsonb_build_object(
    'bal', (SELECT max((x->'old'->>'bal')::int) + sum((x->'row'->>'bal')::int - (x->'old'->>'bal')::int) FROM jsonb_array_elements(v->'versions') x),
    'note', (SELECT string_agg((x->>'db') || '<-' || coalesce(x->'old'->>'note', 'none'), ',' ORDER BY x->>'db') FROM jsonb_array_elements(v->'versions') x))
$$`)
	for _, w := range []struct{ db, sql string }{
		{"t1", `UPDATE acct SET bal = 110 WHERE id = 4`},
		{"t1", `UPDATE acct SET bal = 115, note = 'one' WHERE id = 4`},
		{"t2", `UPDATE acct SET bal = 130 WHERE id = 4`},
		{"t1", `DELETE FROM acct WHERE id = 7`},
		{"t2", `UPDATE acct SET bal = 200 WHERE id = 7`},
	} {
		c.on(w.db, w.sql)
	}
	c.mustRun(control.StateGood, job.Options{})
	for _, db := range c.names {
		if got := strings.Join(c.strs(db, `SELECT id || ':' || bal || ':' || note FROM acct WHERE id IN (4, 7) ORDER BY id`), " "); got != "4:145:t1<-init,t2<-init 7:200:t1<-init,t2<-init" {
			t.Errorf("%s: rows 4 and 7 %s, want 4:145:t1<-init,t2<-init 7:200:t1<-init,t2<-init", db, got)
		}
	}

	// Failures fail the run before anything is applied.
	before := c.acct("t3")
	for _, bad := range []struct{ body, want string }{
		{`BEGIN RAISE EXCEPTION 'no way to merge %', v->'key'; END`, "conflict function " + fn + " failed: ERROR: no way to merge"},
		{`BEGIN RETURN NULL; END`, "conflict function " + fn + " returned NULL for"},
		{`BEGIN RETURN '{"nosuch": 1}'; END`, `returned column "nosuch", which the table does not have`},
	} {
		ctl(`CREATE OR REPLACE FUNCTION ` + fn + `(v jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$ ` + bad.body + ` $$`)
		c.on("t1", `UPDATE acct SET bal = bal + 1 WHERE id = 5`)
		c.on("t2", `UPDATE acct SET bal = bal + 2 WHERE id = 5`)
		c.on("t1", `UPDATE acct SET note = 'plain' WHERE id = 6`)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		res, err := c.run(ctx, job.Options{})
		cancel()
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("run with a function doing %s: %v (%+v), want an error with %q", bad.body, err, res, bad.want)
		}
		if got := c.acct("t3"); got != before {
			t.Errorf("a failed run changed t3: %s\nwas %s", got, before)
		}
	}
}

// testConflictFunctionReplay: a conflict function's row reaches a receiver whose
// transaction failed once (deadlock) and was applied again as it reached the others. The
// function adds up what each source did (old values); called again on the rows the others
// already hold, it counted every change twice on that receiver.
func testConflictFunctionReplay(t *testing.T, f *farm) {
	c := f.cluster(t, "conflictfnreplay", 3)
	fn := "public.sum_" + strings.ToLower(strings.Map(func(r rune) rune {
		if (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			return r
		}
		return '_'
	}, c.sync))
	if _, err := c.store.Pool.Exec(context.Background(), `CREATE FUNCTION `+fn+`(v jsonb) RETURNS jsonb LANGUAGE sql AS $$
  SELECT jsonb_build_object(
    'bal', (SELECT max((x->'old'->>'bal')::int) + sum((x->'row'->>'bal')::int - (x->'old'->>'bal')::int) FROM jsonb_array_elements(v->'versions') x),
    'note', 'merged')
$$`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = c.store.Pool.Exec(context.Background(), `DROP FUNCTION IF EXISTS `+fn+`(jsonb)`) })
	c.onAll(`CREATE TABLE acct (id int PRIMARY KEY, bal int, note text); INSERT INTO acct SELECT g, 100, 'init' FROM generate_series(1, 3) g`)
	c.configure([]string{"acct"}, []string{"t1:source", "t2:source", "t3:target"}, "conflict_strategy=function:"+fn)
	c.on("t3", `CREATE SEQUENCE once; CREATE FUNCTION once() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN IF nextval('`+c.schema+`.once') = 1 THEN RAISE EXCEPTION 'deadlock, once' USING ERRCODE = 'deadlock_detected'; END IF; RETURN NEW; END$$;
CREATE TRIGGER once BEFORE INSERT OR UPDATE ON acct FOR EACH ROW EXECUTE FUNCTION once(); ALTER TABLE acct ENABLE ALWAYS TRIGGER once`)
	c.on("t1", `UPDATE acct SET bal = bal + 10 WHERE id = 1`)
	c.on("t2", `UPDATE acct SET bal = bal + 5 WHERE id = 1`)
	lc := &logCounter{msgs: map[string]int{}}
	c.mustRun(control.StateGood, job.Options{Logger: slog.New(lc)})
	if n := lc.msgs["receiver transaction failed, retrying"]; n != 1 {
		t.Errorf("%d retries logged, want 1 (%v)", n, lc.msgs)
	}
	for _, db := range c.names {
		if got := strings.Join(c.strs(db, `SELECT id || ':' || bal || ':' || note FROM acct ORDER BY id`), " "); got != "1:115:merged 2:100:init 3:100:init" {
			t.Errorf("%s: %s, want 1:115:merged 2:100:init 3:100:init", db, got)
		}
	}
	c.mustRun(control.StateEmpty, job.Options{})
}
