package faults

import (
	"context"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"

	"github.com/ibexrepl/ibex/internal/capture"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/ibextest"
	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/job"
)

// netFixture is a sync s over dbs a, b and c (all sources) on one cluster, where ibex
// reaches one of them through an in-process toxiproxy.
type netFixture struct {
	e       *env
	dbs     map[string]*pgtest.DB // direct connections, for the test's own checks
	dsns    map[string]string
	proxy   *toxiproxy.Proxy
	proxied string
	s       *control.Store
}

func newProxy(t *testing.T, upstream string) *toxiproxy.Proxy {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "pg", "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

func addToxic(t *testing.T, p *toxiproxy.Proxy, json string) {
	t.Helper()
	if _, err := p.Toxics.AddToxicJson(strings.NewReader(json)); err != nil {
		t.Fatalf("adding toxic %s: %v", json, err)
	}
}

func removeToxic(t *testing.T, p *toxiproxy.Proxy, name string) {
	t.Helper()
	if err := p.Toxics.RemoveToxic(context.Background(), name); err != nil {
		t.Fatalf("removing toxic %s: %v", name, err)
	}
}

// newNetFixture sets up the sync and gives a a backlog of n new rows in table big.
func newNetFixture(t *testing.T, proxied string, n int) *netFixture {
	t.Helper()
	f := &netFixture{e: newEnv(t, pgtest.ClusterOptions{}), dbs: map[string]*pgtest.DB{}, dsns: map[string]string{}, proxied: proxied}
	for _, name := range []string{"a", "b", "c"} {
		d := f.e.ctl.CreateDB(name)
		f.dbs[name], f.dsns[name] = d, d.DSN
		ibextest.Exec(t, d.DSN, `CREATE TABLE big (id int PRIMARY KEY, v text NOT NULL)`)
		conn := maps.Clone(d.Conn)
		if name == proxied {
			f.proxy = newProxy(t, net.JoinHostPort(conn["host"], conn["port"]))
			host, port, _ := net.SplitHostPort(f.proxy.Listen)
			conn["host"], conn["port"] = host, port
		}
		conn["connect_timeout"] = "2"
		f.e.must(ibextest.AddDBArgs(name, conn)...)
	}
	f.e.must("add", "table", "big", "db=a", "herd=h")
	f.e.must("add", "sync", "s", "herd=h", "dbs=a:source,b:source,c:source")
	f.s = f.e.store()
	mustState(t, f.s, "s", job.Options{}, control.StateEmpty)
	ibextest.Exec(t, f.dbs["a"].DSN, `INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, $1) g`, n)
	return f
}

// subsetOfA fails unless every row of big on db is also on a (no half-written or foreign
// row), and returns how many rows db has.
func (f *netFixture) subsetOfA(t *testing.T, db string) int {
	t.Helper()
	a := map[string]bool{}
	for _, r := range ibextest.TableRows(t, f.dsns["a"], "big", "") {
		a[r] = true
	}
	got := ibextest.TableRows(t, f.dsns[db], "big", "")
	for _, r := range got {
		if !a[r] {
			t.Fatalf("db %s has row %s that a does not have", db, r)
		}
	}
	return len(got)
}

// pending counts a's change rows of big not yet consumed (every change of a committed
// batch that every db took part in is consumed at once).
func (f *netFixture) pending(t *testing.T) int {
	t.Helper()
	return count(t, f.dsns["a"], capture.ChangeTable("s", "public", "big").Sanitize())
}

// checkCatchUp runs the sync after a run that did not advance a's watermarks (a left it,
// or the run failed): b and c receive every change not consumed yet, and replace the rows
// of it they already had (pb and pc rows before the run).
func (f *netFixture) checkCatchUp(t *testing.T, batch, pb, pc int) {
	t.Helper()
	left := f.pending(t)
	consumed := count(t, f.dsns["a"], "big") - left
	res := mustState(t, f.s, "s", job.Options{BatchSize: batch}, control.StateGood)
	if wi, wd := int64(2*left), int64(pb-consumed+pc-consumed); res.Inserts != wi || res.Deletes != wd {
		t.Errorf("catch-up run: inserts %d deletes %d, want %d and %d (%d changes left, b had %d rows, c %d)", res.Inserts, res.Deletes, wi, wd, left, pb, pc)
	}
}

// checkReceiverCatchUp runs the sync after c left a run holding partial of a's n rows:
// batches every db committed before c left are consumed; c gets the rest (replacing those
// of them it has), b gets nothing again; then every db is equal and a further run is empty.
func (f *netFixture) checkReceiverCatchUp(t *testing.T, batch, n, partial int) {
	t.Helper()
	left := f.pending(t)
	res := mustState(t, f.s, "s", job.Options{BatchSize: batch}, control.StateGood)
	if want := int64(partial - (n - left)); res.Inserts != int64(left) || res.Deletes != want {
		t.Errorf("catch-up run: inserts %d deletes %d, want %d and %d", res.Inserts, res.Deletes, left, want)
	}
	if s := ibextest.SameEverywhere(t, "big", "", f.dsns); int64(len(s)) != int64(n) {
		t.Errorf("%d rows, want %d", int64(len(s)), n)
	}
	mustState(t, f.s, "s", job.Options{}, control.StateEmpty)
}

// startRun runs the sync in the background.
func (f *netFixture) startRun(ctx context.Context, opts job.Options) <-chan runOutcome {
	ch := make(chan runOutcome, 1)
	go func() {
		t0 := time.Now()
		res, err := job.Run(ctx, f.s, "s", opts)
		ch <- runOutcome{res, err, time.Since(t0)}
	}()
	return ch
}

// logBuffer collects a job's log lines, written from several goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type runOutcome struct {
	res *job.Result
	err error
	dur time.Duration
}

// TestNetworkFaults proves invariants 3 and 5 against faults of the network between
// ibex and one db, injected by toxiproxy: a connection cut in the middle of a long run
// (on a receiving db and on the sending db), a db that stops answering (blackhole) at
// connect time and in the middle of a run, and a slow link. Every run ends within its
// timeouts, no db is left with a half-applied batch (every db's rows are a subset of the
// source's, whole batches only), and once the fault is gone one run converges every db
// to the exact expected content.
func TestNetworkFaults(t *testing.T) {
	t.Parallel()
	const n = 40000
	const batch = 1000

	// The connection to a receiving db is cut while batches are being applied: c leaves
	// the run, a and b go on to the end; the next run gives c everything it missed.
	t.Run("cut receiver", func(t *testing.T) {
		t.Parallel()
		f := newNetFixture(t, "c", n)
		done := f.startRun(context.Background(), job.Options{BatchSize: batch})
		ibextest.WaitFor(t, "c to receive a first batch", 60*time.Second, func() bool { return count(t, f.dsns["c"], "big") > 0 })
		f.proxy.Stop()
		out := <-done
		if out.res == nil || out.res.State != control.StateBad || !slices.Equal(slices.Sorted(maps.Keys(out.res.Skipped)), []string{"c"}) {
			t.Fatalf("run cut from c: %+v, err %v; want state bad, c skipped", out.res, out.err)
		}
		if got := count(t, f.dsns["b"], "big"); got != n {
			t.Errorf("b has %d rows after the run that lost c, want all %d", got, n)
		}
		partial := f.subsetOfA(t, "c")
		if partial == 0 || partial == n {
			t.Errorf("c has %d of %d rows: the cut was not in the middle of the run", partial, n)
		}
		t.Logf("c had %d of %d rows when its connection was cut; the run took %s", partial, n, out.dur)
		if err := f.proxy.Start(); err != nil {
			t.Fatal(err)
		}
		f.checkReceiverCatchUp(t, batch, n, partial)
	})

	// The connection to the db that sends the rows is reset mid-run: it leaves the run,
	// the batch in flight is rolled back everywhere; the next run finishes the work.
	t.Run("cut sender", func(t *testing.T) {
		t.Parallel()
		f := newNetFixture(t, "a", n)
		done := f.startRun(context.Background(), job.Options{BatchSize: batch})
		ibextest.WaitFor(t, "b to receive a first batch", 60*time.Second, func() bool { return count(t, f.dsns["b"], "big") > 0 })
		addToxic(t, f.proxy, `{"name":"reset","type":"reset_peer","stream":"upstream","attributes":{"timeout":0}}`)
		out := <-done
		if out.res == nil || out.res.State != control.StateBad || !slices.Equal(slices.Sorted(maps.Keys(out.res.Skipped)), []string{"a"}) {
			t.Fatalf("run cut from a: %+v, err %v; want state bad, a skipped", out.res, out.err)
		}
		pb, pc := f.subsetOfA(t, "b"), f.subsetOfA(t, "c")
		if pb == n && pc == n {
			t.Errorf("b and c have every row: the reset was not in the middle of the run")
		}
		t.Logf("b had %d and c %d of %d rows when a's connection was reset", pb, pc, n)
		removeToxic(t, f.proxy, "reset")
		f.checkCatchUp(t, batch, pb, pc)
		if s := ibextest.SameEverywhere(t, "big", "", f.dsns); int64(len(s)) != n {
			t.Errorf("%d rows, want %d", int64(len(s)), n)
		}
	})

	// A db that accepts the TCP connection and then never answers: connect_timeout=2
	// bounds the attempt; the others are served.
	t.Run("stall at connect", func(t *testing.T) {
		t.Parallel()
		f := newNetFixture(t, "c", 2000)
		addToxic(t, f.proxy, `{"name":"hole","type":"timeout","stream":"downstream","attributes":{"timeout":0}}`)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out := <-f.startRun(ctx, job.Options{})
		if out.dur < 2*time.Second || out.dur > 10*time.Second {
			t.Errorf("the run with c blackholed took %s, want 2s (connect_timeout) to 10s", out.dur)
		}
		if out.res == nil || out.res.State != control.StateBad || !contains(out.res.Skipped["c"], "cannot connect to db c") {
			t.Fatalf("run with c blackholed: %+v, err %v", out.res, out.err)
		}
		if got := count(t, f.dsns["b"], "big"); got != 2000 {
			t.Errorf("b has %d rows, want 2000", got)
		}
		removeToxic(t, f.proxy, "hole")
		mustState(t, f.s, "s", job.Options{}, control.StateGood)
		if s := ibextest.SameEverywhere(t, "big", "", f.dsns); int64(len(s)) != 2000 {
			t.Errorf("%d rows, want 2000", int64(len(s)))
		}
	})

	// c stops answering in the middle of the run. With the default reply_timeout (10
	// min) the caller's deadline comes first: the run ends, bad, recorded, and every db
	// keeps whole batches only.
	t.Run("stall mid-run", func(t *testing.T) {
		t.Parallel()
		f := newNetFixture(t, "c", n)
		const deadline = 10 * time.Second
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		done := f.startRun(ctx, job.Options{BatchSize: batch})
		ibextest.WaitFor(t, "c to receive a first batch", 60*time.Second, func() bool { return count(t, f.dsns["c"], "big") > 0 })
		addToxic(t, f.proxy, `{"name":"hole","type":"timeout","stream":"downstream","attributes":{"timeout":0}}`)
		out := <-done
		t.Logf("the run with c stalled returned after %s: %v", out.dur, out.err)
		if out.dur > deadline+20*time.Second {
			t.Errorf("the run took %s after its %s deadline", out.dur, deadline)
		}
		if out.res == nil || out.res.State != control.StateBad {
			t.Fatalf("run with c stalled: %+v, err %v", out.res, out.err)
		}
		for _, r := range runRows(t, f.e.dsn, "s") {
			if r.State == control.StateRunning {
				t.Errorf("run %d is still recorded as running", r.ID)
			}
		}
		pb, pc := f.subsetOfA(t, "b"), f.subsetOfA(t, "c")
		t.Logf("b had %d and c %d of %d rows", pb, pc, n)
		removeToxic(t, f.proxy, "hole")
		f.checkCatchUp(t, batch, pb, pc)
		if s := ibextest.SameEverywhere(t, "big", "", f.dsns); int64(len(s)) != n {
			t.Errorf("%d rows, want %d", int64(len(s)), n)
		}
	})

	// c stops answering in the middle of the run, and its reply_timeout is 3 s: c's
	// connection fails 3 s into the silence, c leaves the run and a and b are served to
	// the end, without any deadline from the caller. Keepalives could not see this stall:
	// the proxy's (like a hung server's) kernel answers them.
	t.Run("stall mid-run, reply_timeout", func(t *testing.T) {
		t.Parallel()
		f := newNetFixture(t, "c", n)
		f.e.must("update", "db", "c", "reply_timeout=3")
		var logs logBuffer
		done := f.startRun(context.Background(), job.Options{BatchSize: batch, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		ibextest.WaitFor(t, "c to receive a first batch", 60*time.Second, func() bool { return count(t, f.dsns["c"], "big") > 0 })
		addToxic(t, f.proxy, `{"name":"hole","type":"timeout","stream":"downstream","attributes":{"timeout":0}}`)
		t0 := time.Now()
		var out runOutcome
		select {
		case out = <-done:
		case <-time.After(120 * time.Second):
			t.Fatal("the run with c stalled did not end within 120s")
		}
		stalled := time.Since(t0)
		t.Logf("the run with c stalled ended %s after the stall (%s in all): %v", stalled, out.dur, out.err)
		if stalled > 30*time.Second {
			t.Errorf("the run ended %s after c stalled, want < 30s (reply_timeout=3)", stalled)
		}
		if out.res == nil || out.res.State != control.StateBad || !slices.Equal(slices.Sorted(maps.Keys(out.res.Skipped)), []string{"c"}) {
			t.Fatalf("run with c stalled: %+v, err %v; want state bad, c skipped", out.res, out.err)
		}
		// The skip reason is the first error of c the run did not shrug off: when the
		// stall hits the (best-effort) removal of applied changes, that error is only
		// logged, and the skip reason is the next statement's "conn closed".
		if why := out.res.Skipped["c"]; !strings.HasPrefix(why, "db c: ") ||
			!strings.Contains(why+logs.String(), "the server sent nothing for 3s while a reply was due (reply_timeout=3)") {
			t.Errorf("c skipped for %q; log:\n%s\nwant the reason or the log to name reply_timeout", why, logs.String())
		}
		for _, r := range runRows(t, f.e.dsn, "s") {
			if r.State == control.StateRunning {
				t.Errorf("run %d is still recorded as running", r.ID)
			}
		}
		if got := count(t, f.dsns["b"], "big"); got != n {
			t.Errorf("b has %d rows after the run that lost c, want all %d", got, n)
		}
		partial := f.subsetOfA(t, "c")
		if partial == n {
			t.Errorf("c has every row: the stall was not in the middle of the run")
		}
		t.Logf("c had %d of %d rows when it stalled", partial, n)
		removeToxic(t, f.proxy, "hole")
		f.checkReceiverCatchUp(t, batch, n, partial)
	})

	// 50 ms each way between ibex and c: the run is slower and correct.
	t.Run("slow", func(t *testing.T) {
		t.Parallel()
		const m = 2000
		f := newNetFixture(t, "c", m)
		ibextest.Exec(t, f.dsns["c"], `INSERT INTO big SELECT g, 'c' || g FROM generate_series($1 + 1, $1 + 500) g`, m)
		addToxic(t, f.proxy, `{"name":"lat_down","type":"latency","stream":"downstream","attributes":{"latency":50}}`)
		addToxic(t, f.proxy, `{"name":"lat_up","type":"latency","stream":"upstream","attributes":{"latency":50}}`)
		t0 := time.Now()
		res := mustState(t, f.s, "s", job.Options{BatchSize: 1000}, control.StateGood)
		t.Logf("run over a 2x50 ms link: %s", time.Since(t0))
		if want := int64(2*m + 2*500); res.Inserts != want || res.Deletes != 0 {
			t.Errorf("inserts %d deletes %d, want %d and 0", res.Inserts, res.Deletes, want)
		}
		if s := ibextest.SameEverywhere(t, "big", "", f.dsns); int64(len(s)) != m+500 {
			t.Errorf("%d rows, want %d", int64(len(s)), m+500)
		}
	})
}
