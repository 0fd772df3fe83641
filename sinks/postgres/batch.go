package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/dbconn"
	"github.com/ibexrepl/ibex/sinks"
)

// PrepareBatch loads keys into the temp table pg_temp.ibex_k. A target then deletes
// those keys from t (its rows are COPYed straight in by WriteRows); a source drops from
// the list the keys its application changed since the run's snapshot (returned as
// Skipped) and stages the rows in pg_temp.ibex_s for FinishBatch.
func (s *Sink) PrepareBatch(ctx context.Context, t *sinks.Table, keys []string) (sinks.Prepared, error) {
	if err := s.inTx(t); err != nil {
		return sinks.Prepared{}, err
	}
	s.batch = nil
	s.rejected = nil
	keyCols := catalog.QuoteCols("", t.Key)
	if s.src == nil && !s.skip && !t.Partial && !t.InPlace {
		// A target with a short key list: the keys go into the DELETE itself, without a
		// temp table (creating one costs a short batch more than its statements).
		if in, ok := catalog.KeyIn("", t.Key, keys); ok {
			res, err := dbconn.ExecAll(ctx, s.conn, s.begin()+fmt.Sprintf(`DELETE FROM %s WHERE %s`, ident(t), in))
			if err != nil {
				return sinks.Prepared{}, s.errf(t, "deleting the keys of", err)
			}
			s.batch = &batch{t: t, deleted: res[len(res)-1].CommandTag.RowsAffected()}
			return sinks.Prepared{}, nil
		}
	}
	temps := fmt.Sprintf(`DROP TABLE IF EXISTS pg_temp.ibex_k; CREATE TEMP TABLE ibex_k ON COMMIT DROP AS SELECT %s FROM %s LIMIT 0`, keyCols, ident(t))
	if s.src != nil || s.skip || t.Partial || t.InPlace {
		// Rows for a source, for a target under on_error=skip, or for a table of which a
		// target gets some columns or which it writes in place, arrive in a stage table
		// (see applySource, applySkipping, applyPartial).
		stage := catalog.QuoteCols("", t.Cols)
		if s.skip {
			var err error
			if stage, err = s.looseColumns(ctx, t); err != nil {
				return sinks.Prepared{}, s.errf(t, "preparing a batch of", err)
			}
		}
		temps += fmt.Sprintf(`; DROP TABLE IF EXISTS pg_temp.ibex_s; CREATE TEMP TABLE ibex_s ON COMMIT DROP AS SELECT %s FROM %s LIMIT 0`, stage, ident(t))
	}
	if _, err := dbconn.ExecAll(ctx, s.conn, s.begin()+temps); err != nil {
		return sinks.Prepared{}, s.errf(t, "preparing a batch of", err)
	}
	if err := copyKeys(ctx, s.conn, "pg_temp.ibex_k", keyCols, keys); err != nil {
		return sinks.Prepared{}, s.errf(t, "loading the keys of", err)
	}
	if s.src == nil && s.skip {
		// A target under on_error=skip: rows are staged and applied by applySkipping.
		s.batch = &batch{t: t, staged: true}
		return sinks.Prepared{}, nil
	}
	if s.src == nil && (t.Partial || t.InPlace) {
		s.batch = &batch{t: t, partial: true}
		return sinks.Prepared{}, nil
	}
	if s.src == nil {
		// A target: no application writes here, so delete now and COPY straight in.
		tag, err := execIndexed(ctx, s.conn, fmt.Sprintf(`DELETE FROM %s t USING %s k WHERE %s`,
			ident(t), orderedKeys("pg_temp.ibex_k", t.Key), catalog.KeyJoin("t", "k", t.Key)))
		if err != nil {
			return sinks.Prepared{}, s.errf(t, "deleting the keys of", err)
		}
		s.batch = &batch{t: t, deleted: tag.RowsAffected()}
		return sinks.Prepared{}, nil
	}
	// A source: keys its own application changed since the run's snapshot are left to the
	// next run (that change is newer), and rows arrive in a stage table: applySource writes
	// them with UPDATE semantics so that an application transaction waiting on one of
	// those rows applies its change on top instead of losing it.
	late, err := s.dropLate(ctx, t)
	if err != nil {
		return sinks.Prepared{}, s.errf(t, "leaving out the keys changed meanwhile of", err)
	}
	s.batch = &batch{t: t, staged: true, keys: len(keys)}
	return sinks.Prepared{Skipped: late}, nil
}

// BeginAndPrepare opens the unit's transaction and prepares the batch (see PrepareBatch)
// in the same round trip.
func (s *Sink) BeginAndPrepare(ctx context.Context, t *sinks.Table, keys []string) (sinks.Prepared, error) {
	if s.tx {
		return s.PrepareBatch(ctx, t, keys)
	}
	s.tx, s.beginWith = true, true
	defer func() { s.beginWith = false }()
	return s.PrepareBatch(ctx, t, keys)
}

// begin is the BEGIN that BeginAndPrepare has PrepareBatch send before its first
// statement, once; "" otherwise.
func (s *Sink) begin() string {
	if !s.beginWith {
		return ""
	}
	s.beginWith = false
	return "BEGIN; "
}

// WriteRows COPYs the rows of r (COPY text, fields in t.Cols order, one row a line, no
// end-of-data marker) into t, or into the stage table of a source's batch. It returns the
// rows COPY wrote: a caller comparing it with the rows it sent sees rows a trigger or rule
// dropped (FinishBatch reports it too).
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
	into := ident(t)
	if b.staged || b.partial {
		into = "pg_temp.ibex_s" // applySource writes it into the table
	}
	lc := &lineCounter{r: r}
	tag, err := s.conn.PgConn().CopyFrom(ctx, lc, fmt.Sprintf(`COPY %s (%s) FROM STDIN`, into, catalog.QuoteCols("", t.Cols)))
	if err != nil {
		return 0, s.errf(t, "writing rows of", err)
	}
	b.sent += lc.rows()
	b.written += tag.RowsAffected()
	return tag.RowsAffected(), nil
}

// FinishBatch completes the batch of t: a source's staged rows are applied (applySource).
// It returns a *sinks.RowCountError when another number of rows was written than taken.
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
	if b.partial {
		written, deleted, err := s.applyPartial(ctx, t)
		if err != nil {
			return sinks.Counts{}, s.errf(t, "applying", err)
		}
		if written != b.sent {
			return sinks.Counts{}, s.errf(t, "writing rows of", &sinks.RowCountError{DB: s.db, Written: written, Sent: b.sent})
		}
		return sinks.Counts{Written: written, Deleted: deleted}, nil
	}
	if b.staged {
		apply := func(ctx context.Context, t *sinks.Table) (int64, int64, error) {
			return s.applySource(ctx, t, b.keys <= catalog.InlineKeysMax)
		}
		if s.skip {
			apply = s.applySkipping
		}
		written, deleted, err := apply(ctx, t)
		if err != nil {
			return sinks.Counts{}, s.errf(t, "applying", err)
		}
		if b.adds != nil {
			// After the writes: the keys skipped are final (applySource may skip more).
			if _, err := s.addSkipped(ctx, t, b.adds); err != nil {
				return sinks.Counts{}, s.errf(t, "applying", err)
			}
		}
		return sinks.Counts{Written: written, Deleted: deleted}, nil
	}
	if b.written != b.sent {
		return sinks.Counts{}, s.errf(t, "writing rows of", &sinks.RowCountError{DB: s.db, Written: b.written, Sent: b.sent})
	}
	return sinks.Counts{Written: b.written, Deleted: b.deleted}, nil
}

// lineCounter counts the rows (lines) read through it; a last line without its newline
// counts too.
type lineCounter struct {
	r    io.Reader
	n    int64
	open bool // the last byte read was not a newline
}

func (c *lineCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.n += int64(bytes.Count(p[:n], []byte{'\n'}))
		c.open = p[n-1] != '\n'
	}
	return n, err
}

func (c *lineCounter) rows() int64 {
	if c.open {
		return c.n + 1
	}
	return c.n
}

// copyKeys loads keys (tab-separated COPY text, as the change rows print them) into a
// temp table.
func copyKeys(ctx context.Context, conn *pgx.Conn, into, keyCols string, keys []string) error {
	_, err := conn.PgConn().CopyFrom(ctx, sinks.LinesReader(keys), fmt.Sprintf(`COPY %s (%s) FROM STDIN`, into, keyCols))
	return err
}

// orderedKeys is a subquery listing the key columns of a temp key table in key order, so
// that a nested loop over it probes the user table's index (and heap) in order.
func orderedKeys(from string, key []string) string {
	cols := catalog.QuoteCols("", key)
	return fmt.Sprintf(`(SELECT %s FROM %s ORDER BY %s)`, cols, from, cols)
}

// indexed wraps a statement joining the key list to a user table so that it probes the
// table's key index: its cost then follows the number of changed keys, never the table's
// size, whatever the planner guesses about the key list. It must run in a transaction.
func indexed(stmt string) string {
	return `SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; ` + stmt +
		`; SET LOCAL enable_hashjoin = on; SET LOCAL enable_mergejoin = on`
}

// execIndexed runs indexed(stmt) in one round trip and returns the statement's tag.
func execIndexed(ctx context.Context, conn *pgx.Conn, stmt string) (pgconn.CommandTag, error) {
	res, err := dbconn.ExecAll(ctx, conn, indexed(stmt))
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	return res[2].CommandTag, nil
}

// applyPartial writes the staged rows of a target's table of which the batch has some
// columns only (t.Partial), or which it writes in place (t.InPlace): the keys with no row
// are deleted, the rows there are updated in place (their other columns kept), the others
// inserted (their other columns taking their defaults). It returns rows written and rows
// deleted or replaced.
func (s *Sink) applyPartial(ctx context.Context, t *sinks.Table) (int64, int64, error) {
	id := ident(t)
	identity := map[string]bool{}
	for _, c := range t.Columns {
		identity[c.Name] = c.IdentityAlways
	}
	var sets []string
	for _, c := range t.Cols[len(t.Key):] {
		if identity[c] {
			continue
		}
		q := pgx.Identifier{c}.Sanitize()
		sets = append(sets, q+" = s."+q)
	}
	stmts := []string{
		fmt.Sprintf(`DELETE FROM %s t USING pg_temp.ibex_k k WHERE %s AND NOT EXISTS (SELECT 1 FROM pg_temp.ibex_s s WHERE %s)`,
			id, catalog.KeyJoin("t", "k", t.Key), catalog.KeyJoin("s", "k", t.Key)),
		fmt.Sprintf(`INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM pg_temp.ibex_s s WHERE NOT EXISTS (SELECT 1 FROM %s t WHERE %s)`,
			id, catalog.QuoteCols("", t.Cols), catalog.QuoteCols("s.", t.Cols), id, catalog.KeyJoin("t", "s", t.Key)),
	}
	// Updated before the inserts: the rows inserted are not updated again.
	if len(sets) > 0 {
		stmts = slices.Insert(stmts, 1, fmt.Sprintf(`UPDATE %s t SET %s FROM pg_temp.ibex_s s WHERE %s`, id, strings.Join(sets, ", "), catalog.KeyJoin("t", "s", t.Key)))
	} else {
		stmts = slices.Insert(stmts, 1, fmt.Sprintf(`SELECT 1 FROM %s t JOIN pg_temp.ibex_s s ON %s`, id, catalog.KeyJoin("t", "s", t.Key)))
	}
	res, err := dbconn.ExecAll(ctx, s.conn, strings.Join(stmts, "; "))
	if err != nil {
		return 0, 0, err
	}
	if len(res) != 3 {
		return 0, 0, fmt.Errorf("%d results, expected 3", len(res))
	}
	deleted, updated, inserted := res[0].CommandTag.RowsAffected(), res[1].CommandTag.RowsAffected(), res[2].CommandTag.RowsAffected()
	return updated + inserted, deleted + updated, nil
}
