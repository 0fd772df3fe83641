package faults

import (
	"context"
	"encoding/json"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/ibextest"
	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/job"
)

// TestConcurrentKicks proves that runs of one sync never overlap: four in-process
// job.Run calls (two sharing one control-database pool, two with pools of their own)
// and one 'ibex kick' subprocess start at the same moment, three times over. Exactly one
// of them does the work; each of the others says the sync is already running (or, if it
// started after the winner ended, finds nothing to do); the recorded runs' intervals are
// disjoint. In the last round the subprocess takes the lock first and does the work.
func TestConcurrentKicks(t *testing.T) {
	t.Parallel()
	bin := ibexBinary(t)
	e := newEnv(t, pgtest.ClusterOptions{})
	dsns := map[string]string{}
	for _, name := range []string{"a", "b"} {
		d := e.ctl.CreateDB(name)
		dsns[name] = d.DSN
		ibextest.Exec(t, d.DSN, `CREATE TABLE big (id int PRIMARY KEY, v text NOT NULL)`)
		e.must(ibextest.AddDBArgs(name, d.Conn)...)
	}
	e.must("add", "table", "big", "db=a", "herd=h")
	e.must("add", "sync", "s", "herd=h", "dbs=a:source,b:source", "batch_size=1000")
	e.must("kick", "s")

	shared := e.store()
	stores := []*control.Store{shared, shared, e.store(), e.store()}
	const n = 10000
	var wantRuns int
	for round := 1; round <= 3; round++ {
		ibextest.Exec(t, dsns["a"], `INSERT INTO big SELECT g, 'r' || $1::text FROM generate_series(($1 - 1) * $2 + 1, $1 * $2) g`, round, n)

		// In the last round the subprocess goes first and the others start once it holds
		// the sync's lock.
		subFirst := round == 3
		start, goroutines := make(chan struct{}), make(chan struct{})
		var wg sync.WaitGroup
		results := make([]*job.Result, len(stores))
		errs := make([]error, len(stores))
		for i, s := range stores {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-goroutines
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				results[i], errs[i] = job.Run(ctx, s, "s", job.Options{})
			}()
		}
		cmd := exec.Command(bin, "kick", "s", "--json", "--dsn", e.dsn)
		var cmdOut []byte
		var cmdErr error
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			cmdOut, cmdErr = cmd.Output()
		}()
		close(start)
		if subFirst {
			ibextest.WaitFor(t, "the subprocess to take the lock", 30*time.Second, func() bool {
				return ibextest.One(t, e.dsn, `SELECT count(*)::text FROM pg_locks WHERE locktype = 'advisory' AND granted`) != "0"
			})
		}
		close(goroutines)
		wg.Wait()

		if cmdErr != nil {
			t.Fatalf("round %d: ibex kick: %v\n%s", round, cmdErr, cmdOut)
		}
		var sub []*job.Result
		if err := json.Unmarshal(cmdOut, &sub); err != nil || len(sub) != 1 {
			t.Fatalf("round %d: ibex kick --json: %v\n%s", round, err, cmdOut)
		}
		all := append(results, sub[0])
		var workers, already, empty int
		for i, r := range all {
			if i < len(errs) && (errs[i] != nil || r == nil) {
				t.Fatalf("round %d: run %d: %+v, %v", round, i, r, errs[i])
			}
			switch {
			case r.AlreadyRunning:
				already++
				if r.RunID != 0 || r.Inserts+r.Deletes+r.Conflicts != 0 {
					t.Errorf("round %d: an already-running result did work: %+v", round, r)
				}
			case r.State == control.StateGood:
				workers++
				if r.Inserts != n || r.Deletes != 0 || r.Conflicts != 0 {
					t.Errorf("round %d: the working run did I/D/C %d/%d/%d, want %d/0/0", round, r.Inserts, r.Deletes, r.Conflicts, n)
				}
			case r.State == control.StateEmpty:
				empty++
			default:
				t.Errorf("round %d: unexpected result %+v", round, r)
			}
		}
		t.Logf("round %d: 1 run did the work, %d were already running, %d found nothing to do (the subprocess: %s)", round, already, empty, sub[0].State)
		if workers != 1 {
			t.Fatalf("round %d: %d runs did the work, want exactly 1", round, workers)
		}
		if subFirst && sub[0].State != control.StateGood {
			t.Errorf("round %d: the subprocess took the lock first but did not do the work: %+v", round, sub[0])
		}
		wantRuns += workers + empty
		if s := ibextest.SameEverywhere(t, "big", "", dsns); int64(len(s)) != int64(round*n) {
			t.Fatalf("round %d: %d rows, want %d", round, int64(len(s)), round*n)
		}
	}

	rs := runRows(t, e.dsn, "s")
	if len(rs) != wantRuns+1 { // +1: the first, empty kick
		t.Errorf("%d runs recorded, want %d", len(rs), wantRuns+1)
	}
	for i, r := range rs {
		if r.Ended == nil {
			t.Fatalf("run %d has not ended: %+v", r.ID, r)
		}
		if i > 0 && rs[i-1].Ended.After(r.Started) {
			t.Errorf("run %d (%s to %s) overlaps run %d (%s to %s)", rs[i-1].ID, rs[i-1].Started, rs[i-1].Ended, r.ID, r.Started, r.Ended)
		}
	}
}
