package mariadb

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ibexrepl/ibex/sinks"
)

// CheckTable returns a *sinks.MissingError when the database lacks t (TableName) or some
// of t.Cols (column names compare as MariaDB's do: without regard to case).
func (s *Sink) CheckTable(ctx context.Context, t *sinks.Table) error {
	have, exists, err := s.columns(ctx, t)
	if err != nil {
		return s.errf(t, "checking", err)
	}
	if !exists {
		return &sinks.MissingError{DB: s.db, Table: s.schema + "." + TableName(t.Schema, t.Name), DDL: s.createDDL(t)}
	}
	missing := missingCols(t, have)
	if len(missing) > 0 {
		return &sinks.MissingError{DB: s.db, Table: s.schema + "." + TableName(t.Schema, t.Name), Columns: missing, DDL: s.alterDDL(t, missing)}
	}
	return nil
}

// CreateTable creates t, or adds the columns it lacks, outside any unit.
func (s *Sink) CreateTable(ctx context.Context, t *sinks.Table) error {
	if s.tx {
		return s.errf(t, "creating", errors.New("a unit is open (DDL would commit it)"))
	}
	if s.conn == nil {
		if err := s.connect(ctx); err != nil {
			return fmt.Errorf("db %s: reconnecting: %w", s.db, err)
		}
	}
	have, exists, err := s.columns(ctx, t)
	if err != nil {
		return s.errf(t, "creating", err)
	}
	ddl := ""
	if !exists {
		ddl = s.createDDL(t)
	} else if missing := missingCols(t, have); len(missing) > 0 {
		ddl = s.alterDDL(t, missing)
	}
	if ddl == "" {
		return nil
	}
	if _, err := s.conn.ExecContext(ctx, ddl); err != nil {
		s.drop(err)
		return s.errf(t, "creating", fmt.Errorf("%s: %w", ddl, err))
	}
	s.log.Info("created", "db", s.db, "table", t.Label(), "ddl", ddl)
	return nil
}

// columns returns the columns of t's table and whether it exists.
func (s *Sink) columns(ctx context.Context, t *sinks.Table) (cols []string, exists bool, err error) {
	if s.conn == nil {
		return nil, false, errors.New("the connection was lost")
	}
	name := TableName(t.Schema, t.Name)
	// information_schema compares names without regard to case: compare them exactly here.
	rows, err := s.conn.QueryContext(ctx, `SELECT TABLE_NAME, COALESCE(COLUMN_NAME, '') FROM information_schema.TABLES
		LEFT JOIN information_schema.COLUMNS USING (TABLE_SCHEMA, TABLE_NAME)
		WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?`, s.schema, name)
	if err != nil {
		s.drop(err)
		return nil, false, err
	}
	defer rows.Close()
	for rows.Next() {
		var tn, cn string
		if err := rows.Scan(&tn, &cn); err != nil {
			return nil, false, err
		}
		if tn != name {
			continue
		}
		exists = true
		if cn != "" {
			cols = append(cols, cn)
		}
	}
	return cols, exists, rows.Err()
}

func missingCols(t *sinks.Table, have []string) []string {
	var missing []string
	for _, c := range t.Cols {
		found := false
		for _, h := range have {
			if strings.EqualFold(c, h) {
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

// collation is the binary NO PAD collation of utf8mb4 on the server.
func (s *Sink) collation() string {
	if s.mariadb {
		return "utf8mb4_nopad_bin"
	}
	return "utf8mb4_0900_bin"
}

func (s *Sink) colDef(t *sinks.Table, name string, key bool) string {
	typ := "text"
	if c, ok := column(t, name); ok && c.Type != "" {
		typ = c.Type
	}
	def := quote(name) + " " + colType(typ, key)
	if key {
		def += " NOT NULL"
	}
	return def
}

func isKey(t *sinks.Table, name string) bool {
	for _, k := range t.Key {
		if k == name {
			return true
		}
	}
	return false
}

// createDDL is the CREATE TABLE of t per the type mapping.
func (s *Sink) createDDL(t *sinks.Table) string {
	var defs []string
	for _, c := range t.Cols {
		defs = append(defs, s.colDef(t, c, isKey(t, c)))
	}
	if len(t.Key) > 0 {
		defs = append(defs, "PRIMARY KEY ("+quoteCols("", t.Key)+")")
	}
	return fmt.Sprintf("CREATE TABLE %s (%s) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=%s",
		ident(s.schema, t), strings.Join(defs, ", "), s.collation())
}

// alterDDL adds the columns missing to t.
func (s *Sink) alterDDL(t *sinks.Table, missing []string) string {
	var adds []string
	for _, c := range missing {
		adds = append(adds, "ADD COLUMN "+s.colDef(t, c, false))
	}
	return fmt.Sprintf("ALTER TABLE %s %s", ident(s.schema, t), strings.Join(adds, ", "))
}
