package job_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/job"
)

// acctCluster gives a test dbs t1..tn with table acct(id int primary key, bal int, note
// text) holding rows 1..10 with bal 100, its sync over members, and bal a counter.
func (f *farm) acctCluster(t *testing.T, name string, n int, members []string, opts ...string) *cluster {
	t.Helper()
	c := f.cluster(t, name, n)
	c.onAll(`CREATE TABLE acct (id int PRIMARY KEY, bal int, note text); INSERT INTO acct SELECT g, 100, 'init' FROM generate_series(1, 10) g`)
	c.configure([]string{"acct"}, members, opts...)
	if out := c.ibex("update", "table", c.q("acct"), "counters=bal"); !strings.Contains(out, "Updated table") {
		t.Fatalf("update table counters=bal said %q", out)
	}
	return c
}

// acct is the rows of acct on db as "id:bal:note", by id.
func (c *cluster) acct(db string) string {
	c.t.Helper()
	return strings.Join(c.strs(db, `SELECT id || ':' || coalesce(bal::text, 'NULL') || ':' || note FROM acct ORDER BY id`), " ")
}

// testCounters: counter columns add up. Each case below runs in one run, with exact rows
// on every db afterwards: concurrent increments on three sources (update_update), a key
// changed on one source, inserts of the same key on two sources (insert_exists: the values
// add up), update against delete with the delete winning and with it losing (the deleting
// source adds nothing), and a NULL counter.
func testCounters(t *testing.T, f *farm) {
	c := f.acctCluster(t, "counters", 4, []string{"t1:source", "t2:source", "t3:source", "t4:target"}, "conflict_strategy=latest")
	if out := c.ibex("list", "tables"); !strings.Contains(out, "counters=bal") {
		t.Errorf("list tables does not show the counter:\n%s", out)
	}
	ct := c.changeTable("acct")
	if got := c.strs("t1", fmt.Sprintf(`SELECT attname::text FROM pg_attribute WHERE attrelid = '%s'::regclass AND attname::text LIKE '$d.%%'`, ct)); strings.Join(got, ",") != "$d.bal" {
		t.Fatalf("delta columns of the change table on t1: %v", got)
	}
	// The writes, in time order (latest wins the other columns).
	for _, w := range []struct{ db, sql string }{
		{"t1", `UPDATE acct SET bal = bal + 10, note = 't1' WHERE id = 1`},
		{"t2", `UPDATE acct SET bal = bal + 5, note = 't2' WHERE id = 1`},
		{"t3", `UPDATE acct SET bal = bal - 3, note = 't3' WHERE id = 1`},
		{"t1", `UPDATE acct SET bal = bal + 1 WHERE id = 2`},
		{"t1", `UPDATE acct SET bal = bal + 1 WHERE id = 2`},
		{"t2", `UPDATE acct SET bal = bal * 2, note = 't2' WHERE id = 2`}, // +100
		{"t2", `UPDATE acct SET bal = bal + 7 WHERE id = 3`},
		{"t1", `INSERT INTO acct VALUES (11, 5, 't1')`},
		{"t2", `INSERT INTO acct VALUES (11, 3, 't2')`},
		{"t2", `UPDATE acct SET bal = bal + 9 WHERE id = 4`},
		{"t3", `UPDATE acct SET bal = bal + 1 WHERE id = 4`},
		{"t1", `DELETE FROM acct WHERE id = 4`}, // the latest: deleted everywhere
		{"t1", `DELETE FROM acct WHERE id = 5`},
		{"t2", `UPDATE acct SET bal = bal + 9, note = 't2' WHERE id = 5`}, // the latest: survives with t2's value
		{"t3", `UPDATE acct SET bal = bal + 1 WHERE id = 5`},
		{"t1", `UPDATE acct SET bal = NULL WHERE id = 6`},
		{"t2", `UPDATE acct SET bal = bal + 4, note = 't2' WHERE id = 6`}, // NULL counts as 0: -100 + 4
	} {
		c.on(w.db, w.sql)
		time.Sleep(2 * time.Millisecond)
	}
	res := c.mustRun(control.StateGood, job.Options{})
	want := "1:112:t3 2:202:t2 3:107:init 5:110:init 6:4:t2 7:100:init 8:100:init 9:100:init 10:100:init 11:8:t2"
	for _, db := range c.names {
		if got := c.acct(db); got != want {
			t.Errorf("db %s:\n got %s\nwant %s", db, got, want)
		}
	}
	if got, want := res.Conflicts, int64(6); got != want {
		t.Errorf("conflicts: %d, want %d (%s)", got, want, res.Summary())
	}
	c.mustRun(control.StateEmpty, job.Options{})
	// Turning counters off removes the delta columns; changes are whole rows again.
	c.ibex("update", "table", c.q("acct"), "counters=")
	if got := c.strs("t1", fmt.Sprintf(`SELECT attname::text FROM pg_attribute WHERE attrelid = '%s'::regclass AND NOT attisdropped AND attname::text LIKE '$d.%%'`, ct)); len(got) != 0 {
		t.Fatalf("delta columns left after counters=: %v", got)
	}
	c.on("t1", `UPDATE acct SET bal = bal + 10 WHERE id = 7`)
	time.Sleep(2 * time.Millisecond)
	c.on("t2", `UPDATE acct SET bal = bal + 5 WHERE id = 7`)
	c.mustRun(control.StateGood, job.Options{})
	for _, db := range c.names {
		if got := c.strs(db, `SELECT bal::text FROM acct WHERE id = 7`); strings.Join(got, "") != "105" {
			t.Errorf("db %s without counters: bal %v, want 105 (the latest row)", db, got)
		}
	}
}

// testCountersBadInput: counters= naming a column that is not a number, a key column or
// no column is refused with a clear error and changes nothing.
func testCountersBadInput(t *testing.T, f *farm) {
	c := f.acctCluster(t, "countersbad", 2, []string{"t1:source", "t2:source"})
	for _, tc := range []struct{ arg, want string }{
		{"counters=note", `column "note" of table "` + c.schema + `"."acct" is text: a counter holds a number`},
		{"counters=id", `column "id" is part of the key of table`},
		{"counters=nope", `has no column "nope"`},
	} {
		code, _, stderr := c.ibexCmd("update", "table", c.q("acct"), tc.arg)
		if code == 0 || !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "invalid counter column") {
			t.Errorf("update table %s: exit %d, %q; want an error with %q", tc.arg, code, stderr, tc.want)
		}
	}
	if out := c.ibex("list", "tables"); !strings.Contains(out, "counters=bal") || strings.Contains(out, "counters=note") {
		t.Errorf("a refused update changed the table:\n%s", out)
	}
}

// testCountersLateKey: a source whose application changes a counter row after the run's
// snapshot skips that key (its newer change wins next run), but still adds the other
// sources' deltas to it; otherwise its row, sent whole next run, would drop them.
func testCountersLateKey(t *testing.T, f *farm) {
	c := f.acctCluster(t, "counterslate", 3, []string{"t1:source", "t2:source", "t3:target"})
	c.on("t1", `UPDATE acct SET bal = bal + 10 WHERE id IN (5, 6)`)
	h := &hook{msg: "backlog", fn: func() { c.on("t2", `UPDATE acct SET bal = bal + 1000, note = 't2 late' WHERE id = 5`) }}
	c.mustRun(control.StateGood, job.Options{Logger: slog.New(h)})
	if got, want := c.acct("t2"), "1:100:init 2:100:init 3:100:init 4:100:init 5:1110:t2 late 6:110:init 7:100:init 8:100:init 9:100:init 10:100:init"; got != want {
		t.Errorf("t2 after the first run:\n got %s\nwant %s", got, want)
	}
	c.mustRun(control.StateGood, job.Options{})
	want := "1:100:init 2:100:init 3:100:init 4:100:init 5:1110:t2 late 6:110:init 7:100:init 8:100:init 9:100:init 10:100:init"
	for _, db := range c.names {
		if got := c.acct(db); got != want {
			t.Errorf("db %s after the second run:\n got %s\nwant %s", db, got, want)
		}
	}
	c.mustRun(control.StateEmpty, job.Options{})
}

// testCountersRacePgbench: pgbench's tpcb-like transactions on three sources at once while
// runs of the sync race them, with counters on abalance, bbalance and tbalance. After the
// writers stop and the runs catch up, every db holds the same rows and SUM(abalance) =
// SUM(bbalance) = SUM(tbalance) = the sum of every delta the three pgbench runs made
// (pgbench_history, not replicated, on each source), exactly.
func testCountersRacePgbench(t *testing.T, f *farm) {
	c := f.cluster(t, "countersrace", 4)
	c.pgbenchInit()
	c.configure([]string{"pgbench_accounts", "pgbench_branches", "pgbench_tellers"},
		[]string{"t1:source", "t2:source", "t3:source", "t4:target"})
	for tb, col := range map[string]string{"pgbench_accounts": "abalance", "pgbench_branches": "bbalance", "pgbench_tellers": "tbalance"} {
		c.ibex("update", "table", c.q(tb), "counters="+col)
	}
	sources := []string{"t1", "t2", "t3"}
	// Few accounts, so that the sources change the same rows often.
	script := filepath.Join(t.TempDir(), "hot.sql")
	if err := os.WriteFile(script, []byte(`\set aid random(1, 200)
\set bid random(1, 1)
\set tid random(1, 10)
\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
END;
`), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var mu sync.Mutex
	var errs []error
	var pwg sync.WaitGroup
	for _, s := range sources {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			if err := pgbench(c.dbs[s], c.schema, "-n", "-T", "5", "-c", "2", "--max-tries=50", "-f", script); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	done := make(chan struct{})
	go func() { pwg.Wait(); close(done) }()
	// Small batches: many units per run, so a run applies, records and re-reads often.
	const batchSize = 50
	runs, left := 0, 0
	lc := &logCounter{msgs: map[string]int{}}
	for loop := true; loop; {
		select {
		case <-done:
			loop = false
		default:
		}
		res, err := job.Run(ctx, c.store, c.sync, job.Options{BatchSize: batchSize, Logger: slog.New(lc)})
		// A source whose application keeps changing the rows being applied, or whose
		// transaction keeps deadlocking with pgbench's, stops receiving in a run under this
		// load (it catches up later); anything else is a failure.
		if err != nil {
			if res == nil {
				t.Fatalf("run under load: %v", err)
			}
			for db, why := range res.Skipped {
				if !strings.Contains(why, "the application keeps changing the rows being applied") && !strings.Contains(why, "(after 4 attempts)") {
					t.Fatalf("run under load: db %s skipped: %s (%s)", db, why, res.Summary())
				}
			}
			if len(res.Skipped) == 0 {
				t.Fatalf("run under load: %v (%s)", err, res.Summary())
			}
			left++
		}
		runs++
	}
	for _, err := range errs {
		t.Fatal(err)
	}
	// Catch up: runs until one finds nothing (a run's late keys go in the next).
	for i := 0; ; i++ {
		res, err := c.run(ctx, job.Options{})
		if err != nil {
			t.Fatalf("catching up: %v", err)
		}
		if res.State == control.StateEmpty {
			break
		}
		if i == 5 {
			t.Fatalf("still changes after %d runs: %s", i+1, res.Summary())
		}
	}
	// A receiver's deadlock with pgbench makes its unit be applied to it again once the
	// others committed (see testCountersReplay).
	t.Logf("%d runs under load (%d with a db that stopped receiving), %d receiver transactions retried", runs, left, lc.msgs["receiver transaction failed, retrying"])
	var deltas int64
	for _, s := range sources {
		deltas += c.int(s, `SELECT coalesce(sum(delta), 0) FROM pgbench_history`)
	}
	want := fmt.Sprint(deltas)
	for _, db := range c.names {
		got := c.strs(db, `SELECT (SELECT sum(abalance) FROM pgbench_accounts)::text || ' ' || (SELECT sum(bbalance) FROM pgbench_branches)::text || ' ' || (SELECT sum(tbalance) FROM pgbench_tellers)::text`)
		if strings.Join(got, "") != want+" "+want+" "+want {
			t.Errorf("db %s: sums of abalance, bbalance, tbalance %v, want %s each (the deltas pgbench made)", db, got, want)
		}
	}
	for _, tb := range []string{"pgbench_accounts", "pgbench_branches", "pgbench_tellers"} {
		c.sameEverywhere(tb, "1")
	}
}

// testCountersReplay: a receiver whose transaction fails with a deadlock has the unit
// applied to it again once the others committed. The built rows of that unit (a counter's
// deltas added to the winner's value, a conflict function's row) must reach it as the
// others got them: the winner's row read again then already holds the added deltas, and
// adding them again counted an increment twice on that receiver (then, sent whole by a
// later change, on every db). One key changed on t1 (+10) and t2 (+5), t4 failing once.
func testCountersReplay(t *testing.T, f *farm) {
	c := f.acctCluster(t, "countersreplay", 4, []string{"t1:source", "t2:source", "t3:source", "t4:target"}, "conflict_strategy=latest")
	c.on("t4", `CREATE SEQUENCE once; CREATE FUNCTION once() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN IF nextval('`+c.schema+`.once') = 1 THEN RAISE EXCEPTION 'deadlock, once' USING ERRCODE = 'deadlock_detected'; END IF; RETURN NEW; END$$;
CREATE TRIGGER once BEFORE INSERT OR UPDATE ON acct FOR EACH ROW EXECUTE FUNCTION once(); ALTER TABLE acct ENABLE ALWAYS TRIGGER once`)
	c.on("t1", `UPDATE acct SET bal = bal + 10, note = 't1' WHERE id = 1`)
	time.Sleep(2 * time.Millisecond)
	c.on("t2", `UPDATE acct SET bal = bal + 5, note = 't2' WHERE id = 1`)
	lc := &logCounter{msgs: map[string]int{}}
	c.mustRun(control.StateGood, job.Options{Logger: slog.New(lc)})
	if n := lc.msgs["receiver transaction failed, retrying"]; n != 1 {
		t.Errorf("%d retries logged, want 1 (%v)", n, lc.msgs)
	}
	want := "1:115:t2 2:100:init 3:100:init 4:100:init 5:100:init 6:100:init 7:100:init 8:100:init 9:100:init 10:100:init"
	for _, db := range c.names {
		if got := c.acct(db); got != want {
			t.Errorf("db %s:\n got %s\nwant %s", db, got, want)
		}
	}
	c.mustRun(control.StateEmpty, job.Options{})
}

// testCountersReceiverLeaves: a source that stops receiving in the middle of a run (a row
// it refuses) had committed the run's earlier units; their change rows must not stay
// pending for it, or the next run adds their deltas to its row a second time. Run 1: t1
// adds 10 to keys 1, 2, 3 and 9, in units {1}, {2}, {3, 9} (batch_size 1, key ranges); t2
// refuses key 9's row, after committing the first two. Run 2: t2 adds 7 to key 1 (the
// latest change, so t2's row is the base).
func testCountersReceiverLeaves(t *testing.T, f *farm) {
	c := f.acctCluster(t, "countersleave", 4, []string{"t1:source", "t2:source", "t3:source", "t4:target"}, "conflict_strategy=latest")
	c.on("t2", `CREATE FUNCTION refuse9() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN IF NEW.id = 9 THEN RAISE EXCEPTION 'no 9 here'; END IF; RETURN NEW; END$$;
CREATE TRIGGER refuse9 BEFORE INSERT OR UPDATE ON acct FOR EACH ROW EXECUTE FUNCTION refuse9(); ALTER TABLE acct ENABLE ALWAYS TRIGGER refuse9`)
	c.on("t1", `UPDATE acct SET bal = bal + 10, note = 't1' WHERE id IN (1, 2, 3, 9)`)
	// Two batches of two keys (a backlog of a few batches is cut between its keys).
	res := c.mustRun(control.StateBad, job.Options{BatchSize: 2})
	if !strings.Contains(res.Skipped["t2"], "no 9 here") {
		t.Fatalf("skipped %v: want t2 for 'no 9 here'", res.Skipped)
	}
	if got, want := c.acct("t2"), "1:110:t1 2:110:t1 3:100:init 4:100:init 5:100:init 6:100:init 7:100:init 8:100:init 9:100:init 10:100:init"; got != want {
		t.Fatalf("t2 after run 1 (keys 1 and 2 committed, 3 and 9 refused):\n got %s\nwant %s\n%s\nt3 %s", got, want, res.Summary(), c.acct("t3"))
	}
	c.on("t2", `DROP TRIGGER refuse9 ON acct`)
	time.Sleep(2 * time.Millisecond)
	c.on("t2", `UPDATE acct SET bal = bal + 7, note = 't2' WHERE id = 1`)
	c.mustRun(control.StateGood, job.Options{BatchSize: 1})
	want := "1:117:t2 2:110:t1 3:110:t1 4:100:init 5:100:init 6:100:init 7:100:init 8:100:init 9:110:t1 10:100:init"
	for _, db := range c.names {
		if got := c.acct(db); got != want {
			t.Errorf("db %s:\n got %s\nwant %s", db, got, want)
		}
	}
	c.mustRun(control.StateEmpty, job.Options{})
}
