package postgres

import (
	"context"

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

// Truncate empties t with TRUNCATE (a partitioned parent's partitions too; an
// inheritance parent's own rows only), in the unit's transaction.
func (s *Sink) Truncate(ctx context.Context, t *sinks.Table) error {
	if err := s.inTx(t); err != nil {
		return err
	}
	if _, err := s.conn.Exec(ctx, `TRUNCATE `+only(t)+ident(t)); err != nil {
		return s.errf(t, "truncating", err)
	}
	return nil
}
