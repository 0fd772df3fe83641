package sinks

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

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

// CheckSettings refuses settings of a db of type kind that are not among allowed, naming
// every unknown one and listing the allowed ones (in allowed's order).
func CheckSettings(kind string, params map[string]string, allowed []string) error {
	var unknown []string
	for k := range params {
		if !slices.Contains(allowed, k) {
			unknown = append(unknown, strconv.Quote(k))
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	what := "setting"
	if len(unknown) > 1 {
		what = "settings"
	}
	return fmt.Errorf("unknown %s %s for a %s db (allowed: %s)", what, strings.Join(unknown, ", "), kind, strings.Join(allowed, ", "))
}
