package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/ibextest"
	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/internal/scheduler/schedtest"
	"github.com/ibexrepl/ibex/job"
)

// TestHandlerDeadlineMidRun: the invocation's deadline arrives while a run of many batches
// is under way. Whether the run stops between batches (the deadline margin) or the
// deadline cuts a batch (a margin shorter than a batch), the handler returns a result
// marked partial, no run is left "running", the sync's lock is free, and the following
// runs converge to exactly equal tables.
func TestHandlerDeadlineMidRun(t *testing.T) {
	f := schedtest.New(t, 2)
	f.AddSync(t, "s", "batch_size=250")
	env := map[string]string{"IBEX_DSN": f.DSN()}
	h := newTestHandler(env, nil)

	// How long one whole run of the backlog takes here (the machine may be loaded).
	const rows = 30000
	backlog := func() {
		t.Helper()
		pgtest.Exec(t, f.DBs[0].DSN, `UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= 30000`)
	}
	// The faster of two: the first runs on cold pages, and load may drop later on (a
	// following run that is much faster than the measure would finish in its time).
	var whole time.Duration
	for i := 0; i < 2; i++ {
		backlog()
		start := time.Now()
		res, err := h.Handle(context.Background(), json.RawMessage(`{"sync":"s"}`))
		if err != nil || res.Partial || res.Inserts != rows {
			t.Fatalf("a whole run: %+v, %v", res, err)
		}
		if d := time.Since(start); i == 0 || d < whole {
			whole = d
		}
	}
	t.Logf("a whole run of %d rows in batches of 250: %s", rows, whole.Round(time.Millisecond))

	check := func(t *testing.T, what string) {
		t.Helper()
		if n := ibextest.One(t, f.DSN(), `SELECT count(*)::text FROM ibex.run WHERE sync = 's' AND (state = 'running' OR ended IS NULL)`); n != "0" {
			t.Errorf("%s: %s runs left running", what, n)
		}
		free := ibextest.One(t, f.DSN(), fmt.Sprintf(`SELECT pg_try_advisory_lock(%d, id)::text FROM ibex.sync WHERE name = 's'`, control.SyncLockNamespace))
		if free != "true" {
			t.Errorf("%s: the lock of sync s is still held", what)
		}
		// The lock goes with ibextest.One's session.
	}
	converge := func(t *testing.T) {
		t.Helper()
		for i := 0; ; i++ {
			res, err := h.Handle(context.Background(), json.RawMessage(`{"sync":"s"}`))
			if err != nil {
				t.Fatalf("the run after the partial one: %v", err)
			}
			if !res.Partial && res.State == "empty" {
				break
			}
			if i > 3 {
				t.Fatalf("no convergence after %d runs: %+v", i, res)
			}
		}
		if ok, which := f.Same(t); !ok {
			t.Fatalf("not the same after the following runs: %s", which)
		}
	}
	invoke := func(t *testing.T, timeout time.Duration) (*job.Result, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		ctx = lambdacontext.NewContext(ctx, &lambdacontext.LambdaContext{AwsRequestID: "deadline"})
		start := time.Now()
		res, err := h.Handle(ctx, json.RawMessage(`{"sync":"s"}`))
		t.Logf("invocation with %s: returned after %s: %+v, %v", timeout, time.Since(start).Round(time.Millisecond), res, err)
		if d := time.Since(start); d > timeout+time.Second {
			t.Errorf("the handler returned %s after its deadline", d-timeout)
		}
		return res, err
	}
	// A quarter of a whole run, and at least enough to start it and apply a batch or two.
	part := max(whole/4, 500*time.Millisecond)

	t.Run("stops between batches", func(t *testing.T) {
		// On a loaded machine one batch may outlast the margin, so the deadline cuts it (the
		// run is partial and bad): converge and try again with a longer margin and deadline.
		var res *job.Result
		var err error
		for try := 0; try < 4; try++ {
			backlog()
			p := part << try
			env["IBEX_DEADLINE_MARGIN"] = (p / 2).String()
			res, err = invoke(t, p+p/2)
			if err != nil && strings.Contains(err.Error(), "before the first batch was done") {
				// Loaded: not even one batch within the time; nothing committed.
				t.Logf("try %d: no batch done within %s; again with more time", try, p+p/2)
				check(t, "after the run stopped before its first batch")
				delete(env, "IBEX_DEADLINE_MARGIN")
				converge(t)
				continue
			}
			if err != nil {
				t.Fatalf("a run stopped by the deadline margin is no error: %v", err)
			}
			if res.State == "good" || !res.Partial {
				break
			}
			t.Logf("try %d: a batch outlasted the margin of %s; again with a longer one", try, p/2)
			check(t, "after the run cut by the deadline")
			delete(env, "IBEX_DEADLINE_MARGIN")
			converge(t)
		}
		if err != nil {
			t.Fatalf("no try stopped between batches: %v", err)
		}
		if !res.Partial || res.Inserts == 0 || res.Inserts >= rows || res.State != "good" {
			t.Errorf("result %+v: want partial and good, with some but not all rows applied", res)
		}
		check(t, "after the run stopped by the margin")
		delete(env, "IBEX_DEADLINE_MARGIN")
		converge(t)
	})

	t.Run("deadline cuts a batch", func(t *testing.T) {
		// A margin far shorter than a batch: the deadline arrives while one is applied.
		backlog()
		env["IBEX_DEADLINE_MARGIN"] = "1ms"
		res, err := invoke(t, part)
		// On a loaded machine the deadline may come before the first batch is done (nothing
		// committed, the run is bad): give the next invocation more time, as a user would.
		for try := 1; try < 4 && err != nil && strings.Contains(err.Error(), "before the first batch was done"); try++ {
			res, err = invoke(t, part<<try)
		}
		if err != nil {
			t.Fatalf("a run cut by the deadline after committed batches: %v; want a partial result", err)
		}
		if !res.Partial || res.Inserts == 0 || res.Inserts >= rows {
			t.Errorf("result %+v: want partial, with the committed batches' rows", res)
		}
		check(t, "after the run cut by the deadline")
		delete(env, "IBEX_DEADLINE_MARGIN")
		converge(t)
	})
}
