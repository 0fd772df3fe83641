// Package catalog reads what ibex needs to know about user tables from a database's
// catalogs: columns, types and the key used to identify rows.
package catalog

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
)

// ErrNoTable is returned when a table does not exist.
var ErrNoTable = errors.New("no such table")

// Key kinds.
const (
	KeyPrimary = "primary key"
	KeyUnique  = "unique index"
	KeyNone    = "none"
)

// Column is one column of a table.
type Column struct {
	Name    string
	Type    string // format_type() text
	NotNull bool
	// IdentityAlways is set for GENERATED ALWAYS AS IDENTITY columns.
	IdentityAlways bool
}

// Table is a table's description.
type Table struct {
	Schema  string
	Name    string
	Columns []Column
	KeyCols []string
	KeyKind string
	// Partitioned is set for a declaratively partitioned parent: its rows are in its
	// partitions, so it is read and emptied without ONLY.
	Partitioned bool
	// Uniques are the column lists of the table's other unique indexes (valid, immediate,
	// not partial, on plain columns), besides the key's: rows of different keys may clash
	// on them.
	Uniques [][]string
}

// Ident returns the quoted, schema-qualified name.
func (t *Table) Ident() pgx.Identifier { return pgx.Identifier{t.Schema, t.Name} }

// QualName is a schema-qualified table name.
type QualName struct{ Schema, Name string }

func (q QualName) String() string { return q.Schema + "." + q.Name }

// Querier is what catalog needs from a connection.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// ListTables returns every ordinary or partitioned table outside the system schemas and
// ibex's own schema, ordered by schema and name.
func ListTables(ctx context.Context, q Querier) ([]QualName, error) {
	rows, err := q.Query(ctx, `
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'ibex') AND n.nspname NOT LIKE 'pg\_%'
ORDER BY 1, 2`)
	if err != nil {
		return nil, fmt.Errorf("listing tables: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (QualName, error) {
		var q QualName
		err := r.Scan(&q.Schema, &q.Name)
		return q, err
	})
}

// Resolve expands a user's table argument into qualified names: "all", a pattern (see
// Pick), "schema.table" or a bare "table" (schema public). Dots inside quoted parts are
// kept: `"my.schema"."t"`. f narrows all and patterns (Bucardo's -t, -T, -n, -N).
func Resolve(ctx context.Context, q Querier, arg string, f Filter) ([]QualName, error) {
	if !IsPattern(arg) {
		qn, err := ParseName(arg)
		if err != nil {
			return nil, err
		}
		return []QualName{qn}, nil
	}
	all, err := ListTables(ctx, q)
	if err != nil {
		return nil, err
	}
	return Pick(all, arg, "table", f)
}

// IsPattern reports whether a user's argument names several objects: "all", or a pattern
// with %, *, ? or [ outside double quotes (a quoted part is a name, whatever it holds).
func IsPattern(arg string) bool {
	if arg == "all" {
		return true
	}
	quoted := false
	for _, r := range arg {
		switch {
		case r == '"':
			quoted = !quoted
		case !quoted && strings.ContainsRune("%*?[", r):
			return true
		}
	}
	return false
}

// Pick returns the names of all that arg selects ("all", or a pattern of schema.name, or of
// name in schema public, where % and * match any run of characters and ? one) and f
// keeps; what ("table", "sequence") names them in the error when none is left.
func Pick(all []QualName, arg, what string, f Filter) ([]QualName, error) {
	pat := arg
	if !strings.Contains(pat, ".") {
		pat = "public." + pat
	}
	var out []QualName
	for _, t := range all {
		if (arg == "all" || matchGlob(pat, t.String(), true)) && f.Keep(t) {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		sel := ""
		if !f.Empty() {
			sel = " that -t/-T/-n/-N keep"
		}
		if arg == "all" {
			return nil, fmt.Errorf("no %s%s", what, sel)
		}
		return nil, fmt.Errorf("%s pattern %q matches no %s%s", what, arg, what, sel)
	}
	return out, nil
}

// ParseName splits "schema.table" (parts optionally double-quoted) or "table" (schema
// public).
func ParseName(s string) (QualName, error) {
	parts, err := splitIdent(s)
	if err != nil {
		return QualName{}, err
	}
	switch len(parts) {
	case 1:
		return QualName{"public", parts[0]}, nil
	case 2:
		return QualName{parts[0], parts[1]}, nil
	}
	return QualName{}, fmt.Errorf("table name %q: expected table or schema.table", s)
}

var plainName = regexp.MustCompile(`^[a-z_][a-z0-9_$]*$`)

// SQLName writes an identifier as SQL reads it back, for statements quoted in messages:
// bare when it can be, else quoted.
func SQLName(s string) string {
	if plainName.MatchString(s) {
		return s
	}
	return pgx.Identifier{s}.Sanitize()
}

func splitIdent(s string) ([]string, error) {
	var parts []string
	var cur strings.Builder
	inQ := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case inQ && c == '"' && i+1 < len(s) && s[i+1] == '"':
			cur.WriteByte('"')
			i++
		case c == '"':
			inQ = !inQ
		case c == '.' && !inQ:
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	if inQ {
		return nil, fmt.Errorf("table name %q: unbalanced double quote", s)
	}
	parts = append(parts, cur.String())
	for _, p := range parts {
		if p == "" {
			return nil, fmt.Errorf("table name %q: empty part", s)
		}
	}
	return parts, nil
}

// ColumnNames returns the table's column names in order.
func (t *Table) ColumnNames() []string {
	out := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		out[i] = c.Name
	}
	return out
}

// Compare returns a description of how other differs from t (missing or extra columns,
// changed types), or "" when both have the same columns and types. dbA and dbB name the
// two sides in the message.
func Compare(t, other *Table, dbA, dbB string) string {
	var diffs []string
	byName := map[string]Column{}
	for _, c := range other.Columns {
		byName[c.Name] = c
	}
	for _, c := range t.Columns {
		o, ok := byName[c.Name]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("column %q is on db %s but not on db %s", c.Name, dbA, dbB))
			continue
		}
		if o.Type != c.Type && !(compatible(o.Type, c.Type)) {
			diffs = append(diffs, fmt.Sprintf("column %q is %s on db %s but %s on db %s", c.Name, c.Type, dbA, o.Type, dbB))
		}
		delete(byName, c.Name)
	}
	for _, c := range other.Columns {
		if _, extra := byName[c.Name]; extra {
			diffs = append(diffs, fmt.Sprintf("column %q is on db %s but not on db %s", c.Name, dbB, dbA))
		}
	}
	if len(diffs) == 0 {
		return ""
	}
	return fmt.Sprintf("table %s.%s differs: %s", t.Schema, t.Name, strings.Join(diffs, "; "))
}

func compatible(a, b string) bool {
	norm := func(s string) string {
		if s == "text" || strings.HasPrefix(s, "character varying") {
			return "text"
		}
		return s
	}
	return norm(a) == norm(b)
}
