package job_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/ibextest"
	"github.com/ibexrepl/ibex/job"
)

// testInsertsKeyChangesDeletes: inserts, updates that change the key (the old key goes
// away on the other dbs, the new one appears), a key changed away and back, a row
// inserted and deleted in one transaction, deletes, and a key moved away on one source
// while another source updates the old key later.
func testInsertsKeyChangesDeletes(t *testing.T, f *farm) {
	c, _ := f.itemCluster(t, "dml", 3, []string{"t1:source", "t2:source", "t3:target"})
	c.on("t1", `INSERT INTO item VALUES (100, 't1:100')`)
	c.on("t1", `UPDATE item SET id = id + 1000 WHERE id = 5`)
	c.on("t1", `DELETE FROM item WHERE id = 7`)
	c.on("t1", `UPDATE item SET id = 2010 WHERE id = 10`)
	c.on("t1", `UPDATE item SET id = 10, v = 't1:10' WHERE id = 2010`)
	c.on("t1", `BEGIN; INSERT INTO item VALUES (500, 'gone'); DELETE FROM item WHERE id = 500; COMMIT`)
	c.on("t1", `UPDATE item SET id = 1006 WHERE id = 6`)
	c.on("t2", `UPDATE item SET v = 't2:6' WHERE id = 6`) // later than t1's move: t2's 6 wins
	c.on("t2", `INSERT INTO item VALUES (200, 't2:200')`)
	c.on("t2", `UPDATE item SET id = id + 1000 WHERE id = 8`)
	c.on("t2", `DELETE FROM item WHERE id = 9`)

	res := c.mustRun(control.StateGood, job.Options{})
	want := []string{"(1,init)", "(2,init)", "(3,init)", "(4,init)", "(6,t2:6)", "(10,t1:10)", "(100,t1:100)", "(200,t2:200)",
		"(1005,init)", "(1006,init)", "(1008,init)"}
	for _, db := range c.names {
		if diff := cmp.Diff(want, c.rows(db, "item", "id")); diff != "" {
			t.Errorf("db %s (-want +got):\n%s", db, diff)
		}
	}
	// Keys 100 1005 10 6 1006 200 1008 are copied to 2 dbs each; 5 7 10 6(t3) 8 9 had rows
	// on the receivers: 2+2+2+1+2+2 deletes; key 6 is the one conflict.
	if got, want := countsOf(res), (counts{I: 14, D: 11, C: 1}); got != want {
		t.Errorf("I/D/C %+v, want %+v", got, want)
	}
	c.mustRun(control.StateEmpty, job.Options{})
}

// testNoEcho: rows a run applies on a source are not captured there again, so the next run
// has nothing to do.
func testNoEcho(t *testing.T, f *farm) {
	c, _ := f.itemCluster(t, "echo", 3, []string{"t1:source", "t2:source", "t3:target"})
	c.on("t1", `UPDATE item SET v = 't1' WHERE id <= 5`)
	c.on("t1", `INSERT INTO item VALUES (20, 't1')`)
	c.on("t2", `UPDATE item SET v = 't2' WHERE id BETWEEN 6 AND 8`)
	c.on("t2", `DELETE FROM item WHERE id = 9`)
	res := c.mustRun(control.StateGood, job.Options{})
	if got, want := countsOf(res), (counts{I: 18, D: 18}); got != want {
		t.Errorf("I/D/C %+v, want %+v", got, want)
	}
	ct := c.changeTable("item")
	if n := c.int("t2", `SELECT count(*) FROM `+ct+` WHERE id <= 5 OR id = 20`); n != 0 {
		t.Errorf("t2 captured %d change rows for the keys it received from t1", n)
	}
	if n := c.int("t1", `SELECT count(*) FROM `+ct+` WHERE id BETWEEN 6 AND 9`); n != 0 {
		t.Errorf("t1 captured %d change rows for the keys it received from t2", n)
	}
	for _, db := range []string{"t1", "t2"} {
		if n := c.int(db, `SELECT count(*) FROM `+ct); n != 0 {
			t.Errorf("db %s: %d change rows left after the run", db, n)
		}
	}
	c.mustRun(control.StateEmpty, job.Options{})
	c.sameEverywhere("item", "id")
}

// testSchemaDrift: a column added on one db only makes the run fail, naming the table and
// the column, with nothing applied anywhere; once every db has it the run goes through.
// A type that differs is refused the same way.
func testSchemaDrift(t *testing.T, f *farm) {
	c, m := f.itemCluster(t, "drift", 3, []string{"t1:source", "t2:source", "t3:target"})
	c.apply(m, []write{{"t1", "update", 1}, {"t2", "update", 2}})
	c.on("t2", `ALTER TABLE item ADD COLUMN extra int`)
	res := c.mustRun(control.StateBad, job.Options{})
	for _, s := range []string{c.qual("item"), `"extra"`, "t2"} {
		if !strings.Contains(res.Error, s) {
			t.Errorf("error %q does not name %s", res.Error, s)
		}
	}
	c.check(m) // nothing applied

	c.on("t1", `ALTER TABLE item ADD COLUMN extra int`)
	c.on("t3", `ALTER TABLE item ADD COLUMN extra int`)
	c.on("t1", `UPDATE item SET extra = 42 WHERE id = 3`)
	res = c.mustRun(control.StateGood, job.Options{})
	if got, want := countsOf(res), (counts{I: 6, D: 6}); got != want {
		t.Errorf("I/D/C %+v, want %+v", got, want)
	}
	rows := c.sameEverywhere("item", "id")
	if diff := cmp.Diff([]string{"(1,t1:1,)", "(2,t2:2,)", "(3,init,42)"}, rows[:3]); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}

	c.on("t3", `ALTER TABLE item ALTER COLUMN extra TYPE bigint`)
	c.on("t1", `UPDATE item SET extra = 43 WHERE id = 4`)
	res = c.mustRun(control.StateBad, job.Options{})
	for _, s := range []string{c.qual("item"), `"extra"`, "bigint", "t3"} {
		if !strings.Contains(res.Error, s) {
			t.Errorf("error %q does not name %s", res.Error, s)
		}
	}
	if got := c.strs("t3", `SELECT extra::text FROM item WHERE id = 4`); got[0] != "<NULL>" {
		t.Errorf("t3 received id 4 despite the drift: extra = %s", got[0])
	}
}

// logCounter counts log records by message.
type logCounter struct {
	mu    sync.Mutex
	msgs  map[string]int
	keys  []int64           // "keys" of each "batch applied"
	split map[string]string // "split" of each table's "backlog"
}

func (l *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCounter) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs[r.Message]++
	if r.Message == "backlog" {
		var table, split string
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "table":
				table = a.Value.String()
			case "split":
				split = a.Value.String()
			}
			return true
		})
		if l.split == nil {
			l.split = map[string]string{}
		}
		l.split[table] = split
	}
	if r.Message == "batch applied" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "keys" {
				l.keys = append(l.keys, a.Value.Int64())
			}
			return true
		})
	}
	return nil
}
func (l *logCounter) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCounter) WithGroup(string) slog.Handler      { return l }

// checkBatches fails t unless every batch logged kept to about batchSize keys (at most
// twice: a batch is a key range or hash bucket, not an exact cut), there were at least
// minBatches, and they handled wantKeys keys in all.
func (l *logCounter) checkBatches(t *testing.T, batchSize, minBatches, wantKeys int64) {
	t.Helper()
	var total int64
	for _, k := range l.keys {
		total += k
		if k > batchSize*3/2 {
			t.Errorf("a batch of %d keys with BatchSize %d", k, batchSize)
		}
	}
	if total != wantKeys || int64(len(l.keys)) < minBatches {
		t.Errorf("%d batches handled %d keys in all, want at least %d batches and %d keys (%v)", len(l.keys), total, minBatches, wantKeys, l.keys)
	}
	t.Logf("%d batches: %v", len(l.keys), l.keys)
}

// testBatching: a backlog of 5,000 changed keys (5,500 change rows) with BatchSize 700
// goes in several bounded batches, converges, and the counts are exact.
func testBatching(t *testing.T, f *farm) {
	c := f.cluster(t, "batch", 3)
	c.onAll(`CREATE TABLE item (id int PRIMARY KEY, v text); INSERT INTO item SELECT g, 'init' FROM generate_series(1, 6000) g`)
	c.configure([]string{"item"}, []string{"t1:source", "t2:source", "t3:target"})
	c.on("t1", `UPDATE item SET v = 't1' WHERE id <= 3000`)
	c.on("t2", `UPDATE item SET v = 't2' WHERE id > 2500 AND id <= 5000`)

	lc := &logCounter{msgs: map[string]int{}}
	res := c.mustRun(control.StateGood, job.Options{BatchSize: 700, Logger: slog.New(lc)})
	if got, want := countsOf(res), (counts{I: 10000, D: 10000, C: 500}); got != want {
		t.Errorf("I/D/C %+v, want %+v", got, want)
	}
	if diff := cmp.Diff(map[string]job.Stats{c.qual("item"): {Inserts: 10000, Deletes: 10000, Conflicts: 500}}, res.Tables); diff != "" {
		t.Errorf("per-table counts (-want +got):\n%s", diff)
	}
	lc.checkBatches(t, 700, 5500/700, 5000)
	rows := c.sameEverywhere("item", "id")
	for i, r := range rows {
		id := i + 1
		want := fmt.Sprintf("(%d,init)", id)
		switch {
		case id <= 2500:
			want = fmt.Sprintf("(%d,t1)", id)
		case id <= 5000:
			want = fmt.Sprintf("(%d,t2)", id)
		}
		if r != want {
			t.Fatalf("row %d is %s, want %s", id, r, want)
		}
	}
	if len(rows) != 6000 {
		t.Errorf("%d rows, want 6000", len(rows))
	}
	// The sync's own batch_size is used when the run sets none.
	c.ibex("update", "sync", c.sync, "batch_size=300")
	c.on("t2", `UPDATE item SET v = 'again' WHERE id <= 1000`)
	lc = &logCounter{msgs: map[string]int{}}
	res = c.mustRun(control.StateGood, job.Options{Logger: slog.New(lc)})
	if got, want := countsOf(res), (counts{I: 2000, D: 2000}); got != want {
		t.Errorf("second backlog: I/D/C %+v, want %+v", got, want)
	}
	// A backlog of at most four batches is read in one scan and cut between its keys.
	if diff := cmp.Diff([]int64{250, 250, 250, 250}, lc.keys); diff != "" {
		t.Errorf("keys of the batches of 1,000 changes with batch_size=300 (-want +got):\n%s", diff)
	}
	if got := lc.split[c.qual("item")]; got != "key ranges, one scan" {
		t.Errorf("1,000 changes with batch_size=300 split by %q, want key ranges, one scan", got)
	}
	// The first three batches' change rows are consumed while the last one is applied.
	if n := lc.msgs["consumed ahead"]; n != 1 {
		t.Errorf("%d consumes ahead, want 1", n)
	}
	c.sameEverywhere("item", "id")
	c.mustRun(control.StateEmpty, job.Options{})
}

// testLeastPrivilege: with the dbs reached as a role that is not superuser and owns the
// tables (so session_replication_role cannot be set and ibex.applying is used instead),
// the sync is added, replicates, and applied rows are not captured again.
func testLeastPrivilege(t *testing.T, f *farm) {
	c := f.cluster(t, "lp", 0)
	for _, name := range c.addAsRole(f, "o", 3) {
		c.on(name, `CREATE SCHEMA lp; CREATE TABLE item (id int PRIMARY KEY, v text); INSERT INTO item SELECT g, 'init' FROM generate_series(1, 10) g`)
	}
	if n := c.int("o1", `SELECT count(*) FROM pg_roles WHERE rolname = current_user AND NOT rolsuper`); n != 1 {
		t.Fatalf("the dbs are not reached as a plain role")
	}
	c.configure([]string{"item"}, []string{"o1:source", "o2:source", "o3:target"})
	c.on("o1", `UPDATE item SET v = 'o1' WHERE id <= 5`)
	c.on("o2", `UPDATE item SET v = 'o2' WHERE id > 5`)
	res := c.mustRun(control.StateGood, job.Options{})
	if got, want := countsOf(res), (counts{I: 20, D: 20}); got != want {
		t.Errorf("I/D/C %+v, want %+v", got, want)
	}
	ct := c.changeTable("item")
	for _, db := range []string{"o1", "o2"} {
		if n := c.int(db, `SELECT count(*) FROM `+ct); n != 0 {
			t.Errorf("db %s: %d change rows after the run (echo of applied rows?)", db, n)
		}
	}
	c.mustRun(control.StateEmpty, job.Options{})
	rows := c.sameEverywhere("item", "id")
	if len(rows) != 10 || rows[0] != "(1,o1)" || rows[9] != "(10,o2)" {
		t.Errorf("rows %v", rows)
	}
}

// testBatchingSkewAndTextKey: batches of an integer or uuid key are ranges split at
// quantiles merged across sources; a skewed backlog (a dense run of keys on one source,
// far-away new keys and a conflict zone on the other) still goes in bounded batches with
// exact counts and winners; a text key goes in hash buckets.
func testBatchingSkewAndTextKey(t *testing.T, f *farm) {
	c := f.cluster(t, "skew", 3)
	c.onAll(`CREATE TABLE item (id bigint PRIMARY KEY, v text); INSERT INTO item SELECT g, 'init' FROM generate_series(1, 4000) g;
CREATE TABLE word (k text PRIMARY KEY, v text); INSERT INTO word SELECT 'w' || g, 'init' FROM generate_series(1, 3000) g;
CREATE TABLE tok (id uuid PRIMARY KEY, v text); INSERT INTO tok SELECT md5('k' || g)::uuid, 'init' FROM generate_series(1, 3000) g`)
	c.configure([]string{"item", "word", "tok"}, []string{"t1:source", "t2:source", "t3:target"})
	c.on("t1", `UPDATE item SET v = 't1' WHERE id <= 3000`)
	c.on("t2", `INSERT INTO item SELECT 1000000000000 + g, 'far' FROM generate_series(1, 200) g`)
	c.on("t2", `UPDATE item SET v = 't2' WHERE id > 2900 AND id <= 3100`)
	c.on("t1", `UPDATE word SET v = 't1' WHERE substr(k, 2)::int <= 2000`)
	// uuid keys: t1 changes those below 8, t2 those from 6 to a (6 and 7 on both).
	tokChanged := c.int("t3", `SELECT count(*) FROM tok WHERE id < 'a0000000-0000-0000-0000-000000000000'`)
	tokBoth := c.int("t3", `SELECT count(*) FROM tok WHERE id >= '60000000-0000-0000-0000-000000000000' AND id < '80000000-0000-0000-0000-000000000000'`)
	c.on("t1", `UPDATE tok SET v = 't1' WHERE id < '80000000-0000-0000-0000-000000000000'`)
	c.on("t2", `UPDATE tok SET v = 't2' WHERE id >= '60000000-0000-0000-0000-000000000000' AND id < 'a0000000-0000-0000-0000-000000000000'`)

	lc := &logCounter{msgs: map[string]int{}}
	res := c.mustRun(control.StateGood, job.Options{BatchSize: 500, Logger: slog.New(lc)})
	want := map[string]job.Stats{
		c.qual("item"): {Inserts: 2 * 3300, Deletes: 2 * 3100, Conflicts: 100},
		c.qual("word"): {Inserts: 2 * 2000, Deletes: 2 * 2000},
		c.qual("tok"):  {Inserts: 2 * tokChanged, Deletes: 2 * tokChanged, Conflicts: tokBoth},
	}
	if diff := cmp.Diff(want, res.Tables); diff != "" {
		t.Errorf("per-table counts (-want +got):\n%s", diff)
	}
	wantSplit := map[string]string{c.qual("item"): "key ranges", c.qual("tok"): "key ranges", c.qual("word"): "hash buckets"}
	if diff := cmp.Diff(wantSplit, lc.split); diff != "" {
		t.Errorf("how each backlog was split (-want +got):\n%s", diff)
	}
	wantKeys := 3300 + 2000 + tokChanged
	lc.checkBatches(t, 500, wantKeys/500, wantKeys)
	for _, r := range c.sameEverywhere("item", "id") {
		var id int64
		var v string
		if _, err := fmt.Sscanf(strings.NewReplacer("(", "", ")", "", ",", " ").Replace(r), "%d %s", &id, &v); err != nil {
			t.Fatalf("row %s: %v", r, err)
		}
		want := "init"
		switch {
		case id > 1000000000000:
			want = "far"
		case id <= 2900:
			want = "t1"
		case id <= 3000:
			want = "t2" // changed on both: t2's change is the later one
		case id <= 3100:
			want = "t2"
		case id > 3100 && id <= 4000:
			want = "init"
		}
		if v != want {
			t.Fatalf("row %s, want v = %s", r, want)
		}
	}
	if n := len(c.sameEverywhere("word", "k")); n != 3000 {
		t.Errorf("word has %d rows, want 3000", n)
	}
	c.sameEverywhere("tok", "id")
	got := c.int("t3", `SELECT count(*) FROM tok WHERE v = CASE WHEN id < '60000000-0000-0000-0000-000000000000' THEN 't1'
  WHEN id < 'a0000000-0000-0000-0000-000000000000' THEN 't2' ELSE 'init' END`)
	if got != 3000 {
		t.Errorf("%d of 3000 tok rows have the winning value", got)
	}
	// A uuid backlog of two batches is read in one scan and cut between its keys.
	c.on("t2", `UPDATE tok SET v = 'again' WHERE id IN (SELECT id FROM tok ORDER BY id LIMIT 900)`)
	lc = &logCounter{msgs: map[string]int{}}
	res = c.mustRun(control.StateGood, job.Options{BatchSize: 500, Logger: slog.New(lc)})
	if diff := cmp.Diff(map[string]job.Stats{c.qual("tok"): {Inserts: 1800, Deletes: 1800}}, res.Tables); diff != "" {
		t.Errorf("uuid backlog of two batches: per-table counts (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int64{450, 450}, lc.keys); diff != "" {
		t.Errorf("uuid backlog of two batches: keys per batch (-want +got):\n%s", diff)
	}
	if got := lc.split[c.qual("tok")]; got != "key ranges, one scan" {
		t.Errorf("uuid backlog of two batches split by %q, want key ranges, one scan", got)
	}
	c.sameEverywhere("tok", "id")
	if got := c.int("t3", `SELECT count(*) FROM tok WHERE v = 'again'`); got != 900 {
		t.Errorf("%d tok rows changed again on t3, want 900", got)
	}
	c.mustRun(control.StateEmpty, job.Options{})
}

// testAddSyncAllOrNothing: a sync whose capture cannot be installed on one source (its
// table belongs to another role) is refused, and no source keeps a trigger or a change
// table from the attempt; once the owner is fixed, the same add works.
func testAddSyncAllOrNothing(t *testing.T, f *farm) {
	c := f.cluster(t, "aon", 0)
	c.addAsRole(f, "a", 2)
	c.on("a1", `CREATE SCHEMA aon; CREATE TABLE item (id int PRIMARY KEY, v text)`)
	// On a2 the table belongs to the superuser: ibex's role may read it but not add triggers.
	ibextest.Exec(c.t, f.dbs["t2"].DSN, `CREATE SCHEMA aon; CREATE TABLE aon.item (id int PRIMARY KEY, v text); GRANT USAGE ON SCHEMA aon TO `+f.role+`; GRANT SELECT, INSERT, UPDATE, DELETE ON aon.item TO `+f.role)
	c.ibex("add", "table", c.q("item"), "db=a1", "herd="+c.sync)
	c.ibex("add", "dbgroup", c.sync, "a1:source", "a2:source")
	code, _, errs := c.ibexCmd("add", "sync", c.sync, "herd="+c.sync, "dbs="+c.sync, "autokick=false")
	if code == 0 || !strings.Contains(errs, "must own table aon.item") {
		t.Fatalf("add sync with a table the role does not own on a2: exit %d, %s", code, errs)
	}
	for _, db := range []string{"a1", "a2"} {
		if n := c.int(db, `SELECT count(*) FROM pg_trigger WHERE tgrelid = 'aon.item'::regclass AND tgname LIKE 'ibex%'`); n != 0 {
			t.Errorf("db %s keeps %d ibex triggers after the refused add sync", db, n)
		}
		if n := c.int(db, `SELECT count(*) FROM pg_class WHERE relname = $1`, "aon.aon.item"); n != 0 {
			t.Errorf("db %s keeps a change table after the refused add sync", db)
		}
	}
	ibextest.Exec(c.t, f.dbs["t2"].DSN, `ALTER TABLE aon.item OWNER TO `+f.role)
	c.ibex("add", "sync", c.sync, "herd="+c.sync, "dbs="+c.sync, "autokick=false")
	c.on("a1", `INSERT INTO item VALUES (1, 'one')`)
	c.mustRun(control.StateGood, job.Options{})
	c.sameEverywhere("item", "id")
}
