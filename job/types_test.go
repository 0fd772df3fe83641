package job_test

import (
	"crypto/md5"
	"encoding/hex"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/job"
)

// hostile are text values that stress COPY's text format and SQL quoting.
var hostile = []string{"plain", "it's", "tab\there", "new\nline", `back\slash`, `\N`, "", " lead and trail ",
	"ünïcødé 日本語 🎉", `quote"d`, "semi;colon -- x", "cr\rlf\r\n", `\.`, "a,b(c)", `\\`, "\\\t\\n", "NULL"}

const typesDDL = `
CREATE TABLE kinds (
  i int, b bigint, s text, u uuid, ts timestamptz, n numeric, by bytea,
  note text, big text, bin bytea, arr int[], j jsonb, f float8, d date, iv interval,
  PRIMARY KEY (i, b, s, u, ts, n, by));
CREATE TABLE tkey (k text PRIMARY KEY, v text);
CREATE TABLE bkey (k bytea PRIMARY KEY, v text);
CREATE TABLE ukey (k uuid PRIMARY KEY, v text);
CREATE TABLE tskey (k timestamptz PRIMARY KEY, v text);
CREATE TABLE nkey (k numeric PRIMARY KEY, v text);
CREATE TABLE bigkey (k bigint PRIMARY KEY, v text);
CREATE SCHEMA "Sch ema;""x";
CREATE TABLE "Sch ema;""x"."Ta""ble; DROP TABLE kinds;--" (
  "Id ""key""" int, "ünï" text, "sp ace" text, "semi;colon" text, "$at" int, "select" text,
  PRIMARY KEY ("Id ""key""", "ünï"));
CREATE TABLE "we""ird tab" ("k;ey" text PRIMARY KEY, "Val ue" text);
CREATE TABLE "ÜñÍçødé 表格 long name to make the change table hashed" ("$at" int, "$txid" text, x int, "ü" text, PRIMARY KEY (x, "ü"));
`

var typeTables = []struct{ name, order string }{
	{"kinds", "x.i, x.b, x.s, x.u, x.ts, x.n, x.by"},
	{"tkey", "x.k"}, {"bkey", "x.k"}, {"ukey", "x.k"}, {"tskey", "x.k"}, {"nkey", "x.k"}, {"bigkey", "x.k"},
	{`"Sch ema;""x"."Ta""ble; DROP TABLE kinds;--"`, `x."Id ""key""", x."ünï"`},
	{`"we""ird tab"`, `x."k;ey"`},
	{`"ÜñÍçødé 表格 long name to make the change table hashed"`, `x.x, x."ü"`},
}

// testKeyTypesAndHostileNames replicates composite keys of many types, text keys full of
// COPY and SQL specials, NULLs, a 1 MB text and a 200 KB bytea, and tables and columns
// with quotes, semicolons, spaces and unicode in their names, in both directions, with
// receiving dbs (t2, t3 of the farm) whose default datestyle, timezone, bytea_output,
// intervalstyle and extra_float_digits differ from the sender's.
func testKeyTypesAndHostileNames(t *testing.T, f *farm) {
	c := f.cluster(t, "types", 3)
	c.onAll(typesDDL)
	c.configure([]string{"kinds", "tkey", "bkey", "ukey", "tskey", "nkey", "bigkey",
		`"Sch ema;""x"."Ta""ble; DROP TABLE kinds;--"`, `"we""ird tab"`, `"ÜñÍçødé 表格 long name to make the change table hashed"`},
		[]string{"t1:source", "t2:source", "t3:target"})
	ctx := t.Context()

	big := strings.Repeat("ünï\t\\\n日本 ", 1<<20/16)
	bin := make([]byte, 200<<10)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range bin {
		bin[i] = byte(rng.UintN(256))
	}
	sumOf := func(b []byte) string { s := md5.Sum(b); return hex.EncodeToString(s[:]) }

	// t1: every hostile text as key, in every single-key table and the composite one.
	tsVals := []string{"2024-02-29 23:59:59.999999+00", "1999-12-31 18:30:00+05:30", "infinity", "-infinity", "0044-03-15 12:00:00+00 BC", "2000-01-01 00:00:00+00"}
	numVals := []string{"0", "1.50", "-0.000001", "1e30", "NaN", "123456789012345678901234567890.123456789"}
	byVals := []string{`\x`, `\x00`, `\xdeadbeef`, `\x5c0a090d`, `\x5c2e`}
	for i, s := range hostile {
		c.on("t1", `INSERT INTO tkey VALUES ($1, $1)`, s)
		c.on("t1", `INSERT INTO "we""ird tab" VALUES ($1, $1)`, s)
		c.on("t1", `INSERT INTO "Sch ema;""x"."Ta""ble; DROP TABLE kinds;--" VALUES ($1, $2, $2, $2, $1, $2)`, i, s)
		c.on("t1", `INSERT INTO kinds (i, b, s, u, ts, n, by, note, arr, j, f, d, iv) VALUES
			($1::int, $6::bigint, $2::text, gen_random_uuid(), $3::timestamptz, $4::numeric, $5::bytea, $2::text, ARRAY[$1::int, NULL], jsonb_build_object('s', $2::text), 1.0/3, DATE '2024-01-31', INTERVAL '1 day 02:03:04.5')`,
			i, s, tsVals[i%len(tsVals)], numVals[i%len(numVals)], byVals[i%len(byVals)], int64(i)*10000000000)
	}
	for _, v := range tsVals {
		c.on("t1", `INSERT INTO tskey VALUES ($1::timestamptz, $1)`, v)
	}
	for _, v := range numVals {
		c.on("t1", `INSERT INTO nkey VALUES ($1::numeric, $1)`, v)
	}
	for _, v := range byVals {
		c.on("t1", `INSERT INTO bkey VALUES ($1::bytea, $1)`, v)
	}
	c.on("t1", `INSERT INTO ukey SELECT gen_random_uuid(), g::text FROM generate_series(1, 20) g`)
	c.on("t1", `INSERT INTO bigkey VALUES (-9223372036854775808, 'min'), (9223372036854775807, 'max'), (0, NULL)`)
	// A row with every non-key column NULL, and one with the large values.
	c.on("t1", `INSERT INTO kinds (i, b, s, u, ts, n, by) VALUES (-1, -1, '', '00000000-0000-0000-0000-000000000000', 'epoch', -1, '\x')`)
	c.on("t1", `INSERT INTO kinds (i, b, s, u, ts, n, by, big, bin, f) VALUES (1000, 1, 'big', gen_random_uuid(), now(), 1, '\xff', $1, $2, 'NaN')`, big, bin)
	// Column names that are also the change tables' own ("$at", "$txid").
	c.on("t1", `INSERT INTO "ÜñÍçødé 表格 long name to make the change table hashed" SELECT g, 'k' || g, g, 'ü' FROM generate_series(1, 5) g`)
	c.on("t2", `INSERT INTO "ÜñÍçødé 表格 long name to make the change table hashed" VALUES (NULL, 'from t2', 1, 'ö')`)
	// t2 writes too, in the same tables.
	c.on("t2", `INSERT INTO tkey VALUES ('from t2', E'x\ty'), (E'\\', NULL)`)
	c.on("t2", `INSERT INTO "Sch ema;""x"."Ta""ble; DROP TABLE kinds;--" VALUES (1, 'from t2', NULL, NULL, NULL, NULL)`)
	c.on("t2", `INSERT INTO kinds (i, b, s, u, ts, n, by, f) VALUES (2000, 2, E'two\n', gen_random_uuid(), '2024-06-01 12:00:00.5+02', 2.5, '\x02', '-0')`)

	res := c.mustRun(control.StateGood, job.Options{})
	t.Logf("first run: %s", res.Summary())
	for _, tb := range typeTables {
		c.sameEverywhere(tb.name, tb.order)
	}
	// Exact content of the text keys: every hostile string arrived intact.
	want := append([]string{"from t2", `\`}, hostile...)
	sort.Strings(want)
	for _, db := range c.names {
		got := c.strs(db, `SELECT k FROM tkey`)
		sort.Strings(got)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("db %s: tkey keys (-want +got):\n%s", db, diff)
		}
		got = c.strs(db, `SELECT "k;ey" FROM "we""ird tab"`)
		sort.Strings(got)
		if diff := cmp.Diff(hostile, got, cmp.Transformer("sort", func(in []string) []string { out := append([]string(nil), in...); sort.Strings(out); return out })); diff != "" {
			t.Errorf("db %s: hostile table keys (-want +got):\n%s", db, diff)
		}
		var bigSum, binSum string
		if err := c.conn(db).QueryRow(ctx, `SELECT md5(convert_to(big, 'UTF8')), md5(bin) FROM kinds WHERE i = 1000`).Scan(&bigSum, &binSum); err != nil {
			t.Fatalf("db %s: %v", db, err)
		}
		if bigSum != sumOf([]byte(big)) || binSum != sumOf(bin) {
			t.Errorf("db %s: the large values changed on the way", db)
		}
	}

	// Second round: NULL out non-key columns on t2 for rows t1 sent, change key parts on
	// t2, delete on t1, update the hostile table.
	c.on("t2", `UPDATE kinds SET note = NULL, arr = NULL, j = NULL, big = NULL WHERE i BETWEEN 0 AND 4 OR i = 1000`)
	c.on("t2", `UPDATE kinds SET s = s || E'\t2' WHERE i BETWEEN 5 AND 8`)
	c.on("t2", `UPDATE tkey SET k = k || '!' WHERE k IN ('it''s', E'new\nline')`)
	c.on("t1", `DELETE FROM tkey WHERE k IN (E'tab\there', '\N', '')`)
	c.on("t1", `DELETE FROM kinds WHERE i = 9`)
	c.on("t1", `UPDATE "Sch ema;""x"."Ta""ble; DROP TABLE kinds;--" SET "sp ace" = NULL, "$at" = -1 WHERE "Id ""key""" < 3`)
	c.on("t2", `UPDATE "we""ird tab" SET "Val ue" = NULL WHERE "k;ey" = 'it''s'`)
	c.mustRun(control.StateGood, job.Options{})
	for _, tb := range typeTables {
		c.sameEverywhere(tb.name, tb.order)
	}
	want = append([]string{"from t2", `\`, "it's!", "new\nline!"}, hostile...)
	var keep []string
	for _, s := range want {
		if s != "tab\there" && s != `\N` && s != "" && s != "it's" && s != "new\nline" {
			keep = append(keep, s)
		}
	}
	sort.Strings(keep)
	for _, db := range c.names {
		got := c.strs(db, `SELECT k FROM tkey`)
		sort.Strings(got)
		if diff := cmp.Diff(keep, got); diff != "" {
			t.Errorf("db %s: tkey keys after round 2 (-want +got):\n%s", db, diff)
		}
		if n := c.int(db, `SELECT count(*) FROM kinds WHERE s LIKE E'%\t2'`); n != 4 {
			t.Errorf("db %s: %d rows with a changed key part, want 4", db, n)
		}
		if n := c.int(db, `SELECT count(*) FROM kinds WHERE big IS NULL AND i = 1000 AND md5(bin) = $1`, sumOf(bin)); n != 1 {
			t.Errorf("db %s: row 1000 not updated as t2 did", db)
		}
	}
	c.mustRun(control.StateEmpty, job.Options{})
}

// testKeyRewrittenToEqualValue: an UPDATE that sets a key to a value equal to the old one
// but printed differently (numeric 1.5 -> 1.50, float8 0 -> -0, a timestamptz in another
// zone is the same instant and prints the same, so it is the control) must still reach
// the other dbs.
func testKeyRewrittenToEqualValue(t *testing.T, f *farm) {
	c := f.cluster(t, "rescale", 3)
	c.onAll(`CREATE TABLE nkey (k numeric PRIMARY KEY, v text); CREATE TABLE fkey (k float8 PRIMARY KEY, v text);
CREATE TABLE tskey (k timestamptz PRIMARY KEY, v text);
INSERT INTO nkey VALUES (1.5, 'a'), (2, 'a'); INSERT INTO fkey VALUES (0, 'a'), (1, 'a'); INSERT INTO tskey VALUES ('2024-01-01 00:00:00+00', 'a')`)
	c.configure([]string{"nkey", "fkey", "tskey"}, []string{"t1:source", "t2:source", "t3:target"})
	c.on("t1", `UPDATE nkey SET k = 1.50, v = 'b' WHERE k = 1.5`)
	c.on("t1", `UPDATE fkey SET k = '-0', v = 'b' WHERE k = 0`)
	c.on("t1", `UPDATE tskey SET k = '2024-01-01 05:30:00+05:30', v = 'b'`)
	res, err := c.run(t.Context(), job.Options{})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	t.Logf("run: %s", res.Summary())
	for _, tb := range []string{"nkey", "fkey", "tskey"} {
		for _, db := range c.names {
			got := c.rows(db, tb, "x.k")
			wantRows := map[string][]string{"nkey": {"(1.50,b)", "(2,a)"}, "fkey": {"(-0,b)", "(1,a)"}, "tskey": {`("2024-01-01 00:00:00+00",b)`}}[tb]
			if diff := cmp.Diff(wantRows, got); diff != "" {
				t.Errorf("db %s: %s (-want +got):\n%s", db, tb, diff)
			}
		}
	}
}

// testKeyColumnsNamedLikeChangeColumns: a table whose key has a column named "$txid" or
// "$at" (the change table's own columns) replicates too, or is refused with a clear error.
func testKeyColumnsNamedLikeChangeColumns(t *testing.T, f *farm) {
	c := f.cluster(t, "dollar", 2)
	c.onAll(`CREATE TABLE d ("$txid" text, "$at" int, v text, PRIMARY KEY ("$txid", "$at"))`)
	c.ibex("add", "table", c.q("d"), "db=t1", "herd="+c.sync)
	c.ibex("add", "dbgroup", c.sync, "t1:source", "t2:source")
	code, out, errs := c.ibexCmd("add", "sync", c.sync, "herd="+c.sync, "dbs="+c.sync, "autokick=false")
	if code != 0 {
		if strings.Contains(errs, "specified more than once") {
			t.Fatalf("add sync fails with a raw SQL error instead of replicating or explaining (key columns \"$txid\", \"$at\"):\n%s%s", out, errs)
		}
		t.Logf("refused: %s", errs)
		return
	}
	c.on("t1", `INSERT INTO d VALUES ('a', 1, 'x')`)
	c.on("t2", `INSERT INTO d VALUES ('b', 2, 'y')`)
	c.mustRun(control.StateGood, job.Options{})
	c.sameEverywhere("d", `x."$txid"`)
}
