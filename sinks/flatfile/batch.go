package flatfile

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/pgtext"
)

// Statement sizes: keys of one DELETE, rows and (about) bytes of one INSERT.
const (
	stmtKeys  = 1000
	stmtRows  = 1000
	stmtBytes = 1 << 20
)

// newBatch starts the state of a batch of t: its id in the key index and its columns'
// types.
func (s *Sink) newBatch(ctx context.Context, t *sinks.Table) (*batch, error) {
	if len(t.Key) == 0 {
		return nil, errors.New("the table has no key")
	}
	if err := s.p.dialect.checkNames(t); err != nil {
		return nil, err
	}
	id, err := s.idx.table(ctx, t)
	if err != nil {
		return nil, err
	}
	b := &batch{t: t, id: id, types: make([]pgtext.Type, len(t.Cols))}
	for i, c := range t.Cols {
		b.types[i] = pgtext.ParseType("") // a column the catalog does not describe: text
		for _, cc := range t.Columns {
			if cc.Name == c {
				b.types[i] = pgtext.ParseType(cc.Type)
				break
			}
		}
	}
	return b, nil
}

// fieldErr names the column and the kind of a value the dialect refused.
func fieldErr(t *sinks.Table, b *batch, col int, err error) error {
	typ := b.types[col]
	kind := typ.Kind.String()
	if typ.Array {
		kind += "[]"
	}
	return fmt.Errorf("column %q (%s, a %s value): %w", t.Cols[col], typ.Name, kind, err)
}

// PrepareBatch writes the DELETE statements of keys (the key fields as COPY text,
// tab-separated) and keeps the keys, for WriteRows and FinishBatch to update the key
// index with: a key that gets a row stays in the index (one lookup says whether it was
// there, a replaced row), and only the keys no row came for are deleted from it. Keys
// that are every integer of a range (a batch of a dense key) are counted by that range
// while the rows are written, and added by it at FinishBatch (finishSpan).
func (s *Sink) PrepareBatch(ctx context.Context, t *sinks.Table, keys []string) (sinks.Prepared, error) {
	if err := s.inTx(t); err != nil {
		return sinks.Prepared{}, err
	}
	s.drop()
	b, err := s.newBatch(ctx, t)
	if err != nil {
		return sinks.Prepared{}, s.errf(t, "preparing a batch of", err)
	}
	d, nk := s.p.dialect, len(t.Key)
	lhs := d.quote(t.Key[0])
	if nk > 1 {
		lhs = "(" + d.cols(t.Key) + ")"
	}
	var f []conflict.Field
	// The keys, as integers while they all are one (8 bytes a key rather than a key's
	// 32), as keys once one is not.
	var ints []int64
	var pending []key
	// A key of one integer column written as an integer prints as its text (no escape,
	// no decoding): taken as it is.
	intCol := nk == 1 && !b.types[0].Array &&
		(b.types[0].Kind == pgtext.Int16 || b.types[0].Kind == pgtext.Int32 || b.types[0].Kind == pgtext.Int64)
	var buf [20]byte
	for i, k := range keys {
		w, err := s.out()
		if err != nil {
			return sinks.Prepared{}, s.errf(t, "deleting the keys of", err)
		}
		if i%stmtKeys == 0 {
			w.WriteString("DELETE FROM " + d.table(t) + " WHERE " + lhs + " IN (")
		} else {
			w.WriteString(", ")
		}
		if intCol {
			if n, err := strconv.ParseInt(k, 10, 64); err == nil && string(strconv.AppendInt(buf[:0], n, 10)) == k {
				w.WriteString(k)
				if i%stmtKeys == stmtKeys-1 || i == len(keys)-1 {
					w.WriteString(");\n")
				}
				if pending == nil {
					if ints == nil {
						ints = make([]int64, 0, len(keys))
					}
					ints = append(ints, n)
				} else {
					pending = append(pending, key{isInt: true, n: n})
				}
				continue
			}
		}
		if pending == nil {
			pending = make([]key, len(ints), len(keys))
			for j, n := range ints {
				pending[j] = key{isInt: true, n: n}
			}
			ints = nil
		}
		f, err = sinks.DecodeLine(f[:0], k)
		if err == nil && len(f) != nk {
			err = fmt.Errorf("%d fields, the key has %d", len(f), nk)
		}
		if err != nil {
			return sinks.Prepared{}, s.errf(t, "deleting the keys of", fmt.Errorf("key %d: %w", i+1, err))
		}
		if nk > 1 {
			w.WriteByte('(')
		}
		for c := range f {
			if c > 0 {
				w.WriteString(", ")
			}
			if f[c].Null {
				return sinks.Prepared{}, s.errf(t, "deleting the keys of", fmt.Errorf("key %d: %w", i+1, fieldErr(t, b, c, errors.New("NULL in a key"))))
			}
			if err := d.value(w, b.types[c], f[c]); err != nil {
				return sinks.Prepared{}, s.errf(t, "deleting the keys of", fmt.Errorf("key %d: %w", i+1, fieldErr(t, b, c, err)))
			}
		}
		if nk > 1 {
			w.WriteByte(')')
		}
		if i%stmtKeys == stmtKeys-1 || i == len(keys)-1 {
			w.WriteString(");\n")
		}
		pending = append(pending, indexKey(f))
	}
	if pending != nil {
		b.pending = newKeySet(pending)
	} else {
		b.pending = newIntKeySet(ints)
	}
	s.batch = b
	if b.pending.full {
		s.countHeld(ctx, b, b.pending.lo, b.pending.hi)
	}
	return sinks.Prepared{}, nil
}

// WriteRows writes the rows of r (COPY text, fields in t.Cols order, one row a line) as
// multi-row INSERTs and records their keys in the key index (a key it held is a replaced
// row). It returns the rows taken. A key whose row comes twice, or that is not one of
// the batch's keys, is an error: its file would not replay.
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
	d, nk, ncol := s.p.dialect, len(t.Key), len(t.Cols)
	head := "INSERT INTO " + d.table(t) + " (" + d.cols(t.Cols) + ")"
	if d == Postgres {
		for _, c := range t.Columns {
			if c.IdentityAlways {
				head += " OVERRIDING SYSTEM VALUE"
				break
			}
		}
	}
	head += " VALUES\n"
	var (
		n       int64
		f       []conflict.Field // a row's fields, when decoded (an escape, a NULL)
		raw     [][]byte         // else its fields' bytes (valid until the next line)
		w       *bufio.Writer
		open    bool  // an INSERT statement is open
		inStmt  int   // its rows
		started int64 // the file's size when it started
		keys    = make([]key, 0, chunk)
		lr      = sinks.NewLineReader(r)
	)
	for {
		line, err := lr.NextBytes()
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, s.errf(t, "reading rows of", err)
		}
		// A line without a backslash (no escape, no NULL) or a carriage return is its
		// fields' text as it is, split at its tabs without a copy; the others are
		// decoded.
		f, raw = f[:0], raw[:0]
		decoded := bytes.IndexByte(line, '\\') >= 0 || bytes.IndexByte(line, '\r') >= 0
		nf := 0
		if decoded {
			f, err = sinks.DecodeLine(f, string(line))
			nf = len(f)
		} else {
			raw = sinks.SplitTabs(raw, line)
			nf = len(raw)
		}
		if err == nil && nf != ncol {
			err = fmt.Errorf("%d fields, the table has %d columns", nf, ncol)
		}
		if err != nil {
			return n, s.errf(t, "writing rows of", fmt.Errorf("row %d: %w", n+1, err))
		}
		var k key
		if decoded {
			k = indexKey(f[:nk])
		} else {
			k = rawKey(raw[:nk])
		}
		if b.pending != nil {
			if !b.pending.take(k) {
				return n, s.errf(t, "writing rows of", fmt.Errorf("row %d: its key comes twice in the rows, or is not one of the batch's keys", n+1))
			}
		}
		if w == nil {
			if w, err = s.out(); err != nil {
				return n, s.errf(t, "writing rows of", err)
			}
		}
		if !open {
			w.WriteString(head)
			open, inStmt, started = true, 0, s.written()
		} else {
			w.WriteString(",\n")
		}
		w.WriteByte('(')
		for c := range nf {
			if c > 0 {
				w.WriteString(", ")
			}
			if decoded {
				err = d.value(w, b.types[c], f[c])
			} else {
				err = d.rawValue(w, b.types[c], raw[c])
			}
			if err != nil {
				return n, s.errf(t, "writing rows of", fmt.Errorf("row %d: %w", n+1, fieldErr(t, b, c, err)))
			}
		}
		w.WriteByte(')')
		n++
		if inStmt++; inStmt >= stmtRows || s.written()-started >= stmtBytes {
			w.WriteString(";\n")
			open = false
		}
		if b.pending != nil && b.pending.full {
			continue // FinishBatch updates the index by the range
		}
		if keys = append(keys, k); len(keys) == chunk {
			if keys, err = s.addKeys(ctx, b, keys); err != nil {
				return n, s.errf(t, "writing rows of", err)
			}
		}
	}
	if open {
		w.WriteString(";\n")
	}
	if _, err := s.addKeys(ctx, b, keys); err != nil {
		return n, s.errf(t, "writing rows of", err)
	}
	if w != nil {
		// A write error of the file is sticky in w: see it now rather than at Commit.
		if err := w.Flush(); err != nil {
			return n, s.errf(t, "writing rows of", err)
		}
	}
	b.written += n
	return n, nil
}

// addKeys records the keys of rows written (distinct: a batch's through pending, a
// copy's checked here) in the index, and returns a slice to collect the next keys in. In
// a batch, a key the index held is a replaced row, and the keys go to the batch's
// indexer, which adds them while the rows are written (FinishBatch takes its count);
// in a copy the index holds none of the table's keys, and one it holds came twice (an
// error of WriteRows: the keys are added at once).
func (s *Sink) addKeys(ctx context.Context, b *batch, keys []key) ([]key, error) {
	if len(keys) == 0 {
		return keys, nil
	}
	if b.pending != nil {
		if b.ix == nil {
			b.ix = s.idx.startIndexer(ctx, b.id)
		}
		b.ix.send(keys)
		return make([]key, 0, chunk), nil
	}
	added, err := s.idx.add(ctx, b.id, keys)
	if err != nil {
		return nil, err
	}
	if held := int64(len(keys)) - added; held > 0 {
		return nil, fmt.Errorf("%d keys come twice in the rows", held)
	}
	return keys[:0], nil
}

// settle waits for the indexer of the batch under way, if any, and adds the keys the
// index held to its deleted rows.
func (s *Sink) settle() error {
	b := s.batch
	if b == nil || b.ix == nil {
		return nil
	}
	added, sent, err := b.ix.wait()
	b.ix = nil
	if err != nil {
		return err
	}
	b.deleted += sent - added
	return nil
}

// FinishBatch completes the batch of t and returns what it wrote.
func (s *Sink) FinishBatch(ctx context.Context, t *sinks.Table) (sinks.Counts, error) {
	if err := s.inTx(t); err != nil {
		return sinks.Counts{}, err
	}
	b, err := s.current(t)
	if err != nil {
		return sinks.Counts{}, s.errf(t, "finishing the batch of", err)
	}
	defer b.takeHeld() // a count finishSpan did not take
	err = s.settle()
	s.batch = nil
	if err != nil {
		return sinks.Counts{}, s.errf(t, "writing rows of", err)
	}
	if b.skipped {
		return sinks.Counts{}, nil
	}
	if b.pending != nil && b.pending.full {
		if err := s.finishSpan(ctx, b); err != nil {
			return sinks.Counts{}, s.errf(t, "finishing the batch of", err)
		}
		return sinks.Counts{Written: b.written, Deleted: b.deleted}, nil
	}
	if b.pending != nil && b.pending.len() > 0 {
		n, err := s.idx.remove(ctx, b.id, b.pending.keys())
		if err != nil {
			return sinks.Counts{}, s.errf(t, "finishing the batch of", err)
		}
		b.deleted += n
	}
	return sinks.Counts{Written: b.written, Deleted: b.deleted}, nil
}

// finishSpan updates the index for a batch whose keys are every integer from lo to hi
// (keySet.full), by that range rather than key by key: the keys it held there are the
// batch's deleted (or replaced) rows; then the range is added (when some key was not
// held) and the keys no row came for are removed.
func (s *Sink) finishSpan(ctx context.Context, b *batch) error {
	lo, hi := b.pending.lo, b.pending.hi
	c, ok := b.takeHeld() // counted while the rows were written
	if !ok {
		c.n, c.err = s.idx.countRange(ctx, b.id, lo, hi)
	}
	held, err := c.n, c.err
	if err != nil {
		return err
	}
	b.deleted += held
	if uint64(held) <= uint64(hi)-uint64(lo) {
		if err := s.idx.addRange(ctx, b.id, lo, hi); err != nil {
			return err
		}
	}
	if b.pending.len() > 0 {
		if _, err := s.idx.remove(ctx, b.id, b.pending.keys()); err != nil {
			return err
		}
	}
	return nil
}

// ReplaceTable starts a whole-table copy of t: it writes DELETE FROM t and clears t's keys
// in the index (the rows deleted). With ifEmpty, a table the index holds keys of is left
// alone and skipped is true.
func (s *Sink) ReplaceTable(ctx context.Context, t *sinks.Table, ifEmpty bool) (bool, error) {
	if err := s.inTx(t); err != nil {
		return false, err
	}
	s.drop()
	b, err := s.newBatch(ctx, t)
	if err != nil {
		return false, s.errf(t, "replacing", err)
	}
	if ifEmpty {
		empty, err := s.idx.empty(ctx, b.id)
		if err != nil {
			return false, s.errf(t, "checking for rows in", err)
		}
		if !empty {
			b.skipped = true
			s.batch = b
			return true, nil
		}
	}
	if err := s.emptyTable(t, "DELETE FROM "); err != nil {
		return false, s.errf(t, "emptying", err)
	}
	if b.deleted, err = s.idx.clear(ctx, b.id); err != nil {
		return false, s.errf(t, "emptying", err)
	}
	s.batch = b
	return false, nil
}

// Truncate empties each table in the unit, one after the other (a target has no changes
// of its own to keep).
func (s *Sink) Truncate(ctx context.Context, ts []sinks.Truncation) error {
	return sinks.EachTruncated(ts, func(t *sinks.Table) error { return s.truncateTable(ctx, t) })
}

// truncateTable empties t: TRUNCATE t (postgres) or DELETE FROM t (mysql, where a TRUNCATE
// would commit the file's transaction), and clears its keys in the index.
func (s *Sink) truncateTable(ctx context.Context, t *sinks.Table) error {
	if err := s.inTx(t); err != nil {
		return err
	}
	s.drop()
	b, err := s.newBatch(ctx, t)
	if err != nil {
		return s.errf(t, "truncating", err)
	}
	stmt := "TRUNCATE "
	if s.p.dialect == MySQL {
		stmt = "DELETE FROM "
	}
	if err := s.emptyTable(t, stmt); err != nil {
		return s.errf(t, "truncating", err)
	}
	if _, err := s.idx.clear(ctx, b.id); err != nil {
		return s.errf(t, "truncating", err)
	}
	return nil
}

func (s *Sink) emptyTable(t *sinks.Table, stmt string) error {
	w, err := s.out()
	if err != nil {
		return err
	}
	w.WriteString(stmt + s.p.dialect.table(t) + ";\n")
	return nil
}
