package sinktest

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/sinks"
)

// Value is a value of a PostgreSQL type, for ReadBack.
type Value struct {
	Type string // format_type() text: "numeric(10,2)", "text[]"
	SQL  string // a literal or expression, cast to Type: `'-12.50'`, `NULL`
}

// Readable is a sink ReadBack checks: one that creates its tables and reads them back.
type Readable interface {
	sinks.Sink
	sinks.Checker
	sinks.Reader
}

// SessionSettings are ibex's session settings, which ReadBack's PostgreSQL prints with.
var SessionSettings = []string{
	"SET TimeZone = 'UTC'", "SET DateStyle = 'ISO, MDY'", "SET IntervalStyle = 'postgres'",
	"SET extra_float_digits = 3", "SET bytea_output = 'hex'",
}

// PGText returns the COPY text line PostgreSQL (the test server) prints for the row of
// exprs (each cast to its type), with ibex's session settings.
func PGText(t *testing.T, exprs []Value) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c := pgtest.Conn(t, pgtest.AdminDSN())
	for _, q := range SessionSettings {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	sel := make([]string, len(exprs))
	for i, v := range exprs {
		sel[i] = fmt.Sprintf("(%s)::%s", v.SQL, v.Type)
	}
	var out bytes.Buffer
	if _, err := c.PgConn().CopyTo(ctx, &out, "COPY (SELECT "+strings.Join(sel, ", ")+") TO STDOUT"); err != nil {
		t.Fatalf("selecting the values from PostgreSQL: %v", err)
	}
	return strings.TrimSuffix(out.String(), "\n")
}

// ReadBack writes a table of one column per value (plus an integer key) through s: a
// row of the values and a row of NULLs, as PostgreSQL prints them (PGText); then reads
// the table back with s.ReadRows and fails t for every column whose text differs from
// PostgreSQL's. s creates the table (CreateTable) first.
func ReadBack(t *testing.T, s Readable, schema, name string, vals []Value) {
	t.Helper()
	ctx := t.Context()
	tbl := &sinks.Table{Schema: schema, Name: name, Key: []string{"id"}, Cols: []string{"id"},
		Columns: []catalog.Column{{Name: "id", Type: "integer", NotNull: true}}}
	exprs := []Value{{Type: "integer", SQL: "1"}}
	nulls := []string{"2"}
	for i, v := range vals {
		col := "c" + strconv.Itoa(i)
		tbl.Cols = append(tbl.Cols, col)
		tbl.Columns = append(tbl.Columns, catalog.Column{Name: col, Type: v.Type})
		exprs = append(exprs, v)
		nulls = append(nulls, `\N`)
	}
	want := []string{PGText(t, exprs), strings.Join(nulls, "\t")}
	if err := s.CreateTable(ctx, tbl); err != nil {
		t.Fatalf("CreateTable: %v", err)
	}
	if err := s.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PrepareBatch(ctx, tbl, []string{"1", "2"}); err != nil {
		t.Fatalf("PrepareBatch: %v", err)
	}
	if n, err := s.WriteRows(ctx, tbl, strings.NewReader(strings.Join(want, "\n")+"\n")); err != nil || n != 2 {
		t.Fatalf("WriteRows: %d, %v", n, err)
	}
	if _, err := s.FinishBatch(ctx, tbl); err != nil {
		t.Fatalf("FinishBatch: %v", err)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	got := map[string]string{}
	if err := s.ReadRows(ctx, tbl, func(line string) error {
		key, _, _ := strings.Cut(line, "\t")
		if _, dup := got[key]; dup {
			return fmt.Errorf("key %s read twice", key)
		}
		got[key] = line
		return nil
	}); err != nil {
		t.Fatalf("ReadRows: %v", err)
	}
	if len(got) != 2 {
		t.Errorf("ReadRows gave %d rows, expected 2", len(got))
	}
	for _, w := range want {
		key, _, _ := strings.Cut(w, "\t")
		g, ok := got[key]
		if !ok {
			t.Errorf("row %s not read back", key)
			continue
		}
		if g == w {
			continue
		}
		gf, err1 := conflict.DecodeCopyLine(g)
		wf, err2 := conflict.DecodeCopyLine(w)
		if err1 != nil || err2 != nil || len(gf) != len(wf) {
			t.Errorf("row %s: read back\n  %q\nPostgreSQL prints\n  %q", key, clipLine(g), clipLine(w))
			continue
		}
		for i := range wf {
			if gf[i] != wf[i] {
				t.Errorf("row %s column %s (%s, %s): read back %s, PostgreSQL prints %s", key, tbl.Cols[i],
					tbl.Columns[i].Type, exprs[min(i, len(exprs)-1)].SQL, show(gf[i]), show(wf[i]))
			}
		}
	}
}

func show(f conflict.Field) string {
	if f.Null {
		return "NULL"
	}
	return strconv.Quote(clipLine(f.Text))
}

func clipLine(s string) string {
	if len(s) > 120 {
		return s[:120] + fmt.Sprintf("...(%d bytes)", len(s))
	}
	return s
}

// CommonValues are values of every type the sinks map exactly, with the texts that
// stress them (COPY escapes, quoting in arrays, offsets, fractions, a 1 MB text).
func CommonValues() []Value {
	return []Value{
		{"smallint", "-32768"},
		{"integer", "2147483647"},
		{"bigint", "-9223372036854775808"},
		{"numeric(10,2)", "'-12.50'"},
		{"numeric(10,2)", "'0'"},
		{"numeric", "'123456789.000000001'"},
		{"numeric", "'-42'"},
		{"real", "'0.1'"},
		{"real", "'3.4028235e+38'"},
		{"real", "'-1.5e-07'"},
		{"real", "'1234567'"},
		{"double precision", "'0.1'"},
		{"double precision", "'1e+300'"},
		{"double precision", "'-2.5e-10'"},
		{"double precision", "'123456789012345.6'"},
		{"double precision", "'1e15'"},
		{"boolean", "true"},
		{"boolean", "false"},
		{"text", `E'it''s "q" \t tab \n nl \r cr \\ bs \\N \b\f\v'`},
		{"text", "'héllo ✓ 日本語 😀'"},
		{"text", "''"},
		{"text", "repeat('x', 1 << 20)"},
		{"character varying(20)", "'abc'"},
		{"character(5)", "'ab'"},
		{"bytea", `'\x00ff10'`},
		{"bytea", `'\x'`},
		{"bytea", `decode(repeat('00ff5c0a09', 1000), 'hex')`},
		{"uuid", "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'"},
		{"timestamp with time zone", "'2024-01-02 03:04:05.123456+00'"},
		{"timestamp with time zone", "'2024-01-02 03:04:05+05:30'"},
		{"timestamp with time zone", "'2024-02-29 23:59:59.5-03'"},
		{"timestamp(3) with time zone", "'2024-01-02 03:04:05.1239+00'"},
		{"timestamp without time zone", "'2024-01-31 12:00:00.25'"},
		{"timestamp without time zone", "'1999-12-31 23:59:59'"},
		{"date", "'2024-02-29'"},
		{"time without time zone", "'23:59:59.999999'"},
		{"time without time zone", "'24:00:00'"},
		{"time without time zone", "'04:05:06.5'"},
		{"time with time zone", "'12:00:00+05:30'"},
		{"interval", "'1 year 2 mons 3 days 04:05:06.5'"},
		{"json", `'{"b": 1, "a": [1, 2, null], "s": "x\"y\\z"}'`},
		{"jsonb", `'{"b": 1, "a": [1, 2, null], "s": "x\"y\\z"}'`},
		{"integer[]", "'{1,NULL,3}'"},
		{"integer[]", "'{}'"},
		{"integer[]", "'{{1,2},{3,4}}'"},
		{"text[]", `E'{a,"b c",NULL,"d\\"e","NULL","",",","\\\\",é}'`},
		{"inet", "'10.0.0.1/8'"},
	}
}
