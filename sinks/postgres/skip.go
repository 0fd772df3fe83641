package postgres

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ibexrepl/ibex/internal/capture"
	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/dbconn"
	"github.com/ibexrepl/ibex/sinks"
)

// SkipRejected switches on_error=skip on (sinks.RowSkipper): batches are staged (targets
// too) and applied by applySkipping.
func (s *Sink) SkipRejected() { s.skip = true }

// Rejected returns the rows the last FinishBatch left out (sinks.RowSkipper).
func (s *Sink) Rejected() []sinks.Rejected { return s.rejected }

// keyNum is the column of pg_temp.ibex_kn numbering the batch's keys.
const keyNum = `"$n"`

// applySkipping applies a staged batch under on_error=skip. The keys are numbered, then
// applied by ranges, each under a savepoint: the whole batch first; a range the database
// refuses (isRowError) is rolled back and halved, down to single keys, whose refusal is
// recorded in s.rejected and left out: that receiver keeps what it had for the key. A
// batch with a few refused rows costs a few statements per refused row (about log2 of the
// batch's size). A target replaces the rows (delete, insert), or, when it gets some columns
// only or writes in place (t.Partial, t.InPlace), upserts them (the columns it does not get
// keep their values) and deletes the keys the winner no longer has; a source does the same
// as applySource does, and its application's changes to the keys meanwhile fail the batch
// (it is applied again next run). It returns
// rows written and rows deleted or replaced.
func (s *Sink) applySkipping(ctx context.Context, t *sinks.Table) (int64, int64, error) {
	keys := catalog.QuoteCols("", t.Key)
	prep := fmt.Sprintf(`DROP TABLE IF EXISTS pg_temp.ibex_kn; CREATE TEMP TABLE ibex_kn ON COMMIT DROP AS SELECT row_number() OVER (ORDER BY %[1]s) AS %[2]s, %[1]s FROM pg_temp.ibex_k;
CREATE INDEX ON pg_temp.ibex_kn (%[2]s); CREATE INDEX ON pg_temp.ibex_kn (%[1]s); CREATE INDEX ON pg_temp.ibex_s (%[1]s); ANALYZE pg_temp.ibex_kn; ANALYZE pg_temp.ibex_s`, keys, keyNum)
	if _, err := dbconn.ExecAll(ctx, s.conn, prep); err != nil {
		return 0, 0, err
	}
	var n int64
	if err := s.conn.QueryRow(ctx, `SELECT count(*) FROM pg_temp.ibex_kn`).Scan(&n); err != nil {
		return 0, 0, err
	}
	a := &skipApply{s: s, t: t, keys: keys}
	if err := a.apply(ctx, 1, n); err != nil {
		return 0, 0, err
	}
	if s.src != nil {
		var changed int64
		if err := s.conn.QueryRow(ctx, capture.CountLateChanges("pg_temp.ibex_k", s.src.ChangeTable(t), t.Key, s.src.Snapshot)).Scan(&changed); err != nil {
			return 0, 0, err
		}
		if changed > 0 {
			return 0, 0, errors.New("the application keeps changing the rows being applied: try again later")
		}
	}
	return a.written, a.deleted, nil
}

// skipApply is one applySkipping's progress.
type skipApply struct {
	s                *Sink
	t                *sinks.Table
	keys             string // the key columns, quoted
	written, deleted int64
}

// apply applies the keys numbered lo to hi, halving the range where the database refuses
// a row.
func (a *skipApply) apply(ctx context.Context, lo, hi int64) error {
	if lo > hi {
		return nil
	}
	err := a.try(ctx, lo, hi)
	if err == nil || !isRowError(err) {
		return err
	}
	if lo == hi {
		return a.reject(ctx, lo, err)
	}
	mid := lo + (hi-lo)/2
	if err := a.apply(ctx, lo, mid); err != nil {
		return err
	}
	return a.apply(ctx, mid+1, hi)
}

// try writes the range under a savepoint; on an error it rolls back to it. A source's
// upsert that trips over another unique column is tried again as a delete and insert.
func (a *skipApply) try(ctx context.Context, lo, hi int64) error {
	s, t := a.s, a.t
	in := fmt.Sprintf(`%s BETWEEN %d AND %d`, keyNum, lo, hi)
	rangeKeys := fmt.Sprintf(`(SELECT %s FROM pg_temp.ibex_kn WHERE %s)`, a.keys, in)
	staged := fmt.Sprintf(`SELECT %s FROM pg_temp.ibex_s s WHERE EXISTS (SELECT 1 FROM pg_temp.ibex_kn k WHERE k.%s AND %s)`,
		catalog.QuoteCols("s.", t.Cols), in, catalog.KeyJoin("s", "k", t.Key))
	nStaged := fmt.Sprintf(`SELECT count(*) FROM (%s) x`, staged)
	id, cols := ident(t), catalog.QuoteCols("", t.Cols)
	replace := []string{
		fmt.Sprintf(`DELETE FROM %s t USING %s k WHERE %s`, id, rangeKeys, catalog.KeyJoin("t", "k", t.Key)),
		fmt.Sprintf(`WITH w AS (INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE %s RETURNING 1) SELECT count(*), (%s) FROM w`, id, cols, staged, nStaged),
	}
	var doNothing bool // the upsert is ON CONFLICT DO NOTHING (no column to set)
	run := func(stmts []string, upsert bool) error {
		if _, err := s.conn.Exec(ctx, `SAVEPOINT ibex_try`); err != nil {
			return err
		}
		res, err := dbconn.ExecAll(ctx, s.conn, strings.Join(stmts, "; "))
		if err == nil {
			err = a.count(res, upsert, upsert && doNothing)
		}
		if err != nil {
			if _, rerr := s.conn.Exec(ctx, `ROLLBACK TO SAVEPOINT ibex_try`); rerr != nil {
				return rerr
			}
			return err
		}
		_, err = s.conn.Exec(ctx, `RELEASE SAVEPOINT ibex_try`)
		return err
	}
	if s.src == nil && !t.Partial && !t.InPlace {
		return run(replace, false)
	}
	// As applySource: every column written is set (keys too), but identity-always ones.
	identity := map[string]bool{}
	for _, c := range t.Columns {
		identity[c.Name] = c.IdentityAlways
	}
	var sets []string
	for _, c := range t.Cols {
		if !identity[c] {
			q := pgx.Identifier{c}.Sanitize()
			sets = append(sets, q+" = excluded."+q)
		}
	}
	onConflict := "DO NOTHING"
	if len(sets) > 0 {
		onConflict = "DO UPDATE SET " + strings.Join(sets, ", ")
	}
	doNothing = len(sets) == 0
	returning, nReplaced := replacedCount(t, len(sets) > 0)
	upsert := []string{
		fmt.Sprintf(`WITH w AS (INSERT INTO %s AS t (%s) OVERRIDING SYSTEM VALUE %s ON CONFLICT (%s) %s %s) SELECT count(*), (%s), %s FROM w`,
			id, cols, staged, a.keys, onConflict, returning, nStaged, nReplaced),
		fmt.Sprintf(`DELETE FROM %s t USING (SELECT %s FROM pg_temp.ibex_kn k WHERE %s AND NOT EXISTS (SELECT 1 FROM pg_temp.ibex_s s WHERE %s)) k WHERE %s`,
			id, catalog.QuoteCols("k.", t.Key), in, catalog.KeyJoin("s", "k", t.Key), catalog.KeyJoin("t", "k", t.Key)),
	}
	err := run(upsert, true)
	if isCode(err, uniqueViolation) {
		return run(replace, false)
	}
	return err
}

// count adds what a range wrote: res are the results of the delete and insert (replace)
// or of the upsert and delete. Every staged row must be written.
func (a *skipApply) count(res []*pgconn.Result, upsert, doNothing bool) error {
	if len(res) != 2 {
		return fmt.Errorf("%d results, expected 2", len(res))
	}
	ins, del := res[1], res[0]
	if upsert {
		ins, del = res[0], res[1]
	}
	written, err := scalar(ins, 0)
	if err != nil {
		return err
	}
	want, err := scalar(ins, 1)
	if err != nil {
		return err
	}
	deleted := del.CommandTag.RowsAffected()
	if upsert {
		replaced, err := scalar(ins, 2)
		if err != nil {
			return err
		}
		deleted += replaced
		if doNothing {
			want = written // DO NOTHING: a row already there is left as it is
		}
	}
	if written != want {
		return &sinks.RowCountError{DB: a.s.db, Written: written, Sent: want}
	}
	a.written += written
	a.deleted += deleted
	return nil
}

// reject records key number i as refused, with its row and the database's error.
func (a *skipApply) reject(ctx context.Context, i int64, cause error) error {
	t := a.t
	var key, row []string
	kw := sinks.NewLineWriter(func(line []byte) error { key = append(key, string(line)); return nil })
	if _, err := a.s.conn.PgConn().CopyTo(ctx, kw, fmt.Sprintf(`COPY (SELECT %s FROM pg_temp.ibex_kn WHERE %s = %d) TO STDOUT`, a.keys, keyNum, i)); err != nil {
		return err
	}
	rw := sinks.NewLineWriter(func(line []byte) error { row = append(row, string(line)); return nil })
	if _, err := a.s.conn.PgConn().CopyTo(ctx, rw, fmt.Sprintf(`COPY (SELECT %s FROM pg_temp.ibex_s s JOIN pg_temp.ibex_kn k ON %s WHERE k.%s = %d) TO STDOUT`,
		catalog.QuoteCols("s.", t.Cols), catalog.KeyJoin("s", "k", t.Key), keyNum, i)); err != nil {
		return err
	}
	r := sinks.Rejected{Key: strings.Join(key, ""), Row: strings.Join(row, "\n"), Error: cause.Error()}
	a.s.rejected = append(a.s.rejected, r)
	return nil
}

// typmod is a type modifier in format_type() text: (5), (10,2).
var typmod = regexp.MustCompile(`\(\s*\d+\s*(,\s*-?\d+\s*)?\)`)

// looseType is typ (format_type() text) without its modifier: a value too long for
// varchar(5) or too large for numeric(4,2) is then staged, and refused (and parked) by the
// table instead of failing the batch's COPY.
func looseType(typ string) string {
	out := strings.Join(strings.Fields(typmod.ReplaceAllString(typ, "")), " ")
	base, arr := strings.CutSuffix(out, "[]")
	switch base {
	case "character":
		base = "bpchar" // "character" alone is character(1)
	case "bit":
		base = "bit varying" // "bit" alone is bit(1)
	}
	if arr {
		base += "[]"
	}
	return base
}

// looseColumns is the select list staging t's columns under on_error=skip: each cast to
// its type in this database without modifier.
func (s *Sink) looseColumns(ctx context.Context, t *sinks.Table) (string, error) {
	rows, err := s.conn.Query(ctx, `SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped`, ident(t))
	if err != nil {
		return "", err
	}
	types := map[string]string{}
	var name, typ string
	if _, err := pgx.ForEachRow(rows, []any{&name, &typ}, func() error { types[name] = typ; return nil }); err != nil {
		return "", err
	}
	sel := make([]string, len(t.Cols))
	for i, c := range t.Cols {
		q := pgx.Identifier{c}.Sanitize()
		sel[i] = q
		if typ, ok := types[c]; ok && typmod.MatchString(typ) {
			sel[i] = fmt.Sprintf(`%s::%s AS %s`, q, looseType(typ), q)
		}
	}
	return strings.Join(sel, ", "), nil
}
