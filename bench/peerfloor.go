package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/dbconn"
)

// ---- the peers section's plain-SQL floor
//
// Before ibex's catch-up of a backlog, the changed keys of every table are read from the
// source's change tables. After the catch-up the same rows are applied again to the target
// by plain SQL, no replication logic: one session, one transaction, session_replication_role
// = replica, for each table DELETE ... WHERE key = ANY($1) then COPY FROM STDIN fed by COPY
// (SELECT ...) TO STDOUT on the source (the seed section's floor, across two clusters: same
// rows, same dbs, after the kick; the target's content does not change).
// It is what PostgreSQL itself needs to take these rows on one session: the limit that a
// catch-up applying final row states faces, whatever the replication system.

// peerFloorPrep is what the floor of one backlog needs: the changed keys per table.
type peerFloorPrep struct {
	keys map[string][]int64
}

// prepFloor reads the changed keys from the source's change tables.
func (b *bench) prepFloor(ctx context.Context, p *peerSet) (*peerFloorPrep, error) {
	fp := &peerFloorPrep{keys: map[string][]int64{}}
	for _, t := range peerTables {
		rows, _ := p.srcConn.Query(ctx, `SELECT DISTINCT `+pgx.Identifier{t.key}.Sanitize()+`::bigint FROM `+changeTable(t.name))
		keys, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return nil, fmt.Errorf("floor: reading the changed keys of %s from %s: %w", t.name, p.src, err)
		}
		fp.keys[t.name] = keys
	}
	return fp, nil
}

// floor applies the prepared keys' current rows of the source to the target and returns
// how long that took (connections opened before the clock starts).
func (b *bench) floor(ctx context.Context, label string, p *peerSet, fp *peerFloorPrep) (time.Duration, error) {
	src, err := p.s.db.connect(ctx, p.src)
	if err != nil {
		return 0, err
	}
	defer src.Close(context.WithoutCancel(ctx))
	dst, err := p.t.db.connect(ctx, p.tgt)
	if err != nil {
		return 0, err
	}
	defer dst.Close(context.WithoutCancel(ctx))
	if _, err := dst.Exec(ctx, dbconn.WALCompressionSQL(dbconn.ServerMajor(dst.PgConn()))); err != nil {
		return 0, fmt.Errorf("floor: wal_compression: %w", err)
	}
	var deleted, wrote int64
	t0 := time.Now()
	// As the seed floor: a generic plan for DELETE ... = ANY($1) (no per-element estimates).
	for _, q := range []string{`BEGIN`, `SET LOCAL session_replication_role = replica`, `SET LOCAL plan_cache_mode = force_generic_plan`} {
		if _, err := dst.Exec(ctx, q); err != nil {
			return 0, fmt.Errorf("floor: %s: %w", q, err)
		}
	}
	for _, t := range peerTables {
		keys := fp.keys[t.name]
		if len(keys) == 0 {
			continue
		}
		tbl, key := pgx.Identifier{t.name}.Sanitize(), pgx.Identifier{t.key}.Sanitize()
		ts := time.Now()
		tag, err := dst.Exec(ctx, `DELETE FROM `+tbl+` WHERE `+key+` = ANY($1::bigint[])`, keys)
		if err != nil {
			return 0, fmt.Errorf("floor: DELETE from %s: %w", t.name, err)
		}
		deleted += tag.RowsAffected()
		// The keys as a runtime array (ARRAY(SELECT unnest(...))): see env.floor.
		out := `COPY (SELECT * FROM ` + tbl + ` WHERE ` + key + ` = ANY(ARRAY(SELECT unnest(` + int64Array(keys) + `)))) TO STDOUT`
		n, err := pipeCopy(ctx, src, dst, out, `COPY `+tbl+` FROM STDIN`)
		if err != nil {
			return 0, fmt.Errorf("floor: COPY %s: %w", t.name, err)
		}
		wrote += n
		if debug {
			progress("  floor %s: %d keys, %.3f s", t.name, len(keys), time.Since(ts).Seconds())
		}
	}
	if _, err := dst.Exec(ctx, `COMMIT`); err != nil {
		return 0, fmt.Errorf("floor: COMMIT: %w", err)
	}
	dur := time.Since(t0)
	progress("%s: plain-SQL floor (one session, DELETE + COPY per table) %.3f s: %d rows deleted, %d written", label, dur.Seconds(), deleted, wrote)
	return dur, nil
}

// int64Array is keys as an int8[] literal.
func int64Array(keys []int64) string {
	b := make([]byte, 0, 2+len(keys)*8+10)
	b = append(b, "'{"...)
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, k, 10)
	}
	return string(append(b, "}'::int8[]"...))
}
