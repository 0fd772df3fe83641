package faults

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/ibextest"
	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/job"
)

// TestRemoteRunLatency measures a run over a slow network: a source and a target, each
// reached through a proxy that delays every reply by 10 ms, a herd of 20 tables, one row
// changed per run. A run's time is then mostly its round trips to the dbs, so this shows
// how many it takes, and that they do not grow with the herd's tables. Run it with
//
//	IBEX_BENCH=1 go test ./internal/faults -run TestRemoteRunLatency -v
func TestRemoteRunLatency(t *testing.T) {
	pgtest.Benchmark(t)
	const tables, delay = 20, 10 * time.Millisecond
	e := newEnv(t, pgtest.ClusterOptions{})
	dsns := map[string]string{}
	for _, name := range []string{"a", "b"} {
		d := e.ctl.CreateDB(name)
		dsns[name] = d.DSN
		for i := 1; i <= tables; i++ {
			ibextest.Exec(t, d.DSN, fmt.Sprintf(`CREATE TABLE t%d (id int PRIMARY KEY, v text)`, i))
		}
		conn := maps.Clone(d.Conn)
		p := newProxy(t, net.JoinHostPort(conn["host"], conn["port"]))
		addToxic(t, p, fmt.Sprintf(`{"name":"delay","type":"latency","stream":"downstream","attributes":{"latency":%d}}`, delay.Milliseconds()))
		conn["host"], conn["port"], _ = net.SplitHostPort(p.Listen)
		conn["sslmode"] = "disable"
		e.must(ibextest.AddDBArgs(name, conn)...)
	}
	add := []string{"add", "table"}
	for i := 1; i <= tables; i++ {
		add = append(add, fmt.Sprintf("t%d", i))
	}
	e.must(append(add, "db=a", "herd=h")...)
	e.must("add", "sync", "s", "herd=h", "dbs=a:source,b:target")
	s := e.store()
	mustState(t, s, "s", job.Options{}, control.StateEmpty)
	for r := 1; r <= 3; r++ {
		ibextest.Exec(t, dsns["a"], `INSERT INTO t1 VALUES ($1, 'x')`, r)
		var log strings.Builder
		t0 := time.Now()
		res, err := job.Run(context.Background(), s, "s", job.Options{Logger: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
		d := time.Since(t0)
		if err != nil || res.State != control.StateGood || res.Inserts != 1 {
			t.Fatalf("run %d: %+v, %v", r, res, err)
		}
		phases := ""
		for _, l := range strings.Split(log.String(), "\n") {
			if i := strings.Index(l, "load="); i >= 0 && strings.Contains(l, "msg=ready") {
				phases = l[i:]
			}
		}
		t.Logf("run %d, %d tables, one row changed, %s per round trip: %s (about %d round trips); %s",
			r, tables, delay, d.Round(time.Millisecond), d/delay, phases)
	}
	if n := count(t, dsns["b"], "t1"); n != 3 {
		t.Errorf("b's t1 has %d rows, want 3", n)
	}
}
