package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"

	"github.com/ibexrepl/ibex/sinks"
)

var _ sinks.RowSkipper = (*Sink)(nil)

// SkipRejected switches on_error=skip on (sinks.RowSkipper). A batch then runs under a
// savepoint and writes its rows as in a plain batch, keeping each in a spool file on the
// way. When the file refuses a row (a CHECK, NOT NULL or UNIQUE constraint, a trigger's
// RAISE(ABORT) or RAISE(FAIL), a value too big) the batch is rolled back to its savepoint
// and written again row by row, each row under a savepoint of its own, from the spool and
// then from the rest of the stream: the rows refused are left out (the file keeps what it
// had for their keys) and reported by Rejected, every other row is written. A value the
// sink cannot convert (NaN in a REAL) is refused the same way, without touching the file.
func (s *Sink) SkipRejected() { s.skip = true }

// Rejected returns the rows the last FinishBatch left out (sinks.RowSkipper).
func (s *Sink) Rejected() []sinks.Rejected { return s.rejected }

// skipBatch is what a batch under on_error=skip keeps besides the plain batch's.
type skipBatch struct {
	// careful: a row was refused, the batch was rolled back to its savepoint and is
	// written row by row, each under a savepoint.
	careful bool
	// predeleted: the keys were deleted by PrepareBatch (a table without a constraint on
	// its key columns) and that still holds; once careful, each row deletes its key's
	// rows before it is inserted, and FinishBatch deletes the keys no row came for.
	predeleted bool
	del        *sql.Stmt // the DELETE of one key, prepared once careful
}

const (
	batchSavepoint = "ibex_batch"
	rowSavepoint   = "ibex_row"
)

func (s *Sink) exec(ctx context.Context, q string) error {
	_, err := s.conn.ExecContext(ctx, q)
	return err
}

// prepareSkipping is PrepareBatch under on_error=skip: the batch's savepoint, then the
// keys as in a plain batch. A delete the file refuses (a trigger) leaves the batch careful
// from the start.
func (s *Sink) prepareSkipping(ctx context.Context, t *sinks.Table, keys []string) (sinks.Prepared, error) {
	b, err := s.newBatch(ctx, t, true)
	if err != nil {
		return sinks.Prepared{}, s.fail(t, "preparing a batch of", err)
	}
	if err := s.exec(ctx, `SAVEPOINT `+batchSavepoint); err != nil {
		return sinks.Prepared{}, s.fail(t, "preparing a batch of", err)
	}
	if err := s.spool.Reset(); err != nil {
		return sinks.Prepared{}, s.fail(t, "preparing a batch of", err)
	}
	b.skip = &skipBatch{}
	b.keys = newKeySet(len(keys))
	key := b.cols[:len(t.Key)]
	vals := make([]any, len(key))
	for _, k := range keys {
		if err := s.args(t, key, k, vals); err != nil {
			return sinks.Prepared{}, s.fail(t, "reading the keys of", fmt.Errorf("key %q: %w", clip(k), err))
		}
		b.id = appendKeyID(b.id[:0], vals)
		b.keys.add(k, b.id) // a key given twice is counted once
	}
	if b.upsert {
		return sinks.Prepared{}, nil
	}
	n, err := s.overKeys(ctx, b, b.keys.text, deleteSQL, nil, execRows)
	switch {
	case err == nil:
		b.deleted, b.skip.predeleted = n, true
	case isRowError(err):
		if err := s.toCareful(ctx, b, 0); err != nil {
			return sinks.Prepared{}, s.fail(t, "deleting the keys of", err)
		}
	default:
		return sinks.Prepared{}, s.fail(t, "deleting the keys of", err)
	}
	return sinks.Prepared{}, nil
}

// written is what writing one row did.
type written struct{ written, replaced, deleted int64 }

// writeRow writes one row of b (its values in args): in place when its key has a row
// (upsert), else inserted; a careful batch of a table without a constraint on its key
// columns deletes the key's rows first.
func (s *Sink) writeRow(b *batch, args []any) (written, error) {
	var w written
	if b.upd != nil {
		res, err := b.upd.ExecContext(noCancel, args...)
		if err != nil {
			return w, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return w, err
		}
		if n == 1 { // the key's row, replaced
			return written{written: 1, replaced: 1}, nil
		}
	}
	if !b.upsert && !b.skip.predeleted {
		res, err := b.skip.del.ExecContext(noCancel, args[:len(b.t.Key)]...)
		if err != nil {
			return w, err
		}
		if w.deleted, err = res.RowsAffected(); err != nil {
			return w, err
		}
	}
	res, err := b.ins.ExecContext(noCancel, args...)
	if err != nil {
		return w, err
	}
	w.written, err = res.RowsAffected()
	return w, err
}

// saved runs fn under a savepoint of its own, rolled back when fn fails.
func (s *Sink) saved(ctx context.Context, fn func() error) error {
	if err := s.exec(ctx, `SAVEPOINT `+rowSavepoint); err != nil {
		return err
	}
	err := fn()
	if err != nil {
		if !isRowError(err) {
			return err
		}
		// RAISE(ROLLBACK) or an ON CONFLICT ROLLBACK clause ended the transaction: the
		// savepoint is gone and this fails.
		if rerr := s.exec(ctx, `ROLLBACK TO SAVEPOINT `+rowSavepoint); rerr != nil {
			return fmt.Errorf("%w (rolling back after: %v)", rerr, err)
		}
	}
	if rerr := s.exec(ctx, `RELEASE SAVEPOINT `+rowSavepoint); rerr != nil {
		return rerr
	}
	return err
}

// apply writes one row of b: directly, or under a savepoint once careful. It returns the
// file's refusal, if any (the row is then left out), or fails.
func (s *Sink) apply(ctx context.Context, b *batch, args []any) (refused error, err error) {
	var w written
	write := func() error {
		var err error
		w, err = s.writeRow(b, args)
		return err
	}
	if b.skip.careful {
		err = s.saved(ctx, write)
	} else {
		err = write()
	}
	if err != nil {
		if isRowError(err) {
			return err, nil
		}
		return nil, err
	}
	b.written += w.written
	b.replaced += w.replaced
	b.deleted += w.deleted
	return nil, nil
}

// toCareful rolls b back to its savepoint and writes again, row by row under savepoints,
// the first n rows of the spool (the rows written so far), leaving out those refused (a
// row the converter refused is in s.rejected already).
func (s *Sink) toCareful(ctx context.Context, b *batch, n int) error {
	if err := s.exec(ctx, `ROLLBACK TO SAVEPOINT `+batchSavepoint); err != nil {
		return fmt.Errorf("rolling back to the batch's savepoint: %w", err)
	}
	sk := b.skip
	sk.careful = true
	b.written, b.replaced = 0, 0
	if sk.predeleted {
		sk.predeleted, b.deleted = false, 0
	}
	if !b.upsert && sk.del == nil {
		del, err := s.conn.PrepareContext(ctx, deleteSQL(b.t, 1))
		if err != nil {
			return err
		}
		sk.del = del
	}
	args := make([]any, len(b.cols))
	return s.spool.Each(0, n, func(_ int, line string) error {
		if err := s.args(b.t, b.cols, line, args); err != nil {
			var ve *ValueError
			if errors.As(err, &ve) {
				return nil // refused already
			}
			return err
		}
		refused, err := s.apply(ctx, b, args)
		if refused != nil {
			s.reject(b, line, refused)
		}
		return err
	})
}

// reject records a refused row.
func (s *Sink) reject(b *batch, line string, cause error) {
	s.rejected = append(s.rejected, sinks.Rejected{Key: keyText(line, len(b.t.Key)), Row: line, Error: cause.Error()})
}

// writeSkipping is WriteRows under on_error=skip.
func (s *Sink) writeSkipping(ctx context.Context, t *sinks.Table, b *batch, r io.Reader) (int64, error) {
	sk := b.skip
	lines := sinks.NewLineReader(r)
	args := make([]any, len(b.cols))
	key := make([]any, len(t.Key))
	var taken int64
	for {
		line, err := lines.Next()
		if err == io.EOF {
			return taken, nil
		}
		if err != nil {
			return taken, s.fail(t, "reading rows of", err)
		}
		if !sk.careful {
			// Kept for toCareful; once careful, rows are written for good.
			if err := s.spool.Add(line); err != nil {
				return taken, s.fail(t, "writing rows of", err)
			}
		}
		b.sent++
		taken++
		var refused error
		if err := s.args(t, b.cols, line, args); err != nil {
			var ve *ValueError
			if !errors.As(err, &ve) {
				return taken, s.fail(t, fmt.Sprintf("row %d of", b.sent), err)
			}
			// Refused without touching the file; its key still counts as come (the file
			// keeps the key's row).
			if err := s.args(t, b.cols[:len(t.Key)], keyText(line, len(t.Key)), key); err != nil {
				return taken, s.fail(t, fmt.Sprintf("row %d of", b.sent), err)
			}
			copy(args, key)
			refused = ve
		}
		b.id = appendKeyID(b.id[:0], args[:len(t.Key)])
		if err := b.keys.take(b.id); err != nil {
			return taken, s.fail(t, fmt.Sprintf("row %d (key %q) of", b.sent, clip(keyText(line, len(t.Key)))), err)
		}
		if err := ctx.Err(); err != nil {
			return taken, s.fail(t, "writing rows of", err)
		}
		if refused == nil {
			if refused, err = s.apply(ctx, b, args); err != nil {
				return taken, s.fail(t, fmt.Sprintf("writing row %d of", b.sent), err)
			}
			if refused != nil && !sk.careful {
				// The first refusal: the batch is written again from its start, row by
				// row, this row too.
				if err := s.toCareful(ctx, b, s.spool.Len()-1); err != nil {
					return taken, s.fail(t, "writing rows of", err)
				}
				if refused, err = s.apply(ctx, b, args); err != nil {
					return taken, s.fail(t, fmt.Sprintf("writing row %d of", b.sent), err)
				}
			}
		}
		if refused != nil {
			s.reject(b, line, refused)
		}
	}
}

// finishSkipping is FinishBatch under on_error=skip: the keys no row came for are deleted
// (each under a savepoint once careful: a delete refused is left out and reported, the
// key keeping its row), rows written plus rows refused must be rows taken, and the batch's
// savepoint is released.
func (s *Sink) finishSkipping(ctx context.Context, t *sinks.Table, b *batch) (sinks.Counts, error) {
	sk := b.skip
	if sk.del != nil {
		defer sk.del.Close()
	}
	if !sk.predeleted {
		missing := b.keys.missing()
		var n int64
		if !sk.careful {
			var err error
			n, err = s.overKeys(ctx, b, missing, deleteSQL, nil, execRows)
			switch {
			case err == nil:
			case isRowError(err):
				// A delete refused (a trigger): the batch is written again row by row,
				// then its keys deleted key by key.
				if err := s.toCareful(ctx, b, s.spool.Len()); err != nil {
					return sinks.Counts{}, s.fail(t, "writing rows of", err)
				}
			default:
				return sinks.Counts{}, s.fail(t, "deleting the keys without a row of", err)
			}
		}
		if sk.careful {
			n = 0
			for _, k := range missing {
				var d int64
				err := s.saved(ctx, func() error {
					var err error
					d, err = s.overKeys(ctx, b, []string{k}, deleteSQL, nil, execRows)
					return err
				})
				switch {
				case err == nil:
					n += d
				case isRowError(err):
					s.rejected = append(s.rejected, sinks.Rejected{Key: k, Error: err.Error()})
				default:
					return sinks.Counts{}, s.fail(t, "deleting the keys without a row of", err)
				}
			}
		}
		if b.upsert {
			b.deleted = b.replaced + n
		} else {
			b.deleted += n
		}
	}
	var refused int64
	for _, r := range s.rejected {
		if r.Row != "" {
			refused++
		}
	}
	if b.written+refused != b.sent {
		return sinks.Counts{}, s.fail(t, "writing rows of", fmt.Errorf("%w (%d other rows refused)",
			&sinks.RowCountError{DB: s.db, Written: b.written, Sent: b.sent - refused}, refused))
	}
	if err := s.exec(ctx, `RELEASE SAVEPOINT `+batchSavepoint); err != nil {
		return sinks.Counts{}, s.fail(t, "finishing the batch of", err)
	}
	return sinks.Counts{Written: b.written, Deleted: b.deleted}, nil
}

// isRowError reports whether err is the file refusing a row (on_error=skip leaves such a
// row out): a value the sink cannot convert, or SQLite's SQLITE_CONSTRAINT (CHECK, NOT
// NULL, UNIQUE, PRIMARY KEY, FOREIGN KEY, a trigger's RAISE), SQLITE_MISMATCH or
// SQLITE_TOOBIG. A busy file, an I/O error, a full disk is not (the batch fails).
func isRowError(err error) bool {
	var ve *ValueError
	if errors.As(err, &ve) {
		return true
	}
	var ce interface{ Code() int }
	if !errors.As(err, &ce) {
		return false
	}
	switch ce.Code() & 0xff {
	case 18, 19, 20: // SQLITE_TOOBIG, SQLITE_CONSTRAINT, SQLITE_MISMATCH
		return true
	}
	return false
}
