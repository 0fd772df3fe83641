package job_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/job"
)

// TestSequences runs the sequence tests in parallel on a farm of their own (see TestFarm).
func TestSequences(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	for _, ft := range []struct {
		name string
		fn   func(*testing.T, *farm)
	}{
		{"Raised", testSequencesRaised},
		{"Interleave", testSequencesInterleave},
		{"MissingOnTarget", testSequenceMissingOnTarget},
		{"ResidueWarning", testSequenceResidueWarning},
		{"SequencesOnly", testSequencesOnly},
		{"Busy", testSequenceBusy},
	} {
		t.Run(ft.name, func(t *testing.T) {
			t.Parallel()
			ft.fn(t, f)
		})
	}
}

// seqStates is "db: last_value is_called increment_by" of sequence seq on every db of the test.
func (c *cluster) seqStates(seq string) []string {
	c.t.Helper()
	var out []string
	for _, n := range c.names {
		s := c.strs(n, `SELECT s.last_value || ' ' || s.is_called || ' ' || p.seqincrement FROM `+seq+` s, pg_sequence p WHERE p.seqrelid = $1::regclass`, seq)
		out = append(out, n+": "+strings.Join(s, ","))
	}
	return out
}

func (c *cluster) wantSeqStates(seq string, want ...string) {
	c.t.Helper()
	if diff := cmp.Diff(want, c.seqStates(seq)); diff != "" {
		c.t.Errorf("sequence %s (-want +got):\n%s", seq, diff)
	}
}

// lastRunSequences is the sequences count the last run of the sync recorded.
func (c *cluster) lastRunSequences() string {
	c.t.Helper()
	var s string
	if err := c.store.Pool.QueryRow(context.Background(), `SELECT details->>'sequences' FROM ibex.run WHERE sync = $1 ORDER BY id DESC LIMIT 1`, c.sync).Scan(&s); err != nil {
		c.t.Fatal(err)
	}
	return s
}

// testSequencesRaised: after nextval on several sources, a run brings every db to the
// highest state (last_value, then is_called) seen on any source; a db already higher
// keeps its value; an uncalled value stays uncalled; the next run sets nothing.
func testSequencesRaised(t *testing.T, f *farm) {
	c := f.cluster(t, "seqraise", 4)
	c.onAll(`CREATE TABLE items (id bigserial PRIMARY KEY, v text); CREATE SEQUENCE a; CREATE SEQUENCE b; CREATE SEQUENCE "C q"`)
	c.configure([]string{"items"}, []string{"t1:source", "t2:source", "t3:source", "t4:target"})
	out := c.ibex("add", "sequence", c.q("a"), c.q("b"), `seqraise."C q"`, "db=t1", "herd="+c.sync)
	if want := "Added sequence seqraise.a\nAdded sequence seqraise.b\nAdded sequence seqraise.C q\nHerd seqraise has the sequences\n"; out != want {
		t.Errorf("add sequence said:\n%s\nwant:\n%s", out, want)
	}
	// A pattern adds what is new and skips what was added.
	out = c.ibex("add", "sequence", "seqraise.*", "db=t1", "herd="+c.sync)
	if want := "Added sequence seqraise.items_id_seq\nSkipped sequence seqraise.C q: already added (db t1)\nSkipped sequence seqraise.a: already added (db t1)\nSkipped sequence seqraise.b: already added (db t1)\nHerd seqraise has the sequences\n"; out != want {
		t.Errorf("add sequence seqraise.* said:\n%s\nwant:\n%s", out, want)
	}

	// a: the highest source is t2 (5); the target t4 is higher still (100) and keeps it.
	c.on("t1", `SELECT nextval('a') FROM generate_series(1, 3)`)
	c.on("t2", `SELECT nextval('a') FROM generate_series(1, 5)`)
	c.on("t3", `SELECT nextval('a')`)
	c.on("t4", `SELECT setval('a', 100)`)
	// b: an uncalled 7 on t2 (its next value is 7): every db gets an uncalled 7.
	c.on("t2", `SELECT setval('b', 7, false)`)
	// "C q": a called 5 (t1) is ahead of an uncalled 5 (t3).
	c.on("t1", `SELECT setval('"C q"', 5, true)`)
	c.on("t3", `SELECT setval('"C q"', 5, false)`)

	// No table changed: the run is empty, and still sets the sequences.
	res := c.mustRun(control.StateEmpty, job.Options{})
	if res.Sequences != 8 || c.lastRunSequences() != "8" {
		t.Errorf("the run set %d sequences (recorded %s), want 8", res.Sequences, c.lastRunSequences())
	}
	c.wantSeqStates("a", "t1: 5 true 1", "t2: 5 true 1", "t3: 5 true 1", "t4: 100 true 1")
	c.wantSeqStates("b", "t1: 7 false 1", "t2: 7 false 1", "t3: 7 false 1", "t4: 7 false 1")
	c.wantSeqStates(`"C q"`, "t1: 5 true 1", "t2: 5 true 1", "t3: 5 true 1", "t4: 5 true 1")

	// The same again: nothing to set.
	if res := c.mustRun(control.StateEmpty, job.Options{}); res.Sequences != 0 {
		t.Errorf("the second run set %d sequences, want 0", res.Sequences)
	}
	if got := c.int("t3", `SELECT nextval('b')`); got != 7 {
		t.Errorf("nextval('b') on t3 = %d, want 7 (is_called false kept)", got)
	}

	// Rows and sequences together: t1's serial keys reach the others, and so does its
	// sequence, so that t2's next row does not take a key t1 used.
	c.on("t1", `INSERT INTO items (v) VALUES ('x'), ('y')`)
	c.on("t2", `SELECT nextval('a') FROM generate_series(1, 10)`)
	res = c.mustRun(control.StateGood, job.Options{})
	// items_id_seq on t2, t3, t4; a on t1 and t3 (t4 keeps 100); b on t1, t2, t4 (t3's
	// nextval above made its 7 called).
	if res.Sequences != 8 || !strings.Contains(res.Summary(), "; sequences set 8") {
		t.Errorf("the run set %d sequences, want 8: %s", res.Sequences, res.Summary())
	}
	c.wantSeqStates("items_id_seq", "t1: 2 true 1", "t2: 2 true 1", "t3: 2 true 1", "t4: 2 true 1")
	c.wantSeqStates("a", "t1: 15 true 1", "t2: 15 true 1", "t3: 15 true 1", "t4: 100 true 1")
	c.wantSeqStates("b", "t1: 7 true 1", "t2: 7 true 1", "t3: 7 true 1", "t4: 7 true 1")
	c.on("t2", `INSERT INTO items (v) VALUES ('z')`)
	c.mustRun(control.StateGood, job.Options{})
	if diff := cmp.Diff([]string{"(1,x)", "(2,y)", "(3,z)"}, c.sameEverywhere("items", "id")); diff != "" {
		t.Errorf("items (-want +got):\n%s", diff)
	}
}

// testSequencesInterleave: interleave=on gives the three sources INCREMENT BY 3 and
// residues 1, 2, 0 above every db's value; rows inserted on every source then never take
// the same key (no conflict), runs keep each source's residue, and interleave=off goes
// back to INCREMENT BY 1.
func testSequencesInterleave(t *testing.T, f *farm) {
	c := f.cluster(t, "seqil", 4)
	c.onAll(`CREATE TABLE items (id bigserial PRIMARY KEY, src text)`)
	c.configure([]string{"items"}, []string{"t1:source", "t2:source", "t3:source", "t4:target"})
	c.ibex("add", "sequence", c.q("items_id_seq"), "db=t1", "herd="+c.sync)
	c.on("t1", `INSERT INTO items (src) VALUES ('t1'), ('t1')`)
	c.mustRun(control.StateGood, job.Options{})
	c.wantSeqStates("items_id_seq", "t1: 2 true 1", "t2: 2 true 1", "t3: 2 true 1", "t4: 2 true 1")

	out := c.ibex("update", "sequence", c.q("items_id_seq"), "interleave=on")
	want := `Sequence seqil.items_id_seq on db t1: INCREMENT BY 3, next value 4
Sequence seqil.items_id_seq on db t2: INCREMENT BY 3, next value 5
Sequence seqil.items_id_seq on db t3: INCREMENT BY 3, next value 3
Updated sequence seqil.items_id_seq
`
	if out != want {
		t.Errorf("interleave=on said:\n%s\nwant:\n%s", out, want)
	}
	if got := c.ibex("list", "sequences", c.q("items_id_seq")); got != "Sequence             DB   Herds   Interleave\nseqil.items_id_seq | t1 | seqil | yes\n" {
		t.Errorf("list sequences:\n%s", got)
	}
	for _, n := range []string{"t1", "t2", "t3"} {
		c.on(n, `INSERT INTO items (src) SELECT $1 FROM generate_series(1, 3)`, n)
	}
	res := c.mustRun(control.StateGood, job.Options{})
	if res.Conflicts != 0 || res.Sequences != 3 {
		t.Errorf("run after inserts on every source: %s (want no conflict, 3 sequences set)", res.Summary())
	}
	wantRows := []string{"(1,t1)", "(2,t1)", "(3,t3)", "(4,t1)", "(5,t2)", "(6,t3)", "(7,t1)", "(8,t2)", "(9,t3)", "(10,t1)", "(11,t2)"}
	if diff := cmp.Diff(wantRows, c.sameEverywhere("items", "id")); diff != "" {
		t.Errorf("items (-want +got):\n%s", diff)
	}
	// The highest is t2's 11: t1 goes to 13 and t3 to 12 (uncalled: the next values), the
	// target to 11.
	c.wantSeqStates("items_id_seq", "t1: 13 false 3", "t2: 11 true 3", "t3: 12 false 3", "t4: 11 true 1")
	for _, n := range []string{"t1", "t2", "t3"} {
		c.on(n, `INSERT INTO items (src) VALUES ($1)`, n)
	}
	if res := c.mustRun(control.StateGood, job.Options{}); res.Conflicts != 0 {
		t.Errorf("second run: %s (want no conflict)", res.Summary())
	}
	wantRows = append(wantRows, "(12,t3)", "(13,t1)", "(14,t2)")
	if diff := cmp.Diff(wantRows, c.sameEverywhere("items", "id")); diff != "" {
		t.Errorf("items (-want +got):\n%s", diff)
	}

	out = c.ibex("update", "sequence", c.q("items_id_seq"), "interleave=off")
	want = `Sequence seqil.items_id_seq on db t1: INCREMENT BY 1
Sequence seqil.items_id_seq on db t2: INCREMENT BY 1
Sequence seqil.items_id_seq on db t3: INCREMENT BY 1
Updated sequence seqil.items_id_seq
`
	if out != want {
		t.Errorf("interleave=off said:\n%s\nwant:\n%s", out, want)
	}
	// The second run had left t1 at an uncalled 16 (residue 1 above t2's 14), t3 at an
	// uncalled 15: by 1 now, every db takes t1's.
	c.mustRun(control.StateEmpty, job.Options{})
	c.wantSeqStates("items_id_seq", "t1: 16 false 1", "t2: 16 false 1", "t3: 16 false 1", "t4: 16 false 1")
}

// testSequenceMissingOnTarget: a db lacking a sequence of the herd leaves the run, which is
// bad and names the db and the sequence; the other dbs get theirs.
func testSequenceMissingOnTarget(t *testing.T, f *farm) {
	c := f.cluster(t, "seqmiss", 3)
	c.onAll(`CREATE TABLE items (id int PRIMARY KEY)`)
	c.on("t1", `CREATE SEQUENCE s`)
	c.on("t2", `CREATE SEQUENCE s`)
	c.configure([]string{"items"}, []string{"t1:source", "t2:source", "t3:target"})
	c.ibex("add", "sequence", c.q("s"), "db=t1", "herd="+c.sync)
	c.on("t1", `SELECT setval('s', 10)`)
	// validate names the db and the sequence.
	if code, _, errs := c.ibexCmd("validate", c.sync); code != 1 || errs != "ibex: sync seqmiss: db t3: sequence seqmiss.s: no such sequence (create it there, or take it out of herd seqmiss)\n" {
		t.Errorf("validate: exit %d, %q", code, errs)
	}
	res := c.mustRun(control.StateBad, job.Options{})
	if want := map[string]string{"t3": "db t3: sequence seqmiss.s: no such sequence"}; !cmp.Equal(want, res.Skipped) {
		t.Errorf("skipped %v, want %v", res.Skipped, want)
	}
	if res.Sequences != 1 {
		t.Errorf("the run set %d sequences, want 1 (on t2)", res.Sequences)
	}
	if got := c.int("t2", `SELECT last_value FROM s`); got != 10 {
		t.Errorf("t2's s is at %d, want 10", got)
	}
	// interleave=on refuses, naming the db and the sequence, and changes nothing.
	if code, _, errs := c.ibexCmd("update", "sequence", c.q("s"), "interleave=on"); code != 1 || errs != "ibex: db t3: sequence seqmiss.s: no such sequence\n" {
		t.Errorf("interleave=on: exit %d, %q", code, errs)
	}
	for _, n := range []string{"t1", "t2"} {
		if got := c.int(n, `SELECT increment_by FROM pg_sequences WHERE schemaname = 'seqmiss' AND sequencename = 's'`); got != 1 {
			t.Errorf("db %s: s counts by %d after the refused interleave", n, got)
		}
	}
	if got := c.ibex("list", "sequences", c.q("s")); got != "Sequence    DB   Herds     Interleave\nseqmiss.s | t1 | seqmiss | no\n" {
		t.Errorf("list sequences:\n%s", got)
	}
}

// testSequenceResidueWarning: two sources counting by 2 from the same residue would hand
// out the same values: the run says so (and keeps each one's residue).
func testSequenceResidueWarning(t *testing.T, f *farm) {
	c := f.cluster(t, "seqres", 3)
	c.onAll(`CREATE TABLE items (id int PRIMARY KEY); CREATE SEQUENCE s INCREMENT BY 2`)
	c.configure([]string{"items"}, []string{"t1:source", "t2:source", "t3:source"})
	c.ibex("add", "sequence", c.q("s"), "db=t1", "herd="+c.sync)
	c.on("t1", `SELECT setval('s', 9)`)
	c.on("t3", `ALTER SEQUENCE s RESTART WITH 2`)
	var logs bytes.Buffer
	res := c.mustRun(control.StateEmpty, job.Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if res.Sequences != 2 {
		t.Errorf("the run set %d sequences, want 2", res.Sequences)
	}
	for _, want := range []string{
		`level=WARN msg="two sources hand out the same values of a sequence (same INCREMENT BY and residue): give each its own START, or run 'ibex update sequence seqres.s interleave=on'" sync=seqres sequence=seqres.s db=t2 other=t1 increment=2 residue=1`,
		`level=INFO msg=sequences sync=seqres sequences=1 dbs=3 set=2`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the logs lack\n%s\nin:\n%s", want, logs.String())
		}
	}
	// t2 takes t1's 9 (its residue); t3 keeps its own: 10, uncalled.
	c.wantSeqStates("s", "t1: 9 true 2", "t2: 9 true 2", "t3: 10 false 2")
}

// testSequencesOnly: a sync whose herd has sequences and no table (Bucardo's sequence-only
// syncs) runs, and sets them.
func testSequencesOnly(t *testing.T, f *farm) {
	c := f.cluster(t, "seqonly", 3)
	c.onAll(`CREATE SEQUENCE s`)
	c.ibex("add", "sequence", c.q("s"), "db=t1", "herd="+c.sync)
	c.ibex("add", "sync", c.sync, "herd="+c.sync, "dbs=t1:source,t2:source,t3:target")
	c.on("t2", `SELECT setval('s', 42)`)
	res := c.mustRun(control.StateEmpty, job.Options{})
	if res.Sequences != 2 {
		t.Errorf("the run set %d sequences, want 2: %s", res.Sequences, res.Summary())
	}
	c.wantSeqStates("s", "t1: 42 true 1", "t2: 42 true 1", "t3: 42 true 1")
}

// testSequenceBusy: a db whose sequence an open application transaction holds (it called
// nextval) is not raised this run, which stays good and says so; the next run raises it.
func testSequenceBusy(t *testing.T, f *farm) {
	c := f.cluster(t, "seqbusy", 3)
	c.onAll(`CREATE TABLE items (id int PRIMARY KEY); CREATE SEQUENCE s`)
	c.configure([]string{"items"}, []string{"t1:source", "t2:source", "t3:target"})
	c.ibex("add", "sequence", c.q("s"), "db=t1", "herd="+c.sync)
	c.on("t1", `SELECT setval('s', 50)`)
	app := pgtest.Conn(t, c.dsn(c.dbs["t3"]))
	tx, err := app.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(context.Background(), `SELECT nextval('s')`); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	res := c.mustRun(control.StateEmpty, job.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if res.Sequences != 1 {
		t.Errorf("the run set %d sequences, want 1 (t2)", res.Sequences)
	}
	if want := `level=WARN msg="sequences not set on this db this run" sync=seqbusy db=t3 reason="db t3: sequence seqbusy.s: busy: a transaction that called nextval on it is still open"`; !strings.Contains(logs.String(), want) {
		t.Errorf("the logs lack\n%s\nin:\n%s", want, logs.String())
	}
	if err := tx.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.wantSeqStates("s", "t1: 50 true 1", "t2: 50 true 1", "t3: 1 true 1")
	if res := c.mustRun(control.StateEmpty, job.Options{}); res.Sequences != 1 {
		t.Errorf("the next run set %d sequences, want 1 (t3)", res.Sequences)
	}
	c.wantSeqStates("s", "t1: 50 true 1", "t2: 50 true 1", "t3: 50 true 1")
}
