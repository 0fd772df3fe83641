package redis

import (
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/sinks"
)

// TestTypes: every PostgreSQL type ibex tests, through a batch, as the documented value
// in the hash (text output, bytea raw, timestamptz in UTC ISO 8601, NULL absent).
func TestTypes(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	bin := make([]byte, 200<<10)
	for i := range bin {
		bin[i] = byte(i)
	}
	hexBin := make([]byte, 0, 2*len(bin))
	const digits = "0123456789abcdef"
	for _, b := range bin {
		hexBin = append(hexBin, digits[b>>4], digits[b&15])
	}
	cases := []struct {
		typ, text string // PostgreSQL type, COPY text
		want      any    // string stored; nil: absent
	}{
		{"smallint", "-32768", "-32768"},
		{"integer", "2147483647", "2147483647"},
		{"bigint", "-9223372036854775808", "-9223372036854775808"},
		{"numeric", "123456789012345678901234567890.000000001", "123456789012345678901234567890.000000001"},
		{"numeric(10,2)", "-12.50", "-12.50"},
		{"numeric", "NaN", "NaN"},
		{"real", "3.4028235e+38", "3.4028235e+38"},
		{"double precision", "NaN", "NaN"},
		{"double precision", "Infinity", "Infinity"},
		{"double precision", "-Infinity", "-Infinity"},
		{"double precision", "0.1", "0.1"},
		{"text", `it's "q" \t tab \n nl \\ bs`, "it's \"q\" \t tab \n nl \\ bs"},
		{"text", "héllo ✓ 日本語 😀", "héllo ✓ 日本語 😀"},
		{"text", "", ""},
		{"text", big, big},
		{"character varying(20)", "abc", "abc"},
		{"character(5)", "ab   ", "ab   "},
		{"bytea", `\\x`, ""},
		{"bytea", `\\x000000`, "\x00\x00\x00"},
		{"bytea", `\\x` + string(hexBin), string(bin)},
		{"uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{"timestamp with time zone", "2024-01-31 12:00:00+00", "2024-01-31T12:00:00Z"},
		{"timestamp with time zone", "2024-01-31 01:30:00.5+05:30", "2024-01-30T20:00:00.5Z"},
		{"timestamp with time zone", "2024-01-31 12:00:00.123456-03:30:15", "2024-01-31T15:30:15.123456Z"},
		{"timestamp(3) with time zone", "infinity", "infinity"},
		{"timestamp with time zone", "-infinity", "-infinity"},
		{"timestamp with time zone", "0044-03-15 12:00:00+00 BC", "-0043-03-15T12:00:00Z"},
		{"timestamp with time zone", "0001-01-01 01:00:00+02 BC", "-0001-12-31T23:00:00Z"},
		{"timestamp with time zone", "0001-06-01 00:00:00+00 BC", "0000-06-01T00:00:00Z"},
		{"timestamp without time zone", "2024-01-31 12:00:00.25", "2024-01-31 12:00:00.25"},
		{"timestamp without time zone", "infinity", "infinity"},
		{"date", "2024-02-29", "2024-02-29"},
		{"date", "0044-03-15 BC", "0044-03-15 BC"},
		{"time without time zone", "23:59:59.999999", "23:59:59.999999"},
		{"time with time zone", "12:00:00+05:30", "12:00:00+05:30"},
		{"interval", "1 year 2 mons 3 days 04:05:06.5", "1 year 2 mons 3 days 04:05:06.5"},
		{"boolean", "t", "t"},
		{"boolean", "f", "f"},
		{"json", `{"a": [1, 2, null]}`, `{"a": [1, 2, null]}`},
		{"jsonb", `{"a": [1, 2, null], "b": "\\\\"}`, `{"a": [1, 2, null], "b": "\\"}`},
		{"integer[]", "{1,2,NULL}", "{1,2,NULL}"},
		{"text[]", `{"a b",NULL,"c\\\\\\"d"}`, `{"a b",NULL,"c\\\"d"}`},
		{"bytea[]", `{"\\\\x01"}`, `{"\\x01"}`},
		{"public.mood", "happy", "happy"},
		{"inet", "10.0.0.1/8", "10.0.0.1/8"},
		{"text", `\N`, nil},
		{"bytea", `\N`, nil},
		{"timestamp with time zone", `\N`, nil},
	}
	tbl := &sinks.Table{Schema: "public", Name: "types", Key: []string{"id"}, Cols: []string{"id"},
		Columns: []catalog.Column{{Name: "id", Type: "integer"}}}
	fields := []string{"1"}
	for i, c := range cases {
		name := "c" + string(rune('A'+i/26)) + string(rune('a'+i%26))
		tbl.Cols = append(tbl.Cols, name)
		tbl.Columns = append(tbl.Columns, catalog.Column{Name: name, Type: c.typ})
		fields = append(fields, c.text)
	}
	h := newHarness(t)
	s := h.open(t)
	ctx := t.Context()
	if err := s.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PrepareBatch(ctx, tbl, []string{"1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteRows(ctx, tbl, strings.NewReader(strings.Join(fields, "\t")+"\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FinishBatch(ctx, tbl); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := h.client.HGetAll(ctx, h.prefix+"public.types:1").Result()
	if err != nil {
		t.Fatal(err)
	}
	if got["id"] != "1" {
		t.Errorf("id = %q", got["id"])
	}
	for i, c := range cases {
		name := tbl.Cols[i+1]
		v, ok := got[name]
		switch {
		case c.want == nil && ok:
			t.Errorf("%s %q: field present (%q), expected absent", c.typ, c.text, clipS(v))
		case c.want != nil && (!ok || v != c.want.(string)):
			t.Errorf("%s %q: stored %q (present %v), expected %q", c.typ, clipS(c.text), clipS(v), ok, clipS(c.want.(string)))
		}
	}
	if len(got) != 1+len(cases)-3 {
		t.Errorf("%d fields, expected %d", len(got), 1+len(cases)-3)
	}
}

// TestTypesRefused: values the sink cannot convert are refused with the table, column,
// type and value.
func TestTypesRefused(t *testing.T) {
	for _, c := range []struct{ typ, text, want string }{
		{"timestamp with time zone", "2024-01-31 12:00:00", `table public.t, column v (timestamp with time zone): value "2024-01-31 12:00:00" refused: pgtext: timestamptz "2024-01-31 12:00:00": no UTC offset`},
		{"timestamp with time zone", "10000-01-01 00:00:00+00", `table public.t, column v (timestamp with time zone): value "10000-01-01 00:00:00+00" refused: pgtext: timestamptz: parsing time "10000-01-01 00:00:00+00:00:00" as "2006-01-02 15:04:05.999999999-07:00:00": cannot parse "0-01-01 00:00:00+00:00:00" as "-"`},
		{"bytea", `\x0`, `table public.t, column v (bytea): value "\\x0" refused: pgtext: bytea: encoding/hex: odd length hex string`},
	} {
		tbl := &sinks.Table{Schema: "public", Name: "t", Key: []string{"id"}, Cols: []string{"id", "v"},
			Columns: []catalog.Column{{Name: "id", Type: "integer"}, {Name: "v", Type: c.typ}}}
		l, err := newLayout("", tbl)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = l.packRow(&arena{}, "1\t"+strings.ReplaceAll(c.text, `\`, `\\`))
		if err == nil || err.Error() != c.want {
			t.Errorf("%s %q: %v\nexpected %s", c.typ, c.text, err, c.want)
		}
	}
}

func clipS(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
