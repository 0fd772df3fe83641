package sequence_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/internal/sequence"
)

func TestSequenceAhead(t *testing.T) {
	for _, tc := range []struct {
		aLast   int64
		aCalled bool
		bLast   int64
		bCalled bool
		want    bool
	}{
		{5, true, 5, false, true},
		{5, false, 5, true, false},
		{5, true, 5, true, false},
		{5, false, 5, false, false},
		{6, false, 5, true, true},
		{4, true, 5, false, false},
	} {
		if got := sequence.Ahead(tc.aLast, tc.aCalled, tc.bLast, tc.bCalled); got != tc.want {
			t.Errorf("Ahead(%d %v, %d %v) = %v", tc.aLast, tc.aCalled, tc.bLast, tc.bCalled, got)
		}
	}
}

func TestSequenceLift(t *testing.T) {
	n := catalog.QualName{Schema: "public", Name: "s"}
	st := func(last int64, called bool, inc int64) sequence.State {
		return sequence.State{Name: n, Last: last, Called: called, Increment: inc, Min: 1, Max: math.MaxInt64}
	}
	type out struct {
		last   int64
		called bool
		ok     bool
	}
	for _, tc := range []struct {
		name       string
		cur        sequence.State
		goalLast   int64
		goalCalled bool
		want       out
	}{
		{"by 1: takes the goal", st(3, true, 1), 5, true, out{5, true, true}},
		{"by 1: keeps the goal's is_called false", st(1, false, 1), 7, false, out{7, false, true}},
		{"by 1: a called value is ahead of the same uncalled", st(5, false, 1), 5, true, out{5, true, true}},
		{"by 1: already there", st(5, true, 1), 5, true, out{}},
		{"by 1: ahead stays (never back)", st(100, true, 1), 5, true, out{}},
		{"by 1: uncalled goal behind a called value", st(5, true, 1), 5, false, out{}},
		{"by 3, residue 1: first value >= goal with it, uncalled", st(4, true, 3), 11, true, out{13, false, true}},
		{"by 3, residue 2: the goal itself has it, as called as the goal", st(5, true, 3), 11, true, out{11, true, true}},
		{"by 3, residue 2, uncalled goal", st(5, true, 3), 11, false, out{11, false, true}},
		{"by 3, residue 0", st(3, false, 3), 11, true, out{12, false, true}},
		{"by 3: ahead stays", st(14, true, 3), 11, true, out{}},
		{"descending: left alone", st(-5, true, -1), 11, true, out{}},
		{"negative values keep their residue", st(-7, true, 3), -3, true, out{-1, false, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			last, called, ok, err := sequence.Lift(tc.cur, tc.goalLast, tc.goalCalled)
			if err != nil {
				t.Fatal(err)
			}
			if got := (out{last, called, ok}); got != tc.want {
				t.Errorf("Lift = %+v, want %+v", got, tc.want)
			}
		})
	}
	cur := st(3, true, 1)
	cur.Max = 10
	if _, _, _, err := sequence.Lift(cur, 11, true); err == nil || err.Error() != "sequence public.s: cannot raise it to 11, above its MAXVALUE 10: raise its MAXVALUE" {
		t.Errorf("Lift above MAXVALUE: %v", err)
	}
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	return pgtest.Conn(t, dsn)
}

func TestSequenceReadSet(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t, "")
	c := connect(t, db.DSN)
	if _, err := c.Exec(ctx, `CREATE SCHEMA "Odd Schema"; CREATE SEQUENCE "Odd Schema"."Seq ""1"""; CREATE SEQUENCE public.s2 INCREMENT BY 3 START 2;
CREATE TABLE public.notseq (id int); SELECT setval('"Odd Schema"."Seq ""1"""', 41)`); err != nil {
		t.Fatal(err)
	}
	odd := catalog.QualName{Schema: "Odd Schema", Name: `Seq "1"`}
	s2 := catalog.QualName{Schema: "public", Name: "s2"}
	sts, err := sequence.Read(ctx, c, []catalog.QualName{odd, s2})
	if err != nil {
		t.Fatal(err)
	}
	want := []sequence.State{
		{Name: odd, Last: 41, Called: true, Increment: 1, Min: 1, Max: math.MaxInt64},
		{Name: s2, Last: 2, Called: false, Increment: 3, Min: 1, Max: math.MaxInt64},
	}
	for i := range want {
		if sts[i] != want[i] {
			t.Errorf("Read[%d] = %+v, want %+v", i, sts[i], want[i])
		}
	}
	for _, missing := range []catalog.QualName{{Schema: "public", Name: "nosuch"}, {Schema: "public", Name: "notseq"}} {
		_, err = sequence.Read(ctx, c, []catalog.QualName{odd, missing})
		if !errors.Is(err, sequence.ErrNoSequence) || err.Error() != "sequence "+missing.String()+": no such sequence" {
			t.Errorf("Read of %s: %v", missing, err)
		}
	}
	// Set raises, and leaves alone one already at or past the new state.
	n, err := sequence.Set(ctx, c, []sequence.Raise{
		{Name: odd, Increment: 1, Last: 50, Called: false},
		{Name: s2, Increment: 3, Last: 1, Called: true},
	})
	if err != nil || n != 1 {
		t.Fatalf("Set = %d, %v; want 1", n, err)
	}
	sts, err = sequence.Read(ctx, c, []catalog.QualName{odd, s2})
	if err != nil {
		t.Fatal(err)
	}
	if sts[0].Last != 50 || sts[0].Called || sts[1].Last != 2 || sts[1].Called || sts[1].Increment != 3 {
		t.Errorf("after Set: %+v", sts)
	}
	var next int64
	if err := c.QueryRow(ctx, `SELECT nextval('"Odd Schema"."Seq ""1"""')`).Scan(&next); err != nil || next != 50 {
		t.Errorf("nextval after setval(50, false) = %d, %v", next, err)
	}
	// One raise failing (above its MAXVALUE) sets none of the db's sequences.
	if _, err := c.Exec(ctx, `ALTER SEQUENCE public.s2 MAXVALUE 10`); err != nil {
		t.Fatal(err)
	}
	_, err = sequence.Set(ctx, c, []sequence.Raise{
		{Name: odd, Increment: 1, Last: 60, Called: true},
		{Name: s2, Increment: 3, Last: 11, Called: false},
	})
	if err == nil || !strings.Contains(err.Error(), "setting sequence public.s2 to 11: ") {
		t.Fatalf("Set above MAXVALUE: %v", err)
	}
	if err := c.QueryRow(ctx, `SELECT last_value FROM "Odd Schema"."Seq ""1"""`).Scan(&next); err != nil || next != 50 {
		t.Errorf("the failed Set moved the other sequence: %d, %v; want 50", next, err)
	}
}

// TestSequenceSetNeverBack raises a sequence again and again while other sessions call
// nextval on it as fast as they can: no value is ever handed out twice.
func TestSequenceSetNeverBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t, "")
	c := connect(t, db.DSN)
	if _, err := c.Exec(ctx, `CREATE SEQUENCE public.s`); err != nil {
		t.Fatal(err)
	}
	s := catalog.QualName{Schema: "public", Name: "s"}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	got := make([][]int64, 3)
	errs := make([]error, 3)
	for w := range got {
		wc := connect(t, db.DSN)
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				var v int64
				if err := wc.QueryRow(ctx, `SELECT nextval('public.s')`).Scan(&v); err != nil {
					errs[w] = err
					return
				}
				got[w] = append(got[w], v)
			}
		})
	}
	// At least 2 s, and on a loaded machine (where nextval overtakes most raises) until some
	// raise took, within 20 s.
	start := time.Now()
	raised := 0
	for i := 0; time.Since(start) < 2*time.Second || (raised == 0 && time.Since(start) < 20*time.Second); i++ {
		sts, err := sequence.Read(ctx, c, []catalog.QualName{s})
		if err != nil {
			t.Fatal(err)
		}
		// Aim just ahead of what was read: nextval often overtakes it before the lock (every
		// tenth raise aims further, so that some take however busy the machine is).
		lead := int64(2)
		if i%10 == 9 {
			lead = 200
		}
		n, err := sequence.Set(ctx, c, []sequence.Raise{{Name: s, Increment: 1, Last: sts[0].Last + lead, Called: true}})
		if err != nil {
			t.Fatal(err)
		}
		raised += n
	}
	close(stop)
	wg.Wait()
	seen := map[int64]bool{}
	total := 0
	for w, vs := range got {
		if errs[w] != nil {
			t.Fatalf("session %d: %v", w, errs[w])
		}
		for i, v := range vs {
			if seen[v] {
				t.Fatalf("value %d handed out twice", v)
			}
			seen[v] = true
			if i > 0 && v <= vs[i-1] {
				t.Fatalf("session %d went back: %d after %d", w, v, vs[i-1])
			}
		}
		total += len(vs)
	}
	if raised == 0 || total < 100 {
		t.Fatalf("too little happened: %d raises, %d values", raised, total)
	}
	t.Logf("%d raises, %d values", raised, total)
}

// TestSequenceInterleave: three sources get residues 1, 2, 0 modulo 3 above the highest
// value on any db (a target counts too), and nothing moves back.
func TestSequenceInterleave(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var ms []sequence.Member
	for i := 0; i < 4; i++ {
		db := pgtest.NewDB(t, "")
		c := connect(t, db.DSN)
		if _, err := c.Exec(ctx, `CREATE SEQUENCE public.s`); err != nil {
			t.Fatal(err)
		}
		ms = append(ms, sequence.Member{DB: string(rune('a' + i)), Conn: c})
	}
	for i, v := range []int64{7, 3, 1, 20} { // the target (d) is highest
		if _, err := ms[i].Conn.Exec(ctx, `SELECT setval('public.s', $1)`, v); err != nil {
			t.Fatal(err)
		}
	}
	s := catalog.QualName{Schema: "public", Name: "s"}
	starts, err := sequence.Interleave(ctx, s, ms[:3], ms[3:])
	if err != nil {
		t.Fatal(err)
	}
	want := []sequence.Start{{DB: "a", Start: 22, Increment: 3}, {DB: "b", Start: 23, Increment: 3}, {DB: "c", Start: 21, Increment: 3}}
	for i := range want {
		if starts[i] != want[i] {
			t.Errorf("start %d = %+v, want %+v", i, starts[i], want[i])
		}
	}
	for i, w := range [][]int64{{22, 25}, {23, 26}, {21, 24}, {21, 22}} {
		for _, v := range w {
			var got int64
			if err := ms[i].Conn.QueryRow(ctx, `SELECT nextval('public.s')`).Scan(&got); err != nil || got != v {
				t.Errorf("db %s: nextval = %d, %v; want %d", ms[i].DB, got, err, v)
			}
		}
	}
	// A missing sequence on one db: an error naming both, and nothing changed anywhere.
	if _, err := ms[1].Conn.Exec(ctx, `DROP SEQUENCE public.s`); err != nil {
		t.Fatal(err)
	}
	_, err = sequence.Interleave(ctx, s, ms[:3], nil)
	if err == nil || err.Error() != "db b: sequence public.s: no such sequence" {
		t.Errorf("Interleave with a missing sequence: %v", err)
	}
	var inc, last int64
	if err := ms[0].Conn.QueryRow(ctx, `SELECT increment_by, last_value FROM pg_sequences WHERE sequencename = 's'`).Scan(&inc, &last); err != nil || inc != 3 || last != 25 {
		t.Errorf("db a after the failed interleave: INCREMENT BY %d, last_value %d, %v", inc, last, err)
	}
}

// TestSequenceSetLocks: Set takes the lock nextval takes (so no nextval can come between
// its check and its setval): it waits for an open transaction that called nextval, and a
// nextval waits for it.
func TestSequenceSetLocks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t, "")
	c, app := connect(t, db.DSN), connect(t, db.DSN)
	if _, err := c.Exec(ctx, `CREATE SEQUENCE public.s`); err != nil {
		t.Fatal(err)
	}
	tx, err := app.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT nextval('public.s')`); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := sequence.Set(ctx, c, []sequence.Raise{{Name: catalog.QualName{Schema: "public", Name: "s"}, Increment: 1, Last: 10, Called: true}})
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("Set did not wait for the transaction that called nextval: %v", err)
	case <-time.After(150 * time.Millisecond):
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var next int64
	if err := app.QueryRow(ctx, `SELECT nextval('public.s')`).Scan(&next); err != nil || next != 11 {
		t.Errorf("nextval after Set = %d, %v; want 11", next, err)
	}
	// A transaction that holds it longer than ibex waits: ErrBusy, and nothing is set.
	tx, err = app.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT nextval('public.s')`); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = sequence.Set(ctx, c, []sequence.Raise{{Name: catalog.QualName{Schema: "public", Name: "s"}, Increment: 1, Last: 100, Called: true}})
	if !errors.Is(err, sequence.ErrBusy) || err.Error() != "sequence public.s: busy: a transaction that called nextval on it is still open" {
		t.Fatalf("Set on a busy sequence: %v", err)
	}
	if d := time.Since(start); d < 400*time.Millisecond || d > 3*time.Second {
		t.Errorf("Set waited %s, want about 500ms (half the deadlock_timeout)", d)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var last int64
	if err := c.QueryRow(ctx, `SELECT last_value FROM public.s`).Scan(&last); err != nil || last != 12 {
		t.Errorf("s after the busy Set: %d, %v; want 12", last, err)
	}
}
