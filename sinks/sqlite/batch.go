package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/sinks"
)

// batch is the state of the batch (or whole-table copy) under way.
type batch struct {
	t    *sinks.Table
	cols []column
	// ins writes a row: in a batch, an upsert (INSERT ... ON CONFLICT (key) DO UPDATE),
	// or a plain INSERT when the table has no PRIMARY KEY or UNIQUE constraint on the
	// key columns (upsert is false) and PrepareBatch deleted the keys instead; in a
	// whole-table copy, a plain INSERT.
	ins    *sql.Stmt
	upsert bool
	// upd, with upsert, updates the row of a key in place (UPDATE ... WHERE key = ...),
	// binding the same values as ins: a row whose key has a row is written by upd alone,
	// which counts it as replaced; a row upd changed nothing for goes to ins.
	upd      *sql.Stmt
	keys     *keySet // the batch's keys; nil in a whole-table copy
	id       []byte  // the keyID of the row being written (reused)
	skipped  bool    // ReplaceTable left a non-empty table alone
	sent     int64   // rows WriteRows took
	written  int64   // rows the INSERTs wrote
	replaced int64   // rows upd replaced
	deleted  int64
	// skip is the state of a batch under on_error=skip; nil otherwise.
	skip *skipBatch
}

// PrepareBatch readies a batch of t over keys (key fields as COPY text, tab-separated):
// it remembers the keys; WriteRows then updates each row's key in place (UPDATE ... WHERE
// key), or, when that changed no row, inserts the row (an upsert), and FinishBatch deletes
// the keys no row came for. What the batch deletes or replaces (Deleted) is the rows the
// UPDATEs changed plus the rows FinishBatch deleted: no lookup of the keys before (a count
// of the keys' rows first cost as much as writing them). Deleting every key first and
// inserting its row again cost as much as writing the rows. A table whose key columns
// carry no PRIMARY KEY or UNIQUE constraint (an upsert needs one) has its keys deleted
// here, as before. Nothing is ever skipped: a SQLite receiver is a target only.
func (s *Sink) PrepareBatch(ctx context.Context, t *sinks.Table, keys []string) (sinks.Prepared, error) {
	if err := s.inTx(t); err != nil {
		return sinks.Prepared{}, err
	}
	s.rejected = nil
	if s.skip {
		return s.prepareSkipping(ctx, t, keys)
	}
	b, err := s.newBatch(ctx, t, true)
	if err != nil {
		return sinks.Prepared{}, s.fail(t, "preparing a batch of", err)
	}
	b.keys = newKeySet(len(keys))
	add := func(text string, vals []any) bool {
		b.id = appendKeyID(b.id[:0], vals)
		return b.keys.add(text, b.id) // a key given twice is counted once
	}
	if b.upsert {
		key := b.cols[:len(t.Key)]
		vals := make([]any, len(key))
		for _, k := range keys {
			if err := s.args(t, key, k, vals); err != nil {
				return sinks.Prepared{}, s.fail(t, "reading the keys of", fmt.Errorf("key %q: %w", clip(k), err))
			}
			add(k, vals)
		}
	} else if b.deleted, err = s.overKeys(ctx, b, keys, deleteSQL, add, execRows); err != nil {
		return sinks.Prepared{}, s.fail(t, "deleting the keys of", err)
	}
	return sinks.Prepared{}, nil
}

// newBatch starts the batch of t (ending the one under way) and prepares the statement
// that writes a row: with upsert, an upsert when the table has a constraint on the key
// columns for its ON CONFLICT.
func (s *Sink) newBatch(ctx context.Context, t *sinks.Table, upsert bool) (*batch, error) {
	s.closeBatch()
	if len(t.Key) == 0 || len(t.Key) > len(t.Cols) {
		return nil, fmt.Errorf("%d key columns of %d columns", len(t.Key), len(t.Cols))
	}
	b := &batch{t: t, cols: columns(t)}
	insert := insertSQL(t)
	if upsert {
		ins, err := s.conn.PrepareContext(ctx, insert+upsertClause(t))
		switch {
		case err == nil:
			b.ins, b.upsert = ins, true
			if b.upd, err = s.conn.PrepareContext(ctx, updateSQL(t)); err != nil {
				return nil, err
			}
		case !strings.Contains(err.Error(), "ON CONFLICT clause does not match"):
			return nil, err
		}
	}
	if b.ins == nil {
		ins, err := s.conn.PrepareContext(ctx, insert)
		if err != nil {
			return nil, err
		}
		b.ins = ins
	}
	s.batch = b
	return b, nil
}

// insertSQL is the INSERT of a row of t, its values bound as ?1, ?2 ... in t.Cols order.
func insertSQL(t *sinks.Table) string {
	marks := make([]string, len(t.Cols))
	for i := range marks {
		marks[i] = fmt.Sprintf("?%d", i+1)
	}
	return fmt.Sprintf(`INSERT INTO %s (%s) VALUES (%s)`, ident(t), quoteCols(t.Cols), strings.Join(marks, ", "))
}

// upsertClause makes insertSQL an upsert: a row whose key is there replaces its values
// (an UPDATE of the row in place: no delete triggers, no foreign key cascades, no rows
// of other UNIQUE constraints dropped, unlike INSERT OR REPLACE). A table of key columns
// only sets the key to itself, so that the row still counts as written.
func upsertClause(t *sinks.Table) string {
	set := t.Cols[len(t.Key):]
	if len(set) == 0 {
		set = t.Key
	}
	sets := make([]string, len(set))
	for i, c := range set {
		sets[i] = fmt.Sprintf("%s = excluded.%s", quote(c), quote(c))
	}
	return fmt.Sprintf(" ON CONFLICT (%s) DO UPDATE SET %s", quoteCols(t.Key), strings.Join(sets, ", "))
}

// updateSQL is the UPDATE of the row of a key of t in place, binding the values of
// insertSQL (?1, ?2 ... in t.Cols order). A table of key columns only sets the key to
// itself, so that a row that is there counts as changed.
func updateSQL(t *sinks.Table) string {
	set := t.Cols[len(t.Key):]
	first := len(t.Key)
	if len(set) == 0 {
		set, first = t.Key, 0
	}
	sets := make([]string, len(set))
	for i, c := range set {
		sets[i] = fmt.Sprintf("%s = ?%d", quote(c), first+i+1)
	}
	where := make([]string, len(t.Key))
	for i, c := range t.Key {
		where[i] = fmt.Sprintf("%s = ?%d", quote(c), i+1)
	}
	return fmt.Sprintf(`UPDATE %s SET %s WHERE %s`, ident(t), strings.Join(sets, ", "), strings.Join(where, " AND "))
}

// closeBatch ends the batch under way, if any.
func (s *Sink) closeBatch() {
	if s.batch != nil && s.batch.ins != nil {
		s.batch.ins.Close()
	}
	if s.batch != nil && s.batch.upd != nil {
		s.batch.upd.Close()
	}
	s.batch = nil
}

// current returns the batch of t under way.
func (s *Sink) current(t *sinks.Table) (*batch, error) {
	b := s.batch
	if b == nil || !t.Same(b.t) {
		return nil, sinks.ErrNoBatch
	}
	return b, nil
}

// WriteRows writes the rows of r (COPY text, fields in t.Cols order, one row a line)
// into t, each replacing its key's row or inserting it, and returns how many it took. In
// a batch, a row whose key is not the batch's, or is a key a row already came for, fails
// the batch.
func (s *Sink) WriteRows(ctx context.Context, t *sinks.Table, r io.Reader) (int64, error) {
	if err := s.inTx(t); err != nil {
		return 0, err
	}
	b, err := s.current(t)
	if err != nil {
		return 0, s.fail(t, "writing rows of", err)
	}
	if b.skipped {
		return 0, s.fail(t, "writing rows of", errors.New("the table holds rows and was skipped"))
	}
	if b.skip != nil {
		return s.writeSkipping(ctx, t, b, r)
	}
	lines := sinks.NewLineReader(r)
	args := make([]any, len(b.cols))
	var taken int64
	for {
		line, err := lines.Next()
		if err == io.EOF {
			return taken, nil
		}
		if err != nil {
			return taken, s.fail(t, "reading rows of", err)
		}
		if err := s.args(t, b.cols, line, args); err != nil {
			return taken, s.fail(t, fmt.Sprintf("row %d of", b.sent+1), err)
		}
		if b.keys != nil {
			b.id = appendKeyID(b.id[:0], args[:len(t.Key)])
			if err := b.keys.take(b.id); err != nil {
				return taken, s.fail(t, fmt.Sprintf("row %d (key %q) of", b.sent+1, clip(keyText(line, len(t.Key)))), err)
			}
		}
		if err := ctx.Err(); err != nil {
			return taken, s.fail(t, "writing rows of", err)
		}
		if b.upd != nil && b.keys != nil {
			res, err := b.upd.ExecContext(noCancel, args...)
			if err != nil {
				return taken, s.fail(t, fmt.Sprintf("writing row %d of", b.sent+1), err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return taken, s.fail(t, "writing rows of", err)
			}
			if n == 1 { // the key's row, replaced
				b.written++
				b.replaced++
				b.sent++
				taken++
				continue
			}
		}
		res, err := b.ins.ExecContext(noCancel, args...)
		if err != nil {
			return taken, s.fail(t, fmt.Sprintf("writing row %d of", b.sent+1), err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return taken, s.fail(t, "writing rows of", err)
		}
		b.written += n
		b.sent++
		taken++
	}
}

// args decodes a COPY text line into args, one value per column of cols.
func (s *Sink) args(t *sinks.Table, cols []column, line string, args []any) error {
	fields, err := conflict.DecodeCopyLine(line)
	if err != nil {
		return err
	}
	if len(fields) != len(cols) {
		return fmt.Errorf("%d fields, expected %d", len(fields), len(cols))
	}
	for i, f := range fields {
		if f.Null {
			args[i] = nil
			continue
		}
		v, err := cols[i].value(f.Text)
		if err != nil {
			return &ValueError{Table: t.Label(), Column: cols[i].name, Type: cols[i].pg.Name, Value: clip(f.Text), Reason: err.Error()}
		}
		args[i] = v
	}
	return nil
}

// FinishBatch completes the batch of t: it deletes the keys no row came for, and returns
// what the batch wrote; a *sinks.RowCountError when the INSERTs wrote another number of
// rows than WriteRows took (a trigger's RAISE(IGNORE)).
func (s *Sink) FinishBatch(ctx context.Context, t *sinks.Table) (sinks.Counts, error) {
	if err := s.inTx(t); err != nil {
		return sinks.Counts{}, err
	}
	b, err := s.current(t)
	if err != nil {
		return sinks.Counts{}, s.fail(t, "finishing the batch of", err)
	}
	if b.skip != nil {
		defer s.closeBatch()
		return s.finishSkipping(ctx, t, b)
	}
	s.closeBatch()
	if b.skipped {
		return sinks.Counts{}, nil
	}
	if b.written != b.sent {
		return sinks.Counts{}, s.fail(t, "writing rows of", &sinks.RowCountError{DB: s.db, Written: b.written, Sent: b.sent})
	}
	if b.upsert {
		// The keys no row came for: with the rows the UPDATEs replaced, what the batch
		// deleted.
		n, err := s.overKeys(ctx, b, b.keys.missing(), deleteSQL, nil, execRows)
		if err != nil {
			return sinks.Counts{}, s.fail(t, "deleting the keys without a row of", err)
		}
		b.deleted = b.replaced + n
	}
	return sinks.Counts{Written: b.written, Deleted: b.deleted}, nil
}

// ReplaceTable starts a whole-table copy of t: DELETE FROM t in the unit (readers see
// the old rows until Commit). With ifEmpty, a table holding rows is left alone and
// skipped is true.
func (s *Sink) ReplaceTable(ctx context.Context, t *sinks.Table, ifEmpty bool) (skipped bool, err error) {
	if err := s.inTx(t); err != nil {
		return false, err
	}
	s.closeBatch()
	if ifEmpty {
		var one int
		err := s.conn.QueryRowContext(ctx, `SELECT 1 FROM `+ident(t)+` LIMIT 1`).Scan(&one)
		switch {
		case err == nil:
			s.batch = &batch{t: t, skipped: true}
			return true, nil
		case !errors.Is(err, sql.ErrNoRows):
			return false, s.fail(t, "checking for rows in", err)
		}
	}
	b, err := s.newBatch(ctx, t, false)
	if err != nil {
		return false, s.fail(t, "preparing a copy of", err)
	}
	if b.deleted, err = s.deleteAll(ctx, t); err != nil {
		return false, s.fail(t, "emptying", err)
	}
	return false, nil
}

// Truncate empties each table in the unit, one after the other (a target has no changes
// of its own to keep).
func (s *Sink) Truncate(ctx context.Context, ts []sinks.Truncation) error {
	return sinks.EachTruncated(ts, func(t *sinks.Table) error { return s.truncateTable(ctx, t) })
}

// truncateTable empties t in the unit (DELETE FROM: SQLite has no TRUNCATE; a DELETE without
// WHERE drops the table's pages at once).
func (s *Sink) truncateTable(ctx context.Context, t *sinks.Table) error {
	if err := s.inTx(t); err != nil {
		return err
	}
	s.closeBatch()
	if _, err := s.deleteAll(ctx, t); err != nil {
		return s.fail(t, "truncating", err)
	}
	return nil
}

func (s *Sink) deleteAll(ctx context.Context, t *sinks.Table) (int64, error) {
	res, err := s.conn.ExecContext(ctx, `DELETE FROM `+ident(t))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// noCancel is the context of the per-row statements: with a context that can end, the
// driver starts a goroutine per statement to interrupt it, which doubles the cost of a
// row. The caller's context is checked before each row instead; a row's statement waits
// for no lock (BEGIN IMMEDIATE took the write lock) but the busy_timeout-bounded one of a
// cache spill.
var noCancel = context.Background()

// clip shortens a value for a message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
