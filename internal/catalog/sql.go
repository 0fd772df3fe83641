package catalog

import (
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// QuoteCols lists cols quoted, each with prefix (a table alias and its dot, or "").
func QuoteCols(prefix string, cols []string) string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = prefix + pgx.Identifier{c}.Sanitize()
	}
	return strings.Join(out, ", ")
}

// KeyJoin is the condition joining aliases a and b on the key columns cols.
func KeyJoin(a, b string, cols []string) string {
	out := make([]string, len(cols))
	for i, c := range cols {
		q := pgx.Identifier{c}.Sanitize()
		out[i] = a + "." + q + " = " + b + "." + q
	}
	return strings.Join(out, " AND ")
}

// InlineKeysMax is the most keys KeyIn writes into a statement: a longer key list goes
// into a temp table (whose creation costs a short batch more than its statements).
const InlineKeysMax = 64

// KeyIn is the condition "(key columns of cols, prefixed) IN (the keys)" for a short list
// of keys given as COPY text lines (one field per key column), or ok false when keys are
// too many or not plain text (an escape, invalid UTF-8): the caller then uses a temp
// table. The keys are written as untyped literals, which take the key columns' types, so
// that the condition probes the key index.
func KeyIn(prefix string, cols []string, keys []string) (cond string, ok bool) {
	if len(keys) == 0 || len(keys) > InlineKeysMax {
		return "", false
	}
	var b strings.Builder
	if len(cols) > 1 {
		b.WriteString("(" + QuoteCols(prefix, cols) + ") IN (")
	} else {
		b.WriteString(QuoteCols(prefix, cols) + " IN (")
	}
	for i, k := range keys {
		if strings.ContainsAny(k, "\\\x00\n\r") || !utf8.ValidString(k) || len(k) > 1024 {
			return "", false
		}
		fields := strings.Split(k, "\t")
		if len(fields) != len(cols) {
			return "", false
		}
		if i > 0 {
			b.WriteString(", ")
		}
		if len(cols) > 1 {
			b.WriteByte('(')
		}
		for j, f := range fields {
			if j > 0 {
				b.WriteString(", ")
			}
			// No backslash in f: the literal reads the same whatever
			// standard_conforming_strings says.
			b.WriteString("'" + strings.ReplaceAll(f, "'", "''") + "'")
		}
		if len(cols) > 1 {
			b.WriteByte(')')
		}
	}
	b.WriteByte(')')
	return b.String(), true
}

// QuoteLiteral quotes s as an SQL string literal (standard_conforming_strings on).
func QuoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
