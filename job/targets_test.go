package job_test

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	goredis "github.com/redis/go-redis/v9"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/ibextest"
	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/job"
	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/targets"
)

// targetKind is one type of target that is not PostgreSQL, as the test sets it up.
type targetKind struct {
	name    string
	typ     control.DBType
	creates bool // validate --create-targets creates its tables
	// setup returns the db's params (a fresh place, removed when t ends).
	setup func(t *testing.T) map[string]string
	// down is a param that makes the target unreachable (nil: not tested).
	down func(t *testing.T, params map[string]string) (key, value string)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = crand.Read(b)
	return hex.EncodeToString(b)
}

const mariaAddr = "127.0.0.1:3306"

// mariaRoot is a root pool on the test MariaDB, closed when t ends.
func mariaRoot(t *testing.T) *sql.DB {
	t.Helper()
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr = "root", "tcp", mariaAddr
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

var targetKinds = []targetKind{
	{name: "mariadb", typ: control.DBTypeMariaDB, creates: true,
		setup: func(t *testing.T) map[string]string {
			root := mariaRoot(t)
			name := "ibex_jobtest_" + randHex(6)
			if _, err := root.ExecContext(t.Context(), "CREATE DATABASE `"+name+"` CHARACTER SET utf8mb4"); err != nil {
				t.Fatalf("MariaDB on %s (root, no password): %v", mariaAddr, err)
			}
			t.Cleanup(func() { _, _ = root.ExecContext(context.Background(), "DROP DATABASE `"+name+"`") })
			return map[string]string{"host": "127.0.0.1", "port": "3306", "dbname": name, "user": "root", "connect_timeout": "3"}
		},
		down: func(*testing.T, map[string]string) (string, string) { return "port", "1" },
	},
	{name: "sqlite", typ: control.DBTypeSQLite, creates: true,
		setup: func(t *testing.T) map[string]string {
			return map[string]string{"path": filepath.Join(t.TempDir(), "target.db")}
		},
		down: func(t *testing.T, _ map[string]string) (string, string) {
			return "path", filepath.Join(t.TempDir(), "no-such-dir", "target.db")
		},
	},
	{name: "redis", typ: control.DBTypeRedis,
		setup: func(t *testing.T) map[string]string {
			prefix := "ibex_jobtest_" + randHex(6) + ":"
			t.Cleanup(func() {
				c := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:6379", Protocol: 2, DisableIdentity: true})
				defer c.Close()
				ctx := context.Background()
				var cursor uint64
				for {
					keys, next, err := c.Scan(ctx, cursor, prefix+"*", 1000).Result()
					if err != nil {
						return
					}
					if len(keys) > 0 {
						c.Del(ctx, keys...)
					}
					if cursor = next; cursor == 0 {
						return
					}
				}
			})
			return map[string]string{"host": "127.0.0.1", "port": "6379", "prefix": prefix, "connect_timeout": "3", "timeout": "10"}
		},
		down: func(*testing.T, map[string]string) (string, string) { return "port", "1" },
	},
	{name: "flatfile", typ: control.DBTypeFlatfile,
		setup: func(t *testing.T) map[string]string {
			return map[string]string{"path": filepath.Join(t.TempDir(), "sql"), "fsync": "off"}
		},
	},
}

// TestTargetsNotPostgres: two PostgreSQL sources and a target of each type that is not
// PostgreSQL (MariaDB, SQLite, Redis, flat files), end to end through the command line
// and runs: its tables created by validate --create-targets, a workload of every mapped
// type (inserts, updates, a key change, deletes, NULLs, a 1 MB text) over several runs,
// then the target's rows (read back through sinks.Reader, or for flat files replayed into
// a fresh PostgreSQL database) equal the sources' exactly as COPY text. A target down
// mid-way leaves a run that is not good, named by ibex status; restored, the next run
// catches up. Wrong passwords and refusals are checked where they apply.
func TestTargetsNotPostgres(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	for _, k := range targetKinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			testTarget(t, f, k)
		})
	}
}

const targetTable = `CREATE TABLE tt (
	id int PRIMARY KEY, i2 smallint, i8 bigint, num numeric(12,3), f8 double precision,
	txt text, bin bytea, u uuid, ts timestamptz, d date, b boolean, j json, jb jsonb,
	ia int[], ta text[])`

// targetRow is an INSERT of a row of tt holding every type, varied by id.
func targetRow(id string) string {
	return `INSERT INTO tt VALUES (` + id + `, ` + id + `::smallint - 100, ` + id + ` * 9000000000, ` + id + ` / 7.0, ` + id + ` * 0.1,
	E'row ` + id + `: it''s "q" \t tab \n nl \r cr \\ bs \\N é ✓ 😀', decode(md5('` + id + `') || '00ff0a5c09', 'hex'),
	md5('` + id + `')::uuid, '2024-01-02 03:04:05.123456+05:30'::timestamptz + ` + id + ` * interval '1 day 1.5 second', '2024-02-29'::date + ` + id + `,
	` + id + ` % 2 = 0, '{"b": ` + id + `, "a": [1, null, "x\"y"]}', '{"b": ` + id + `, "a": [1, null], "s": "t\\\\u"}',
	ARRAY[` + id + `, NULL, 3], ARRAY['a', 'b c', NULL, 'd"e', 'NULL', '', E'\\\\', ` + id + `::text])`
}

func testTarget(t *testing.T, f *farm, k targetKind) {
	c := f.cluster(t, "tgt_"+k.name, 2)
	ctx := t.Context()
	for _, db := range c.names {
		c.on(db, targetTable)
	}
	x := "x_" + k.name
	params := k.setup(t)
	add := []string{"add", "db", x, "type=" + string(k.typ)}
	for key, v := range params {
		add = append(add, key+"="+v)
	}
	c.ibex(add...)
	c.configure([]string{"tt"}, []string{"t1:source", "t2:source", x + ":target"})

	if k.name == "mariadb" {
		// A table missing on the target, validate without --create-targets: refused
		// with the sink's DDL. (Its own herd, dbgroup and sync.)
		c.on("t1", `CREATE TABLE missing (id int PRIMARY KEY, v text)`)
		m := c.sync + "_m"
		c.ibex("add", "table", c.q("missing"), "db=t1", "herd="+m)
		c.ibex("add", "dbgroup", m, "t1:source", x+":target")
		c.ibex("add", "sync", m, "herd="+m, "dbs="+m, "autokick=false")
		code, out, errs := c.ibexCmd("validate", m)
		c.logf("validate %s: exit %d: %s%s", m, code, out, errs)
		if code == 0 || !strings.Contains(out+errs, "CREATE TABLE") || !strings.Contains(out+errs, "db "+x) {
			t.Errorf("validate %s with a table missing on %s: exit %d, want an error with the DDL:\n%s%s", m, x, code, out, errs)
		}
	}

	// Customcols are for PostgreSQL targets: refused here, nothing stored.
	if code, _, errs := c.ibexCmd("add", "customcols", c.q("tt"), "SELECT id, txt", "db="+x); code == 0 || !strings.Contains(errs, "customcols are for PostgreSQL targets") {
		t.Errorf("customcols on a %s target: exit %d, %q", k.name, code, errs)
	}
	if out := c.ibex("list", "customcols"); strings.Contains(out, c.qual("tt")) {
		t.Errorf("a refused customcols was stored: %q", out)
	}

	out := c.ibex("validate", c.sync, "--create-targets")
	if want := "Created " + x + ": " + c.qual("tt"); k.creates && !strings.Contains(out, want) {
		t.Errorf("validate --create-targets said %q, want %q", out, want)
	}

	// Run 1: inserts on both sources.
	for _, id := range []string{"1", "2", "3", "4"} {
		c.on("t1", targetRow(id))
	}
	for _, id := range []string{"11", "12", "13"} {
		c.on("t2", targetRow(id))
	}
	c.mustRun(control.StateGood, job.Options{})
	compareTarget(t, c, k, x, params)

	// Run 2: updates (of rows from the other source too), a key change, deletes, NULLs,
	// a 1 MB text.
	c.on("t1", `UPDATE tt SET txt = 'changed on t1', ia = ARRAY[NULL, NULL]::int[], ta = '{}' WHERE id = 11`)
	c.on("t2", `UPDATE tt SET id = 112 WHERE id = 12`)
	c.on("t1", `UPDATE tt SET id = 101, num = -0.5 WHERE id = 1`)
	c.on("t2", `DELETE FROM tt WHERE id = 2`)
	c.on("t1", `DELETE FROM tt WHERE id = 13`)
	c.on("t2", `INSERT INTO tt (id) VALUES (20)`)
	c.on("t1", `UPDATE tt SET i2 = NULL, i8 = NULL, num = NULL, f8 = NULL, txt = NULL, bin = NULL, u = NULL, ts = NULL, d = NULL, b = NULL, j = NULL, jb = NULL, ia = NULL, ta = NULL WHERE id = 4`)
	c.on("t1", `UPDATE tt SET txt = repeat('y', 1 << 20) WHERE id = 3`)
	c.mustRun(control.StateGood, job.Options{})
	compareTarget(t, c, k, x, params)
	c.mustRun(control.StateEmpty, job.Options{})
	// ibex compare reads the target through its sink (flat files cannot be read: left out).
	if code, out, errs := c.ibexCmd("compare", c.sync); code != 0 || !strings.Contains(out, "Result: identical") ||
		strings.Contains(out, "not compared") != (k.typ == control.DBTypeFlatfile) {
		t.Errorf("compare with target %s: exit %d\n%s%s", x, code, out, errs)
	}

	// A TRUNCATE on a source, then a row inserted after it: the target is emptied in its
	// own way (docs/sinks/) and gets the new row; the rows come back for what follows.
	c.on("t2", `CREATE TABLE tt_keep AS SELECT * FROM tt`)
	c.on("t2", `TRUNCATE tt`)
	c.on("t1", targetRow("40"))
	if res := c.mustRun(control.StateGood, job.Options{}); res.Truncates != 2 {
		t.Errorf("run after TRUNCATE: %s; want truncates 2 (t1 and %s)", res.Summary(), x)
	}
	compareTarget(t, c, k, x, params)
	if n := c.int("t1", `SELECT count(*) FROM tt`); n != 1 {
		t.Errorf("%d rows after the TRUNCATE, want 1", n)
	}
	c.on("t2", `INSERT INTO tt SELECT * FROM tt_keep; DROP TABLE tt_keep`)
	c.mustRun(control.StateGood, job.Options{})
	compareTarget(t, c, k, x, params)

	if k.down != nil {
		key, bad := k.down(t, params)
		c.ibex("update", "db", x, key+"="+bad, "--force")
		c.on("t1", `UPDATE tt SET txt = 'while down' WHERE id = 3`)
		c.on("t2", `INSERT INTO tt (id, txt) VALUES (30, 'while down')`)
		rctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		res, err := c.run(rctx, job.Options{})
		cancel()
		if res == nil || res.State == control.StateGood {
			t.Errorf("run with %s down: %v, %v; want a run that is not good", x, res, err)
		}
		c.logf("run with %s down: %s, %v", x, res.State, err)
		_, sout, serr := c.ibexCmd("status", c.sync)
		if !strings.Contains(sout+serr, x) {
			t.Errorf("ibex status %s after a run with %s down does not name it:\n%s%s", c.sync, x, sout, serr)
		}
		c.ibex("update", "db", x, key+"="+params[key])
		c.mustRun(control.StateGood, job.Options{})
		compareTarget(t, c, k, x, params)
	}

	// onetimecopy=1 and a fullcopy sync put back a row the target lost outside ibex.
	_, cols := sourceLines(t, c, c.dbs["t1"])
	tbl := &sinks.Table{Schema: c.schema, Name: "tt", Key: []string{"id"}, Columns: cols}
	for _, col := range cols {
		tbl.Cols = append(tbl.Cols, col.Name)
	}
	loseRow := func(key string) {
		t.Helper()
		s, err := targets.Open(ctx, k.typ, sinks.Config{DB: x, Params: params, Sync: c.sync + "_lose", Run: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.Begin(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := s.PrepareBatch(ctx, tbl, []string{key}); err != nil {
			t.Fatal(err)
		}
		if c, err := s.FinishBatch(ctx, tbl); err != nil || c.Deleted != 1 {
			t.Fatalf("deleting row %s on %s outside ibex: %+v, %v", key, x, c, err)
		}
		if err := s.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if k.typ != control.DBTypeFlatfile { // a file directory cannot lose a row outside its files
		loseRow("3")
		if code, out, errs := c.ibexCmd("compare", c.sync); code != 1 || !strings.Contains(out, "missing 3: missing on "+x) {
			t.Errorf("compare after a row lost on %s: exit %d\n%s%s", x, code, out, errs)
		}
		if code, out, errs := c.ibexCmd("repair", c.sync, "--union"); code != 0 || !strings.Contains(out, "insert "+c.qual("tt")+" 3 on "+x+" from t1") {
			t.Errorf("repair --union of a row lost on %s: exit %d\n%s%s", x, code, out, errs)
		}
		compareTarget(t, c, k, x, params)
		loseRow("3")
		c.ibex("update", "sync", c.sync, "onetimecopy=1")
		if res := c.mustRun(control.StateGood, job.Options{}); res.Inserts < 5 {
			t.Errorf("onetimecopy=1 run: %s; want the whole table copied", res.Summary())
		}
		compareTarget(t, c, k, x, params)

		loseRow("101")
		fc := c.sync + "_fc"
		c.ibex("add", "dbgroup", fc, "t1:source", x+":fullcopy")
		c.ibex("add", "sync", fc, "herd="+c.sync, "dbs="+fc, "autokick=false")
		rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		res, err := job.Run(rctx, c.store, fc, job.Options{})
		cancel()
		if err != nil || res.State != control.StateGood {
			t.Fatalf("fullcopy run into %s: %v, %v", x, res, err)
		}
		compareTarget(t, c, k, x, params)
	}

	if k.name == "mariadb" {
		testWrongPassword(t, c, params)
	}
	if k.name == "redis" {
		g := c.sync + "_g"
		code, out, errs := c.ibexCmd("add", "dbgroup", g, x+":source", "t1:target")
		want := "dbgroup " + g + ": db " + x + " (type redis) cannot be a source: ibex captures changes with PostgreSQL triggers, so only PostgreSQL dbs are sources; give it the role target or fullcopy"
		if code == 0 || !strings.Contains(errs, want) {
			t.Errorf("add dbgroup with a redis source: exit %d\n%s%s\nwant the error %q", code, out, errs, want)
		}
	}
}

// testWrongPassword: a MariaDB db added with a wrong password is refused in bounded time,
// naming the db, never printing the password.
func testWrongPassword(t *testing.T, c *cluster, params map[string]string) {
	root := mariaRoot(t)
	user := "ibex_jt_" + randHex(4)
	if _, err := root.ExecContext(t.Context(), "CREATE USER '"+user+"'@'%' IDENTIFIED BY 'right-pw-"+user+"'"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = root.ExecContext(context.Background(), "DROP USER '"+user+"'@'%'") })
	env := "IBEX_JT_PW_" + strings.ToUpper(randHex(4))
	wrong := "wrong-pw-" + randHex(6)
	os.Setenv(env, wrong) // not t.Setenv: the test is parallel; the name is unique
	t.Cleanup(func() { os.Unsetenv(env) })
	start := time.Now()
	code, out, errs := c.ibexCmd("add", "db", "x_badpw", "type=mariadb", "host="+params["host"], "port="+params["port"],
		"dbname="+params["dbname"], "user="+user, "pass=env:"+env, "connect_timeout=5")
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("add db with a wrong password took %s", d)
	}
	c.logf("add db with a wrong password: exit %d in %s: %s", code, time.Since(start).Round(time.Millisecond), errs)
	if code == 0 || !strings.Contains(errs, "x_badpw") {
		t.Errorf("add db with a wrong password: exit %d, want an error naming the db:\n%s%s", code, out, errs)
	}
	if strings.Contains(out+errs, wrong) {
		t.Errorf("the wrong password was printed:\n%s%s", out, errs)
	}
}

// sourceLines is tt on t1 as COPY text with ibex's session settings (the sources agree
// first), sorted.
func sourceLines(t *testing.T, c *cluster, db *pgtest.DB) ([]string, []catalog.Column) {
	t.Helper()
	var buf bytes.Buffer
	cn := pgtest.Conn(t, c.dsn(db))
	if _, err := cn.PgConn().CopyTo(t.Context(), &buf, `COPY (SELECT * FROM tt ORDER BY id) TO STDOUT`); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if buf.Len() == 0 {
		lines = nil
	}
	slices.Sort(lines)
	var cols []catalog.Column
	for _, r := range ibextest.RowsOn(t, cn, `SELECT attname, format_type(atttypid, atttypmod), attnotnull::text FROM pg_attribute
		WHERE attrelid = 'tt'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`) {
		cols = append(cols, catalog.Column{Name: r[0], Type: r[1], NotNull: r[2] == "true"})
	}
	return lines, cols
}

// compareTarget fails t unless the target holds exactly the sources' rows of tt.
func compareTarget(t *testing.T, c *cluster, k targetKind, x string, params map[string]string) {
	t.Helper()
	c.sameEverywhere("tt", "id")
	want, cols := sourceLines(t, c, c.dbs["t1"])
	var got []string
	if k.typ == control.DBTypeFlatfile {
		got = replayFlatfile(t, c, params["path"])
	} else {
		tbl := &sinks.Table{Schema: c.schema, Name: "tt", Key: []string{"id"}, Columns: cols}
		for _, col := range cols {
			tbl.Cols = append(tbl.Cols, col.Name)
		}
		s, err := targets.Open(t.Context(), k.typ, sinks.Config{DB: x, Params: params})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		r, ok := s.(sinks.Reader)
		if !ok {
			t.Fatalf("the %s sink is not a sinks.Reader", k.typ)
		}
		if err := r.ReadRows(t.Context(), tbl, func(line string) error {
			got = append(got, line)
			return nil
		}); err != nil {
			t.Fatalf("ReadRows: %v", err)
		}
		slices.Sort(got)
	}
	c.logf("%s: %d rows compared with the sources (%d bytes)", x, len(want), len(strings.Join(want, "")))
	if len(want) == 0 {
		t.Fatal("the sources hold no rows")
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s holds otherwise than the sources:\n%s", x, ibextest.DiffLines(want, got))
	}
}

// replayFlatfile replays the directory's files, in name order, into a fresh PostgreSQL
// database holding tt (created empty) and returns its rows as sourceLines does.
func replayFlatfile(t *testing.T, c *cluster, dir string) []string {
	t.Helper()
	db := pgtest.NewDB(t, "")
	ibextest.Exec(t, db.DSN, `CREATE SCHEMA `+c.schema+`; SET search_path = `+c.schema+`; `+targetTable)
	files, err := filepath.Glob(filepath.Join(dir, "*.sql"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	if len(files) == 0 {
		t.Fatalf("no files in %s", dir)
	}
	cn := pgtest.Conn(t, db.DSN)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cn.PgConn().Exec(t.Context(), string(b)).ReadAll(); err != nil {
			t.Fatalf("replaying %s: %v", filepath.Base(f), err)
		}
	}
	lines, _ := sourceLines(t, c, db)
	return lines
}
