package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/ibexrepl/ibex/internal/capture"
	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/dbconn"
	"github.com/ibexrepl/ibex/sinks"
)

// ReplaceTable starts a whole-table copy of t: it deletes every row (a partitioned
// parent's, in its partitions; an inheritance parent's own only), and the rows WriteRows
// then takes are COPYed straight into t, in source mode too. With ifEmpty, a table holding
// rows is left alone and skipped is true.
func (s *Sink) ReplaceTable(ctx context.Context, t *sinks.Table, ifEmpty bool) (skipped bool, err error) {
	if err := s.inTx(t); err != nil {
		return false, err
	}
	s.batch = nil
	if ifEmpty {
		var has bool
		if err := s.conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+ident(t)+`)`).Scan(&has); err != nil {
			return false, s.errf(t, "checking for rows in", err)
		}
		if has {
			s.batch = &batch{t: t, replace: true, skipped: true}
			return true, nil
		}
	}
	tag, err := s.conn.Exec(ctx, `DELETE FROM `+only(t)+ident(t))
	if err != nil {
		return false, s.errf(t, "emptying", err)
	}
	s.batch = &batch{t: t, replace: true, deleted: tag.RowsAffected()}
	return false, nil
}

// Truncate empties the tables with one TRUNCATE (a partitioned parent's partitions too; an
// inheritance parent's own rows only), in the unit's transaction: tables that reference
// each other go together. In source mode, the rows of a table with KeepAfter that this
// db's application changed after that time (its change rows say so, committed before the
// run or since: the tables are locked first) are kept: copied aside, then put back.
func (s *Sink) Truncate(ctx context.Context, ts []sinks.Truncation) error {
	if len(ts) == 0 {
		return nil
	}
	if err := s.inTx(ts[0].Table); err != nil {
		return err
	}
	s.batch = nil
	names := make([]string, len(ts))
	labels := make([]string, len(ts))
	var keep, restore []string
	for i, tr := range ts {
		t := tr.Table
		names[i], labels[i] = only(t)+ident(t), t.Label()
		if s.src == nil || tr.KeepAfter == 0 {
			continue
		}
		tmp := fmt.Sprintf("pg_temp.ibex_keep_%d", i)
		cols := catalog.QuoteCols("", t.Cols)
		keep = append(keep, fmt.Sprintf(`CREATE TEMP TABLE %s AS SELECT %s FROM %s k WHERE %s`,
			tmp[len("pg_temp."):], catalog.QuoteCols("k.", t.Cols), ident(t), capture.ChangedAfter(s.src.ChangeTable(t), "k", t.Key, tr.KeepAfter)))
		overriding := ""
		for _, c := range t.Columns {
			if c.IdentityAlways {
				overriding = " OVERRIDING SYSTEM VALUE"
			}
		}
		restore = append(restore, fmt.Sprintf(`INSERT INTO %s (%s)%s SELECT %s FROM %s`, ident(t), cols, overriding, cols, tmp),
			`DROP TABLE `+tmp)
	}
	var stmts []string
	if len(keep) > 0 {
		stmts = append(stmts, `LOCK TABLE `+strings.Join(names, ", ")+` IN ACCESS EXCLUSIVE MODE`)
		stmts = append(stmts, keep...)
	}
	stmts = append(stmts, `TRUNCATE `+strings.Join(names, ", "))
	stmts = append(stmts, restore...)
	if _, err := dbconn.ExecAll(ctx, s.conn, strings.Join(stmts, "; ")); err != nil {
		return fmt.Errorf("db %s: truncating %s: %w", s.db, strings.Join(labels, ", "), err)
	}
	return nil
}
