package sqlite

import (
	"context"
	"fmt"
	"strings"

	"github.com/ibexrepl/ibex/sinks"
)

// CheckTable returns a *sinks.MissingError when the file lacks t's table (TableName) or
// some of t.Cols (SQLite compares names ignoring the case of ASCII letters).
func (s *Sink) CheckTable(ctx context.Context, t *sinks.Table) error {
	have, err := s.tableColumns(ctx, t)
	if err != nil {
		return err
	}
	if have == nil {
		return &sinks.MissingError{DB: s.db, Table: t.Label(), DDL: createDDL(t)}
	}
	missing := missingColumns(t, have)
	if len(missing) == 0 {
		return nil
	}
	return &sinks.MissingError{DB: s.db, Table: t.Label(), Columns: missing, DDL: addColumnsDDL(t, missing)}
}

// CreateTable creates t's table, or adds the columns it lacks; a complete table is left
// alone. It runs outside any unit.
func (s *Sink) CreateTable(ctx context.Context, t *sinks.Table) error {
	if s.tx {
		return fmt.Errorf("db %s: creating %s: a unit's transaction is open", s.db, t.Label())
	}
	have, err := s.tableColumns(ctx, t)
	if err != nil {
		return err
	}
	ddl := ""
	switch {
	case have == nil:
		ddl = createDDL(t)
	default:
		missing := missingColumns(t, have)
		if len(missing) == 0 {
			return nil
		}
		ddl = addColumnsDDL(t, missing)
	}
	if _, err := s.conn.ExecContext(ctx, "BEGIN IMMEDIATE;\n"+ddl+";\nCOMMIT"); err != nil {
		_, _ = s.conn.ExecContext(context.Background(), `ROLLBACK`)
		return s.errf(t, "creating", err)
	}
	s.log.Info("sqlite table created", "db", s.db, "table", t.Label(), "ddl", ddl)
	return nil
}

// tableColumns returns the columns of t's table, or nil when there is no such table.
func (s *Sink) tableColumns(ctx context.Context, t *sinks.Table) ([]string, error) {
	rows, err := s.conn.QueryContext(ctx, `SELECT name FROM pragma_table_info(?1, 'main')`, TableName(t.Schema, t.Name))
	if err != nil {
		return nil, s.errf(t, "reading the columns of", err)
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, s.errf(t, "reading the columns of", err)
		}
		cols = append(cols, c)
	}
	if err := rows.Err(); err != nil {
		return nil, s.errf(t, "reading the columns of", err)
	}
	return cols, nil
}

func missingColumns(t *sinks.Table, have []string) []string {
	missing := []string{}
	for _, c := range t.Cols {
		found := false
		for _, h := range have {
			if sameName(c, h) {
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, c)
		}
	}
	return missing
}

// createDDL is the CREATE TABLE of t: every column with its SQLite type (NOT NULL where
// PostgreSQL has it, and on key columns), and t's key as PRIMARY KEY.
func createDDL(t *sinks.Table) string {
	cols := columns(t)
	defs := make([]string, 0, len(cols)+1)
	for i, c := range cols {
		d := quote(c.name) + " " + c.decl
		if c.notNul || i < len(t.Key) {
			d += " NOT NULL"
		}
		defs = append(defs, d)
	}
	defs = append(defs, "PRIMARY KEY ("+quoteCols(t.Key)+")")
	return fmt.Sprintf("CREATE TABLE %s (\n  %s\n)", ident(t), strings.Join(defs, ",\n  "))
}

// addColumnsDDL is the ALTER TABLEs adding missing to t's table (nullable: SQLite adds no
// NOT NULL column without a default).
func addColumnsDDL(t *sinks.Table, missing []string) string {
	byName := map[string]column{}
	for _, c := range columns(t) {
		byName[c.name] = c
	}
	stmts := make([]string, len(missing))
	for i, m := range missing {
		stmts[i] = fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s", ident(t), quote(m), byName[m].decl)
	}
	return strings.Join(stmts, ";\n")
}
