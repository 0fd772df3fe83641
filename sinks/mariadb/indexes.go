package mariadb

import (
	"context"
	"slices"
	"strings"

	"github.com/ibexrepl/ibex/sinks"
)

// replaceMode is how a batch of a table replaces its keys' rows, by the table's unique
// indexes: LOAD DATA ... REPLACE deletes every row that a loaded row conflicts with on any
// unique index.
type replaceMode int

const (
	// replaceByKey: the key is the table's one unique index (the PRIMARY KEY CreateTable
	// makes): REPLACE deletes exactly the row of the loaded row's key, if there is one.
	replaceByKey replaceMode = iota
	// deleteFirst: another unique index exists, or none is the key (a table made by
	// hand). REPLACE would delete a row of another key that conflicts on another unique
	// index, where the PostgreSQL sink (which deletes by key only) fails on the conflict;
	// or it would not replace by key at all. The batch deletes its keys first and loads
	// with plain LOAD DATA, which skips a conflicting row: a *sinks.RowCountError, as
	// before.
	deleteFirst
)

// replaceMode returns t's mode, looked up once per sink (a run): the indexes of a
// table are not expected to change under a run.
func (s *Sink) replaceMode(ctx context.Context, t *sinks.Table) (replaceMode, error) {
	id := ident(s.schema, t)
	if m, ok := s.modes[id]; ok {
		return m, nil
	}
	// information_schema compares names without regard to case: compare them exactly here.
	name := TableName(t.Schema, t.Name)
	rows, err := s.conn.QueryContext(ctx, `SELECT TABLE_NAME, INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS
		WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0 ORDER BY INDEX_NAME, SEQ_IN_INDEX`, s.schema, name)
	if err != nil {
		s.drop(err)
		return 0, err
	}
	defer rows.Close()
	unique := map[string][]string{} // index -> columns
	for rows.Next() {
		var tn, index, col string
		if err := rows.Scan(&tn, &index, &col); err != nil {
			return 0, err
		}
		if tn == name {
			unique[index] = append(unique[index], strings.ToLower(col))
		}
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	key := make([]string, len(t.Key))
	for i, c := range t.Key {
		key[i] = strings.ToLower(c) // MariaDB's column names ignore case
	}
	slices.Sort(key)
	m := deleteFirst
	for _, cols := range unique {
		slices.Sort(cols)
		if len(unique) == 1 && slices.Equal(cols, key) {
			m = replaceByKey
		}
	}
	if s.modes == nil {
		s.modes = map[string]replaceMode{}
	}
	s.modes[id] = m
	return m, nil
}
