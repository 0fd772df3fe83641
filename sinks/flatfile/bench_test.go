package flatfile_test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/sinks"
)

const benchRows = 100_000

// TestBench (IBEX_BENCH=1) compares, for 100,000 pgbench_accounts-like rows, the sink
// (PrepareBatch of every key, WriteRows, FinishBatch, Commit: the file, its fsync and the
// key index) with its floor: a plain Go program writing the same rows as multi-row INSERT
// text to a file and fsyncing it.
func TestBench(t *testing.T) {
	pgtest.Benchmark(t)
	filler := strings.Repeat(" ", 84)
	keys := make([]string, benchRows)
	var stream strings.Builder
	for i := range benchRows {
		keys[i] = fmt.Sprint(i + 1)
		fmt.Fprintf(&stream, "%d\t%d\t0\t%s\n", i+1, i/100000+1, filler)
	}
	rows := stream.String()

	floor := func() time.Duration {
		start := time.Now()
		f, err := os.Create(filepath.Join(t.TempDir(), "floor.sql"))
		if err != nil {
			t.Fatal(err)
		}
		w := bufio.NewWriterSize(f, 1<<20)
		w.WriteString("BEGIN;\n")
		for i := range benchRows {
			if i%1000 == 0 {
				w.WriteString(`INSERT INTO "public"."pgbench_accounts" ("aid", "bid", "abalance", "filler") VALUES` + "\n")
			} else {
				w.WriteString(",\n")
			}
			fmt.Fprintf(w, "(%d, %d, 0, '%s')", i+1, i/100000+1, filler)
			if i%1000 == 999 {
				w.WriteString(";\n")
			}
		}
		w.WriteString("COMMIT;\n")
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		return time.Since(start)
	}
	tbl := &sinks.Table{Schema: "public", Name: "pgbench_accounts", Key: []string{"aid"},
		Cols: []string{"aid", "bid", "abalance", "filler"},
		Columns: []catalog.Column{{Name: "aid", Type: "integer"}, {Name: "bid", Type: "integer"},
			{Name: "abalance", Type: "integer"}, {Name: "filler", Type: "character(84)"}}}
	// Only the sink's calls are timed: the stream is read from rows as it is.
	sink := func(dir string, run int64) time.Duration {
		s := openSink(t, dir, run)
		ctx := t.Context()
		start := time.Now()
		if err := s.Begin(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := s.PrepareBatch(ctx, tbl, keys); err != nil {
			t.Fatal(err)
		}
		if _, err := s.WriteRows(ctx, tbl, strings.NewReader(rows)); err != nil {
			t.Fatal(err)
		}
		if c, err := s.FinishBatch(ctx, tbl); err != nil || c.Written != benchRows {
			t.Fatalf("FinishBatch: %+v, %v", c, err)
		}
		if err := s.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	best := func(f func(i int) time.Duration) time.Duration {
		var b time.Duration
		for i := range 3 {
			if d := f(i); i == 0 || d < b {
				b = d
			}
		}
		return b
	}
	fl := best(func(int) time.Duration { return floor() })
	fresh := best(func(int) time.Duration { return sink(t.TempDir(), 1) })
	dir := t.TempDir()
	sink(dir, 1)
	again := best(func(i int) time.Duration { return sink(dir, int64(i+2)) })
	t.Logf("100,000 rows: floor (multi-row INSERT text + fsync) %v; sink into an empty index %v (%.1fx); sink replacing 100,000 indexed keys %v (%.1fx)",
		fl.Round(time.Millisecond), fresh.Round(time.Millisecond), float64(fresh)/float64(fl), again.Round(time.Millisecond), float64(again)/float64(fl))
}
