package job

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/capture"
	"github.com/ibexrepl/ibex/internal/sqlstate"
)

// prepareReceiver runs phase 2 on one receiver.
func (r *runner) prepareReceiver(ctx context.Context, m *member, t *table, keys []string) (int64, []string, error) {
	if err := r.begin(ctx, m); err != nil {
		return 0, nil, err
	}
	keyCols := quoteCols("", t.keyCols)
	source := m.isSource() && m.snap != ""
	temps := fmt.Sprintf(`DROP TABLE IF EXISTS pg_temp.ibex_k; CREATE TEMP TABLE ibex_k ON COMMIT DROP AS SELECT %s FROM %s LIMIT 0`, keyCols, t.ident)
	if source {
		// Rows for a source arrive in a stage table (see below).
		temps += fmt.Sprintf(`; DROP TABLE IF EXISTS pg_temp.ibex_s; CREATE TEMP TABLE ibex_s ON COMMIT DROP AS SELECT %s FROM %s LIMIT 0`, quoteCols("", t.cols), t.ident)
	}
	if _, err := execAll(ctx, m.conn, temps); err != nil {
		return 0, nil, err
	}
	if err := copyKeys(ctx, m.conn, "pg_temp.ibex_k", keyCols, keys); err != nil {
		return 0, nil, err
	}
	join := keyJoin("t", "k", t.keyCols)
	if !source {
		// A target: no application writes here, so delete now and COPY straight in.
		tag, err := execIndexed(ctx, m.conn, fmt.Sprintf(`DELETE FROM %s t USING %s k WHERE %s`, t.ident, orderedKeys("pg_temp.ibex_k", t, false), join))
		if err != nil {
			return 0, nil, err
		}
		return tag.RowsAffected(), nil, nil
	}
	// A source: keys its own application changed since the run's snapshot are left to the
	// next run (that change is newer), and rows arrive in a stage table: applySource writes
	// them with UPDATE semantics so that an application transaction waiting on one of
	// those rows applies its change on top instead of losing it.
	late, err := r.dropLate(ctx, m, t)
	if err != nil {
		return 0, nil, err
	}
	return 0, late, nil
}

// dropLate removes from the key list the keys this source's application changed since the
// run's snapshot, and returns them.
func (r *runner) dropLate(ctx context.Context, m *member, t *table) ([]string, error) {
	var late []string
	lw := &lineWriter{fn: func(line []byte) error { late = append(late, string(line)); return nil }}
	_, err := m.conn.PgConn().CopyTo(ctx, lw, capture.DropLateKeys("pg_temp.ibex_k", t.change, t.keyCols, m.snap))
	if len(late) > 0 {
		r.logger.Debug("keys changed on a receiver since the run began are left for the next run", slog.String("db", m.name), slog.String("table", t.name), slog.Int("keys", len(late)))
	}
	return late, err
}

// applySource writes the staged rows into a source's table: an upsert for rows the winner
// has, a delete for keys it no longer has. Under a savepoint, it then checks that the
// application changed none of those keys between dropLate and the writes (the writes hold
// the rows now); if it did, it rolls back to the savepoint, leaves those keys out and
// writes again. It returns rows written and rows deleted or replaced.
func (r *runner) applySource(ctx context.Context, m *member, t *table) (int64, int64, error) {
	cols := quoteCols("", t.cols)
	// Key columns are set too: 1.50 replaces an equal 1.5 (identity-always columns, which
	// cannot be updated, are integers and print one way only).
	identity := map[string]bool{}
	for _, c := range t.desc.Columns {
		identity[c.Name] = c.IdentityAlways
	}
	var sets []string
	for _, c := range t.cols {
		if identity[c] {
			continue
		}
		q := pgx.Identifier{c}.Sanitize()
		sets = append(sets, q+" = excluded."+q)
	}
	onConflict := "DO NOTHING"
	if len(sets) > 0 {
		onConflict = "DO UPDATE SET " + strings.Join(sets, ", ")
	}
	// The rows to write, and their number: every one must be written (a trigger or rule
	// dropping some would leave the receiver in a state no source had).
	nStaged := fmt.Sprintf(`SELECT count(*) FROM pg_temp.ibex_s s WHERE EXISTS (SELECT 1 FROM pg_temp.ibex_k k WHERE %s)`, keyJoin("s", "k", t.keyCols))
	staged := fmt.Sprintf(`SELECT %s FROM pg_temp.ibex_s s WHERE EXISTS (SELECT 1 FROM pg_temp.ibex_k k WHERE %s) ORDER BY %s`,
		quoteCols("s.", t.cols), keyJoin("s", "k", t.keyCols), quoteCols("s.", t.keyCols))
	// xmax <> 0 tells an updated row (it replaced one) from an inserted one.
	upsert := fmt.Sprintf(`WITH w AS (INSERT INTO %s AS t (%s) OVERRIDING SYSTEM VALUE %s ON CONFLICT (%s) %s RETURNING t.xmax <> 0 AS replaced)
SELECT count(*), count(*) FILTER (WHERE replaced), (%s) FROM w`, t.ident, cols, staged, quoteCols("", t.keyCols), onConflict, nStaged)
	// When the upsert cannot be used (rows swap the values of another unique column, which
	// a row-by-row update trips over), delete the keys and insert the rows instead.
	replace := fmt.Sprintf(`DELETE FROM %s t USING %s k WHERE %s`, t.ident, orderedKeys("pg_temp.ibex_k", t, false), keyJoin("t", "k", t.keyCols))
	insert := fmt.Sprintf(`WITH w AS (INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE %s RETURNING 1) SELECT count(*), (%s) FROM w`, t.ident, cols, staged, nStaged)
	gone := fmt.Sprintf(`DROP TABLE IF EXISTS pg_temp.ibex_gone; CREATE TEMP TABLE ibex_gone ON COMMIT DROP AS SELECT %s FROM pg_temp.ibex_k k WHERE NOT EXISTS (SELECT 1 FROM pg_temp.ibex_s s WHERE %s)`,
		quoteCols("k.", t.keyCols), keyJoin("s", "k", t.keyCols))
	del := fmt.Sprintf(`DELETE FROM %s t USING %s k WHERE %s`, t.ident, orderedKeys("pg_temp.ibex_gone", t, false), keyJoin("t", "k", t.keyCols))
	check := capture.CountLateChanges("pg_temp.ibex_k", t.change, t.keyCols, m.snap)
	// The rest after the upsert: delete the keys the winner no longer has, then count the
	// keys the application changed meanwhile.
	rest := gone + "; " + indexed(del) + "; " + check
	for attempt := 0; ; attempt++ {
		var written, replaced, deleted, changed, want int64
		res, err := execAll(ctx, m.conn, `SAVEPOINT ibex_apply; `+upsert+`; `+rest)
		if sqlstate.Is(err, sqlstate.UniqueViolation) {
			if _, err := m.conn.Exec(ctx, `ROLLBACK TO SAVEPOINT ibex_apply`); err != nil {
				return 0, 0, err
			}
			if res, err = execAll(ctx, m.conn, indexed(replace)+"; "+insert+"; "+rest); err != nil {
				return 0, 0, err
			}
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
		} else {
			if written, err = scalar(res[1], 0); err != nil {
				return 0, 0, err
			}
			if replaced, err = scalar(res[1], 1); err != nil {
				return 0, 0, err
			}
			if want, err = scalar(res[1], 2); err != nil {
				return 0, 0, err
			}
			if len(sets) == 0 {
				want = written // DO NOTHING: a row already there is left as it is
			}
			res = res[2:]
		}
		// res: DROP, CREATE (gone), SET, SET, DELETE, SET, SET, check
		if len(res) != 8 {
			return 0, 0, fmt.Errorf("applying %s: %d results, expected 8", t.name, len(res))
		}
		deleted = replaced + res[4].CommandTag.RowsAffected()
		if changed, err = scalar(res[7], 0); err != nil {
			return 0, 0, err
		}
		if written != want {
			return 0, 0, &rowCountError{db: m.name, written: written, sent: want}
		}
		if changed == 0 {
			// The savepoint stays until the batch commits.
			return written, deleted, nil
		}
		if attempt == 5 {
			return 0, 0, fmt.Errorf("the application keeps changing the rows of %s being applied: try again later", t.name)
		}
		if _, err := m.conn.Exec(ctx, `ROLLBACK TO SAVEPOINT ibex_apply`); err != nil {
			return 0, 0, err
		}
		if _, err := r.dropLate(ctx, m, t); err != nil {
			return 0, 0, err
		}
	}
}
