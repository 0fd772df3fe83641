package mariadb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/pgtext"
)

// keyTable is the session's temporary table of a batch's keys.
const keyTable = "`ibex_k`"

// PrepareBatch deletes keys (COPY text of t's key fields, tab-separated) from t, in the
// unit's transaction: the keys are loaded into a temporary table (LOAD DATA) that a
// multi-table DELETE joins to t's primary key. The rows WriteRows takes are then loaded
// straight into t.
func (s *Sink) PrepareBatch(ctx context.Context, t *sinks.Table, keys []string) (sinks.Prepared, error) {
	if err := s.inTx(t); err != nil {
		return sinks.Prepared{}, err
	}
	s.batch = nil
	b := &batch{t: t, conv: newConverter(t, t.Cols)}
	if len(keys) > 0 {
		n, err := s.deleteKeys(ctx, t, keys)
		if err != nil {
			return sinks.Prepared{}, s.errf(t, "deleting the keys of", err)
		}
		b.deleted = n
	}
	s.batch = b
	return sinks.Prepared{}, nil
}

func (s *Sink) deleteKeys(ctx context.Context, t *sinks.Table, keys []string) (int64, error) {
	if intKey(t) {
		return s.deleteIntKeys(ctx, t, keys)
	}
	for _, q := range []string{
		`DROP TEMPORARY TABLE IF EXISTS ` + keyTable,
		fmt.Sprintf(`CREATE TEMPORARY TABLE %s ENGINE=InnoDB AS SELECT %s FROM %s LIMIT 0`, keyTable, quoteCols("", t.Key), ident(s.schema, t)),
	} {
		if _, err := s.conn.ExecContext(ctx, q); err != nil {
			s.drop(err)
			return 0, err
		}
	}
	taken, written, err := s.load(ctx, keyTable, newConverter(t, t.Key), sinks.LinesReader(keys))
	if err != nil {
		return 0, fmt.Errorf("loading the keys: %w", err)
	}
	if taken != int64(len(keys)) || written != taken {
		return 0, fmt.Errorf("loading the keys: %d keys, %d read, %d written", len(keys), taken, written)
	}
	res, err := s.conn.ExecContext(ctx, fmt.Sprintf(`DELETE t FROM %s AS k STRAIGHT_JOIN %s AS t ON %s`,
		keyTable, ident(s.schema, t), keyJoin("t", "k", t.Key)))
	if err != nil {
		s.drop(err)
		return 0, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, err
	}
	if _, err := s.conn.ExecContext(ctx, `DROP TEMPORARY TABLE `+keyTable); err != nil {
		s.drop(err)
		return 0, err
	}
	return n, nil
}

// WriteRows loads the rows of r (COPY text, fields in t.Cols order, one row a line) into
// t with LOAD DATA LOCAL INFILE, converting them on the way. It returns the rows taken.
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
	taken, written, err := s.load(ctx, ident(s.schema, t), b.conv, r)
	b.sent += taken
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
	if b.written != b.sent {
		return sinks.Counts{}, s.errf(t, "writing rows of", &sinks.RowCountError{DB: s.db, Written: b.written, Sent: b.sent})
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

// Truncate empties t with DELETE, in the unit's transaction (TRUNCATE would commit it).
func (s *Sink) Truncate(ctx context.Context, t *sinks.Table) error {
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

// intKey tells whether t's key is one integer column, whose keys deleteIntKeys deletes.
func intKey(t *sinks.Table) bool {
	if len(t.Key) != 1 {
		return false
	}
	c, ok := column(t, t.Key[0])
	if !ok {
		return false
	}
	typ := pgtext.ParseType(c.Type)
	return !typ.Array && (typ.Kind == pgtext.Int16 || typ.Kind == pgtext.Int32 || typ.Kind == pgtext.Int64)
}

// inChunk is how many keys one DELETE ... IN lists.
const inChunk = 5000

// deleteIntKeys deletes keys of a one-integer-column key with DELETE ... WHERE k IN
// (literals, checked to be integers), inChunk keys a statement: for such keys it is
// faster than a temporary table's load and join.
func (s *Sink) deleteIntKeys(ctx context.Context, t *sinks.Table, keys []string) (int64, error) {
	var q strings.Builder
	var deleted int64
	for len(keys) > 0 {
		chunk := keys[:min(len(keys), inChunk)]
		keys = keys[len(chunk):]
		q.Reset()
		fmt.Fprintf(&q, "DELETE FROM %s WHERE %s IN (", ident(s.schema, t), quote(t.Key[0]))
		for i, k := range chunk {
			if _, err := strconv.ParseInt(k, 10, 64); err != nil {
				return 0, &valueError{col: t.Key[0], typ: "integer key", value: k, err: err}
			}
			if i > 0 {
				q.WriteByte(',')
			}
			q.WriteString(k)
		}
		q.WriteByte(')')
		res, err := s.conn.ExecContext(ctx, q.String())
		if err != nil {
			s.drop(err)
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
