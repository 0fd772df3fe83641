package mariadb

import (
	"strings"

	"github.com/ibexrepl/ibex/sinks"
)

// TableName is the name, in the MariaDB database of param dbname, of the table that
// holds PostgreSQL table schema.name: name itself for schema public, schema.name (one
// identifier holding a dot) for any other schema. In the schema, and in the name of a
// public table, a dot or a backslash is written with a backslash before it, so that
// the mapping is one to one: the first dot without a backslash before it ends the schema,
// and a public table's name has none.
//
//	public.orders     -> orders
//	sales.orders      -> sales.orders
//	public."a.b"      -> a\.b
//	"x.y".z           -> x\.y.z
func TableName(schema, name string) string { return sinks.FlatName(schema, name) }

// quote quotes an identifier with backquotes (a backquote inside is doubled).
func quote(s string) string {
	return "`" + strings.ReplaceAll(s, "`", "``") + "`"
}

// ident is t's qualified, quoted name in database schema.
func ident(schema string, t *sinks.Table) string {
	return quote(schema) + "." + quote(TableName(t.Schema, t.Name))
}

func quoteCols(prefix string, cols []string) string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = prefix + quote(c)
	}
	return strings.Join(out, ", ")
}

func keyJoin(a, b string, cols []string) string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = a + "." + quote(c) + " = " + b + "." + quote(c)
	}
	return strings.Join(out, " AND ")
}

// literal quotes s as a string literal (for names in information_schema queries and
// LOAD DATA's file name); the session has no NO_BACKSLASH_ESCAPES.
func literal(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `''`, "\x00", `\0`)
	return "'" + r.Replace(s) + "'"
}
