package sqlite_test

import (
	"database/sql"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/sqlite"
)

// typesTable has a column of every PostgreSQL type ibex maps, and a key.
func typesTable() *sinks.Table {
	tbl := &sinks.Table{Schema: "public", Name: "types", Key: []string{"id"}}
	for _, c := range [][2]string{
		{"id", "integer"}, {"i2", "smallint"}, {"i4", "integer"}, {"i8", "bigint"},
		{"num", "numeric"}, {"num102", "numeric(10,2)"}, {"f4", "real"}, {"f8", "double precision"},
		{"txt", "text"}, {"vc", "character varying(10)"}, {"ch", "character(3)"}, {"by", "bytea"},
		{"uu", "uuid"}, {"tstz", "timestamp with time zone"}, {"ts", "timestamp without time zone"},
		{"d", "date"}, {"tm", "time without time zone"}, {"iv", "interval"}, {"b", "boolean"},
		{"js", "json"}, {"jb", "jsonb"}, {"ia", "integer[]"}, {"ta", "text[]"}, {"mood", "public.mood"},
	} {
		tbl.Cols = append(tbl.Cols, c[0])
		tbl.Columns = append(tbl.Columns, catalog.Column{Name: c[0], Type: c[1], NotNull: c[0] == "id"})
	}
	return tbl
}

// typeCase is one value of one column: the PostgreSQL text (COPY-decoded) and what the
// file holds (int64, float64, string, []byte or nil), or the refusal.
type typeCase struct {
	col, in string
	want    any
	refused string // the ValueError's reason
}

var bigText = strings.Repeat("ünï ✓ 😀 \t\n\\ '\" ", 1<<20/32)

var bigBytes = func() []byte {
	b := make([]byte, 200<<10)
	for i := range b {
		b[i] = byte(i * 31)
	}
	return b
}()

var typeCases = []typeCase{
	{col: "i2", in: "-32768", want: int64(-32768)},
	{col: "i4", in: "2147483647", want: int64(2147483647)},
	{col: "i8", in: "-9223372036854775808", want: int64(math.MinInt64)},
	{col: "num", in: "123456789012345678901234567890.123456789", want: "123456789012345678901234567890.123456789"},
	{col: "num", in: "NaN", want: "NaN"},
	{col: "num", in: "-0.000000000000000000001", want: "-0.000000000000000000001"},
	{col: "num102", in: "1.50", want: "1.50"},
	{col: "f4", in: "1.5", want: 1.5},
	{col: "f4", in: "3.4028235e+38", want: 3.4028235e+38},
	{col: "f8", in: "0.1", want: 0.1},
	{col: "f8", in: "Infinity", want: math.Inf(1)},
	{col: "f8", in: "-Infinity", want: math.Inf(-1)},
	{col: "f8", in: "-1.7976931348623157e+308", want: -math.MaxFloat64},
	{col: "f8", in: "NaN", refused: "NaN: a SQLite REAL cannot hold it (SQLite stores NULL for NaN)"},
	{col: "f4", in: "NaN", refused: "NaN: a SQLite REAL cannot hold it (SQLite stores NULL for NaN)"},
	{col: "txt", in: `it's "q" ; -- \ tab	nl` + "\n" + `cr` + "\r" + ` ü 日本 😀`, want: `it's "q" ; -- \ tab	nl` + "\n" + `cr` + "\r" + ` ü 日本 😀`},
	{col: "txt", in: "", want: ""},
	{col: "txt", in: bigText, want: bigText},
	{col: "vc", in: "abc", want: "abc"},
	{col: "ch", in: "ab ", want: "ab "},
	{col: "by", in: `\x`, want: []byte{}},
	{col: "by", in: `\x000000`, want: []byte{0, 0, 0}},
	{col: "by", in: fmt.Sprintf(`\x%x`, bigBytes), want: bigBytes},
	{col: "uu", in: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", want: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
	{col: "tstz", in: "2024-01-31 12:00:00.5+05:30", want: "2024-01-31 06:30:00.5+00:00"},
	{col: "tstz", in: "2024-01-31 12:00:00+00", want: "2024-01-31 12:00:00+00:00"},
	{col: "tstz", in: "1900-01-01 00:00:00.123456-03:30:15", want: "1900-01-01 03:30:15.123456+00:00"},
	{col: "tstz", in: "infinity", want: "infinity"},
	{col: "tstz", in: "-infinity", want: "-infinity"},
	{col: "tstz", in: "0044-03-15 12:00:00+00 BC", refused: "a BC date: SQLite's date functions read the years 0000 to 9999 only"},
	{col: "ts", in: "2024-01-31 12:00:00.123456", want: "2024-01-31 12:00:00.123456"},
	{col: "ts", in: "infinity", want: "infinity"},
	{col: "ts", in: "2024-01-01 00:00:00 BC", refused: "a BC date: SQLite's date functions read the years 0000 to 9999 only"},
	{col: "d", in: "2024-02-29", want: "2024-02-29"},
	{col: "d", in: "-infinity", want: "-infinity"},
	{col: "d", in: "0001-01-01 BC", refused: "a BC date: SQLite's date functions read the years 0000 to 9999 only"},
	{col: "d", in: "12345-01-01", refused: `not a date or time of the years 1 to 9999 (pgtext: date: parsing time "12345-01-01" as "2006-01-02": cannot parse "5-01-01" as "-")`},
	{col: "tm", in: "23:59:59.999999", want: "23:59:59.999999"},
	{col: "iv", in: "1 year 2 mons 3 days 04:05:06.5", want: "1 year 2 mons 3 days 04:05:06.5"},
	{col: "iv", in: "-00:00:01", want: "-00:00:01"},
	{col: "b", in: "t", want: int64(1)},
	{col: "b", in: "f", want: int64(0)},
	{col: "js", in: `{"a": [1, 2.50, "x"]}`, want: `{"a": [1, 2.50, "x"]}`},
	{col: "jb", in: `{"a": [1, 2.50, "x"]}`, want: `{"a": [1, 2.50, "x"]}`},
	{col: "jb", in: `{"a": `, refused: "not valid JSON"},
	{col: "ia", in: "{1,NULL,-3}", want: "[1,null,-3]"},
	{col: "ia", in: "{{1,2},{3,4}}", want: "[[1,2],[3,4]]"},
	{col: "ia", in: "{}", want: "[]"},
	{col: "ia", in: "[0:1]={1,2}", refused: "an array with lower bounds other than 1: a JSON array cannot keep them"},
	{col: "ta", in: `{a,"b c",NULL,"NULL","q\"uote","back\\slash","tab	nl` + "\n" + `"}`, want: `["a","b c",null,"NULL","q\"uote","back\\slash","tab\tnl\n"]`},
	{col: "mood", in: "happy", want: "happy"},
}

// newSinkAt opens the sink on a fresh file, with t's table created by the sink.
func newSinkAt(t *testing.T, tbl *sinks.Table) (*sqlite.Sink, *sql.DB) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "types.db")
	s, err := sqlite.Open(t.Context(), sinks.Config{DB: "lite", Params: map[string]string{"path": path}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.CreateTable(t.Context(), tbl); err != nil {
		t.Fatal(err)
	}
	return s, appDB(t, path)
}

// line is the COPY text row of id with value in column col, NULL elsewhere.
func line(tbl *sinks.Table, id int, col, value string) string {
	fields := make([]conflict.Field, len(tbl.Cols))
	for i, c := range tbl.Cols {
		switch c {
		case "id":
			fields[i].Text = fmt.Sprint(id)
		case col:
			fields[i].Text = value
		default:
			fields[i].Null = true
		}
	}
	return conflict.EncodeCopyLine(fields)
}

func TestTypes(t *testing.T) {
	ctx := t.Context()
	tbl := typesTable()
	s, app := newSinkAt(t, tbl)

	var keys, rows []string
	for i, c := range typeCases {
		if c.refused == "" {
			keys = append(keys, fmt.Sprint(i))
			rows = append(rows, line(tbl, i, c.col, c.in))
		}
	}
	keys = append(keys, "1000")
	rows = append(rows, line(tbl, 1000, "", "")) // NULL everywhere but the key
	if err := s.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PrepareBatch(ctx, tbl, keys); err != nil {
		t.Fatal(err)
	}
	if n, err := s.WriteRows(ctx, tbl, strings.NewReader(strings.Join(rows, "\n"))); err != nil || n != int64(len(rows)) {
		t.Fatalf("WriteRows = %d, %v", n, err)
	}
	if c, err := s.FinishBatch(ctx, tbl); err != nil || c != (sinks.Counts{Written: int64(len(rows))}) {
		t.Fatalf("FinishBatch = %+v, %v", c, err)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	for i, c := range typeCases {
		if c.refused != "" {
			continue
		}
		var got any
		var typ string
		if err := app.QueryRow(fmt.Sprintf(`SELECT %q, typeof(%q) FROM types WHERE id = ?`, c.col, c.col), i).Scan(&got, &typ); err != nil {
			t.Fatalf("%s %q: %v", c.col, clip(c.in), err)
		}
		if b, ok := got.([]byte); ok && len(b) == 0 {
			got = []byte{} // the driver reads an empty blob as nil
		}
		if wantTyp := map[string]string{"int64": "integer", "float64": "real", "string": "text", "[]uint8": "blob"}[fmt.Sprintf("%T", c.want)]; typ != wantTyp {
			t.Errorf("%s %q: typeof %s, expected %s", c.col, clip(c.in), typ, wantTyp)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s %q: the file holds %T %v, expected %T %v", c.col, clip(c.in), got, clip(fmt.Sprint(got)), c.want, clip(fmt.Sprint(c.want)))
		}
	}
	var nulls int
	if err := app.QueryRow(`SELECT (i2 IS NULL) + (num IS NULL) + (f8 IS NULL) + (by IS NULL) + (tstz IS NULL) + (b IS NULL) + (ta IS NULL) FROM types WHERE id = 1000`).Scan(&nulls); err != nil || nulls != 7 {
		t.Errorf("NULL row: %d NULLs, %v; expected 7", nulls, err)
	}

	// SQLite's date and JSON functions read the values.
	for _, q := range [][2]string{
		{`SELECT strftime('%Y-%m-%d %H:%M:%f', tstz) FROM types WHERE tstz LIKE '2024-01-31 06:30%'`, "2024-01-31 06:30:00.500"},
		{`SELECT datetime(ts, '+1 day') FROM types WHERE ts LIKE '2024-01-31%'`, "2024-02-01 12:00:00"},
		{`SELECT date(d, '+1 day') FROM types WHERE d = '2024-02-29'`, "2024-03-01"},
		{`SELECT json_extract(ta, '$[4]') || json_type(ta, '$[2]') FROM types WHERE ta IS NOT NULL`, `q"uotenull`},
		{`SELECT group_concat(value, '+') FROM types, json_each(ia) WHERE ia = '[1,null,-3]'`, "1+-3"},
		{`SELECT count(*) FROM types WHERE tstz > '2024-01-31 12:00:00+00:00'`, "1"}, // infinity sorts last
	} {
		var got string
		if err := app.QueryRow(q[0]).Scan(&got); err != nil || got != q[1] {
			t.Errorf("%s = %q, %v; expected %q", q[0], got, err, q[1])
		}
	}

	// Refused values: an error naming the db, the table, the column, its type and the value.
	for i, c := range typeCases {
		if c.refused == "" {
			continue
		}
		if err := s.Begin(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := s.PrepareBatch(ctx, tbl, []string{"5000"}); err != nil {
			t.Fatal(err)
		}
		_, err := s.WriteRows(ctx, tbl, strings.NewReader(line(tbl, 5000, c.col, c.in)+"\n"))
		var ve *sqlite.ValueError
		if !errors.As(err, &ve) || ve.Reason != c.refused || ve.Column != c.col || ve.Table != "public.types" || ve.Value != c.in {
			t.Errorf("case %d: %s %q: %v; expected a ValueError: %s", i, c.col, c.in, err, c.refused)
		}
		if err := s.Commit(ctx); err == nil || !strings.Contains(err.Error(), "rolled back") {
			t.Errorf("Commit after a refused value: %v; expected an error (rolled back)", err)
		}
	}
	// One message in full.
	if err := s.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PrepareBatch(ctx, tbl, []string{"5000"}); err != nil {
		t.Fatal(err)
	}
	_, err := s.WriteRows(ctx, tbl, strings.NewReader(line(tbl, 5000, "f8", "NaN")))
	want := `db lite: row 1 of public.types: table public.types column f8 (double precision): value "NaN" refused: NaN: a SQLite REAL cannot hold it (SQLite stores NULL for NaN)`
	if err == nil || err.Error() != want {
		t.Errorf("WriteRows of NaN: %v\nexpected %s", err, want)
	}
	s.Rollback(ctx)
	var n int
	if err := app.QueryRow(`SELECT count(*) FROM types WHERE id = 5000`).Scan(&n); err != nil || n != 0 {
		t.Errorf("rows of refused units: %d, %v; expected 0", n, err)
	}
}

func clip(s string) string {
	if len(s) > 80 {
		return fmt.Sprintf("%s... (%d bytes)", s[:80], len(s))
	}
	return s
}
