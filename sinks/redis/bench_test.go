package redis

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/sinks"
)

// TestBench (IBEX_BENCH=1) compares 100,000 pgbench_accounts-like rows through the sink
// (PrepareBatch of every key, WriteRows, FinishBatch, Commit) with the fastest plain
// client path: one pipeline of HSETs.
func TestBench(t *testing.T) {
	if os.Getenv("IBEX_BENCH") != "1" {
		t.Skip("IBEX_BENCH=1 runs it")
	}
	const n = 100_000
	tbl := &sinks.Table{Schema: "public", Name: "pgbench_accounts", Key: []string{"aid"},
		Cols: []string{"aid", "bid", "abalance", "filler"},
		Columns: []catalog.Column{{Name: "aid", Type: "integer"}, {Name: "bid", Type: "integer"},
			{Name: "abalance", Type: "integer"}, {Name: "filler", Type: "character(84)"}}}
	filler := strings.Repeat(" ", 84)
	var body strings.Builder
	keys := make([]string, n)
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&body, "%d\t%d\t%d\t%s\n", i, 1+i/100000, 0, filler)
		keys[i-1] = strconv.Itoa(i)
	}
	h := newHarness(t)
	ctx := t.Context()

	// Floor: a plain pipeline of HSETs.
	floor := func() time.Duration {
		start := time.Now()
		pipe := h.client.Pipeline()
		for i := 1; i <= n; i++ {
			pipe.HSet(ctx, h.prefix+"floor:"+strconv.Itoa(i), "aid", strconv.Itoa(i), "bid", "1", "abalance", "0", "filler", filler)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	// The same in one MULTI/EXEC with the DEL of the keys first (what the sink sends).
	txFloor := func() time.Duration {
		start := time.Now()
		pipe := h.client.TxPipeline()
		for i := 0; i < n; i += 1000 {
			var ks []string
			for j := i + 1; j <= i+1000; j++ {
				ks = append(ks, h.prefix+"floor:"+strconv.Itoa(j))
			}
			pipe.Del(ctx, ks...)
		}
		for i := 1; i <= n; i++ {
			pipe.HSet(ctx, h.prefix+"floor:"+strconv.Itoa(i), "aid", strconv.Itoa(i), "bid", "1", "abalance", "0", "filler", filler)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	s := h.open(t)
	sink := func() time.Duration {
		start := time.Now()
		if err := s.Begin(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := s.PrepareBatch(ctx, tbl, keys); err != nil {
			t.Fatal(err)
		}
		if _, err := s.WriteRows(ctx, tbl, strings.NewReader(body.String())); err != nil {
			t.Fatal(err)
		}
		if _, err := s.FinishBatch(ctx, tbl); err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	for round := 1; round <= 3; round++ {
		f, tf, k := floor(), txFloor(), sink()
		t.Logf("round %d: %d rows: plain pipelined HSET %s, MULTI/EXEC of DEL+HSET %s, sink %s (%.2fx the first, %.2fx the second)",
			round, n, f, tf, k, float64(k)/float64(f), float64(k)/float64(tf))
	}
}
