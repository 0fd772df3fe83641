package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ibexrepl/ibex/internal/capture"
	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/dbconn"
	"github.com/ibexrepl/ibex/internal/sqlstate"
	"github.com/ibexrepl/ibex/sinks"
)

// maxApplyAttempts bounds how often applySource writes again because the application
// changed rows being applied.
const maxApplyAttempts = 6

// dropLate removes from pg_temp.ibex_k the keys this source's application changed since
// the run's snapshot, and returns them (COPY text, key fields tab-separated).
func (s *Sink) dropLate(ctx context.Context, t *sinks.Table) ([]string, error) {
	var late []string
	lw := sinks.NewLineWriter(func(line []byte) error { late = append(late, string(line)); return nil })
	_, err := s.conn.PgConn().CopyTo(ctx, lw, capture.DropLateKeys("pg_temp.ibex_k", s.src.ChangeTable(t), t.Key, s.src.Snapshot))
	if err != nil {
		return nil, err
	}
	return late, nil
}

// applySource writes the staged rows into a source's table: the rows it holds are
// updated and the others inserted, the keys the winner no longer has deleted. Under a savepoint, it then checks that the
// application changed none of those keys between dropLate and the writes (the writes hold
// the rows now); if it did, it rolls back to the savepoint, leaves those keys out and
// writes again. It returns rows written and rows deleted or replaced. fewKeys: the batch
// has at most catalog.InlineKeysMax keys.
func (s *Sink) applySource(ctx context.Context, t *sinks.Table, fewKeys bool) (int64, int64, error) {
	id := ident(t)
	cols := catalog.QuoteCols("", t.Cols)
	// Key columns are set too: 1.50 replaces an equal 1.5 (identity-always columns, which
	// cannot be updated, are integers and print one way only).
	identity := map[string]bool{}
	for _, c := range t.Columns {
		identity[c.Name] = c.IdentityAlways
	}
	var sets []string
	for _, c := range t.Cols {
		if identity[c] {
			continue
		}
		q := pgx.Identifier{c}.Sanitize()
		sets = append(sets, q+" = s."+q)
	}
	// The rows to write, and their number: every one must be written (a trigger or rule
	// dropping some would leave the receiver in a state no source had). The rows there
	// are updated in place, then the others inserted: an UPDATE joined to the staged rows
	// costs less than INSERT ... ON CONFLICT DO UPDATE row by row (no speculative insert,
	// no separate row lock), and an application transaction waiting on one of those rows
	// still finds the new version and applies its change on top.
	inK := fmt.Sprintf(`EXISTS (SELECT 1 FROM pg_temp.ibex_k k WHERE %s)`, catalog.KeyJoin("s", "k", t.Key))
	nStaged := fmt.Sprintf(`SELECT count(*) FROM pg_temp.ibex_s s WHERE %s`, inK)
	update := `SELECT 0 WHERE false` // nothing to set: the key is the row
	if len(sets) > 0 {
		update = fmt.Sprintf(`UPDATE %s t SET %s FROM pg_temp.ibex_s s WHERE %s AND %s`, id, strings.Join(sets, ", "), catalog.KeyJoin("t", "s", t.Key), inK)
	}
	write := update + "; " + fmt.Sprintf(`WITH w AS (INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM pg_temp.ibex_s s WHERE %s AND NOT EXISTS (SELECT 1 FROM %s t WHERE %s) ORDER BY %s RETURNING 1)
SELECT count(*), (%s) FROM w`, id, cols, catalog.QuoteCols("s.", t.Cols), inK, id, catalog.KeyJoin("t", "s", t.Key), catalog.QuoteCols("s.", t.Key), nStaged)
	staged := fmt.Sprintf(`SELECT %s FROM pg_temp.ibex_s s WHERE %s ORDER BY %s`, catalog.QuoteCols("s.", t.Cols), inK, catalog.QuoteCols("s.", t.Key))
	// When the update cannot be done (rows swap the values of another unique column, which
	// a row-by-row update trips over), delete the keys and insert the rows instead.
	replace := fmt.Sprintf(`DELETE FROM %s t USING %s k WHERE %s`, id, orderedKeys("pg_temp.ibex_k", t.Key), catalog.KeyJoin("t", "k", t.Key))
	insert := fmt.Sprintf(`WITH w AS (INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE %s RETURNING 1) SELECT count(*), (%s) FROM w`, id, cols, staged, nStaged)
	goneKeys := fmt.Sprintf(`SELECT %s FROM pg_temp.ibex_k k WHERE NOT EXISTS (SELECT 1 FROM pg_temp.ibex_s s WHERE %s)`,
		catalog.QuoteCols("k.", t.Key), catalog.KeyJoin("s", "k", t.Key))
	check := capture.CountLateChanges("pg_temp.ibex_k", s.src.ChangeTable(t), t.Key, s.src.Snapshot)
	// The rest after the writes: delete the keys the winner no longer has, then count the
	// keys the application changed meanwhile. A short key list finds them in the DELETE
	// itself (nested loops over a few keys); a long one first lists them in a temp table
	// (hashed against the staged rows: the DELETE's nested loops would probe the staged rows
	// once a key), which costs a short batch more than its statements.
	var rest string
	restAt := 0 // where the DELETE's results start in rest's
	if fewKeys {
		del := fmt.Sprintf(`DELETE FROM %s t USING (%s ORDER BY %s) k WHERE %s`, id, goneKeys, catalog.QuoteCols("", t.Key), catalog.KeyJoin("t", "k", t.Key))
		rest = indexed(del) + "; " + check
	} else {
		gone := `DROP TABLE IF EXISTS pg_temp.ibex_gone; CREATE TEMP TABLE ibex_gone ON COMMIT DROP AS ` + goneKeys
		del := fmt.Sprintf(`DELETE FROM %s t USING %s k WHERE %s`, id, orderedKeys("pg_temp.ibex_gone", t.Key), catalog.KeyJoin("t", "k", t.Key))
		rest, restAt = gone+"; "+indexed(del)+"; "+check, 2
	}
	// On PostgreSQL 15 and later one MERGE updates the rows there and inserts the others in
	// a single pass over the key index (about half the time of the UPDATE and the INSERT's
	// anti-join), with the same UPDATE semantics for a waiting application transaction.
	useMerge := len(sets) > 0 && s.mergeOK(t)
	var merge string
	if useMerge {
		merge = s.mergeSQL(t, sets)
	}
	for attempt := 0; ; attempt++ {
		var written, replaced, deleted, changed, want int64
		var res []*pgconn.Result
		var err error
		if useMerge {
			res, err = dbconn.ExecAll(ctx, s.conn, `SAVEPOINT ibex_apply; `+merge+`; `+rest)
			if isCode(err, sqlstate.FeatureNotSupported) {
				// MERGE refused on this table (a rule on it, say): the UPDATE and the INSERT.
				if _, err := s.conn.Exec(ctx, `ROLLBACK TO SAVEPOINT ibex_apply`); err != nil {
					return 0, 0, err
				}
				s.noMerge(t)
				useMerge = false
			}
		}
		if !useMerge {
			res, err = dbconn.ExecAll(ctx, s.conn, `SAVEPOINT ibex_apply; `+write+`; `+rest)
		}
		if isCode(err, uniqueViolation) {
			if _, err := s.conn.Exec(ctx, `ROLLBACK TO SAVEPOINT ibex_apply`); err != nil {
				return 0, 0, err
			}
			if res, err = dbconn.ExecAll(ctx, s.conn, indexed(replace)+"; "+insert+"; "+rest); err != nil {
				return 0, 0, err
			}
			// res: SET, SET, DELETE (replace), SET, SET, insert, then rest.
			replaced = res[2].CommandTag.RowsAffected()
			if written, err = scalar(res[5], 0); err != nil {
				return 0, 0, err
			}
			if want, err = scalar(res[5], 1); err != nil {
				return 0, 0, err
			}
			res = res[6:]
		} else if err != nil {
			return 0, 0, err
		} else if useMerge {
			// res: SAVEPOINT, DELETE (staged rows of keys left out), inserted before, SET,
			// SET, MERGE, SET, SET, inserted after and the staged rows, then rest.
			var before, after int64
			if before, err = scalar(res[2], 0); err != nil {
				return 0, 0, err
			}
			if after, err = scalar(res[8], 0); err != nil {
				return 0, 0, err
			}
			if want, err = scalar(res[8], 1); err != nil {
				return 0, 0, err
			}
			written = res[5].CommandTag.RowsAffected()
			replaced = written - (after - before)
			res = res[9:]
		} else {
			// res: SAVEPOINT, update, insert, then rest.
			var inserted int64
			if inserted, err = scalar(res[2], 0); err != nil {
				return 0, 0, err
			}
			if want, err = scalar(res[2], 1); err != nil {
				return 0, 0, err
			}
			replaced = res[1].CommandTag.RowsAffected()
			written = replaced + inserted
			if len(sets) == 0 {
				// Every column is the key (or generated): a row already there is left
				// as it is.
				replaced, want = 0, inserted
			}
			res = res[3:]
		}
		// res: [DROP, CREATE (gone),] SET, SET, DELETE, SET, SET, check
		if len(res) != restAt+6 {
			return 0, 0, fmt.Errorf("%d results, expected %d", len(res), restAt+6)
		}
		deleted = replaced + res[restAt+2].CommandTag.RowsAffected()
		if changed, err = scalar(res[restAt+5], 0); err != nil {
			return 0, 0, err
		}
		if written != want {
			return 0, 0, &sinks.RowCountError{DB: s.db, Written: written, Sent: want}
		}
		if changed == 0 {
			// The savepoint stays until the unit commits.
			return written, deleted, nil
		}
		if attempt == maxApplyAttempts-1 {
			return 0, 0, errors.New("the application keeps changing the rows being applied: try again later")
		}
		if _, err := s.conn.Exec(ctx, `ROLLBACK TO SAVEPOINT ibex_apply`); err != nil {
			return 0, 0, err
		}
		if _, err := s.dropLate(ctx, t); err != nil {
			return 0, 0, err
		}
	}
}

// replacedCount returns the upsert's RETURNING clause and the expression of the outer
// SELECT (over w, the upsert's rows) counting the rows that replaced one (the others were
// inserted). On an ordinary table xmax <> 0 tells an updated row, at no extra cost. A
// partitioned parent cannot return xmax (SQLSTATE 0A000), so there the staged rows whose
// key the table holds are counted, in the same statement and so as of the same snapshot as
// the upsert, probing the key index (its partitions') once a row. A row the application
// wrote or deleted after that snapshot may have been counted wrong, but such a key is one
// the check after the writes finds changed, and the writes are then done again without
// it. Under DO NOTHING (update false) no row is replaced.
func replacedCount(t *sinks.Table, update bool) (returning, count string) {
	switch {
	case !t.Partitioned:
		return `RETURNING t.xmax <> 0 AS replaced`, `count(*) FILTER (WHERE replaced)`
	case !update:
		return `RETURNING 1`, `0`
	}
	return `RETURNING 1`, fmt.Sprintf(`(SELECT count(*) FROM pg_temp.ibex_s s CROSS JOIN LATERAL (SELECT 1 FROM %s x WHERE %s LIMIT 1) x WHERE EXISTS (SELECT 1 FROM pg_temp.ibex_k k WHERE %s))`,
		ident(t), catalog.KeyJoin("x", "s", t.Key), catalog.KeyJoin("s", "k", t.Key))
}

// mergeOK reports whether applySource writes t with MERGE: the server has it (PostgreSQL
// 15) and did not refuse it on t before.
func (s *Sink) mergeOK(t *sinks.Table) bool {
	if s.major == 0 {
		s.major = dbconn.ServerMajor(s.conn.PgConn())
	}
	return s.major >= 15 && !s.mergeRefused[ident(t)]
}

// noMerge records that the server refused MERGE on t (feature_not_supported).
func (s *Sink) noMerge(t *sinks.Table) {
	if s.mergeRefused == nil {
		s.mergeRefused = map[string]bool{}
	}
	s.mergeRefused[ident(t)] = true
}

// mergeSQL is applySource's write on PostgreSQL 15 and later: the staged rows of keys no
// longer in pg_temp.ibex_k (left out after the rows arrived) are dropped, then one MERGE
// updates the rows the table holds (set: "col = s.col" for every column but identity-always
// ones) and inserts the others, probing the key index in key order (a cost that follows
// the batch, not the table). Around it, the transaction's count of rows inserted into the
// table (its partitions') tells inserted rows from updated ones (MERGE's tag counts both),
// and the last statement also counts the staged rows, which must all be written.
func (s *Sink) mergeSQL(t *sinks.Table, sets []string) string {
	id := ident(t)
	inserted := fmt.Sprintf(`SELECT pg_stat_get_xact_tuples_inserted(%s::regclass)`, catalog.QuoteLiteral(id))
	if t.Partitioned {
		// A partitioned parent holds no rows: its partitions count them.
		inserted = fmt.Sprintf(`SELECT coalesce(sum(pg_stat_get_xact_tuples_inserted(relid)), 0)::int8 FROM pg_partition_tree(%s::regclass) WHERE isleaf`, catalog.QuoteLiteral(id))
	}
	prune := fmt.Sprintf(`DELETE FROM pg_temp.ibex_s s WHERE NOT EXISTS (SELECT 1 FROM pg_temp.ibex_k k WHERE %s)`, catalog.KeyJoin("s", "k", t.Key))
	merge := fmt.Sprintf(`MERGE INTO %s t USING (SELECT %s FROM pg_temp.ibex_s ORDER BY %s) s ON %s
WHEN MATCHED THEN UPDATE SET %s
WHEN NOT MATCHED THEN INSERT (%s) OVERRIDING SYSTEM VALUE VALUES (%s)`,
		id, catalog.QuoteCols("", t.Cols), catalog.QuoteCols("", t.Key), catalog.KeyJoin("t", "s", t.Key),
		strings.Join(sets, ", "), catalog.QuoteCols("", t.Cols), catalog.QuoteCols("s.", t.Cols))
	return prune + "; " + inserted + "; " + indexed(merge) + "; " + fmt.Sprintf(`SELECT (%s), (SELECT count(*) FROM pg_temp.ibex_s)`, inserted)
}
