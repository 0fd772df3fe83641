package job_test

import (
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"

	_ "modernc.org/sqlite" // the driver "sqlite", to set up and read the SQLite target

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/ibextest"
	"github.com/ibexrepl/ibex/job"
	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/targets"
)

// testOnErrorSkipTargets: on_error=skip on targets that are not PostgreSQL. Two
// PostgreSQL sources, a MariaDB and an SQLite target whose tables have a CHECK the
// sources do not have (and, on MariaDB, a varchar(5) column where the sources have text),
// and a Redis target, which refuses no row (on_error=skip has nothing to skip there).
// Under on_error=stop a refused row fails the batch on the target that refuses it: that
// target applies nothing of the run and the run is bad, naming the constraint, while the
// other source is served. Under on_error=skip every other row is applied there (updates,
// inserts, a delete), the refused rows are parked in ibex.exception with their values and
// the target's error text, listed by conflicts --errors and counted by status, and the
// next run is empty; among 500 inserted rows, the refused ones are found and the others
// applied.
func testOnErrorSkipTargets(t *testing.T, f *farm) {
	c := f.cluster(t, "onerrtg", 2)
	ctx := t.Context()
	c.onAll(`CREATE TABLE item (id int PRIMARY KEY, v int, note text); INSERT INTO item SELECT g, g, 'init' FROM generate_series(1, 10) g`)
	flat := sinks.FlatName(c.schema, "item")
	init := `INSERT INTO %s VALUES (1,1,'init'),(2,2,'init'),(3,3,'init'),(4,4,'init'),(5,5,'init'),(6,6,'init'),(7,7,'init'),(8,8,'init'),(9,9,'init'),(10,10,'init')`

	// MariaDB: a CHECK, and a varchar(5) note.
	kinds := map[string]targetKind{}
	for _, k := range targetKinds {
		kinds[k.name] = k
	}
	mparams := kinds["mariadb"].setup(t)
	rparams := kinds["redis"].setup(t)
	root := mariaRoot(t)
	mtable := "`" + mparams["dbname"] + "`.`" + flat + "`"
	for _, q := range []string{
		`CREATE TABLE ` + mtable + ` (id int PRIMARY KEY, v int, note varchar(5), CONSTRAINT small_v CHECK (v < 1000)) ENGINE=InnoDB`,
		fmt.Sprintf(init, mtable),
	} {
		if _, err := root.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// SQLite: the same CHECK.
	spath := t.TempDir() + "/target.db"
	lite, err := sql.Open("sqlite", spath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lite.Close() })
	stable := `"` + flat + `"`
	for _, q := range []string{
		`CREATE TABLE ` + stable + ` (id INTEGER PRIMARY KEY, v INTEGER, note TEXT, CONSTRAINT small_v CHECK (v < 1000))`,
		fmt.Sprintf(init, stable),
	} {
		if _, err := lite.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}

	add := []string{"add", "db", "xm", "type=mariadb"}
	for k, v := range mparams {
		add = append(add, k+"="+v)
	}
	c.ibex(add...)
	c.ibex("add", "db", "xs", "type=sqlite", "path="+spath)
	add = []string{"add", "db", "xr", "type=redis"}
	for k, v := range rparams {
		add = append(add, k+"="+v)
	}
	c.ibex(add...)
	c.configure([]string{"item"}, []string{"t1:source", "t2:source", "xm:target", "xs:target", "xr:target"})
	c.ibex("validate", c.sync)

	// The Redis target holds t1's rows (seeded through its sink as the others by hand).
	rtbl := &sinks.Table{Schema: c.schema, Name: "item", Key: []string{"id"}, Cols: []string{"id", "v", "note"},
		Columns: []catalog.Column{{Name: "id", Type: "integer", NotNull: true}, {Name: "v", Type: "integer"}, {Name: "note", Type: "text"}}}
	openRedis := func() sinks.Sink {
		t.Helper()
		s, err := targets.Open(ctx, control.DBTypeRedis, sinks.Config{DB: "xr", Params: rparams})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	{
		s := openRedis()
		var keys, lines []string
		for i := 1; i <= 10; i++ {
			keys = append(keys, fmt.Sprint(i))
			lines = append(lines, fmt.Sprintf("%d\t%d\tinit", i, i))
		}
		err := s.Begin(ctx)
		if err == nil {
			_, err = s.PrepareBatch(ctx, rtbl, keys)
		}
		if err == nil {
			_, err = s.WriteRows(ctx, rtbl, sinks.LinesReader(lines))
		}
		if err == nil {
			_, err = s.FinishBatch(ctx, rtbl)
		}
		if err == nil {
			err = s.Commit(ctx)
		}
		if err != nil {
			t.Fatalf("seeding xr: %v", err)
		}
	}
	redisSame := func(what string) {
		t.Helper()
		tbl, s := rtbl, openRedis()
		var got []string
		if err := s.(sinks.Reader).ReadRows(ctx, tbl, func(line string) error { got = append(got, line); return nil }); err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		want := c.strs("t1", `SELECT id || E'\t' || v || E'\t' || note FROM item`)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("xr %s: %d rows, want t1's %d:\n%s", what, len(got), len(want), ibextest.DiffLines(want, got))
		}
	}

	targetRows := func(db *sql.DB, table string) string {
		t.Helper()
		rs, err := db.QueryContext(ctx, `SELECT id, v, note FROM `+table+` WHERE id <= 11 ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rs.Close()
		var out []string
		for rs.Next() {
			var id, v int64
			var note string
			if err := rs.Scan(&id, &v, &note); err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("%d:%d:%s", id, v, note))
		}
		if err := rs.Err(); err != nil {
			t.Fatal(err)
		}
		return strings.Join(out, " ")
	}
	count := func(db *sql.DB, q string) int64 {
		t.Helper()
		var n int64
		if err := db.QueryRowContext(ctx, q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	rows := map[string]func() string{
		"t1": func() string {
			return strings.Join(c.strs("t1", `SELECT id || ':' || v || ':' || note FROM item WHERE id <= 11 ORDER BY id`), " ")
		},
		"t2": func() string {
			return strings.Join(c.strs("t2", `SELECT id || ':' || v || ':' || note FROM item WHERE id <= 11 ORDER BY id`), " ")
		},
		"xm": func() string { return targetRows(root, mtable) },
		"xs": func() string { return targetRows(lite, stable) },
	}

	// on_error=stop: both targets refuse the batch and apply nothing of it; t2 gets its rows.
	c.on("t1", `UPDATE item SET v = 5000, note = 'big' WHERE id = 1`)
	c.on("t1", `UPDATE item SET v = 20 WHERE id = 2`)
	before := map[string]string{"xm": rows["xm"](), "xs": rows["xs"]()}
	res := c.mustRun(control.StateBad, job.Options{})
	if !strings.Contains(res.Error, "small_v") || !strings.Contains(res.Error, "xm") || !strings.Contains(res.Error, "xs") {
		t.Errorf("run under on_error=stop: %s, want both targets and the constraint named", res.Summary())
	}
	for _, db := range []string{"xm", "xs"} {
		if got := rows[db](); got != before[db] {
			t.Errorf("%s after the refused batch: %s, want it unchanged: %s", db, got, before[db])
		}
	}
	if got, want := rows["t2"](), "1:5000:big 2:20:init 3:3:init 4:4:init 5:5:init 6:6:init 7:7:init 8:8:init 9:9:init 10:10:init"; got != want {
		t.Errorf("t2 after the run under on_error=stop: %s, want %s", got, want)
	}
	redisSame("after the run under on_error=stop")

	// on_error=skip: the refused rows are parked, every other row applied.
	c.ibex("update", "sync", c.sync, "on_error=skip")
	c.on("t2", `UPDATE item SET v = 30 WHERE id = 3`)
	c.on("t1", `INSERT INTO item VALUES (11, 11, 'new')`)
	c.on("t2", `UPDATE item SET note = 'too long for xm' WHERE id = 5`)
	c.on("t1", `DELETE FROM item WHERE id = 6`)
	res = c.mustRun(control.StateGood, job.Options{})
	if res.Parked != 3 {
		t.Errorf("parked %d, want 3 (%s)", res.Parked, res.Summary())
	}
	want := map[string]string{
		"t1": "1:5000:big 2:20:init 3:30:init 4:4:init 5:5:too long for xm 7:7:init 8:8:init 9:9:init 10:10:init 11:11:new",
		"t2": "1:5000:big 2:20:init 3:30:init 4:4:init 5:5:too long for xm 7:7:init 8:8:init 9:9:init 10:10:init 11:11:new",
		"xm": "1:1:init 2:20:init 3:30:init 4:4:init 5:5:init 7:7:init 8:8:init 9:9:init 10:10:init 11:11:new",
		"xs": "1:1:init 2:20:init 3:30:init 4:4:init 5:5:too long for xm 7:7:init 8:8:init 9:9:init 10:10:init 11:11:new",
	}
	for _, db := range []string{"t1", "t2", "xm", "xs"} {
		if got := rows[db](); got != want[db] {
			t.Errorf("%s: %s\nwant %s", db, got, want[db])
		}
	}
	redisSame("under on_error=skip")
	// The exception log: per target, the key, the row as COPY text and the target's error.
	parked := map[string]string{}
	prs, err := c.store.Pool.Query(ctx, `SELECT db, key, coalesce(row_text, ''), error FROM ibex.exception WHERE sync = $1 ORDER BY db, key`, c.sync)
	if err != nil {
		t.Fatal(err)
	}
	for prs.Next() {
		var db, key, row, msg string
		if err := prs.Scan(&db, &key, &row, &msg); err != nil {
			t.Fatal(err)
		}
		parked[db+" "+key] = row + " | " + msg
	}
	prs.Close()
	for k, w := range map[string][]string{
		"xm id=1": {"1\t5000\tbig | ", "CONSTRAINT `small_v` failed"},
		"xm id=5": {"5\t5\ttoo long for xm | ", "Data too long for column 'note'"},
		"xs id=1": {"1\t5000\tbig | ", "CHECK constraint failed: small_v"},
	} {
		got, ok := parked[k]
		if !ok {
			t.Errorf("ibex.exception has no row %s: %q", k, parked)
			continue
		}
		for _, s := range w {
			if !strings.Contains(got, s) {
				t.Errorf("ibex.exception %s: %q, want %q in it", k, got, s)
			}
		}
	}
	if len(parked) != 3 {
		t.Errorf("ibex.exception holds %d rows of the sync, want 3: %q", len(parked), parked)
	}
	out := c.ibex("conflicts", c.sync, "--errors")
	for _, w := range []string{"id=1", "1\t5000\tbig", "small_v", "xm", "xs", "id=5", "Data too long for column 'note'"} {
		if !strings.Contains(out, w) {
			t.Errorf("conflicts --errors does not show %q:\n%s", w, out)
		}
	}
	if out := c.ibex("status", c.sync); !strings.Contains(out, "skip (3 rows parked") {
		t.Errorf("status does not count the parked rows:\n%s", out)
	}
	c.mustRun(control.StateEmpty, job.Options{})

	// Many rows, a few refused: the others all arrive.
	c.on("t1", `INSERT INTO item SELECT g, CASE WHEN g = 333 THEN 2000 ELSE g END, CASE WHEN g = 444 THEN 'longer' ELSE 'bulk' END FROM generate_series(100, 599) g`)
	res = c.mustRun(control.StateGood, job.Options{})
	if res.Parked != 3 {
		t.Errorf("parked %d, want 3: 333 on both targets, 444 on xm (%s)", res.Parked, res.Summary())
	}
	if n := count(root, `SELECT count(*) FROM `+mtable+` WHERE id >= 100`); n != 498 {
		t.Errorf("xm holds %d of the 500 new rows, want 498", n)
	}
	if n := count(root, `SELECT count(*) FROM `+mtable+` WHERE id IN (333, 444)`); n != 0 {
		t.Errorf("xm holds a refused row")
	}
	if n := count(lite, `SELECT count(*) FROM `+stable+` WHERE id >= 100`); n != 499 {
		t.Errorf("xs holds %d of the 500 new rows, want 499", n)
	}
	if n := count(lite, `SELECT count(*) FROM `+stable+` WHERE id = 333`); n != 0 {
		t.Errorf("xs holds the refused row")
	}
	var total int64
	if err := c.store.Pool.QueryRow(ctx, `SELECT count(*) FROM ibex.exception WHERE sync = $1`, c.sync).Scan(&total); err != nil || total != 6 {
		t.Errorf("ibex.exception holds %d rows of the sync (%v), want 6", total, err)
	}
	c.mustRun(control.StateEmpty, job.Options{})
	redisSame("at the end")
}
