package catalog

import (
	"strings"

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
