package flatfile_test

import (
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/sinks"
)

// awkTable is a table of awkward values, as the sink takes it.
func awkTable(schema, name string, colNames ...string) *sinks.Table {
	if colNames == nil {
		colNames = []string{"id", "name", "n", "data"}
	}
	types := []string{"integer", "text", "bigint", "bytea"}
	t := &sinks.Table{Schema: schema, Name: name, Key: colNames[:1], Cols: colNames}
	for i, c := range colNames {
		t.Columns = append(t.Columns, catalog.Column{Name: c, Type: types[i]})
	}
	return t
}

func row(f ...string) string { return strings.Join(f, "\t") }

// awkward are values that trip string literals: quotes, backslashes (before a quote, at
// the end), control characters, unicode, bytes, NULLs, empty values.
var awkward = []string{
	row("1", `\N`, `\N`, `\N`),
	row("2", "", "0", `\\x`),
	row("3", "héllo wörld ✓ 日本語 😀 ñ ß", "-9223372036854775808", `\\x00ff10`),
	row("4", `it's "quoted" ; DROP TABLE x; --`, "9223372036854775807", `\\xdeadbeef`),
	row("5", `tab\there\nnewline\rcr\\backslash \\N is text`, "42", `\\x5c0a09`),
	row("6", `ctl\b\f\v end \001\037\177`, "-1", `\\x00`),
	row("7", `ends with a backslash\\`, "7", `\\x5c`),
	row("8", `\\'); DELETE FROM awk; --`, "8", `\\x27`),
	row("9", `'`, "9", `\\x2727`),
	row("10", "`backtick` and \"double\" and ''", "10", `\\x60`),
	row("11", `\\\\x00 not bytes`, "11", `\\x5c7830`),
	row("12", "  padded  ", "12", `\\x20`),
	row("13", `\\0 \\Z \\% \\_ %_`, "13", `\\x255f`),
}

var newThree = row("3", `new\tthree\\`, "33", `\N`)

// writeAwkward writes the awkward rows through a sink on dir (params: dialect ...) in
// three units: every row; a batch replacing 3, deleting 2 and 99 (absent); a truncate
// and a batch of every row, 3 as replaced.
func writeAwkward(t *testing.T, dir string, tbl *sinks.Table, params ...string) {
	t.Helper()
	s := openSink(t, dir, 1, params...)
	var keys []string
	for _, r := range awkward {
		keys = append(keys, strings.SplitN(r, "\t", 2)[0])
	}
	if c := unit(t, s, tbl, keys, awkward); c != (sinks.Counts{Written: int64(len(awkward))}) {
		t.Fatalf("first unit: %+v", c)
	}
	if c := unit(t, s, tbl, []string{"2", "3", "99"}, []string{newThree}); c != (sinks.Counts{Written: 1, Deleted: 2}) {
		t.Fatalf("second unit: %+v", c)
	}
	ctx := t.Context()
	if err := s.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Truncate(ctx, []sinks.Truncation{{Table: tbl}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	rest := slices.Clone(awkward)
	rest[2] = newThree
	if c := unit(t, s, tbl, keys, rest); c != (sinks.Counts{Written: int64(len(rest))}) {
		t.Fatalf("fourth unit: %+v", c)
	}
}

// value is one row read back, printed the same from either system.
func value(id int64, name sql.NullString, n sql.NullInt64, data []byte) string {
	out := fmt.Sprint(id)
	if name.Valid {
		out += fmt.Sprintf("|%q", name.String)
	} else {
		out += "|NULL"
	}
	if n.Valid {
		out += fmt.Sprintf("|%d", n.Int64)
	} else {
		out += "|NULL"
	}
	if data != nil {
		out += "|" + hex.EncodeToString(data)
	} else {
		out += "|NULL"
	}
	return out
}

func pgValues(t *testing.T, conn *pgx.Conn, table string) []string {
	t.Helper()
	rows, err := conn.Query(t.Context(), `SELECT id, name, n, data FROM `+table+` ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		var id int64
		var name sql.NullString
		var n sql.NullInt64
		var data []byte
		if err := rows.Scan(&id, &name, &n, &data); err != nil {
			t.Fatal(err)
		}
		out = append(out, value(id, name, n, data))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func mariaValues(t *testing.T, db *sql.DB, table string) []string {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), "SELECT id, name, n, data FROM "+table+" ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id int64
		var name sql.NullString
		var n sql.NullInt64
		var data []byte
		if err := rows.Scan(&id, &name, &n, &data); err != nil {
			t.Fatal(err)
		}
		if data != nil && len(data) == 0 {
			data = []byte{}
		}
		out = append(out, value(id, name, n, data))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// The same batches written in the postgres and the mysql dialect and replayed into
// PostgreSQL and MariaDB (under several sql_modes, and through the mysql client) leave the
// same values, which are the values sent.
func TestMySQLReplayMatchesPostgres(t *testing.T) {
	t.Parallel()
	tbl := awkTable("public", "awk")
	pgDir, myDir := t.TempDir(), t.TempDir()
	writeAwkward(t, pgDir, tbl)
	writeAwkward(t, myDir, tbl, "dialect", "mysql")

	// What was sent, loaded by COPY into PostgreSQL: the reference.
	db := pgtest.NewDB(t, "")
	conn := pgtest.Conn(t, db.DSN)
	ctx := t.Context()
	for _, tb := range []string{"awk", "sent"} {
		if _, err := conn.Exec(ctx, `CREATE TABLE `+tb+` (id integer PRIMARY KEY, name text, n bigint, data bytea)`); err != nil {
			t.Fatal(err)
		}
	}
	want := slices.Clone(awkward)
	want[2] = newThree
	if _, err := conn.PgConn().CopyFrom(ctx, lines(want), `COPY sent FROM STDIN`); err != nil {
		t.Fatal(err)
	}
	sent := pgValues(t, conn, "sent")
	if len(sent) != len(awkward) {
		t.Fatalf("sent %d rows", len(sent))
	}

	for _, name := range files(t, pgDir) {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.PgConn().Exec(ctx, string(b)).ReadAll(); err != nil {
			t.Fatalf("replaying %s: %v", name, err)
		}
	}
	if got := pgValues(t, conn, "awk"); !slices.Equal(got, sent) {
		t.Fatalf("PostgreSQL replay:\n%s\nexpected\n%s", strings.Join(got, "\n"), strings.Join(sent, "\n"))
	}

	const ddl = "CREATE TABLE awk (id INT PRIMARY KEY, name LONGTEXT, n BIGINT, data LONGBLOB)"
	for _, mode := range []string{"", "STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION",
		"NO_BACKSLASH_ESCAPES,ANSI_QUOTES,PIPES_AS_CONCAT,STRICT_ALL_TABLES", "ANSI,NO_BACKSLASH_ESCAPES"} {
		t.Run("sql_mode="+mode, func(t *testing.T) {
			my := mariaDB(t)
			if _, err := my.ExecContext(t.Context(), ddl); err != nil {
				t.Fatal(err)
			}
			replayMaria(t, my, myDir, mode)
			if got := mariaValues(t, my, "awk"); !slices.Equal(got, sent) {
				t.Fatalf("MariaDB replay:\n%s\nexpected\n%s", strings.Join(got, "\n"), strings.Join(sent, "\n"))
			}
		})
	}

	// The way a user replays: cat DIR/*.sql | client.
	cat := func(dir string) string {
		var b strings.Builder
		for _, name := range files(t, dir) {
			f, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			b.Write(f)
		}
		return b.String()
	}
	t.Run("psql", func(t *testing.T) {
		if _, err := exec.LookPath("psql"); err != nil {
			t.Skip("no psql")
		}
		db2 := pgtest.NewDB(t, "")
		c2 := pgtest.Conn(t, db2.DSN)
		if _, err := c2.Exec(t.Context(), `CREATE TABLE awk (id integer PRIMARY KEY, name text, n bigint, data bytea)`); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", db2.DSN)
		cmd.Stdin = strings.NewReader(cat(pgDir))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("psql: %v\n%s", err, out)
		}
		if got := pgValues(t, c2, "awk"); !slices.Equal(got, sent) {
			t.Fatalf("psql replay:\n%s\nexpected\n%s", strings.Join(got, "\n"), strings.Join(sent, "\n"))
		}
	})
	t.Run("mysql", func(t *testing.T) {
		if _, err := exec.LookPath("mysql"); err != nil || os.Getenv("IBEX_TEST_MARIADB_DSN") != "" {
			t.Skip("no mysql client, or a MariaDB other than 127.0.0.1:3306")
		}
		my := mariaDB(t)
		if _, err := my.ExecContext(t.Context(), ddl); err != nil {
			t.Fatal(err)
		}
		var dbName string
		if err := my.QueryRowContext(t.Context(), "SELECT DATABASE()").Scan(&dbName); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("mysql", "-h127.0.0.1", "-P3306", "-uroot", dbName)
		cmd.Stdin = strings.NewReader(cat(myDir))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("mysql: %v\n%s", err, out)
		}
		if got := mariaValues(t, my, "awk"); !slices.Equal(got, sent) {
			t.Fatalf("mysql client replay:\n%s\nexpected\n%s", strings.Join(got, "\n"), strings.Join(sent, "\n"))
		}
	})
}

// Names that need quoting (quotes, backquotes, dots, spaces, unicode) and a two-column
// key, in the mysql dialect, replayed into MariaDB: a schema other than public names the
// table schema.name (TableName).
func TestMySQLHostileNames(t *testing.T) {
	t.Parallel()
	tbl := &sinks.Table{Schema: `s"x`, Name: "t`b.l 'e' ü", Key: []string{"i`d", "k ey"}, Cols: []string{"i`d", "k ey", `"sel'ect"`},
		Columns: []catalog.Column{{Name: "i`d", Type: "integer"}, {Name: "k ey", Type: "text"}, {Name: `"sel'ect"`, Type: "text"}}}
	dir := t.TempDir()
	s := openSink(t, dir, 1, "dialect", "mysql")
	unit(t, s, tbl, []string{row("1", "a"), row("1", `b\\`)}, []string{row("1", "a", "x"), row("1", `b\\`, `y\n`)})
	unit(t, s, tbl, []string{row("1", "a")}, nil)
	my := mariaDB(t)
	if _, err := my.ExecContext(t.Context(), "CREATE TABLE `s\"x.t``b.l 'e' ü` (`i``d` INT, `k ey` VARCHAR(20), `\"sel'ect\"` LONGTEXT, PRIMARY KEY (`i``d`, `k ey`))"); err != nil {
		t.Fatal(err)
	}
	replayMaria(t, my, dir, "ANSI_QUOTES")
	var id int
	var k, v string
	if err := my.QueryRowContext(t.Context(), "SELECT * FROM `s\"x.t``b.l 'e' ü`").Scan(&id, &k, &v); err != nil {
		t.Fatal(err)
	}
	if id != 1 || k != `b\` || v != "y\n" {
		t.Fatalf("got %d %q %q", id, k, v)
	}
}
