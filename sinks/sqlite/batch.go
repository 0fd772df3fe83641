package sqlite

import (
	"bufio"
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
	t       *sinks.Table
	cols    []column
	ins     *sql.Stmt // INSERT of a row
	skipped bool      // ReplaceTable left a non-empty table alone
	sent    int64     // rows WriteRows took
	written int64     // rows the INSERTs wrote
	deleted int64
}

// PrepareBatch deletes keys (key fields as COPY text, tab-separated) from t, with a
// prepared DELETE per key, and prepares the INSERT that WriteRows runs for each row.
// Nothing is ever skipped: a SQLite receiver is a target only.
func (s *Sink) PrepareBatch(ctx context.Context, t *sinks.Table, keys []string) (sinks.Prepared, error) {
	if err := s.inTx(t); err != nil {
		return sinks.Prepared{}, err
	}
	b, err := s.newBatch(ctx, t)
	if err != nil {
		return sinks.Prepared{}, s.fail(t, "preparing a batch of", err)
	}
	if len(keys) > 0 {
		if b.deleted, err = s.deleteKeys(ctx, b, keys); err != nil {
			return sinks.Prepared{}, s.fail(t, "deleting the keys of", err)
		}
	}
	return sinks.Prepared{}, nil
}

// deleteChunk is how many keys one DELETE statement takes: one statement per key costs
// the driver's per-statement work 100,000 times in a batch of 100,000 keys.
const deleteChunk = 200

// deleteKeys deletes every key of keys from b's table, deleteChunk keys a statement
// (key IN (?, ...), or (k1, k2) IN (VALUES (?, ?), ...)), and returns how many rows it
// deleted.
func (s *Sink) deleteKeys(ctx context.Context, b *batch, keys []string) (int64, error) {
	key := b.cols[:len(b.t.Key)]
	stmts := map[int]*sql.Stmt{}
	defer func() {
		for _, st := range stmts {
			st.Close()
		}
	}()
	args := make([]any, 0, deleteChunk*len(key))
	var deleted int64
	for len(keys) > 0 {
		chunk := keys[:min(deleteChunk, len(keys))]
		keys = keys[len(chunk):]
		st := stmts[len(chunk)]
		if st == nil {
			var err error
			if st, err = s.conn.PrepareContext(ctx, deleteSQL(b.t, len(chunk))); err != nil {
				return 0, err
			}
			stmts[len(chunk)] = st
		}
		args = args[:len(chunk)*len(key)]
		for i, k := range chunk {
			if err := s.args(b.t, key, k, args[i*len(key):(i+1)*len(key)]); err != nil {
				return 0, fmt.Errorf("key %q: %w", clip(k), err)
			}
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		res, err := st.ExecContext(noCancel, args...)
		if err != nil {
			return 0, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, err
		}
		deleted += n
	}
	return deleted, nil
}

// deleteSQL is the DELETE of n keys of t.
func deleteSQL(t *sinks.Table, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "DELETE FROM %s WHERE ", ident(t))
	if len(t.Key) == 1 {
		b.WriteString(quote(t.Key[0]) + " IN (")
		for i := range n {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "?%d", i+1)
		}
		b.WriteString(")")
		return b.String()
	}
	fmt.Fprintf(&b, "(%s) IN (VALUES ", quoteCols(t.Key))
	p := 0
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(")
		for j := range t.Key {
			if j > 0 {
				b.WriteString(", ")
			}
			p++
			fmt.Fprintf(&b, "?%d", p)
		}
		b.WriteString(")")
	}
	b.WriteString(")")
	return b.String()
}

// newBatch starts the batch of t (ending the one under way) and prepares its INSERT.
func (s *Sink) newBatch(ctx context.Context, t *sinks.Table) (*batch, error) {
	s.closeBatch()
	if len(t.Key) == 0 || len(t.Key) > len(t.Cols) {
		return nil, fmt.Errorf("%d key columns of %d columns", len(t.Key), len(t.Cols))
	}
	b := &batch{t: t, cols: columns(t)}
	marks := make([]string, len(b.cols))
	for i := range marks {
		marks[i] = fmt.Sprintf("?%d", i+1)
	}
	ins, err := s.conn.PrepareContext(ctx, fmt.Sprintf(`INSERT INTO %s (%s) VALUES (%s)`, ident(t), quoteCols(t.Cols), strings.Join(marks, ", ")))
	if err != nil {
		return nil, err
	}
	b.ins = ins
	s.batch = b
	return b, nil
}

// closeBatch ends the batch under way, if any.
func (s *Sink) closeBatch() {
	if s.batch != nil && s.batch.ins != nil {
		s.batch.ins.Close()
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

// WriteRows inserts the rows of r (COPY text, fields in t.Cols order, one row a line)
// into t and returns how many it took.
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
	lines := newLineReader(r)
	args := make([]any, len(b.cols))
	var taken int64
	for {
		line, err := lines.next()
		if err == io.EOF {
			return taken, nil
		}
		if err != nil {
			return taken, s.fail(t, "reading rows of", err)
		}
		if err := s.args(t, b.cols, line, args); err != nil {
			return taken, s.fail(t, fmt.Sprintf("row %d of", b.sent+1), err)
		}
		if err := ctx.Err(); err != nil {
			return taken, s.fail(t, "writing rows of", err)
		}
		res, err := b.ins.ExecContext(noCancel, args...)
		if err != nil {
			return taken, s.fail(t, fmt.Sprintf("inserting row %d of", b.sent+1), err)
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

// FinishBatch completes the batch of t and returns what it wrote; a *sinks.RowCountError
// when the INSERTs wrote another number of rows than WriteRows took (a trigger's
// RAISE(IGNORE)).
func (s *Sink) FinishBatch(ctx context.Context, t *sinks.Table) (sinks.Counts, error) {
	if err := s.inTx(t); err != nil {
		return sinks.Counts{}, err
	}
	b, err := s.current(t)
	if err != nil {
		return sinks.Counts{}, s.fail(t, "finishing the batch of", err)
	}
	s.closeBatch()
	if b.skipped {
		return sinks.Counts{}, nil
	}
	if b.written != b.sent {
		return sinks.Counts{}, s.fail(t, "writing rows of", &sinks.RowCountError{DB: s.db, Written: b.written, Sent: b.sent})
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
	b, err := s.newBatch(ctx, t)
	if err != nil {
		return false, s.fail(t, "preparing a copy of", err)
	}
	if b.deleted, err = s.deleteAll(ctx, t); err != nil {
		return false, s.fail(t, "emptying", err)
	}
	return false, nil
}

// Truncate empties t in the unit (DELETE FROM: SQLite has no TRUNCATE; a DELETE without
// WHERE drops the table's pages at once).
func (s *Sink) Truncate(ctx context.Context, t *sinks.Table) error {
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

// lineReader reads lines of any length (the last one may lack its newline).
type lineReader struct {
	br  *bufio.Reader
	buf []byte
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, 256<<10)}
}

// next returns the next line, without its newline, or io.EOF.
func (l *lineReader) next() (string, error) {
	l.buf = l.buf[:0]
	for {
		frag, err := l.br.ReadSlice('\n')
		if err == nil {
			if len(l.buf) == 0 {
				return string(frag[:len(frag)-1]), nil
			}
			l.buf = append(l.buf, frag[:len(frag)-1]...)
			return string(l.buf), nil
		}
		l.buf = append(l.buf, frag...)
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF && len(l.buf) > 0:
			return string(l.buf), nil
		default:
			return "", err
		}
	}
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
