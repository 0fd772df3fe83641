package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/metrics"
	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/internal/scheduler"
	"github.com/ibexrepl/ibex/internal/scheduler/schedtest"
	"github.com/ibexrepl/ibex/job"
)

// The four ways a run of a sync is started.
const (
	epKick      = "ibex kick"
	epRunonce   = "runonce"
	epLambda    = "lambda"
	epScheduler = "scheduler"
)

var entryPoints = []string{epKick, epRunonce, epLambda, epScheduler}

// TestEntryPointsRaceForOneSync: 'ibex kick', runonce, the Lambda handler and a scheduler
// are started at the same moment for the same sync, which has a backlog of tens of
// thousands of changed rows on two of its three dbs and a small batch size, so that a
// run lasts a second or more. Exactly one of them does the work (all of the backlog);
// each of the others says the sync is already running and succeeds: the subprocesses
// exit 0 with already_running in their JSON, the handler returns a result with
// AlreadyRunning and no error, the scheduler counts an already_running outcome and logs
// it. Only the working run is recorded, no two recorded runs overlap, none is left
// running, the sync's lock is free after each round and the dbs are equal row for row.
// In the first three rounds all four start together (whoever wins); in each of the next
// four, one of them starts first and the others once its run holds the sync's lock (as
// pg_locks shows it), so that the overlap is certain and each entry point is seen both
// doing the work and finding it done elsewhere.
func TestEntryPointsRaceForOneSync(t *testing.T) {
	t0 := time.Now()
	bin := buildEntryPoints(t)
	tBuild := time.Since(t0)

	const (
		syncName = "s"
		ndbs     = 3
		perDB    = 15000 // changed accounts on t1 and on t2 each round
		batch    = "batch_size=500"
	)
	f := schedtest.New(t, ndbs)
	// schedule=1h: a scheduler started at the barrier runs the sync at once (gocron's
	// start-immediately) and not again within the round.
	f.AddSync(t, syncName, batch, "schedule=1h")
	f.Ibex(t, "kick", syncName) // an empty first run
	t.Logf("build: %s, setup: %s", tBuild.Round(time.Millisecond), (time.Since(t0) - tBuild).Round(time.Millisecond))

	h := newTestHandler(map[string]string{"IBEX_DSN": f.DSN()}, nil)
	ctl := pgtest.Conn(t, f.DSN())
	ctx := context.Background()
	q := func(sql string, args ...any) int {
		t.Helper()
		var n int
		if err := ctl.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return n
	}
	// The sync's lock as pg_locks shows it (a two-int4 advisory lock: classid, objid, 2).
	lockHolders := func() int {
		t.Helper()
		return q(`SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND granted
AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
AND classid = $1::int4::oid AND objid = (SELECT id FROM ibex.sync WHERE name = $2)::oid AND objsubid = 2`, control.SyncLockNamespace, syncName)
	}
	runCount := func() int {
		t.Helper()
		return q(`SELECT count(*)::int FROM ibex.run WHERE sync = $1`, syncName)
	}

	// Each changed row is deleted and inserted again on each of the other dbs.
	const wantRows = 2 * perDB * (ndbs - 1)
	// Who starts first in each round: "" all at once; else that one, and the others once
	// it holds the lock.
	firsts := []string{"", "", "", epScheduler, epRunonce, epLambda, epKick}
	for i, first := range firsts {
		round := i + 1
		// The backlog: disjoint accounts changed on t1 and t2 (no conflicts).
		pgtest.Exec(t, f.DBs[0].DSN, `UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid <= $2`, round, perDB)
		pgtest.Exec(t, f.DBs[1].DSN, `UPDATE pgbench_accounts SET abalance = abalance - $1 WHERE aid > 50000 AND aid <= 50000 + $2`, round, perDB)
		runsBefore := runCount()

		gates := map[string]chan struct{}{}
		for _, ep := range entryPoints {
			gates[ep] = make(chan struct{})
		}
		outs := map[string]*outcome{}
		for _, ep := range entryPoints {
			outs[ep] = &outcome{name: ep}
		}
		var wg sync.WaitGroup

		// Subprocesses.
		for _, ep := range []string{epKick, epRunonce} {
			var cmd *exec.Cmd
			if ep == epKick {
				cmd = exec.Command(filepath.Join(bin, "ibex"), "kick", syncName, "--json", "--dsn", f.DSN())
			} else {
				cmd = exec.Command(filepath.Join(bin, "runonce"), "--sync", syncName, "--json")
			}
			cmd.Env = append(os.Environ(), "IBEX_DSN="+f.DSN(), "IBEX_SYNC=", "IBEX_LOG_LEVEL=normal")
			o := outs[ep]
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gates[ep]
				o.start = time.Now()
				o.err = cmd.Run()
				o.end = time.Now()
				o.code = -1
				if cmd.ProcessState != nil {
					o.code = cmd.ProcessState.ExitCode()
				}
				o.stdout, o.stderr = stdout.String(), stderr.String()
			}()
		}

		// The Lambda handler, called as the Lambda runtime calls it (JSON in, JSON out).
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := outs[epLambda]
			<-gates[epLambda]
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			ctx = lambdacontext.NewContext(ctx, &lambdacontext.LambdaContext{AwsRequestID: fmt.Sprintf("race-%d", round)})
			o.start = time.Now()
			out, err := lambda.NewHandler(h.Handle).Invoke(ctx, []byte(`{"sync":"`+syncName+`"}`))
			o.end = time.Now()
			o.stdout, o.err = string(out), err
		}()

		// A scheduler of its own, started at the barrier: it runs the sync at once.
		met := metrics.New()
		logs := &lockedBuffer{}
		sch := scheduler.New(scheduler.Config{
			DSN:             f.DSN(),
			Reload:          time.Minute,
			ShutdownTimeout: time.Minute,
			Metrics:         met,
			Logger:          slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		})
		// Its one attempt is over once its metrics count an outcome.
		attempts := func() map[string]float64 {
			m := map[string]float64{}
			for _, st := range []string{control.StateGood, control.StateEmpty, control.StateBad,
				metrics.StateAlreadyRunning, control.StateInactive, metrics.StateError} {
				if v := schedtest.Value(met.Runs.WithLabelValues(syncName, st)); v != 0 {
					m[st] = v
				}
			}
			return m
		}
		schCtx, stopSch := context.WithCancel(context.Background())
		schErr := make(chan error, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := outs[epScheduler]
			<-gates[epScheduler]
			o.start = time.Now()
			stopped := make(chan struct{})
			go func() { schErr <- sch.Run(schCtx); close(stopped) }()
			defer func() { o.end = time.Now() }()
			for deadline := time.Now().Add(time.Minute); len(attempts()) == 0; time.Sleep(5 * time.Millisecond) {
				select {
				case <-stopped:
					o.err = errors.New("the scheduler stopped before it ran the sync")
					return
				default:
				}
				if time.Now().After(deadline) {
					o.err = errors.New("the scheduler did not run the sync within a minute")
					return
				}
			}
		}()

		// Go.
		if first != "" {
			close(gates[first])
			if d, ok := schedtest.WaitFor(30*time.Second, func() bool { return lockHolders() == 1 }); !ok {
				t.Errorf("round %d: %s did not take the lock in %s", round, first, d)
			} else {
				t.Logf("round %d: %s holds the lock after %s; starting the others", round, first, d.Round(time.Millisecond))
			}
		}
		for ep, g := range gates {
			if ep != first {
				close(g)
			}
		}
		wg.Wait()

		// The scheduler is stopped (it would wait for a run under way).
		if err := outs[epScheduler].err; err != nil {
			t.Errorf("round %d: %v", round, err)
		}
		stopSch()
		select {
		case err := <-schErr:
			if err != nil {
				t.Errorf("round %d: scheduler: %v", round, err)
			}
		case <-time.After(90 * time.Second):
			t.Fatalf("round %d: the scheduler did not stop", round)
		}

		// What each said.
		for _, ep := range []string{epKick, epRunonce} {
			o := outs[ep]
			if o.err != nil || o.code != 0 {
				t.Errorf("round %d: %s: exit %d (%v)\nstdout: %s\nstderr: %s", round, ep, o.code, o.err, o.stdout, o.stderr)
				continue
			}
			if ep == epKick {
				var rs []*job.Result
				if err := json.Unmarshal([]byte(o.stdout), &rs); err != nil || len(rs) != 1 {
					t.Errorf("round %d: %s --json: %v\n%s", round, ep, err, o.stdout)
					continue
				}
				o.res = rs[0]
			} else {
				o.res = &job.Result{}
				if err := json.Unmarshal([]byte(o.stdout), o.res); err != nil {
					t.Errorf("round %d: %s --json: %v\n%s", round, ep, err, o.stdout)
					o.res = nil
					continue
				}
			}
			if o.res.AlreadyRunning && !strings.Contains(o.stdout, `"already_running": true`) {
				t.Errorf("round %d: %s: the JSON does not say already_running: %s", round, ep, o.stdout)
			}
		}
		if o := outs[epLambda]; o.err != nil {
			t.Errorf("round %d: the handler returned an error: %v", round, o.err)
		} else {
			o.res = &job.Result{}
			if err := json.Unmarshal([]byte(o.stdout), o.res); err != nil {
				t.Errorf("round %d: the handler's result %s: %v", round, o.stdout, err)
				o.res = nil
			} else if o.res.AlreadyRunning && !strings.Contains(o.stdout, `"already_running":true`) {
				t.Errorf("round %d: the handler's JSON does not say already_running: %s", round, o.stdout)
			}
		}
		// The scheduler's outcome, from its metrics.
		att := attempts()
		if o := outs[epScheduler]; len(att) != 1 || (att[control.StateGood] != 1 && att[metrics.StateAlreadyRunning] != 1) {
			t.Errorf("round %d: the scheduler's outcomes %v: want one run, good or already running", round, att)
		} else if att[metrics.StateAlreadyRunning] == 1 {
			o.res = &job.Result{Sync: syncName, AlreadyRunning: true, State: "already running"}
			if !strings.Contains(logs.String(), "already running") {
				t.Errorf("round %d: the scheduler found the lock taken but did not log it:\n%s", round, logs)
			}
		} else {
			o.res = &job.Result{Sync: syncName, State: control.StateGood,
				Inserts:   int64(schedtest.Value(met.Rows.WithLabelValues(syncName, "inserted"))),
				Deletes:   int64(schedtest.Value(met.Rows.WithLabelValues(syncName, "deleted"))),
				Conflicts: int64(schedtest.Value(met.Conflicts.WithLabelValues(syncName)))}
		}

		// Exactly one did the work; the others were already running.
		var workers []string
		var summary []string
		for _, ep := range entryPoints {
			o := outs[ep]
			if o.res == nil {
				continue
			}
			r := o.res
			summary = append(summary, fmt.Sprintf("%s: %s after %s", ep, r.State, o.end.Sub(o.start).Round(time.Millisecond)))
			switch {
			case r.AlreadyRunning:
				if r.RunID != 0 || r.Inserts+r.Deletes+r.Conflicts != 0 {
					t.Errorf("round %d: %s was already running but reports work: %+v", round, ep, r)
				}
			case r.State == control.StateGood:
				workers = append(workers, ep)
				if r.Inserts != wantRows || r.Deletes != wantRows || r.Conflicts != 0 || r.Partial {
					t.Errorf("round %d: %s did I/D/C %d/%d/%d (partial %v), want %d/%d/0", round, ep,
						r.Inserts, r.Deletes, r.Conflicts, r.Partial, wantRows, wantRows)
				}
			default:
				t.Errorf("round %d: %s: %+v; want the work done or already running", round, ep, r)
			}
		}
		t.Logf("round %d: %s", round, strings.Join(summary, "; "))
		if len(workers) != 1 {
			t.Errorf("round %d: %d entry points did the work (%v), want exactly 1", round, len(workers), workers)
		}
		if first != "" && (len(workers) != 1 || workers[0] != first) {
			t.Errorf("round %d: %s took the lock first but the work was done by %v", round, first, workers)
		}

		// The control database: one run recorded, ended; the lock free; the dbs equal.
		if n := runCount() - runsBefore; n != 1 {
			t.Errorf("round %d: %d runs recorded, want 1", round, n)
		}
		if n := q(`SELECT count(*)::int FROM ibex.run WHERE sync = $1 AND (state = 'running' OR ended IS NULL)`, syncName); n != 0 {
			t.Errorf("round %d: %d runs left running", round, n)
		}
		if n := lockHolders(); n != 0 {
			t.Errorf("round %d: the lock of sync %s is still held", round, syncName)
		}
		if ok, which := f.Same(t); !ok {
			t.Errorf("round %d: the dbs differ: %s", round, which)
		}
		if t.Failed() {
			t.FailNow()
		}
	}

	// Over all the rounds: the recorded runs never overlap; the last one applied
	// everything (a further run finds nothing).
	runs := f.Runs(t, syncName)
	if len(runs) != len(firsts)+1 {
		t.Errorf("%d runs recorded, want %d", len(runs), len(firsts)+1)
	}
	for i := 1; i < len(runs); i++ {
		if prev, cur := runs[i-1], runs[i]; cur.Started.Before(prev.Ended) {
			t.Errorf("run %d [%s, %s] overlaps run %d [%s, %s]", prev.ID, prev.Started.Format(time.StampMicro), prev.Ended.Format(time.StampMicro),
				cur.ID, cur.Started.Format(time.StampMicro), cur.Ended.Format(time.StampMicro))
		}
	}
	if n := q(`SELECT count(*)::int FROM ibex.run a JOIN ibex.run b ON a.sync = b.sync AND a.id < b.id
WHERE a.sync = $1 AND tstzrange(a.started, a.ended) && tstzrange(b.started, b.ended)`, syncName); n != 0 {
		t.Errorf("%d pairs of runs overlap", n)
	}
	for _, r := range runs[1:] {
		t.Logf("run %d: %s, %d inserts, %s", r.ID, r.State, r.Inserts, r.Ended.Sub(r.Started).Round(time.Millisecond))
	}
	res, err := h.Handle(ctx, json.RawMessage(`{"sync":"`+syncName+`"}`))
	if err != nil || res.State != control.StateEmpty {
		t.Errorf("a run after the rounds: %+v, %v; want empty", res, err)
	}
	t.Logf("total: %s", time.Since(t0).Round(time.Millisecond))
}

// outcome is what one entry point did in a round.
type outcome struct {
	name           string
	start, end     time.Time
	code           int    // subprocesses' exit code
	stdout, stderr string // subprocesses' output; the handler's JSON result
	err            error
	res            *job.Result
}

// buildEntryPoints builds cmd/ibex and cmd/runonce into a temporary directory.
func buildEntryPoints(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	out, err := exec.Command(goBin, "build", "-o", dir+string(filepath.Separator),
		"github.com/ibexrepl/ibex/cmd/ibex", "github.com/ibexrepl/ibex/cmd/runonce").CombinedOutput()
	if err != nil {
		t.Fatalf("go build ./cmd/ibex ./cmd/runonce: %v\n%s", err, out)
	}
	return dir
}
