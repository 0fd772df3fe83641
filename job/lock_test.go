package job_test

import (
	"context"
	"net"
	"strconv"
	stdsync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/ibextest"
	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/job"
)

// TestRunLockPerSync: the run lock of a sync is its own. s14208 and s189525 have the same
// hashtext, which keyed the lock until 2.1: while a run of one held its lock, a run of the
// other said "already running" and did nothing.
func TestRunLockPerSync(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ctl, src, _, ibex := srcDst(t, `CREATE TABLE ta (id int PRIMARY KEY, v text); CREATE TABLE tb (id int PRIMARY KEY, v text)`)
	ibex("add", "table", "public.ta", "db=src", "herd=ha")
	ibex("add", "table", "public.tb", "db=src", "herd=hb")
	ibex("add", "dbgroup", "g", "src:source", "dst:target")
	ibex("add", "sync", "s14208", "herd=ha", "dbs=g", "autokick=false")
	ibex("add", "sync", "s189525", "herd=hb", "dbs=g", "autokick=false")
	pgtest.Exec(t, src.DSN, `INSERT INTO ta VALUES (1, 'a'); INSERT INTO tb VALUES (1, 'b')`)

	// Two stores, as two processes would have.
	stores := make([]*control.Store, 2)
	for i := range stores {
		s, err := control.Open(ctx, ctl.DSN, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		stores[i] = s
	}

	// holdRun starts a run of sync that stops in its first batch, holding its lock, until
	// release is called; release returns the run's outcome.
	type outcome struct {
		res *job.Result
		err error
	}
	holdRun := func(store *control.Store, sync string) (release func() outcome) {
		t.Helper()
		inBatch, unblock := make(chan struct{}), make(chan struct{})
		var once, unblockOnce stdsync.Once
		done := make(chan outcome, 1)
		go func() {
			res, err := job.Run(ctx, store, sync, job.Options{Progress: func(string, int, int) {
				once.Do(func() { close(inBatch); <-unblock })
			}})
			done <- outcome{res, err}
		}()
		release = func() outcome {
			unblockOnce.Do(func() { close(unblock) })
			return <-done
		}
		t.Cleanup(func() { unblockOnce.Do(func() { close(unblock) }) })
		select {
		case <-inBatch:
		case o := <-done:
			t.Fatalf("the run of %s ended before its first batch: %+v, %v", sync, o.res, o.err)
		case <-time.After(time.Minute):
			t.Fatalf("the run of %s did not reach its first batch in a minute", sync)
		}
		return release
	}
	summary := func(res *job.Result) string {
		if res == nil {
			return "no result"
		}
		return res.Summary()
	}

	release := holdRun(stores[0], "s14208")
	res, err := job.Run(ctx, stores[1], "s189525", job.Options{})
	a := release()
	if err != nil || res == nil || res.AlreadyRunning || res.State != control.StateGood || res.Inserts != 1 {
		t.Errorf("the run of s189525 while a run of s14208 holds its lock: %s (error %v), want good with 1 insert", summary(res), err)
	}
	if a.err != nil || a.res == nil || a.res.State != control.StateGood || a.res.Inserts != 1 {
		t.Errorf("the run of s14208: %s (error %v), want good with 1 insert", summary(a.res), a.err)
	}

	// A sync's lock still keeps a second run of the same sync out.
	pgtest.Exec(t, src.DSN, `UPDATE ta SET v = 'a2'`)
	release = holdRun(stores[0], "s14208")
	res, err = job.Run(ctx, stores[1], "s14208", job.Options{})
	if a := release(); a.err != nil || a.res == nil || a.res.State != control.StateGood {
		t.Errorf("the held run of s14208: %s (error %v)", summary(a.res), a.err)
	}
	if err != nil || res == nil || !res.AlreadyRunning {
		t.Errorf("a run of s14208 while another holds its lock: %s (error %v), want already running", summary(res), err)
	}
}

// TestAlreadyRunningOpensNoSessions: a run that finds its sync already running opens no
// session to its dbs (the sessions opened ahead start only under the lock): kicks racing
// for a busy sync cost the dbs nothing. The source's address is a listener counting the
// connections it is offered.
func TestAlreadyRunningOpensNoSessions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ctl, _, _, ibex := srcDst(t, `CREATE TABLE ta (id int PRIMARY KEY, v text)`)
	srcDstSync(ibex, "public.ta")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	var offered atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			offered.Add(1)
			_ = c.Close()
		}
	}()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	pgtest.Exec(t, ctl.DSN, `UPDATE ibex.db SET conn = conn || jsonb_build_object('host', '127.0.0.1', 'port', '`+port+`') WHERE name = 'src'`)

	store := openStore(t, ctl.DSN)
	sy, err := control.GetSync(ctx, store.Q(), "s")
	if err != nil {
		t.Fatal(err)
	}
	holder := pgtest.Conn(t, ctl.DSN)
	if got, err := control.TryLockSync(ctx, holder, sy); !got || err != nil {
		t.Fatalf("taking the lock: %v, %v", got, err)
	}
	for i := 0; i < 5; i++ {
		res, err := job.Run(ctx, store, "s", job.Options{})
		if err != nil || res == nil || !res.AlreadyRunning {
			t.Fatalf("run %d while the lock is held: %+v, %v; want already running", i, res, err)
		}
	}
	time.Sleep(100 * time.Millisecond) // a dial started in the background would be counted by now
	if n := offered.Load(); n != 0 {
		t.Errorf("runs that found the sync running opened %d connections to the source, want 0", n)
	}

	// Under the lock, the run dials the source (and fails there: nothing answers).
	if err := control.UnlockSync(ctx, holder, sy); err != nil {
		t.Fatal(err)
	}
	res, _ := job.Run(ctx, store, "s", job.Options{})
	if res == nil || res.AlreadyRunning || offered.Load() == 0 {
		t.Errorf("the run holding the lock: %+v, %d connections offered to the source; want a run that dialed it", res, offered.Load())
	}
}

// srcDst makes a control database with ibex installed and dbs src and dst, each with the
// tables of ddl, and returns the control database, src, dst and a function running ibex
// on it.
func srcDst(t *testing.T, ddl string) (ctl, src, dst *pgtest.DB, ibex func(args ...string)) {
	t.Helper()
	ctl, src, dst = pgtest.NewDB(t, ""), pgtest.NewDB(t, ""), pgtest.NewDB(t, "")
	ibex = func(args ...string) {
		t.Helper()
		if out, errs, code := ibextest.Ibex(ctl.DSN, args...); code != 0 {
			t.Fatalf("ibex %q: exit %d\n%s%s", args, code, out, errs)
		}
	}
	ibex("install")
	for name, db := range map[string]*pgtest.DB{"src": src, "dst": dst} {
		pgtest.Exec(t, db.DSN, ddl)
		ibex(ibextest.AddDBArgs(name, db.Conn)...)
	}
	return ctl, src, dst, ibex
}

// srcDstSync configures, on srcDst's dbs, the sync s from src to dst of tables (as typed
// on the command line, read on src): herd h, dbgroup g, no autokick.
func srcDstSync(ibex func(args ...string), tables ...string) {
	ibex(append(append([]string{"add", "table"}, tables...), "db=src", "herd=h")...)
	ibex("add", "dbgroup", "g", "src:source", "dst:target")
	ibex("add", "sync", "s", "herd=h", "dbs=g", "autokick=false")
}

// openStore opens the control database at dsn, closed when the test ends.
func openStore(t *testing.T, dsn string) *control.Store {
	t.Helper()
	store, err := control.Open(context.Background(), dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	return store
}
