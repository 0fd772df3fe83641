package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/dbconn"
	"github.com/ibexrepl/ibex/sinks"
)

// AddToSkipped loads the deltas of the counter columns cols for the keys of the batch
// (sinks.SkippedAdder) into pg_temp.ibex_c; applySource adds them to the rows of the keys
// it skipped. Only a source skips keys: a target ignores the call.
func (s *Sink) AddToSkipped(ctx context.Context, t *sinks.Table, cols []string, lines []string) error {
	if err := s.inTx(t); err != nil {
		return err
	}
	b, err := s.current(t)
	if err != nil {
		return s.errf(t, "adding counters of", err)
	}
	if s.src == nil || len(lines) == 0 || len(cols) == 0 {
		return nil
	}
	if !b.staged {
		return s.errf(t, "adding counters of", errors.New("no batch is being prepared"))
	}
	defs := make([]string, len(cols))
	names := make([]string, len(cols))
	for i := range cols {
		names[i] = deltaName(i)
		defs[i] = "NULL::numeric AS " + names[i]
	}
	keyCols := catalog.QuoteCols("", t.Key)
	mk := fmt.Sprintf(`DROP TABLE IF EXISTS pg_temp.ibex_c; CREATE TEMP TABLE ibex_c ON COMMIT DROP AS SELECT %s, %s FROM %s LIMIT 0`,
		keyCols, strings.Join(defs, ", "), ident(t))
	if _, err := dbconn.ExecAll(ctx, s.conn, mk); err != nil {
		return s.errf(t, "adding counters of", err)
	}
	if _, err := s.conn.PgConn().CopyFrom(ctx, sinks.LinesReader(lines), fmt.Sprintf(`COPY pg_temp.ibex_c (%s, %s) FROM STDIN`, keyCols, strings.Join(names, ", "))); err != nil {
		return s.errf(t, "loading counter deltas of", err)
	}
	b.adds = cols
	return nil
}

func deltaName(i int) string { return `"$` + strconv.Itoa(i+1) + `"` }

// addSkipped adds the deltas of pg_temp.ibex_c to the rows whose keys the batch skipped
// (no longer in pg_temp.ibex_k): it returns the rows it changed.
func (s *Sink) addSkipped(ctx context.Context, t *sinks.Table, cols []string) (int64, error) {
	sets := make([]string, len(cols))
	for i, c := range cols {
		q := pgx.Identifier{c}.Sanitize()
		sets[i] = fmt.Sprintf(`%s = coalesce(t.%s, 0) + c.%s`, q, q, deltaName(i))
	}
	// The keys the batch applied leave first (any join: ibex_c and ibex_k have no index),
	// then the rest probe the table's key index.
	if _, err := s.conn.Exec(ctx, fmt.Sprintf(`DELETE FROM pg_temp.ibex_c c USING pg_temp.ibex_k k WHERE %s`, catalog.KeyJoin("k", "c", t.Key))); err != nil {
		return 0, fmt.Errorf("adding counter deltas to the rows left out: %w", err)
	}
	tag, err := execIndexed(ctx, s.conn, fmt.Sprintf(`UPDATE %s t SET %s FROM pg_temp.ibex_c c WHERE %s`,
		ident(t), strings.Join(sets, ", "), catalog.KeyJoin("t", "c", t.Key)))
	if err != nil {
		return 0, fmt.Errorf("adding counter deltas to the rows left out: %w", err)
	}
	return tag.RowsAffected(), nil
}
