package sqlite

import (
	"strings"

	"github.com/ibexrepl/ibex/sinks"
)

// TableName is the name of the SQLite table (in the main database) that holds the
// PostgreSQL table schema.name: sinks.FlatName, the rule every target without schemas
// shares (public.orders is "orders", sales.orders "sales.orders", the public table "a.b"
// is "a\.b").
func TableName(schema, name string) string { return sinks.FlatName(schema, name) }

// quote quotes an identifier by SQLite's rules: in double quotes, a double quote doubled.
func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// ident is t's table, quoted and qualified by the main database (a temp table of the
// same name never shadows it).
func ident(t *sinks.Table) string { return `"main".` + quote(TableName(t.Schema, t.Name)) }

func quoteCols(cols []string) string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = quote(c)
	}
	return strings.Join(out, ", ")
}

// sameName reports whether two SQLite names are the same: SQLite folds ASCII letters'
// case (only those) in names.
func sameName(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
