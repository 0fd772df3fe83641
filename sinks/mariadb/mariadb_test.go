package mariadb_test

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/mariadb"
)

// typed is a table of every PostgreSQL type the mapping knows, keyed by id.
func typed() *sinks.Table {
	cols := []catalog.Column{
		{Name: "id", Type: "integer", NotNull: true},
		{Name: "s", Type: "smallint"},
		{Name: "i", Type: "integer"},
		{Name: "b", Type: "bigint"},
		{Name: "n", Type: "numeric(10,2)"},
		{Name: "nu", Type: "numeric"},
		{Name: "r", Type: "real"},
		{Name: "d", Type: "double precision"},
		{Name: "t", Type: "text"},
		{Name: "vc", Type: "character varying(5)"},
		{Name: "c", Type: "character(3)"},
		{Name: "by", Type: "bytea"},
		{Name: "u", Type: "uuid"},
		{Name: "tz", Type: "timestamp with time zone"},
		{Name: "ts", Type: "timestamp without time zone"},
		{Name: "dt", Type: "date"},
		{Name: "tm", Type: "time without time zone"},
		{Name: "iv", Type: "interval"},
		{Name: "bo", Type: "boolean"},
		{Name: "j", Type: "json"},
		{Name: "jb", Type: "jsonb"},
		{Name: "ai", Type: "integer[]"},
		{Name: "at", Type: "text[]"},
		{Name: "e", Type: "public.mood"},
	}
	t := &sinks.Table{Schema: "public", Name: "typed", Key: []string{"id"}, Columns: cols}
	for _, c := range cols {
		t.Cols = append(t.Cols, c.Name)
	}
	return t
}

// The DDL types of typed(), as information_schema.COLUMNS.COLUMN_TYPE shows them on MariaDB.
var typedDDL = []string{"int(11)", "smallint(6)", "int(11)", "bigint(20)", "decimal(10,2)", "decimal(65,30)", "float", "double",
	"longtext", "varchar(5)", "char(3)", "longblob", "char(36)", "datetime(6)", "datetime(6)", "date", "time(6)",
	"varchar(255)", "tinyint(1)", "longtext", "longtext", "longtext", "longtext", "longtext"}

func row(fields ...string) string { return strings.Join(fields, "\t") }

// Every type round-trips to its documented MariaDB value; NULLs everywhere but the key.
func TestTypes(t *testing.T) {
	d := newTestDB(t)
	s := d.open(t)
	tbl := typed()
	create(t, s, tbl)
	ctx := t.Context()

	rows, err := d.app.QueryContext(ctx, `SELECT COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'typed' ORDER BY ORDINAL_POSITION`, d.name)
	if err != nil {
		t.Fatal(err)
	}
	var ddl []string
	for rows.Next() {
		var ct string
		if err := rows.Scan(&ct); err != nil {
			t.Fatal(err)
		}
		ddl = append(ddl, ct)
	}
	rows.Close()
	if strings.Join(ddl, " ") != strings.Join(typedDDL, " ") {
		t.Errorf("column types:\n got %q\nwant %q", ddl, typedDDL)
	}

	in := []string{
		row("1", "-32768", "2147483647", "-9223372036854775808", "12345678.90", "-123456789012345678901234567890.123456789",
			"1.5", "3.141592653589793", `q'uote "dq" tab\there nl\nbs\\ ü 😀`, "abcde", "ab ", `\\x00ff5c0a09`,
			"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "2024-01-31 12:00:00.5+05:30", "2024-01-31 12:00:00.123456", "2024-02-29",
			"24:00:00", "1 year 2 mons 3 days 04:05:06.5", "t", `{"a": [1, 2]}`, `{"a": [1, 2]}`, "{1,2,NULL}", `{"a b",NULL,"c\\"d"}`, "happy"),
		row("2", "0", "0", "0", "0.00", "0", "3.4028235e+38", "1e+300", "", "", "", `\\x`, "00000000-0000-0000-0000-000000000000",
			"1999-12-31 23:59:59-03:30:15", "0001-01-01 00:00:00", "0001-01-01", "00:00:00.000001", "-00:00:01", "f", "[]", "null", "{}", "{}", "sad"),
		row("3", `\N`, `\N`, `\N`, `\N`, `\N`, `\N`, `\N`, `\N`, `\N`, `\N`, `\N`, `\N`, `\N`, `\N`, `\N`, `\N`, `\N`, `\N`, `\N`, `\N`, `\N`, `\N`, `\N`),
	}
	if err := s.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	c := applyBatch(t, s, tbl, []string{"1", "2", "3"}, in)
	if c != (sinks.Counts{Written: 3}) {
		t.Fatalf("counts %+v", c)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// MariaDB's text of each value (bytes as \x and hex; CHAR drops trailing spaces; FLOAT
	// has no negative zero).
	want := []string{
		row("1", "-32768", "2147483647", "-9223372036854775808", "12345678.90", "-123456789012345678901234567890.123456789000000000000000000000",
			"1.5", "3.141592653589793", `q'uote "dq" tab\there nl\nbs\\ ü 😀`, "abcde", "ab", `\\x00ff5c0a09`,
			"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "2024-01-31 06:30:00.500000", "2024-01-31 12:00:00.123456", "2024-02-29",
			"24:00:00.000000", "1 year 2 mons 3 days 04:05:06.5", "1", `{"a": [1, 2]}`, `{"a": [1, 2]}`, "{1,2,NULL}", `{"a b",NULL,"c\\"d"}`, "happy"),
		row("2", "0", "0", "0", "0.00", "0.000000000000000000000000000000", "3.40282e+38", "1e+300", "", "", "", `\\x`, "00000000-0000-0000-0000-000000000000",
			"2000-01-01 03:30:14.000000", "0001-01-01 00:00:00.000000", "0001-01-01", "00:00:00.000001", "-00:00:01", "0", "[]", "null", "{}", "{}", "sad"),
		in[2],
	}
	got := readRows(t, d, tbl)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rows:\n got %q\nwant %q", got, want)
	}
	// MariaDB prints FLOAT with 6 digits; the float32 stored is PostgreSQL's exactly.
	var r float64
	if err := d.app.QueryRowContext(ctx, "SELECT CAST(r AS DOUBLE) FROM typed WHERE id = 2").Scan(&r); err != nil {
		t.Fatal(err)
	}
	if r != float64(float32(3.4028235e+38)) {
		t.Errorf("real 3.4028235e+38 stored as %v", r)
	}
}

func applyBatch(t *testing.T, s sinks.Sink, tbl *sinks.Table, keys, rows []string) sinks.Counts {
	t.Helper()
	ctx := t.Context()
	if _, err := s.PrepareBatch(ctx, tbl, keys); err != nil {
		t.Fatalf("PrepareBatch: %v", err)
	}
	if _, err := s.WriteRows(ctx, tbl, strings.NewReader(strings.Join(rows, "\n")+"\n")); err != nil {
		t.Fatalf("WriteRows: %v", err)
	}
	c, err := s.FinishBatch(ctx, tbl)
	if err != nil {
		t.Fatalf("FinishBatch: %v", err)
	}
	return c
}

// Values the target cannot hold are refused with an error naming the db, the table, the
// column and the value; the unit is rolled back and the sink takes the next one.
func TestRefused(t *testing.T) {
	d := newTestDB(t)
	s := d.open(t)
	tbl := typed()
	create(t, s, tbl)
	ctx := t.Context()
	base := strings.Split(row("1", `\N`, `\N`, `\N`, `\N`, `\N`, `\N`, `\N`, `\N`, `\N`, `\N`, `\N`, `\N`, `\N`, `\N`, `\N`, `\N`, `\N`, `\N`, `\N`, `\N`, `\N`, `\N`, `\N`), "\t")
	col := func(name string) int {
		for i, c := range tbl.Cols {
			if c == name {
				return i
			}
		}
		t.Fatalf("no column %s", name)
		return 0
	}
	const prefix = "db mdb: writing rows of public.typed: "
	for _, tc := range []struct{ col, value, want string }{
		{"n", "NaN", `row 1: column n (numeric(10,2)): value "NaN" cannot be written: NaN and infinities have no value in the target type`},
		{"nu", "Infinity", `row 1: column nu (numeric): value "Infinity" cannot be written: NaN and infinities have no value in the target type`},
		{"nu", "0." + strings.Repeat("1", 31), `row 1: column nu (numeric): value "0.1111111111111111111111111111111" cannot be written: it does not fit DECIMAL(65,30) exactly (at most 35 integer and 30 fractional digits)`},
		{"nu", strings.Repeat("9", 36), `row 1: column nu (numeric): value "999999999999999999999999999999999999" cannot be written: it does not fit DECIMAL(65,30) exactly (at most 35 integer and 30 fractional digits)`},
		{"r", "NaN", `row 1: column r (real): value "NaN" cannot be written: NaN and infinities have no value in the target type`},
		{"d", "-Infinity", `row 1: column d (double precision): value "-Infinity" cannot be written: NaN and infinities have no value in the target type`},
		{"tz", "infinity", `row 1: column tz (timestamp with time zone): value "infinity" cannot be written: infinity does not fit DATE/DATETIME`},
		{"tz", "0044-03-15 12:00:00+00 BC", `row 1: column tz (timestamp with time zone): value "0044-03-15 12:00:00+00 BC" cannot be written: dates BC do not fit DATE/DATETIME`},
		{"ts", "-infinity", `row 1: column ts (timestamp without time zone): value "-infinity" cannot be written: infinity does not fit DATE/DATETIME`},
		{"dt", "10000-01-01", `row 1: column dt (date): value "10000-01-01" cannot be written: years past 9999 do not fit DATE/DATETIME`},
		// LOAD DATA ... REPLACE keeps strict mode: the server refuses the row.
		{"vc", "abcdef", `Error 1406 (22001): Data too long for column 'vc' at row 1`},
	} {
		fields := append([]string(nil), base...)
		fields[col(tc.col)] = tc.value
		if err := s.Begin(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := s.PrepareBatch(ctx, tbl, []string{"1"}); err != nil {
			t.Fatal(err)
		}
		_, err := s.WriteRows(ctx, tbl, strings.NewReader(strings.Join(fields, "\t")+"\n"))
		if err == nil || err.Error() != prefix+tc.want {
			t.Errorf("%s = %q: error\n %v\nwant\n %s", tc.col, tc.value, err, prefix+tc.want)
		}
		s.Rollback(ctx)
	}
	// The sink goes on: a good row after the refusals.
	if err := s.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if c := applyBatch(t, s, tbl, []string{"1"}, []string{strings.Join(base, "\t")}); c != (sinks.Counts{Written: 1}) {
		t.Fatalf("counts %+v", c)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := readRows(t, d, tbl); len(got) != 1 {
		t.Fatalf("rows %q", got)
	}
}

// A row whose key is there already is skipped by LOAD DATA LOCAL: a *sinks.RowCountError.
// A text key too long for VARCHAR(255) is refused.
func TestRowCount(t *testing.T) {
	d := newTestDB(t)
	s := d.open(t)
	tbl := &sinks.Table{Schema: "public", Name: "dup", Key: []string{"k"}, Cols: []string{"k", "v"},
		Columns: []catalog.Column{{Name: "k", Type: "text"}, {Name: "v", Type: "text"}}}
	create(t, s, tbl)
	ctx := t.Context()
	if err := s.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PrepareBatch(ctx, tbl, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	n, err := s.WriteRows(ctx, tbl, strings.NewReader("a\tone\na\ttwo\n"))
	var rc *sinks.RowCountError
	if !errors.As(err, &rc) || *rc != (sinks.RowCountError{DB: "mdb", Written: 1, Sent: 2}) || n != 2 {
		t.Fatalf("WriteRows = %d, %v; expected 2 and a RowCountError of 1 written, 2 sent", n, err)
	}
	if _, err := s.FinishBatch(ctx, tbl); !errors.As(err, &rc) {
		t.Fatalf("FinishBatch: %v, expected a RowCountError", err)
	}
	s.Rollback(ctx)
	if got := readRows(t, d, tbl); len(got) != 0 {
		t.Fatalf("rows %q after rollback", got)
	}

	// A text key longer than its VARCHAR(255) is refused, as a key and as a row.
	long := strings.Repeat("k", 256)
	if err := s.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = s.PrepareBatch(ctx, tbl, []string{long})
	const want = "db mdb: counting the keys of public.dup: loading the keys: the rows were refused (LOAD DATA warned: Warning 1265: Data truncated for column 'k' at row 1)"
	if err == nil || err.Error() != want {
		t.Errorf("PrepareBatch of a long key: %v\nwant %s", err, want)
	}
	s.Rollback(ctx)
	if err := s.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	// A row whose key is not one of the batch's is refused (it would replace a row the
	// batch does not own).
	if _, err := s.PrepareBatch(ctx, tbl, []string{"x"}); err != nil {
		t.Fatal(err)
	}
	_, err = s.WriteRows(ctx, tbl, strings.NewReader("x\tv\n"+long+"\tv\n"))
	if err == nil || !strings.Contains(err.Error(), "row 2: the row's key") || !strings.Contains(err.Error(), "is not among the batch's keys") {
		t.Errorf("WriteRows of a key outside the batch: %v", err)
	}
	s.Rollback(ctx)
}

// A missing table, then a missing column: MissingError with the DDL, which makes
// CheckTable pass once run.
func TestCheckTable(t *testing.T) {
	d := newTestDB(t)
	s := d.open(t)
	ctx := t.Context()
	tbl := &sinks.Table{Schema: "sales", Name: "or`ders", Key: []string{"id", "k"}, Cols: []string{"id", "k", "note"},
		Columns: []catalog.Column{{Name: "id", Type: "bigint"}, {Name: "k", Type: "bytea"}, {Name: "note", Type: "character varying(40)"}, {Name: "extra", Type: "timestamp(3) with time zone"}}}
	err := s.CheckTable(ctx, tbl)
	var me *sinks.MissingError
	if !errors.As(err, &me) {
		t.Fatalf("CheckTable of a missing table: %v", err)
	}
	wantDDL := "CREATE TABLE `" + d.name + "`.`sales.or``ders` (`id` BIGINT NOT NULL, `k` VARBINARY(255) NOT NULL, `note` VARCHAR(40), PRIMARY KEY (`id`, `k`)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin"
	if me.DDL != wantDDL || me.Columns != nil || me.Table != d.name+".sales.or`ders" || me.DB != "mdb" {
		t.Fatalf("MissingError %+v\nwant DDL %s", me, wantDDL)
	}
	if _, err := d.app.ExecContext(ctx, me.DDL); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckTable(ctx, tbl); err != nil {
		t.Fatalf("CheckTable after the DDL: %v", err)
	}
	tbl.Cols = append(tbl.Cols, "extra")
	if err := s.CheckTable(ctx, tbl); !errors.As(err, &me) || strings.Join(me.Columns, ",") != "extra" ||
		me.DDL != "ALTER TABLE `"+d.name+"`.`sales.or``ders` ADD COLUMN `extra` DATETIME(3)" {
		t.Fatalf("CheckTable of a missing column: %v", err)
	}
	if _, err := d.app.ExecContext(ctx, me.DDL); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckTable(ctx, tbl); err != nil {
		t.Fatalf("CheckTable after the ALTER: %v", err)
	}
	// CreateTable adds a missing column; a complete table is left alone.
	tbl.Cols = append(tbl.Cols, "more")
	tbl.Columns = append(tbl.Columns, catalog.Column{Name: "more", Type: "jsonb"})
	create(t, s, tbl)
	create(t, s, tbl)
	// A table of the same name in another case is another table.
	upper := &sinks.Table{Schema: "sales", Name: "OR`DERS", Key: []string{"id"}, Cols: []string{"id"}, Columns: []catalog.Column{{Name: "id", Type: "integer"}}}
	if err := s.CheckTable(ctx, upper); !errors.As(err, &me) || me.Columns != nil {
		t.Fatalf("CheckTable of a table differing in case: %v", err)
	}
}

func TestTableName(t *testing.T) {
	for _, tc := range [][3]string{
		{"public", "orders", "orders"},
		{"sales", "orders", "sales.orders"},
		{"public", "a.b", `a\.b`},
		{"x.y", "z", `x\.y.z`},
		{"x", "y.z", `x.y.z`},
		{`b\s`, "t", `b\\s.t`},
	} {
		if got := mariadb.TableName(tc[0], tc[1]); got != tc[2] {
			t.Errorf("TableName(%q, %q) = %q, want %q", tc[0], tc[1], got, tc[2])
		}
	}
}

func TestCheckParams(t *testing.T) {
	for _, tc := range []struct {
		params map[string]string
		want   string
	}{
		{map[string]string{"dbname": "d", "user": "u"}, ""},
		{map[string]string{"dbname": "d", "user": "u", "host": "h", "port": "3307", "connect_timeout": "3", "tls": "skip-verify"}, ""},
		{map[string]string{"dbname": "d", "user": "u", "path": "x", "sslmode": "y"}, `unknown settings "path", "sslmode" for a mariadb db (allowed: connect_timeout, dbname, host, port, tls, user)`},
		{map[string]string{"user": "u"}, "param dbname is required for type mariadb"},
		{map[string]string{"dbname": "d"}, "param user is required for type mariadb"},
		{map[string]string{"dbname": "d", "user": "u", "port": "0"}, `param port: "0" is not a port number (1 to 65535)`},
		{map[string]string{"dbname": "d", "user": "u", "connect_timeout": "1.5"}, `param connect_timeout: "1.5" is not a whole number of seconds (1 or more)`},
		{map[string]string{"dbname": "d", "user": "u", "tls": "yes"}, `param tls: "yes" is not off, on or skip-verify`},
	} {
		err := mariadb.CheckParams(tc.params)
		if got := fmt.Sprint(err); tc.want == "" && err != nil || tc.want != "" && got != tc.want {
			t.Errorf("CheckParams(%v) = %v, want %q", tc.params, err, tc.want)
		}
	}
}

// Open fails in bounded time, naming the db and never showing the password.
func TestOpenFails(t *testing.T) {
	d := newTestDB(t)
	const secret = "s3cret-Pa55"
	// A server that accepts and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	_, silentPort, _ := net.SplitHostPort(ln.Addr().String())
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, closedPort, _ := net.SplitHostPort(closed.Addr().String())
	closed.Close()
	host, port, _ := strings.Cut(serverAddr(), ":")
	for _, tc := range []struct {
		name   string
		params map[string]string
		want   string
	}{
		{"bad password", map[string]string{"host": host, "port": port, "dbname": d.name, "user": "ibex_no_such_user"}, "Access denied"},
		{"closed port", map[string]string{"port": closedPort, "dbname": d.name, "user": "root"}, "connection refused"},
		{"silent server", map[string]string{"port": silentPort, "dbname": d.name, "user": "root", "connect_timeout": "1"}, "context deadline exceeded"},
	} {
		start := time.Now()
		s, err := mariadb.Open(t.Context(), sinks.Config{DB: "mdb", Params: tc.params, Password: secret})
		took := time.Since(start)
		if err == nil {
			s.Close()
			t.Errorf("%s: Open succeeded", tc.name)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "db mdb: connecting to ") || !strings.Contains(msg, tc.want) || strings.Contains(msg, secret) || took > 3*time.Second {
			t.Errorf("%s: Open took %v: %v (want the db, %q, no password, within 3 s)", tc.name, took, err, tc.want)
		}
	}
}

// A connection lost (killed) loses the unit; the sink takes a new connection at the next
// Begin and goes on.
func TestConnectionLost(t *testing.T) {
	d := newTestDB(t)
	s := d.open(t)
	tbl := &sinks.Table{Schema: "public", Name: "lost", Key: []string{"k"}, Cols: []string{"k"},
		Columns: []catalog.Column{{Name: "k", Type: "integer"}}}
	create(t, s, tbl)
	ctx := t.Context()
	if err := s.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	applyBatch(t, s, tbl, []string{"1"}, []string{"1"})
	// The sink's is the only connection in the database so far (the app has not
	// connected): kill it.
	killer := d.root(t)
	rows, err := killer.QueryContext(ctx, "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = ?", d.name)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if len(ids) != 1 {
		t.Fatalf("connections in %s: %v, expected the sink's alone", d.name, ids)
	}
	if _, err := killer.ExecContext(ctx, fmt.Sprintf("KILL CONNECTION %d", ids[0])); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx); err == nil {
		t.Fatal("Commit on a killed connection succeeded")
	}
	if err := s.Begin(ctx); err != nil {
		t.Fatalf("Begin after the connection was lost: %v", err)
	}
	if c := applyBatch(t, s, tbl, []string{"2"}, []string{"2"}); c != (sinks.Counts{Written: 1}) {
		t.Fatalf("counts %+v", c)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := readRows(t, d, tbl); strings.Join(got, ",") != "2" {
		t.Fatalf("rows %q, expected 2 alone (the killed unit's 1 rolled back)", got)
	}
}
