package flatfile_test

import (
	"bytes"
	"database/sql"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/sinks"
)

const typesDDL = `(id integer PRIMARY KEY, i2 smallint, i4 integer, i8 bigint, num numeric, num2 numeric(10,2),
	r real, d double precision, t text, vc varchar(10), ch char(5), b bytea, u uuid, tstz timestamptz,
	ts timestamp, dt date, tm time, iv interval, bo boolean, js json, jb jsonb, ai int[], at text[], e mood)`

// typeRows are the source's rows: 1 every system holds, 2 values only PostgreSQL holds,
// 3 NULLs.
const typeRows = `INSERT INTO src VALUES
	(1, -32768, 2147483647, -9223372036854775808, 12345.678901234567890, 3.14, 1.5, 2.718281828459045,
	 E'a''b\\c\t"q" ✓ 😀', 'varchar', 'ab', '\x00ff'::bytea, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
	 '2024-01-31 12:00:00.5+05:30', '2024-01-31 12:00:00.123456', '2024-02-29', '23:59:59.999999',
	 '1 year 2 mons 3 days 04:05:06', true, '{"a": [1, "x"]}', '{"b": null}', '{1,2,NULL}',
	 '{"a b",NULL,"c\"d"}', 'happy'),
	(2, 0, 0, 0, 'NaN', 0, 'Infinity', '-Infinity', '', '', '', '', NULL, 'infinity', '-infinity',
	 '0044-03-15 BC', '24:00:00', '-1 days', false, 'null', '[]', '{}', '{}', 'sad'),
	(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
	 NULL, NULL, NULL, NULL, NULL, NULL, NULL)`

// sourceRows creates src with every type on a fresh database and returns the database,
// src's columns and its rows as a run reads them (COPY text, ibex's session settings).
func sourceRows(t *testing.T) (*pgtest.DB, []catalog.Column, []string) {
	t.Helper()
	db := pgtest.NewDB(t, "")
	conn := pgtest.Conn(t, db.DSN)
	ctx := t.Context()
	for _, sql := range []string{
		`SET DateStyle = ISO; SET IntervalStyle = postgres; SET TimeZone = 'UTC'; SET extra_float_digits = 3; SET bytea_output = hex`,
		`CREATE TYPE mood AS ENUM ('sad', 'happy')`,
		`CREATE TABLE src ` + typesDDL,
		`CREATE TABLE dst ` + typesDDL,
		typeRows,
	} {
		if _, err := conn.PgConn().Exec(ctx, sql).ReadAll(); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	desc, err := catalog.Describe(ctx, conn, catalog.QualName{Schema: "public", Name: "src"})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := conn.PgConn().CopyTo(ctx, &buf, `COPY (SELECT * FROM src ORDER BY id) TO STDOUT`); err != nil {
		t.Fatal(err)
	}
	return db, desc.Columns, strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
}

func typesTable(name string, cols []catalog.Column) *sinks.Table {
	t := &sinks.Table{Schema: "public", Name: name, Key: []string{"id"}, Columns: cols}
	for _, c := range cols {
		t.Cols = append(t.Cols, c.Name)
	}
	return t
}

// Every type, its extreme values (NaN, infinities, BC, 24:00) and NULLs, written in the
// postgres dialect and replayed, come back exactly as sent.
func TestPostgresTypesRoundTrip(t *testing.T) {
	t.Parallel()
	db, cols, rows := sourceRows(t)
	dir := t.TempDir()
	s := openSink(t, dir, 1)
	if c := unit(t, s, typesTable("dst", cols), []string{"1", "2", "3"}, rows); c != (sinks.Counts{Written: 3}) {
		t.Fatalf("counts %+v", c)
	}
	conn := pgtest.Conn(t, db.DSN)
	ctx := t.Context()
	for _, name := range files(t, dir) {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.PgConn().Exec(ctx, string(b)).ReadAll(); err != nil {
			t.Fatalf("replaying %s: %v", name, err)
		}
	}
	var a, b bytes.Buffer
	for buf, tbl := range map[*bytes.Buffer]string{&a: "src", &b: "dst"} {
		if _, err := conn.PgConn().CopyTo(ctx, buf, `COPY (SELECT * FROM `+tbl+` ORDER BY id) TO STDOUT`); err != nil {
			t.Fatal(err)
		}
	}
	if a.String() != b.String() {
		t.Fatalf("replayed:\n%s\nsent:\n%s", b.String(), a.String())
	}
}

// The mysql dialect writes every type as the value MariaDB holds for it (the DDL of
// docs/sinks/flatfile.md), and refuses NaN, infinities and BC with an error naming the
// table, the column and the kind.
func TestMySQLTypes(t *testing.T) {
	t.Parallel()
	_, cols, rows := sourceRows(t)
	dir := t.TempDir()
	s := openSink(t, dir, 1, "dialect", "mysql")
	tbl := typesTable("dst", cols)
	if c := unit(t, s, tbl, []string{"1", "3"}, []string{rows[0], rows[2]}); c != (sinks.Counts{Written: 2}) {
		t.Fatalf("counts %+v", c)
	}
	my := mariaDB(t)
	if _, err := my.ExecContext(t.Context(), `CREATE TABLE dst (id INT PRIMARY KEY, i2 SMALLINT, i4 INT, i8 BIGINT,
		num DECIMAL(65,30), num2 DECIMAL(10,2), r FLOAT, d DOUBLE, t LONGTEXT, vc VARCHAR(10), ch CHAR(5),
		b LONGBLOB, u CHAR(36), tstz DATETIME(6), ts DATETIME(6), dt DATE, tm TIME(6), iv LONGTEXT,
		bo BOOLEAN, js JSON, jb JSON, ai LONGTEXT, at LONGTEXT, e LONGTEXT)`); err != nil {
		t.Fatal(err)
	}
	replayMaria(t, my, dir, "STRICT_ALL_TABLES,NO_BACKSLASH_ESCAPES")
	q, err := my.QueryContext(t.Context(), "SELECT * FROM dst ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var got [][]string
	for q.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := q.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		var r []string
		for _, v := range vals {
			if v.Valid {
				r = append(r, v.String)
			} else {
				r = append(r, "NULL")
			}
		}
		got = append(got, r)
	}
	want := [][]string{
		{"1", "-32768", "2147483647", "-9223372036854775808", "12345.678901234567890000000000000000", "3.14", "1.5",
			"2.718281828459045", "a'b\\c\t\"q\" ✓ 😀", "varchar", "ab", "\x00\xff", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
			"2024-01-31 06:30:00.500000", "2024-01-31 12:00:00.123456", "2024-02-29", "23:59:59.999999",
			"1 year 2 mons 3 days 04:05:06", "1", `{"a": [1, "x"]}`, `{"b": null}`, "{1,2,NULL}", `{"a b",NULL,"c\"d"}`, "happy"},
		{"3", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL",
			"NULL", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL"},
	}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("MariaDB holds\n%q\nexpected\n%q", got, want)
	}

	// Values MariaDB cannot hold.
	f := strings.Split(rows[1], "\t")
	for _, c := range []struct {
		col  int
		want string
	}{
		{4, `db ff: writing rows of public.dst: row 1: column "num" (numeric, a numeric value): NaN: NaN or infinite number`},
		{6, `db ff: writing rows of public.dst: row 1: column "r" (real, a float32 value): Infinity: NaN or infinite number`},
		{7, `db ff: writing rows of public.dst: row 1: column "d" (double precision, a float64 value): -Infinity: NaN or infinite number`},
		{13, `db ff: writing rows of public.dst: row 1: column "tstz" (timestamp with time zone, a timestamptz value): pgtext: "infinity": infinite date or timestamp`},
		{14, `db ff: writing rows of public.dst: row 1: column "ts" (timestamp without time zone, a timestamp value): pgtext: "-infinity": infinite date or timestamp`},
		{15, `db ff: writing rows of public.dst: row 1: column "dt" (date, a date value): pgtext: "0044-03-15 BC": date or timestamp BC`},
	} {
		line := make([]string, len(f))
		for i := range line {
			line[i] = `\N`
		}
		line[0], line[c.col] = "2", f[c.col]
		ctx := t.Context()
		if err := s.Begin(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := s.PrepareBatch(ctx, tbl, []string{"2"}); err != nil {
			t.Fatal(err)
		}
		_, err := s.WriteRows(ctx, tbl, lines([]string{strings.Join(line, "\t")}))
		s.Rollback(ctx)
		if err == nil || err.Error() != c.want {
			t.Errorf("WriteRows of %s:\n%v\nexpected\n%s", f[c.col], err, c.want)
		}
	}
	if n := len(files(t, dir)); n != 1 {
		t.Fatalf("%d files, expected 1 (the refused units were rolled back)", n)
	}
}
