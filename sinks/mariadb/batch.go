package mariadb

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/ibexrepl/ibex/sinks"
)

// PrepareBatch readies a batch of t's keys (COPY text of t's key fields, tab-separated)
// in the unit's transaction. It deletes nothing: WriteRows loads the rows with LOAD DATA
// ... REPLACE, which replaces the row of a key that exists, and FinishBatch deletes the
// keys no row came for, so that a key that gets a row is written once instead of
// deleted and inserted. The keys are kept in memory (a run bounds a batch to batch_size
// keys), and counted on t: REPLACE's affected rows do not tell how many rows it
// replaced (a row replaced by an identical one counts 1, as a new row does). A table
// whose unique indexes make REPLACE unsafe has its keys deleted first (deleteFirst).
func (s *Sink) PrepareBatch(ctx context.Context, t *sinks.Table, keys []string) (sinks.Prepared, error) {
	if err := s.inTx(t); err != nil {
		return sinks.Prepared{}, err
	}
	s.batch, s.rejected = nil, nil
	if s.skip {
		b := &batch{t: t, conv: newConverter(t, t.Cols)}
		if err := s.prepareSkipping(ctx, t, b, keys); err != nil {
			return sinks.Prepared{}, err
		}
		s.batch = b
		return sinks.Prepared{}, nil
	}
	mode, err := s.replaceMode(ctx, t)
	if err != nil {
		return sinks.Prepared{}, s.errf(t, "reading the unique indexes of", err)
	}
	b := &batch{t: t, conv: newConverter(t, t.Cols)}
	if mode == deleteFirst {
		if b.deleted, err = s.keysDo(ctx, t, keys, deleteKeys); err != nil {
			return sinks.Prepared{}, s.errf(t, "deleting the keys of", err)
		}
	} else {
		if b.existed, err = s.keysDo(ctx, t, keys, countKeys); err != nil {
			return sinks.Prepared{}, s.errf(t, "counting the keys of", err)
		}
		b.keys = newKeySet(len(t.Key), keys)
	}
	s.batch = b
	return sinks.Prepared{}, nil
}

// WriteRows loads the rows of r (COPY text, fields in t.Cols order, one row a line) into
// t with LOAD DATA LOCAL INFILE (REPLACE in a batch), converting them on the way. It
// returns the rows taken.
func (s *Sink) WriteRows(ctx context.Context, t *sinks.Table, r io.Reader) (int64, error) {
	if err := s.inTx(t); err != nil {
		return 0, err
	}
	b, err := s.current(t)
	if err != nil {
		return 0, s.errf(t, "writing rows of", err)
	}
	if b.skipped {
		return 0, s.errf(t, "writing rows of", errors.New("the table holds rows and was skipped"))
	}
	if b.skip != nil {
		return s.writeSkipping(ctx, t, b, r)
	}
	var dups int64
	if b.keys != nil {
		dups = b.keys.dups
	}
	taken, affected, err := s.load(ctx, ident(s.schema, t), b.conv, b.keys, r)
	b.sent += taken
	written := affected
	if b.keys != nil && affected >= taken {
		// REPLACE: each row is inserted (affected 1), after deleting the row of its
		// key when it differs (1 more). A key twice in the stream replaced its own
		// earlier row: that row is not written, as when LOAD DATA skipped it.
		dups = b.keys.dups - dups
		b.replaced += affected - taken - dups
		written = taken - dups
	}
	b.written += written
	if err != nil {
		return taken, s.errf(t, "writing rows of", err)
	}
	if written != taken {
		return taken, s.errf(t, "writing rows of", &sinks.RowCountError{DB: s.db, Written: written, Sent: taken})
	}
	return taken, nil
}

// FinishBatch completes the batch of t. It returns a *sinks.RowCountError when another
// number of rows was written than taken.
func (s *Sink) FinishBatch(ctx context.Context, t *sinks.Table) (sinks.Counts, error) {
	if err := s.inTx(t); err != nil {
		return sinks.Counts{}, err
	}
	b, err := s.current(t)
	if err != nil {
		return sinks.Counts{}, s.errf(t, "finishing the batch of", err)
	}
	s.batch = nil
	if b.skipped {
		return sinks.Counts{}, nil
	}
	if b.skip != nil {
		return s.finishSkipping(ctx, t, b)
	}
	if b.written != b.sent {
		return sinks.Counts{}, s.errf(t, "writing rows of", &sinks.RowCountError{DB: s.db, Written: b.written, Sent: b.sent})
	}
	if b.keys != nil {
		n, err := s.keysDo(ctx, t, b.keys.missing(), deleteKeys)
		if err != nil {
			return sinks.Counts{}, s.errf(t, "deleting the keys of", err)
		}
		// Every key that existed was replaced by its row or deleted now. REPLACE deleting
		// more (a unique index added under the run) would have removed rows of other keys.
		if b.replaced+n > b.existed {
			return sinks.Counts{}, s.errf(t, "writing rows of", fmt.Errorf(
				"%d rows replaced and %d deleted, but %d of the batch's keys existed: a row conflicted with a row of another key on a unique index", b.replaced, n, b.existed))
		}
		b.deleted = b.existed
	}
	return sinks.Counts{Written: b.written, Deleted: b.deleted}, nil
}

// ReplaceTable starts a whole-table copy of t: DELETE FROM in the unit's transaction (a
// reader sees the old rows until the commit; TRUNCATE would commit). With ifEmpty, a
// table holding rows is left alone and skipped is true.
func (s *Sink) ReplaceTable(ctx context.Context, t *sinks.Table, ifEmpty bool) (skipped bool, err error) {
	if err := s.inTx(t); err != nil {
		return false, err
	}
	s.batch = nil
	if ifEmpty {
		rows, err := s.conn.QueryContext(ctx, `SELECT 1 FROM `+ident(s.schema, t)+` LIMIT 1`)
		if err != nil {
			s.drop(err)
			return false, s.errf(t, "checking for rows in", err)
		}
		has := rows.Next()
		_ = rows.Close()
		if err := rows.Err(); err != nil {
			return false, s.errf(t, "checking for rows in", err)
		}
		if has {
			s.batch = &batch{t: t, skipped: true}
			return true, nil
		}
	}
	n, err := s.deleteAll(ctx, t)
	if err != nil {
		return false, s.errf(t, "emptying", err)
	}
	s.batch = &batch{t: t, conv: newConverter(t, t.Cols), deleted: n}
	return false, nil
}

// Truncate empties each table in the unit, one after the other (a target has no changes
// of its own to keep).
func (s *Sink) Truncate(ctx context.Context, ts []sinks.Truncation) error {
	return sinks.EachTruncated(ts, func(t *sinks.Table) error { return s.truncateTable(ctx, t) })
}

// truncateTable empties t with DELETE, in the unit's transaction (TRUNCATE would commit it).
func (s *Sink) truncateTable(ctx context.Context, t *sinks.Table) error {
	if err := s.inTx(t); err != nil {
		return err
	}
	s.batch = nil
	if _, err := s.deleteAll(ctx, t); err != nil {
		return s.errf(t, "truncating", err)
	}
	return nil
}

func (s *Sink) deleteAll(ctx context.Context, t *sinks.Table) (int64, error) {
	res, err := s.conn.ExecContext(ctx, `DELETE FROM `+ident(s.schema, t))
	if err != nil {
		s.drop(err)
		return 0, err
	}
	return res.RowsAffected()
}
