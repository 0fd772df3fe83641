package job_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/job"
)

// ledgerWriter writes rows with keys of its own ("<db>-w<n>-<seq>") into ledger on one
// source, in many small transactions (some held open for a while, so they commit out of
// order and across runs), and keeps what it committed.
type ledgerWriter struct {
	db    string
	w     int
	dsn   string
	rows  map[string]int // committed state: id -> n
	ids   []string       // ids present in rows
	seq   int
	txs   int
	start time.Time
}

func (lw *ledgerWriter) loop(ctx context.Context, stop <-chan struct{}) error {
	conn, err := pgx.Connect(ctx, lw.dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	rng := rand.New(rand.NewPCG(uint64(lw.w), uint64(len(lw.db))))
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		// One transaction: a few inserts, maybe an update and a delete of own rows.
		pending := map[string]*int{}
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		for i := 0; i < 1+rng.IntN(3); i++ {
			lw.seq++
			id := fmt.Sprintf("%s-w%d-%06d", lw.db, lw.w, lw.seq)
			if _, err := tx.Exec(ctx, `INSERT INTO ledger (id, n, note) VALUES ($1, 1, $2)`, id, "tx"+fmt.Sprint(lw.txs)); err != nil {
				return err
			}
			one := 1
			pending[id] = &one
		}
		if len(lw.ids) > 0 && rng.IntN(3) == 0 {
			id := lw.ids[rng.IntN(len(lw.ids))]
			if _, ok := pending[id]; !ok {
				var n int
				if err := tx.QueryRow(ctx, `UPDATE ledger SET n = n + 1 WHERE id = $1 RETURNING n`, id).Scan(&n); err != nil {
					return fmt.Errorf("updating %s: %w", id, err)
				}
				pending[id] = &n
			}
		}
		if len(lw.ids) > 0 && rng.IntN(6) == 0 {
			id := lw.ids[rng.IntN(len(lw.ids))]
			if _, ok := pending[id]; !ok {
				tag, err := tx.Exec(ctx, `DELETE FROM ledger WHERE id = $1`, id)
				if err != nil {
					return err
				}
				if tag.RowsAffected() != 1 {
					return fmt.Errorf("deleting %s: %d rows", id, tag.RowsAffected())
				}
				pending[id] = nil
			}
		}
		if rng.IntN(4) == 0 {
			time.Sleep(time.Duration(rng.IntN(40)) * time.Millisecond) // held open across a run
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		lw.txs++
		for id, n := range pending {
			if n == nil {
				delete(lw.rows, id)
			} else {
				if _, ok := lw.rows[id]; !ok {
					lw.ids = append(lw.ids, id)
				}
				lw.rows[id] = *n
			}
		}
		if len(lw.ids) != len(lw.rows) {
			lw.ids = lw.ids[:0]
			for id := range lw.rows {
				lw.ids = append(lw.ids, id)
			}
			sort.Strings(lw.ids)
		}
	}
}

// testConvergenceUnderConcurrentWrites runs pgbench and ledger writers on three sources
// while two goroutines race runs of the sync in a loop. Runs never overlap (the loser of
// the race says AlreadyRunning), every run ends well, and after the writers stop one run
// makes every db identical, with exactly every committed ledger row: no change is lost.
func testConvergenceUnderConcurrentWrites(t *testing.T, f *farm) {
	c := f.cluster(t, "conc", 4)
	c.pgbenchInit()
	c.onAll(`CREATE TABLE ledger (id text PRIMARY KEY, n int NOT NULL, note text)`)
	c.configure([]string{"pgbench_accounts", "pgbench_branches", "pgbench_tellers", "ledger"},
		[]string{"t1:source", "t2:source", "t3:source", "t4:target"})
	sources := []string{"t1", "t2", "t3"}
	c.logf("configured")

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	stop := make(chan struct{})
	var werrs []error
	var mu sync.Mutex
	fail := func(err error) {
		mu.Lock()
		werrs = append(werrs, err)
		mu.Unlock()
	}

	// Writers.
	var writers []*ledgerWriter
	var wwg sync.WaitGroup
	for _, s := range sources {
		for w := 0; w < 2; w++ {
			lw := &ledgerWriter{db: s, w: w, dsn: c.dbs[s].DSN + " search_path=" + c.schema, rows: map[string]int{}}
			writers = append(writers, lw)
			wwg.Add(1)
			go func() {
				defer wwg.Done()
				if err := lw.loop(ctx, stop); err != nil {
					fail(fmt.Errorf("ledger writer %s/%d: %w", lw.db, lw.w, err))
				}
			}()
		}
	}
	var pwg sync.WaitGroup
	for _, s := range sources {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			if err := pgbench(c.dbs[s], c.schema, "-n", "-T", "6", "-c", "2", "--max-tries=50"); err != nil {
				fail(err)
			}
		}()
	}

	// Two racing runners, each with its own control connection pool (two cron jobs).
	type outcome struct {
		res *job.Result
		err error
	}
	var outcomes []outcome
	var rwg sync.WaitGroup
	var completedRuns atomic.Int32
	for g := 0; g < 2; g++ {
		store, err := control.Open(ctx, c.ctl.DSN, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				res, err := job.Run(ctx, store, c.sync, job.Options{BatchSize: 400})
				if res != nil && !res.AlreadyRunning {
					completedRuns.Add(1)
				}
				mu.Lock()
				outcomes = append(outcomes, outcome{res, err})
				mu.Unlock()
				time.Sleep(time.Duration(rand.IntN(30)) * time.Millisecond)
			}
		}()
	}

	// Writers go on until pgbench is done and at least 3 runs have completed under load
	// (the machine may be slow), at most 20 s more.
	pwg.Wait()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if completedRuns.Load() >= 3 {
			break
		}
	}
	close(stop)
	wwg.Wait()
	rwg.Wait()
	c.logf("writers and runners stopped")
	for _, err := range werrs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	completed, already := 0, 0
	for _, o := range outcomes {
		switch {
		case o.res == nil:
			t.Errorf("a run could not start: %v", o.err)
		case o.res.AlreadyRunning:
			already++
			if o.err != nil {
				t.Errorf("an already-running run returned an error: %v", o.err)
			}
		default:
			completed++
			if o.err != nil || (o.res.State != control.StateGood && o.res.State != control.StateEmpty) {
				t.Errorf("run %d under load: state %s, error %v (%s)", o.res.RunID, o.res.State, o.err, o.res.Summary())
			}
		}
	}
	t.Logf("under load: %d runs completed, %d found the sync already running", completed, already)
	if completed < 2 {
		t.Errorf("only %d runs completed under load", completed)
	}

	// The run history: as many runs as completed, none overlapping another.
	type span struct {
		id         int64
		start, end time.Time
	}
	rows, err := c.store.Pool.Query(ctx, `SELECT id, started, ended FROM ibex.run WHERE sync = $1 ORDER BY started`, c.sync)
	if err != nil {
		t.Fatal(err)
	}
	spans, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (span, error) {
		var s span
		var end *time.Time
		err := r.Scan(&s.id, &s.start, &end)
		if end == nil {
			return s, errors.New("a run has no end")
		}
		s.end = *end
		return s, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(spans) != completed {
		t.Errorf("run history has %d runs, %d completed", len(spans), completed)
	}
	for i := 1; i < len(spans); i++ {
		if spans[i].start.Before(spans[i-1].end) {
			t.Errorf("run %d started at %s before run %d ended at %s", spans[i].id, spans[i].start.Format(time.StampMicro), spans[i-1].id, spans[i-1].end.Format(time.StampMicro))
		}
	}

	// Writers stopped: one run converges everything.
	res := c.mustRunOneOf([]string{control.StateGood, control.StateEmpty}, job.Options{})
	t.Logf("final run: %s", res.Summary())
	for _, tb := range pgbenchTables {
		c.sameEverywhere(tb.name, tb.key)
	}
	want := map[string]int{}
	txs := 0
	for _, lw := range writers {
		txs += lw.txs
		for id, n := range lw.rows {
			want[id] = n
		}
	}
	t.Logf("ledger: %d writer transactions, %d rows expected", txs, len(want))
	for _, n := range c.names {
		got := map[string]int{}
		rows, err := c.conn(n).Query(ctx, `SELECT id, n FROM ledger`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id string
			var v int
			if err := rows.Scan(&id, &v); err != nil {
				t.Fatal(err)
			}
			got[id] = v
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("db %s: ledger is not exactly the committed rows (-want +got):\n%s", n, diff)
		}
	}
	c.sameEverywhere("ledger", "id")
	res = c.mustRun(control.StateEmpty, job.Options{})
	if c.runningRuns() != 0 {
		t.Errorf("runs left in state running")
	}
}

// mustRunOneOf is mustRun accepting any of the states.
func (c *cluster) mustRunOneOf(states []string, opts job.Options) *job.Result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := c.run(ctx, opts)
	if err != nil || res == nil {
		c.t.Fatalf("run of %s: %v", c.sync, err)
	}
	for _, s := range states {
		if res.State == s {
			return res
		}
	}
	c.t.Fatalf("run of %s: state %s, want one of %v (%s)", c.sync, res.State, states, res.Summary())
	return nil
}
