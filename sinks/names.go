package sinks

import "strings"

// FlatName is the one table name that a target without schemas (MariaDB and MySQL, SQLite,
// flatfile's mysql dialect) gives a PostgreSQL table: its name when the schema is public,
// else schema.name. A dot or a backslash in the schema, and in the name of a table of
// public, gets a backslash before it, so that no two PostgreSQL tables get one name: the
// first dot without a backslash before it ends the schema.
//
//	public.orders -> orders    sales.orders -> sales.orders    public."a.b" -> a\.b
//	"x.y".z -> x\.y.z          x."y.z" -> x.y.z
func FlatName(schema, name string) string {
	if schema == "public" {
		return escapeDots(name)
	}
	return escapeDots(schema) + "." + name
}

func escapeDots(s string) string {
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
