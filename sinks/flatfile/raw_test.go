package flatfile

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/sinks/pgtext"
)

// rawValue writes every text without an escape as value does, and fails where it fails,
// in both dialects and for every kind of type (the fast path of WriteRows).
func TestRawValueAsValue(t *testing.T) {
	types := []string{"smallint", "integer", "bigint", "numeric", "numeric(10,2)", "real", "double precision",
		"text", "character(84)", "varchar(10)", "bytea", "uuid", "timestamp with time zone",
		"timestamp without time zone", "date", "time without time zone", "interval", "boolean", "json", "jsonb",
		"integer[]", "text[]", "mood", ""}
	values := []string{"", "0", "-0", "1", "-1", "+1", "01", "123456789012345678", "-123456789012345678",
		"1234567890123456789", "9223372036854775807", "-9223372036854775808", "9223372036854775808", "99999999999999999999",
		"1.5", "-1.5e10", ".5", "5.", "1e", "NaN", "Infinity", "-Infinity", "inf", "abc", "it's", "''", "a'b'c",
		"\x7f", "\x01", "\xff\xfe", "✓ 😀", "t", "f", "true", "yes", "2024-02-29", "2024-01-31 12:00:00.5+05:30",
		"2024-01-31 12:00:00.123456", "0044-03-15 BC", "infinity", "\\x00ff", "{1,2,NULL}", `{"a b",NULL}`,
		"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", strings.Repeat(" ", 84), "1 year 2 mons"}
	for _, d := range []Dialect{Postgres, MySQL} {
		for _, tn := range types {
			typ := pgtext.ParseType(tn)
			for _, v := range values {
				var want, got bytes.Buffer
				ww, gw := bufio.NewWriter(&want), bufio.NewWriter(&got)
				werr := d.value(ww, typ, conflict.Field{Text: v})
				gerr := d.rawValue(gw, typ, []byte(v))
				ww.Flush()
				gw.Flush()
				if (werr == nil) != (gerr == nil) || werr != nil && werr.Error() != gerr.Error() {
					t.Errorf("%s %s %q: error %v, value's %v", d, tn, v, gerr, werr)
					continue
				}
				if werr == nil && got.String() != want.String() {
					t.Errorf("%s %s %q: %q, value writes %q", d, tn, v, got.String(), want.String())
				}
			}
		}
	}
}

// rawKey is indexKey of the same fields.
func TestRawKeyAsIndexKey(t *testing.T) {
	for _, k := range [][]string{{"0"}, {"1"}, {"-1"}, {"-0"}, {"+1"}, {"01"}, {"9223372036854775807"},
		{"-9223372036854775808"}, {"9223372036854775808"}, {"-9223372036854775809"}, {"12345678901234567890"},
		{"abc"}, {strings.Repeat("long key ", 4)}, {"1", "2"}, {"a", ""}, {""}} {
		fs := make([]conflict.Field, len(k))
		raw := make([][]byte, len(k))
		for i, s := range k {
			fs[i], raw[i] = conflict.Field{Text: s}, []byte(s)
		}
		if got, want := rawKey(raw), indexKey(fs); got != want {
			t.Errorf("%q: %+v, indexKey %+v", k, got, want)
		}
	}
}

// newIntKeySet holds what newKeySet of the same integer keys holds.
func TestIntKeySetAsKeySet(t *testing.T) {
	for _, ns := range [][]int64{nil, {5}, {1, 2, 3, 4}, {4, 2, 3, 1, 2}, {1, 3, 5}, {-3, -1, 0, 1, 2},
		{1, 1000000}, {9223372036854775806, 9223372036854775807, -9223372036854775808}} {
		keys := make([]key, len(ns))
		for i, n := range ns {
			keys[i] = key{isInt: true, n: n}
		}
		got, want := newIntKeySet(ns), newKeySet(keys)
		if got.full != want.full || got.lo != want.lo || got.hi != want.hi || got.len() != want.len() {
			t.Errorf("%v: full %v %d..%d len %d, newKeySet %v %d..%d len %d", ns, got.full, got.lo, got.hi, got.len(), want.full, want.lo, want.hi, want.len())
		}
		for _, n := range ns {
			if got.take(key{isInt: true, n: n}) != want.take(key{isInt: true, n: n}) {
				t.Errorf("%v: take %d differs", ns, n)
			}
		}
	}
}
