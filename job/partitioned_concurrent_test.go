package job_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/sqlstate"
	"github.com/ibexrepl/ibex/job"
)

// account is a row of accounts as a writer knows it.
type account struct{ bid, balance int }

// accountWriter writes accounts on one source in small transactions, pgbench-like:
// balance updates, and moves of accounts to another branch (bid is in the key and
// partitions the table on the sources: the row changes partition). An own writer works on
// accounts of its own (no other writer touches them, so it knows their exact committed
// state) and also inserts and deletes some; a shared writer works on accounts every source
// writes (conflicts), and keeps nothing.
type accountWriter struct {
	db     string
	dsn    string
	seed   uint64
	own    map[int]account // committed state of an own writer's accounts; nil: shared
	ids    []int           // own: the aids in own, sorted
	next   int             // own: the next new aid
	shared int             // shared: aids 1..shared
	maxBid *atomic.Int64   // branches 1..maxBid have partitions everywhere
	txs    int
	moves  int // committed moves
}

func (w *accountWriter) loop(ctx context.Context, stop <-chan struct{}) error {
	conn, err := pgx.Connect(ctx, w.dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	rng := rand.New(rand.NewPCG(w.seed, 7))
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		time.Sleep(time.Duration(rng.IntN(10)) * time.Millisecond)
		err := w.tx(ctx, conn, rng)
		// A transaction that fails with a serialization failure or a deadlock (a shared
		// writer's meets ibex's writes and the other sources' moves: a row moved away
		// meanwhile), or a shared writer's that finds a key taken, is rolled back, its
		// effects not recorded, and the writer goes on.
		if err != nil && !sqlstate.Retryable(err) && !(w.own == nil && sqlstate.Is(err, sqlstate.UniqueViolation)) {
			return err
		}
	}
}

// tx runs one transaction of 1 to 3 writes; an own writer records its effect once it
// commits.
func (w *accountWriter) tx(ctx context.Context, conn *pgx.Conn, rng *rand.Rand) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	pending := map[int]*account{} // own: nil for deleted
	moves := 0
	for range 1 + rng.IntN(3) {
		bid := 1 + rng.IntN(int(w.maxBid.Load()))
		if w.own == nil {
			aid := 1 + rng.IntN(w.shared)
			if rng.IntN(2) == 0 {
				if _, err := tx.Exec(ctx, `UPDATE accounts SET abalance = abalance + $2 WHERE aid = $1`, aid, rng.IntN(1000)-500); err != nil {
					return err
				}
				continue
			}
			// Move one of the account's rows (it may have several: two sources moved it to
			// different branches) to a branch it is not in.
			tag, err := tx.Exec(ctx, `UPDATE accounts SET bid = $2 WHERE (aid, bid) = (SELECT aid, bid FROM accounts WHERE aid = $1 AND bid <> $2 ORDER BY bid LIMIT 1)
AND NOT EXISTS (SELECT 1 FROM accounts WHERE aid = $1 AND bid = $2)`, aid, bid)
			if err != nil {
				return err
			}
			moves += int(tag.RowsAffected())
			continue
		}
		switch op := rng.IntN(20); {
		case op < 2 || len(w.ids) == 0: // a new account
			w.next++
			if _, err := tx.Exec(ctx, `INSERT INTO accounts (aid, bid, filler) VALUES ($1, $2, $3)`, w.next, bid, w.db); err != nil {
				return err
			}
			pending[w.next] = &account{bid: bid}
		default:
			aid := w.ids[rng.IntN(len(w.ids))]
			if _, ok := pending[aid]; ok {
				continue // one write per account and transaction
			}
			a := w.own[aid]
			switch {
			case op < 3:
				tag, err := tx.Exec(ctx, `DELETE FROM accounts WHERE aid = $1 AND bid = $2`, aid, a.bid)
				if err != nil {
					return err
				}
				if tag.RowsAffected() != 1 {
					return fmt.Errorf("deleting account %d: %d rows", aid, tag.RowsAffected())
				}
				pending[aid] = nil
			case op < 11 && bid != a.bid:
				if err := tx.QueryRow(ctx, `UPDATE accounts SET bid = $3 WHERE aid = $1 AND bid = $2 RETURNING abalance`, aid, a.bid, bid).Scan(&a.balance); err != nil {
					return fmt.Errorf("moving account %d: %w", aid, err)
				}
				a.bid = bid
				pending[aid] = &a
				moves++
			default:
				if err := tx.QueryRow(ctx, `UPDATE accounts SET abalance = abalance + $3 WHERE aid = $1 AND bid = $2 RETURNING abalance`, aid, a.bid, rng.IntN(1000)-500).Scan(&a.balance); err != nil {
					return fmt.Errorf("updating account %d: %w", aid, err)
				}
				pending[aid] = &a
			}
		}
	}
	if rng.IntN(5) == 0 {
		time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond) // held open across a run
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	w.txs++
	w.moves += moves
	for aid, a := range pending {
		if a == nil {
			delete(w.own, aid)
		} else {
			w.own[aid] = *a
		}
	}
	if len(pending) > 0 {
		w.ids = w.ids[:0]
		for aid := range w.own {
			w.ids = append(w.ids, aid)
		}
		slices.Sort(w.ids)
	}
	return nil
}

// testPartitionedConcurrentMoves: accounts on sources t1 and t2 (partitioned by range and
// by list of bid), target t3 (partitioned by hash of aid) and source t4 (not
// partitioned, no writes of its own). On each source an own writer and a shared writer move accounts between
// branches (partitions) and update balances while runs of batches of 50 keys go on; once
// writing is under way, the sources get partitions for 4 more branches (created and
// attached: their capture is the parent trigger's clones), and the writers use them. After
// the writers stop, one run makes every db hold exactly the same rows: every own writer's
// accounts exactly as it committed them, and the shared accounts identical everywhere.
func testPartitionedConcurrentMoves(t *testing.T, f *farm) {
	c := f.cluster(t, "partconc", 4)
	const shared, perWriter = 100, 150
	var values []string
	for aid := 1; aid <= shared+2*perWriter; aid++ {
		values = append(values, fmt.Sprintf("(%d, %d, 0)", aid, 1+(aid-1)%4))
	}
	c.accountsTables(strings.Join(values, ", "))
	c.configure([]string{"accounts"}, []string{"t1:source", "t2:source", "t3:target", "t4:source"})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var maxBid atomic.Int64
	maxBid.Store(4)
	stop := make(chan struct{})
	var mu sync.Mutex
	var errs []error
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	var writers []*accountWriter
	var wwg sync.WaitGroup
	for i, db := range []string{"t1", "t2"} {
		own := &accountWriter{db: db, dsn: c.dsn(c.dbs[db]), seed: uint64(2*i + 1), own: map[int]account{}, next: 1000 * (i + 1), maxBid: &maxBid}
		for aid := shared + i*perWriter + 1; aid <= shared+(i+1)*perWriter; aid++ {
			own.own[aid] = account{bid: 1 + (aid-1)%4}
			own.ids = append(own.ids, aid)
		}
		sh := &accountWriter{db: db, dsn: c.dsn(c.dbs[db]), seed: uint64(2*i + 2), shared: shared, maxBid: &maxBid}
		writers = append(writers, own, sh)
	}
	for _, w := range writers {
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			if err := w.loop(ctx, stop); err != nil {
				fail(fmt.Errorf("writer on %s (own %v): %w", w.db, w.own != nil, err))
			}
		}()
	}
	var runs, good atomic.Int64
	var rwg sync.WaitGroup
	rwg.Add(1)
	go func() {
		defer rwg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			res, err := c.run(ctx, job.Options{BatchSize: 50})
			if res == nil {
				fail(fmt.Errorf("a run could not start: %v", err))
				return
			}
			runs.Add(1)
			if res.State == control.StateGood || res.State == control.StateEmpty {
				good.Add(1)
			} else {
				// A receiving source may give up on rows its application keeps moving (its
				// retries are bounded): the next run serves it.
				c.logf("run under load: %s", res.Summary())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	time.Sleep(1500 * time.Millisecond)
	c.morePartitions()
	maxBid.Store(8)
	c.logf("branches 5 to 8 partitioned on the sources")
	time.Sleep(3 * time.Second)
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline) && good.Load() < 3; time.Sleep(50 * time.Millisecond) {
	}
	close(stop)
	wwg.Wait()
	rwg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	moves, txs := 0, 0
	for _, w := range writers {
		moves += w.moves
		txs += w.txs
	}
	c.logf("writers stopped: %d transactions, %d moves; %d runs under load, %d good or empty", txs, moves, runs.Load(), good.Load())
	if good.Load() < 2 {
		t.Errorf("only %d of %d runs under load were good or empty", good.Load(), runs.Load())
	}
	if moves < 100 {
		t.Errorf("only %d moves committed", moves)
	}

	res := c.mustRunOneOf([]string{control.StateGood, control.StateEmpty}, job.Options{BatchSize: 50})
	c.logf("final run: %s", res.Summary())
	c.mustRun(control.StateEmpty, job.Options{})
	rows := c.sameEverywhere("accounts", "aid, bid")
	c.logf("%d accounts identical on the 4 dbs", len(rows))
	want := map[int]account{}
	for _, w := range writers {
		for aid, a := range w.own {
			want[aid] = a
		}
	}
	for _, db := range c.names {
		got := map[int]account{}
		cn := c.conn(db)
		r, err := cn.Query(ctx, `SELECT aid, bid, abalance FROM accounts WHERE aid > $1`, shared)
		if err != nil {
			t.Fatal(err)
		}
		for r.Next() {
			var aid int
			var a account
			if err := r.Scan(&aid, &a.bid, &a.balance); err != nil {
				t.Fatal(err)
			}
			if _, dup := got[aid]; dup {
				t.Errorf("db %s: account %d has two rows", db, aid)
			}
			got[aid] = a
		}
		if err := r.Err(); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got, cmp.AllowUnexported(account{})); diff != "" {
			t.Errorf("db %s: the own writers' accounts are not exactly as committed (-want +got):\n%s", db, diff)
		}
	}
	// Every branch's partition on the sources has accounts; t2's default partition none.
	for db, parts := range map[string][]string{"t1": {"accounts_p12", "accounts_p34", "accounts_p56", "accounts_p78"},
		"t2": {"accounts_b1", "accounts_b2", "accounts_b34", "accounts_b56", "accounts_b78"}} {
		for _, p := range parts {
			if n := c.int(db, `SELECT count(*) FROM `+p); n == 0 {
				t.Errorf("db %s: partition %s is empty", db, p)
			}
		}
	}
	if n := c.int("t2", `SELECT count(*) FROM accounts_bdef`); n != 0 {
		t.Errorf("db t2: %d rows in the default partition", n)
	}
	c.checkRowTriggers("at the end", accountsTriggers(c.sync))
}
