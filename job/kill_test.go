package job_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/job"
)

// backlogCluster gives a test of the farm dbs t1, t2 (sources) and t3 (target) with
// acct (40,000 rows) and teller (10 rows), and a backlog of 30,000 changed accounts (5,000
// of them changed on both sources, t2 last) and 10 tellers.
func backlogCluster(t *testing.T, f *farm, sync string) *cluster {
	c := f.cluster(t, sync, 3)
	c.onAll(`CREATE TABLE acct (aid int PRIMARY KEY, abalance int NOT NULL DEFAULT 0, filler char(84));
INSERT INTO acct (aid) SELECT g FROM generate_series(1, 40000) g;
CREATE TABLE teller (tid int PRIMARY KEY, tbalance int NOT NULL DEFAULT 0);
INSERT INTO teller (tid) SELECT g FROM generate_series(1, 10) g`)
	c.configure([]string{"acct", "teller"}, []string{"t1:source", "t2:source", "t3:target"})
	c.on("t1", `UPDATE acct SET abalance = 1 WHERE aid <= 20000`)
	c.on("t1", `UPDATE teller SET tbalance = 1`)
	c.on("t2", `UPDATE acct SET abalance = 2 WHERE aid > 15000 AND aid <= 30000`)
	return c
}

// lateWrite is committed on t2 between killed runs.
const lateWrite = `UPDATE acct SET abalance = 3 WHERE aid BETWEEN 35001 AND 35100`

// checkBacklogApplied checks every db holds exactly the outcome of the writes.
func (c *cluster) checkBacklogApplied() {
	c.t.Helper()
	for _, db := range c.names {
		if n := c.int(db, `SELECT count(*) FROM acct WHERE abalance IS DISTINCT FROM
  CASE WHEN aid <= 15000 THEN 1 WHEN aid <= 30000 THEN 2 WHEN aid BETWEEN 35001 AND 35100 THEN 3 ELSE 0 END`); n != 0 {
			c.t.Errorf("db %s: %d accounts differ from what the writes make", db, n)
		}
		if n := c.int(db, `SELECT count(*) FROM acct`); n != 40000 {
			c.t.Errorf("db %s: %d accounts, want 40000", db, n)
		}
		if n := c.int(db, `SELECT count(*) FROM teller WHERE tbalance = 1`); n != 10 {
			c.t.Errorf("db %s: %d tellers updated, want 10", db, n)
		}
	}
	c.sameEverywhere("acct", "aid")
	c.sameEverywhere("teller", "tid")
}

// completingRun runs the sync until a run is not turned away as already running (the
// lock of a killed run is released when the server notices its session is gone, which
// may take a moment), and requires it to end good or empty.
func (c *cluster) completingRun() *job.Result {
	c.t.Helper()
	for i := 0; ; i++ {
		res, err := c.run(context.Background(), job.Options{})
		if err != nil {
			c.t.Fatalf("completing run: %v", err)
		}
		if !res.AlreadyRunning {
			if res.State != control.StateGood && res.State != control.StateEmpty {
				c.t.Fatalf("completing run: %s", res.Summary())
			}
			if i > 0 {
				c.t.Logf("the completing run was turned away %d times as already running", i)
			}
			return res
		}
		if i == 50 {
			c.t.Fatalf("the sync still looks already running 5 s after the killed runs")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cancelAfter is a log handler that cancels the run's context a delay after the run's
// n-th batch is applied (n = 0: never), so that cancellations land inside later batches.
type cancelAfter struct {
	n      int32
	delay  time.Duration
	cancel context.CancelFunc
	seen   atomic.Int32
}

func (h *cancelAfter) Enabled(context.Context, slog.Level) bool { return true }
func (h *cancelAfter) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "batch applied" && h.seen.Add(1) == h.n {
		time.AfterFunc(h.delay, h.cancel)
	}
	return nil
}
func (h *cancelAfter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *cancelAfter) WithGroup(string) slog.Handler      { return h }

// testCancelledRuns cancels runs at several moments (contexts timing out after 5 and 30 ms,
// and cancelled 0 to 25 ms after the 1st to 6th of many small batches), with a write
// committed in between; a normal run then completes the work: everything converges,
// nothing is lost, no run is left running and the lock is free.
func testCancelledRuns(t *testing.T, f *farm) {
	c := backlogCluster(t, f, "cancel")
	partial := 0
	for i, k := range []struct {
		timeout time.Duration
		batch   int32
		delay   time.Duration
	}{{5 * time.Millisecond, 0, 0}, {30 * time.Millisecond, 0, 0},
		{0, 1, 0}, {0, 2, 3 * time.Millisecond}, {0, 4, 10 * time.Millisecond}, {0, 6, 25 * time.Millisecond}} {
		ctx, cancel := context.WithCancel(context.Background())
		if k.timeout > 0 {
			cancel()
			ctx, cancel = context.WithTimeout(context.Background(), k.timeout)
		}
		h := &cancelAfter{n: k.batch, delay: k.delay, cancel: cancel}
		start := time.Now()
		res, err := c.run(ctx, job.Options{BatchSize: 1000, Logger: slog.New(h)})
		cancel()
		switch {
		case res == nil:
			if !isCanceled(err) {
				t.Errorf("run %d could not start, but not for its cancellation: %v", i, err)
			}
		case res.AlreadyRunning:
			t.Errorf("run %d: already running", i)
		default:
			if res.Inserts > 0 {
				partial++
			}
			t.Logf("cancelled run %d (timeout %v, after batch %d + %v), %d batches, %v: %s", i, k.timeout, k.batch, k.delay, h.seen.Load(), time.Since(start).Round(time.Millisecond), res.Summary())
		}
		if i == 3 {
			c.on("t2", lateWrite)
		}
	}
	if partial < 2 {
		t.Errorf("only %d cancelled runs had applied something: the cancellations missed the batches", partial)
	}
	start := time.Now()
	res := c.completingRun()
	t.Logf("completing run (%v): %s", time.Since(start).Round(time.Millisecond), res.Summary())
	c.checkBacklogApplied()
	if n := c.runningRuns(); n != 0 {
		t.Errorf("%d runs left in state running", n)
	}
	c.checkConflictsLogged()
	res = c.mustRun(control.StateEmpty, job.Options{})
	if res.AlreadyRunning {
		t.Errorf("the lock is still held after the completing run")
	}
}

// checkConflictsLogged: each of the 5,000 accounts changed on both sources is in the
// conflict log (at least once: a cancelled run may log a key its batch then rolled back).
func (c *cluster) checkConflictsLogged() {
	c.t.Helper()
	var n, outside int64
	if err := c.store.Pool.QueryRow(context.Background(), `SELECT count(DISTINCT key), count(*) FILTER (WHERE substr(key, 5)::int NOT BETWEEN 15001 AND 20000)
FROM ibex.conflict WHERE sync = $1 AND relation = $2`, c.sync, c.qual("acct")).Scan(&n, &outside); err != nil {
		c.t.Fatal(err)
	}
	if n != 5000 || outside != 0 {
		c.t.Errorf("the conflict log has %d distinct accounts (want the 5000 changed on both sources) and %d rows for other accounts", n, outside)
	}
}

func isCanceled(err error) bool {
	return err != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		strings.Contains(err.Error(), "context deadline exceeded") || strings.Contains(err.Error(), "context canceled") ||
		strings.Contains(err.Error(), "timeout"))
}

// TestKillHelper is not a test: TestFarm/KilledRuns starts the test binary again with it
// to have a run of its own it can SIGKILL. It prints "started" when the run has begun and
// "batch" after each applied batch, so the parent can kill it at chosen points.
func TestKillHelper(t *testing.T) {
	dsn := os.Getenv("IBEX_KILL_HELPER_DSN")
	if dsn == "" {
		t.Skip("helper process for TestFarm/KilledRuns")
	}
	store, err := control.Open(context.Background(), dsn, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	bs, _ := strconv.Atoi(os.Getenv("IBEX_KILL_HELPER_BATCH"))
	res, err := job.Run(context.Background(), store, os.Getenv("IBEX_KILL_HELPER_SYNC"), job.Options{BatchSize: bs, Logger: slog.New(stepPrinter{})})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(4)
	}
	fmt.Println(res.Summary())
	os.Exit(0)
}

// stepPrinter prints the steps the parent of TestKillHelper waits for.
type stepPrinter struct{}

func (stepPrinter) Enabled(context.Context, slog.Level) bool { return true }
func (stepPrinter) Handle(_ context.Context, r slog.Record) error {
	switch r.Message {
	case "run started":
		fmt.Println("started")
	case "batch applied":
		fmt.Println("batch")
	}
	return nil
}
func (h stepPrinter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h stepPrinter) WithGroup(string) slog.Handler      { return h }

// testKilledRuns SIGKILLs processes running the sync at several points (just started,
// 0 to 20 ms after the 1st to 6th batch), with a write committed in between; a normal run
// then completes the work: everything converges, nothing is lost, no run is left running
// and the lock is free.
func testKilledRuns(t *testing.T, f *farm) {
	c := backlogCluster(t, f, "killed")
	for i, k := range []struct {
		batch int // 0: after "started"
		delay time.Duration
	}{{0, 30 * time.Millisecond}, {1, 0}, {2, 5 * time.Millisecond}, {4, 20 * time.Millisecond}, {6, 2 * time.Millisecond}} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), "IBEX_KILL_HELPER_DSN="+c.ctl.DSN, "IBEX_KILL_HELPER_SYNC="+c.sync, "IBEX_KILL_HELPER_BATCH=1000")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		errb := &lockedBuffer{}
		cmd.Stderr = errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		batches, killed := 0, false
		var last string
		for sc.Scan() {
			last = sc.Text()
			if last == "batch" {
				batches++
			}
			if !killed && ((k.batch == 0 && last == "started") || (k.batch > 0 && batches == k.batch)) {
				time.Sleep(k.delay)
				_ = cmd.Process.Kill()
				killed = true
			}
		}
		err = cmd.Wait()
		t.Logf("kill %d (after batch %d + %v): %d batches seen, %v; %s %s", i, k.batch, k.delay, batches, err, last, errb.String())
		if i == 2 {
			c.on("t2", lateWrite)
		}
	}
	res := c.completingRun()
	t.Logf("completing run: %s", res.Summary())
	c.checkBacklogApplied()
	if n := c.runningRuns(); n != 0 {
		t.Errorf("%d runs left in state running", n)
	}
	c.checkConflictsLogged()
	runs, err := control.Runs(context.Background(), c.store.Q(), c.sync, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range runs {
		if r.State == control.StateBad && !strings.Contains(r.Error, "died") {
			t.Errorf("run %d: bad for another reason than its death: %s", r.ID, r.Error)
		}
	}
	res = c.mustRun(control.StateEmpty, job.Options{})
	if res.AlreadyRunning {
		t.Errorf("the lock is still held after the completing run")
	}
}

// lockedBuffer is a bytes.Buffer safe for a process's stdout and stderr at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.TrimSpace(string(l.b))
}
