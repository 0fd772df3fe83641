package sqlite

import (
	"strings"

	"github.com/ibexrepl/ibex/sinks"
)

// TableName is the name of the SQLite table (in the main database) that holds the
// PostgreSQL table schema.name: name for the schema public, schema.name for any other,
// with every '.' and '\' inside schema or name escaped by a backslash. So sales.orders is
// "sales.orders", public.orders is "orders", and the mapping is one-to-one: the public
// table "a.b" is "a\.b", the table b of the schema a is "a.b".
func TableName(schema, name string) string {
	if schema == "public" {
		return escapeName(name)
	}
	return escapeName(schema) + "." + escapeName(name)
}

func escapeName(s string) string {
	if !strings.ContainsAny(s, `.\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '.' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

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
