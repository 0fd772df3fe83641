package scheduler_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/internal/scheduler"
	"github.com/ibexrepl/ibex/internal/scheduler/schedtest"
)

// testWriter sends log lines to t.Log until the test ends.
type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func testLogger(t testing.TB, name string) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	var out io.Writer = w
	if os.Getenv("IBEX_TEST_LOG") == "" {
		out = io.Discard
	}
	level := slog.LevelInfo
	if os.Getenv("IBEX_TEST_LOG") == "debug" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level})).With(slog.String("scheduler", name))
}

// started is a running scheduler; stop ends it and returns Run's error.
type started struct {
	*scheduler.Scheduler
	stop func() error
}

func start(t testing.TB, f *schedtest.Fixture, name string, cfg scheduler.Config) *started {
	t.Helper()
	cfg.DSN = f.DSN()
	if cfg.Reload == 0 {
		cfg.Reload = 300 * time.Millisecond
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	cfg.Logger = testLogger(t, name)
	s := scheduler.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	select {
	case <-s.Ready():
	case err := <-errc:
		cancel()
		t.Fatalf("scheduler %s did not start: %v", name, err)
	case <-time.After(15 * time.Second):
		cancel()
		t.Fatalf("scheduler %s did not start in 15s", name)
	}
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-errc:
			case <-time.After(30 * time.Second):
				runErr = fmt.Errorf("scheduler %s did not stop in 30s", name)
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("stopping scheduler %s: %v", name, err)
		}
	})
	return &started{Scheduler: s, stop: stop}
}

// change updates n accounts on db in one transaction and returns a balance marker.
func change(t testing.TB, db *pgtest.DB, aid int, delta int) {
	t.Helper()
	pgtest.Exec(t, db.DSN, `UPDATE pgbench_accounts SET abalance = abalance + $2 WHERE aid = $1`, aid, delta)
}

func balance(t testing.TB, db *pgtest.DB, aid int) int {
	t.Helper()
	c := pgtest.Conn(t, db.DSN)
	defer c.Close(context.Background())
	var b int
	if err := c.QueryRow(context.Background(), `SELECT abalance FROM pgbench_accounts WHERE aid = $1`, aid).Scan(&b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestScheduleRunsSync(t *testing.T) {
	f := schedtest.New(t, 2)
	f.AddSync(t, "s", "schedule=1s")
	s := start(t, f, "a", scheduler.Config{Listen: "127.0.0.1:0"})

	// Runs appear, about one a second.
	if d, ok := schedtest.WaitFor(5*time.Second, func() bool { return len(f.Runs(t, "s")) >= 3 }); !ok {
		t.Fatalf("fewer than 3 runs after %s: %+v", d, f.Runs(t, "s"))
	}
	// A change is applied by a scheduled run.
	change(t, f.DBs[0], 7, 1234)
	if d, ok := schedtest.WaitFor(4*time.Second, func() bool { return balance(t, f.DBs[1], 7) == 1234 }); !ok {
		t.Fatalf("change not applied after %s", d)
	} else {
		t.Logf("applied by a scheduled run after %s", d)
	}

	// /metrics and /healthz.
	base := "http://" + s.Addr().String()
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/healthz: %s", resp.Status)
	}
	// The data is visible before the run that applied it has ended and been counted.
	var body []byte
	schedtest.WaitFor(5*time.Second, func() bool {
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			return false
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		return strings.Contains(string(body), `ibex_runs_total{state="good",sync="s"}`) && schedtest.Value(s.Metrics().Rows.WithLabelValues("s", "inserted")) >= 1
	})
	for _, want := range []string{
		`ibex_runs_total{state="empty",sync="s"}`,
		`ibex_runs_total{state="good",sync="s"}`,
		`ibex_rows_total{kind="inserted",sync="s"}`,
		`ibex_rows_total{kind="deleted",sync="s"}`,
		`ibex_conflicts_total{sync="s"}`,
		`ibex_run_duration_seconds_bucket{sync="s",le="1"}`,
		`ibex_last_success_timestamp_seconds{sync="s"}`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if got := schedtest.Value(s.Metrics().Rows.WithLabelValues("s", "inserted")); got < 1 {
		t.Errorf("ibex_rows_total inserted = %v, want >= 1", got)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
}

func TestAutokick(t *testing.T) {
	f := schedtest.New(t, 2)
	f.AddSync(t, "s", "autokick=true") // no schedule
	s := start(t, f, "a", scheduler.Config{})
	listening := func() bool {
		return schedtest.Value(s.Metrics().Listening.WithLabelValues("t1")) == 1 &&
			schedtest.Value(s.Metrics().Listening.WithLabelValues("t2")) == 1
	}
	if _, ok := schedtest.WaitFor(5*time.Second, listening); !ok {
		t.Fatal("not listening on t1 and t2")
	}
	time.Sleep(500 * time.Millisecond) // let the catch-up runs at start end
	before := len(f.Runs(t, "s"))

	// A change on either source is applied to the other within moments.
	for i, pair := range [][2]int{{0, 1}, {1, 0}} {
		aid := 100 + i
		change(t, f.DBs[pair[0]], aid, 555)
		d, ok := schedtest.WaitFor(3*time.Second, func() bool { return balance(t, f.DBs[pair[1]], aid) == 555 })
		if !ok {
			t.Fatalf("change on t%d not on t%d after %s", pair[0]+1, pair[1]+1, d)
		}
		t.Logf("t%d -> t%d: commit to visible in %s", pair[0]+1, pair[1]+1, d)
	}
	// The run that made the second change visible may still be recording its end.
	if _, ok := schedtest.WaitFor(3*time.Second, func() bool { return len(f.Runs(t, "s"))-before >= 2 }); !ok {
		t.Errorf("%d runs for two kicks", len(f.Runs(t, "s"))-before)
	}

	// A burst of 200 commits (200 notifications) coalesces into a few runs.
	before = len(f.Runs(t, "s"))
	c := pgtest.Conn(t, f.DBs[0].DSN)
	for i := 0; i < 200; i++ {
		if _, err := c.Exec(context.Background(), `UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = $1`, 1000+i); err != nil {
			t.Fatal(err)
		}
	}
	if d, ok := schedtest.WaitFor(5*time.Second, func() bool { return balance(t, f.DBs[1], 1199) == 1 }); !ok {
		t.Fatalf("burst not applied after %s", d)
	}
	time.Sleep(500 * time.Millisecond)
	runs := len(f.Runs(t, "s")) - before
	kicks := schedtest.Value(s.Metrics().Kicks.WithLabelValues("s"))
	t.Logf("burst of 200 commits: %d runs (%v notifications so far)", runs, kicks)
	if runs > 40 {
		t.Errorf("200 notifications gave %d runs: not coalesced", runs)
	}
	if ok, which := f.Same(t); !ok {
		t.Errorf("not converged: %s", which)
	}

	// The LISTEN connections are cut (as by a database restart): the scheduler reconnects
	// and autokick goes on working.
	admin := pgtest.Conn(t, pgtest.AdminDSN())
	var killed int
	if err := admin.QueryRow(context.Background(),
		`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1 AND datname = ANY($2)`,
		scheduler.ListenApplicationName, []string{f.DBs[0].Name, f.DBs[1].Name}).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed != 2 {
		t.Fatalf("terminated %d LISTEN connections, want 2", killed)
	}
	if _, ok := schedtest.WaitFor(5*time.Second, func() bool {
		var n int
		_ = admin.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND datname = ANY($2)`,
			scheduler.ListenApplicationName, []string{f.DBs[0].Name, f.DBs[1].Name}).Scan(&n)
		return n == 2 && listening()
	}); !ok {
		t.Fatal("LISTEN connections not back")
	}
	change(t, f.DBs[0], 42, 4242)
	d, ok := schedtest.WaitFor(3*time.Second, func() bool { return balance(t, f.DBs[1], 42) == 4242 })
	if !ok {
		t.Fatalf("after reconnect: change not applied after %s", d)
	}
	t.Logf("after reconnect: commit to visible in %s", d)
}

func TestReplicasNeverOverlap(t *testing.T) {
	t0 := time.Now()
	f := schedtest.New(t, 3)
	f.AddSync(t, "s", "schedule=1s", "autokick=true")
	t.Logf("setup: %s", time.Since(t0))
	a := start(t, f, "a", scheduler.Config{})
	time.Sleep(500 * time.Millisecond) // b's ticks come half a second after a's
	b := start(t, f, "b", scheduler.Config{})

	// Writers on two sources for ~4s, so both schedulers are kicked all the time (pgbench's
	// -T bounds them; the context only guards against a hang: a loaded machine may take
	// seconds to start pgbench and open its sessions).
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, db := range f.DBs[:2] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.CommandContext(ctx, "pgbench", "-n", "-c", "2", "-T", "4", "-R", "100", db.Name)
			cmd.Env = append(os.Environ(), "PGHOST="+db.Conn["host"], "PGPORT="+db.Conn["port"], "PGUSER="+db.Conn["user"])
			if out, err := cmd.CombinedOutput(); err != nil {
				errs <- fmt.Errorf("pgbench on %s: %v\n%s", db.Name, err, out)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Idle: the last changes are applied, then both tick every second, half a second apart.
	time.Sleep(3 * time.Second)
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	if err := b.stop(); err != nil {
		t.Fatal(err)
	}

	ma, mb := a.Metrics(), b.Metrics()
	var ranA, ranB, busy float64
	for _, st := range []string{"good", "empty", "bad"} {
		ranA += schedtest.Value(ma.Runs.WithLabelValues("s", st))
		ranB += schedtest.Value(mb.Runs.WithLabelValues("s", st))
	}
	busy = schedtest.Value(ma.Runs.WithLabelValues("s", "already_running")) + schedtest.Value(mb.Runs.WithLabelValues("s", "already_running"))
	bad := schedtest.Value(ma.Runs.WithLabelValues("s", "bad")) + schedtest.Value(mb.Runs.WithLabelValues("s", "bad"))
	t.Logf("runs: a %v, b %v, found the lock taken %v times", ranA, ranB, busy)
	if bad > 0 {
		t.Errorf("%v bad runs", bad)
	}
	if ranA == 0 || ranB == 0 {
		t.Errorf("both schedulers should have run the sync (a %v, b %v)", ranA, ranB)
	}

	runs := f.Runs(t, "s")
	if len(runs) < 5 {
		t.Fatalf("only %d runs", len(runs))
	}
	for i := 1; i < len(runs); i++ {
		// Runs are recorded under the lock, so in id order each starts after the previous ended.
		if prev, cur := runs[i-1], runs[i]; cur.Started.Before(prev.Ended) {
			t.Errorf("run %d [%s, %s] overlaps run %d [%s, %s]", prev.ID, prev.Started.Format(time.StampMicro), prev.Ended.Format(time.StampMicro),
				cur.ID, cur.Started.Format(time.StampMicro), cur.Ended.Format(time.StampMicro))
		}
	}
	// The same check in SQL, over every pair.
	c := pgtest.Conn(t, f.DSN())
	var overlaps int
	if err := c.QueryRow(context.Background(), `SELECT count(*) FROM ibex.run a JOIN ibex.run b ON a.sync = b.sync AND a.id < b.id
WHERE a.sync = 's' AND tstzrange(a.started, a.ended) && tstzrange(b.started, b.ended)`).Scan(&overlaps); err != nil {
		t.Fatal(err)
	}
	if overlaps != 0 {
		t.Errorf("%d pairs of runs overlap", overlaps)
	}
	t.Logf("%d runs, none overlapping", len(runs))

	f.Ibex(t, "kick", "s")
	if ok, which := f.Same(t); !ok {
		t.Errorf("not converged: %s", which)
	}
}

// runsAfter counts the runs of sync that started after at.
func runsAfter(t testing.TB, f *schedtest.Fixture, sync string, at time.Time) int {
	n := 0
	for _, r := range f.Runs(t, sync) {
		if r.Started.After(at) {
			n++
		}
	}
	return n
}

func TestRemovedSyncStops(t *testing.T) {
	f := schedtest.New(t, 2)
	f.AddSync(t, "s", "schedule=1s")
	f.AddSync(t, "other", "schedule=1s")
	s := start(t, f, "a", scheduler.Config{})
	if _, ok := schedtest.WaitFor(5*time.Second, func() bool { return len(f.Runs(t, "s")) >= 2 }); !ok {
		t.Fatal("sync s not run")
	}
	f.Ibex(t, "remove", "sync", "s")
	// Within a reload (300ms) the job is gone; a run in progress may still end.
	time.Sleep(1500 * time.Millisecond)
	mark := time.Now()
	time.Sleep(2500 * time.Millisecond)
	if n := runsAfter(t, f, "s", mark); n != 0 {
		t.Errorf("removed sync s ran %d more times", n)
	}
	if n := runsAfter(t, f, "other", mark); n < 1 {
		t.Errorf("sync other stopped too (%d runs)", n)
	}
	if got := schedtest.Value(s.Metrics().Runs.WithLabelValues("other", "empty")); got == 0 {
		t.Error("no run metrics for sync other")
	}

	// Added again, it is picked up without a restart.
	f.AddSync(t, "s", "schedule=1s")
	mark = time.Now()
	if _, ok := schedtest.WaitFor(4*time.Second, func() bool { return runsAfter(t, f, "s", mark) >= 1 }); !ok {
		t.Error("re-added sync s not run")
	}
}

func TestInactiveSyncPaused(t *testing.T) {
	f := schedtest.New(t, 2)
	f.AddSync(t, "s", "schedule=1s", "autokick=true")
	start(t, f, "a", scheduler.Config{})
	if _, ok := schedtest.WaitFor(5*time.Second, func() bool { return len(f.Runs(t, "s")) >= 2 }); !ok {
		t.Fatal("sync s not run")
	}
	f.Ibex(t, "update", "sync", "s", "status=inactive")
	time.Sleep(1500 * time.Millisecond)
	mark := time.Now()
	change(t, f.DBs[0], 9, 99) // autokick must not run it either
	time.Sleep(2500 * time.Millisecond)
	if n := runsAfter(t, f, "s", mark); n != 0 {
		t.Errorf("inactive sync ran %d times", n)
	}
	if b := balance(t, f.DBs[1], 9); b == 99 {
		t.Error("change applied while the sync was inactive")
	}

	// Active again: it catches up without a restart.
	f.Ibex(t, "update", "sync", "s", "status=active")
	if d, ok := schedtest.WaitFor(4*time.Second, func() bool { return balance(t, f.DBs[1], 9) == 99 }); !ok {
		t.Fatalf("reactivated sync did not catch up after %s", d)
	}
}

func TestScheduleChangeAndCron(t *testing.T) {
	f := schedtest.New(t, 2)
	f.AddSync(t, "s", "schedule=1h") // an interval job runs at once, then not for an hour
	start(t, f, "a", scheduler.Config{})
	if _, ok := schedtest.WaitFor(5*time.Second, func() bool { return len(f.Runs(t, "s")) >= 1 }); !ok {
		t.Fatal("interval job did not start at once")
	}
	time.Sleep(1 * time.Second)
	n := len(f.Runs(t, "s"))
	time.Sleep(1500 * time.Millisecond)
	if got := len(f.Runs(t, "s")); got != n {
		t.Fatalf("schedule=1h ran %d times in 1.5s", got-n)
	}
	// Every second, as a six-field cron expression: the job is replaced on reload.
	f.Ibex(t, "update", "sync", "s", "schedule=* * * * * *")
	mark := time.Now()
	if _, ok := schedtest.WaitFor(5*time.Second, func() bool { return runsAfter(t, f, "s", mark) >= 2 }); !ok {
		t.Fatal("cron schedule not applied")
	}
}

func TestNotInstalled(t *testing.T) {
	db := pgtest.NewDB(t, "")
	s := scheduler.New(scheduler.Config{DSN: db.DSN})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "ibex install") {
		t.Fatalf("Run on a database without the schema: %v", err)
	}
}

// TestLagAndCompareMetrics: the scheduler exports each source's pending changes and the
// age of the oldest, and, with CompareEvery, the rows that differ per table (a change in
// flight is not one; a row changed behind ibex's back is), here asked for by the sync's
// compare_every.
func TestLagAndCompareMetrics(t *testing.T) {
	f := schedtest.New(t, 2)
	if _, errs, code := f.IbexCode("add", "sync", "s", "herd=therd", "dbs=g", "compare_every=soon"); code != 2 || !strings.Contains(errs, "compare_every must be a duration") {
		t.Fatalf("compare_every=soon: exit %d: %s", code, errs)
	}
	// No schedule: changes stay pending. The sync's compare_every asks for compares.
	f.AddSync(t, "s", "compare_every=300ms")
	if out := f.Ibex(t, "status", "s"); !strings.Contains(out, "Compare every                    : 300ms (by the scheduler)") {
		t.Fatalf("status:\n%s", out)
	}
	if out := f.Ibex(t, "export"); !strings.Contains(out, "compare_every: 300ms") {
		t.Fatalf("export:\n%s", out)
	}
	s := start(t, f, "a", scheduler.Config{LagEvery: 200 * time.Millisecond})
	change(t, f.DBs[0], 7, 5)
	pending := func() bool {
		return schedtest.Value(s.Metrics().Pending.WithLabelValues("s", "t1")) == 1 &&
			schedtest.Value(s.Metrics().Oldest.WithLabelValues("s", "t1")) > 0 &&
			schedtest.Value(s.Metrics().Pending.WithLabelValues("s", "t2")) == 0
	}
	if d, ok := schedtest.WaitFor(10*time.Second, pending); !ok {
		t.Fatalf("ibex_pending_changes not 1 on t1 after %s", d)
	}
	diff := s.Metrics().Differences.WithLabelValues("s", "public.pgbench_accounts")
	time.Sleep(time.Second)
	if v := schedtest.Value(diff); v != 0 {
		t.Fatalf("ibex_compare_differences = %v with a change in flight, want 0", v)
	}
	pgtest.Exec(t, f.DBs[1].DSN, `SET session_replication_role = replica; UPDATE pgbench_accounts SET abalance = 99 WHERE aid = 8`)
	if d, ok := schedtest.WaitFor(10*time.Second, func() bool { return schedtest.Value(diff) == 1 }); !ok {
		t.Fatalf("ibex_compare_differences not 1 after %s", d)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
}
