package scheduler_test

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/internal/scheduler"
	"github.com/ibexrepl/ibex/internal/scheduler/schedtest"
)

// TestAutokickLatency measures commit-to-visible latency with autokick while pgbench
// writes ~300 TPS on a source: every 100ms a marker row is inserted (and committed) into
// pgbench_accounts on t1, and t2 is polled every 5ms until it shows it. Run it with
//
//	IBEX_BENCH=1 go test ./internal/scheduler -run TestAutokickLatency -v
//
// IBEX_BENCH_TPS and IBEX_BENCH_SECONDS change the load (default 300 and 10).
func TestAutokickLatency(t *testing.T) {
	pgtest.Benchmark(t)
	tps, secs := 300, 10
	if v, err := strconv.Atoi(os.Getenv("IBEX_BENCH_TPS")); err == nil && v > 0 {
		tps = v
	}
	if v, err := strconv.Atoi(os.Getenv("IBEX_BENCH_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	f := schedtest.New(t, 2)
	f.AddSync(t, "s", "autokick=true")
	s := start(t, f, "a", scheduler.Config{})
	if _, ok := schedtest.WaitFor(10*time.Second, func() bool {
		return schedtest.Value(s.Metrics().Listening.WithLabelValues("t1")) == 1
	}); !ok {
		t.Fatal("not listening on t1")
	}
	time.Sleep(time.Second)
	firstRun := len(f.Runs(t, "s"))

	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs+30)*time.Second)
	defer cancel()
	src, dst := f.DBs[0], f.DBs[1]
	pgb := exec.CommandContext(ctx, "pgbench", "-n", "-c", "4", "-j", "2", "-R", strconv.Itoa(tps), "-T", strconv.Itoa(secs), src.Name)
	pgb.Env = append(os.Environ(), "PGHOST="+src.Conn["host"], "PGPORT="+src.Conn["port"], "PGUSER="+src.Conn["user"])
	pgbOut := make(chan string, 1)
	go func() {
		out, err := pgb.CombinedOutput()
		if err != nil {
			out = append(out, []byte("\nerror: "+err.Error())...)
		}
		pgbOut <- string(out)
	}()

	// Markers: aid 1000000+i, far above pgbench's accounts.
	const base = 1000000
	w := pgtest.Conn(t, src.DSN)
	r := pgtest.Conn(t, dst.DSN)
	committed := map[int]time.Time{}
	visible := map[int]time.Time{}
	next := time.Now()
	deadline := time.Now().Add(time.Duration(secs) * time.Second)
	sent := 0
	for time.Now().Before(deadline) || len(visible) < sent {
		now := time.Now()
		if now.After(deadline.Add(20 * time.Second)) {
			t.Errorf("%d markers never became visible", sent-len(visible))
			break
		}
		if now.Before(deadline) && !now.Before(next) {
			if _, err := w.Exec(ctx, `INSERT INTO pgbench_accounts (aid, bid, abalance, filler) VALUES ($1, 1, 0, clock_timestamp()::text)`, base+sent); err != nil {
				t.Fatal(err)
			}
			committed[base+sent] = time.Now()
			sent++
			next = next.Add(100 * time.Millisecond)
		}
		rows, err := r.Query(ctx, `SELECT aid FROM pgbench_accounts WHERE aid >= $1 AND aid < $2`, base, base+sent)
		if err != nil {
			t.Fatal(err)
		}
		seen := time.Now()
		for rows.Next() {
			var aid int
			if err := rows.Scan(&aid); err != nil {
				t.Fatal(err)
			}
			if _, ok := visible[aid]; !ok {
				visible[aid] = seen
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	out := <-pgbOut
	var lat []time.Duration
	for aid, c := range committed {
		if v, ok := visible[aid]; ok {
			lat = append(lat, v.Sub(c))
		}
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))].Round(time.Millisecond)
	}
	runs := f.Runs(t, "s")[firstRun:]
	var busy time.Duration
	for _, r := range runs {
		busy += r.Ended.Sub(r.Started)
	}
	tpsRe := regexp.MustCompile(`tps = ([0-9.]+)`)
	gotTPS := "?"
	if m := tpsRe.FindStringSubmatch(out); m != nil {
		gotTPS = m[1]
	}
	t.Logf("pgbench -R %d for %ds on t1: %s tps", tps, secs, gotTPS)
	t.Logf("%d markers: commit-to-visible p50 %s, p90 %s, p99 %s, max %s", len(lat), pct(.50), pct(.90), pct(.99), pct(1))
	if len(runs) > 0 {
		t.Logf("%d runs, mean %s each, busy %.0f%% of the time; %v notifications", len(runs),
			(busy / time.Duration(len(runs))).Round(time.Millisecond), 100*busy.Seconds()/float64(secs),
			schedtest.Value(s.Metrics().Kicks.WithLabelValues("s")))
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	f.Ibex(t, "kick", "s")
	if ok, which := f.Same(t); !ok {
		t.Errorf("not converged: %s", which)
	}
}
