package capture

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/ibexrepl/ibex/internal/catalog"
)

// The statements a run uses on the change rows of a source: count, read, consume and purge
// them. They are built here, next to the DDL that makes change tables, so that the change
// format has one owner. The builders take what a run knows as plain values:
//
//   - changeTable: the quoted change table (ChangeTable(...).Sanitize());
//   - keys: the key columns of the captured table, unquoted, in key order;
//   - snapshot: the run's snapshot of the source (pg_current_snapshot()::text): the
//     changes a run handles are those visible in it;
//   - watermarks: one entry per receiver the run writes to, in a fixed order, the snapshot
//     of the source (as text) up to which that receiver has applied the source's changes;
//     "" for a receiver without one (every change is pending for it);
//   - bucket: a condition already rendered as SQL on the change table's columns, which the
//     statements name Alias (d."id" >= 100, or a hash of the key): "true" for all rows.
//
// Snapshots are written as literals; identifiers are quoted.

// Alias is the name the statements give the change table: a bucket condition refers to
// its columns as d."col".
const Alias = "d"

// visibleIn is the condition "the change row (prefix is "d." or "") was committed as of
// the snapshot snap", an SQL expression of type pg_snapshot.
func visibleIn(prefix, snap string) string {
	return fmt.Sprintf(`pg_visible_in_snapshot(%s%s, %s)`, prefix, qi(TxidCol), snap)
}

// pendingAt is PendingCond as of snap, an SQL expression of type pg_snapshot: visible
// in it and not applied by every receiver (appliedAt).
func pendingAt(prefix, snap string, watermarks []string) string {
	if len(watermarks) == 0 {
		return "false"
	}
	cond := visibleIn(prefix, snap)
	if applied := appliedAt(prefix, watermarks); applied != "" {
		cond += " AND NOT (" + applied + ")"
	}
	return cond
}

// PendingCond is the condition selecting the change rows (named Alias) that a run handles
// on a source: visible in the run's snapshot and not yet applied by every receiver (not
// visible in every watermark). With no receivers, nothing is pending: "false".
func PendingCond(snapshot string, watermarks []string) string {
	return pendingAt(Alias+".", catalog.QuoteLiteral(snapshot), watermarks)
}

// CountPending counts the pending change rows (PendingCond) of changeTable.
func CountPending(changeTable, snapshot string, watermarks []string) string {
	return countPendingAt(changeTable, catalog.QuoteLiteral(snapshot), watermarks)
}

func countPendingAt(changeTable, snap string, watermarks []string) string {
	return `SELECT count(*) FROM ` + changeTable + ` ` + Alias + ` WHERE ` + pendingAt(Alias+".", snap, watermarks)
}

// SnapshotAndCounts takes the source's snapshot and counts, as of it, the pending change
// rows of each of changeTables: one row of the snapshot as text, an int8 array of the
// counts (every change row, TRUNCATEs too) and an int8 array of the pending TRUNCATEs,
// both in the order of changeTables. Each change table is scanned once.
func SnapshotAndCounts(changeTables []string, watermarks []string) string {
	all := make([]string, len(changeTables))
	truncs := make([]string, len(changeTables))
	from := []string{`(SELECT pg_current_snapshot() AS s) x`}
	for i, ct := range changeTables {
		c := "c" + strconv.Itoa(i)
		all[i], truncs[i] = c+".n", c+".t"
		from = append(from, `LATERAL (SELECT count(*) AS n, count(*) FILTER (WHERE `+isTruncate(Alias+".")+`) AS t FROM `+
			ct+` `+Alias+` WHERE `+pendingAt(Alias+".", "x.s", watermarks)+`) `+c)
	}
	return `SELECT x.s::text, ARRAY[` + strings.Join(all, ", ") + `]::int8[], ARRAY[` + strings.Join(truncs, ", ") + `]::int8[] FROM ` + strings.Join(from, ", ")
}

// isRow and isTruncate tell a row change from a TRUNCATE (prefix is "d." or "").
func isRow(prefix string) string {
	return prefix + qi(OpCol) + ` <> ` + catalog.QuoteLiteral(OpTruncate)
}

func isTruncate(prefix string) string {
	return prefix + qi(OpCol) + ` = ` + catalog.QuoteLiteral(OpTruncate)
}

// microseconds renders a change time as read by KeyRead and TruncateRead (microseconds
// since the epoch) as a timestamptz.
func microseconds(us int64) string {
	return fmt.Sprintf(`('epoch'::timestamptz + %d * interval '1 microsecond')`, us)
}

// TruncateRead reads the pending TRUNCATEs of changeTable: one row of len(watermarks)+1
// int8 values, microseconds since the epoch or NULL: for each watermark, in their order,
// the time of the latest TRUNCATE that receiver has not applied yet; then the time of the
// latest pending TRUNCATE (not yet applied by every receiver).
func TruncateRead(changeTable, snapshot string, watermarks []string) string {
	d := Alias + "."
	epoch := func(filter string) string {
		if filter == "" {
			return fmt.Sprintf(`(extract(epoch FROM max(%s)) * 1000000)::bigint`, d+qi(AtCol))
		}
		return fmt.Sprintf(`(extract(epoch FROM max(%s) FILTER (WHERE %s)) * 1000000)::bigint`, d+qi(AtCol), filter)
	}
	var cols []string
	for _, wm := range watermarks {
		if wm == "" {
			cols = append(cols, epoch(""))
			continue
		}
		cols = append(cols, epoch(`NOT `+visibleIn(d, catalog.QuoteLiteral(wm))))
	}
	cols = append(cols, epoch(""))
	return fmt.Sprintf(`SELECT %s FROM %s %s WHERE %s AND %s`, strings.Join(cols, ", "), changeTable, Alias, isTruncate(d), PendingCond(snapshot, watermarks))
}

// ConsumeTruncated deletes, once every receiver has applied them, the TRUNCATEs of
// changeTable visible in the run's snapshot and the row changes made at or before deadUpTo
// (microseconds since the epoch; 0: none), which those TRUNCATEs made void.
func ConsumeTruncated(changeTable, snapshot string, deadUpTo int64) string {
	d := Alias + "."
	which := isTruncate(d)
	if deadUpTo > 0 {
		which = `(` + which + ` OR ` + d + qi(AtCol) + ` <= ` + microseconds(deadUpTo) + `)`
	}
	return fmt.Sprintf(`DELETE FROM %s %s WHERE %s AND %s`, changeTable, Alias, which, visibleIn(d, catalog.QuoteLiteral(snapshot)))
}

// ChangedAfter is the condition "the row (named alias, with key columns keys) was changed
// by the db's own application after the time at" (microseconds since the epoch), on a
// source whose change table is changeTable: whatever the run's snapshot, so that a change
// committed while a run goes on counts.
func ChangedAfter(changeTable, alias string, keys []string, at int64) string {
	return fmt.Sprintf(`EXISTS (SELECT 1 FROM %s %s WHERE %s AND %s > %s AND %s)`,
		changeTable, Alias, isRow(Alias+"."), Alias+"."+qi(AtCol), microseconds(at), catalog.KeyJoin(alias, Alias, keys))
}

// LateDeltas is the query of the deltas of counters that this source's application
// committed after the run's snapshot, summed by key: a row read while the application goes
// on may hold such changes, which are pending for the next run, and sending them now as
// well would count them twice. It returns one row, one jsonb column "j": an object whose
// names are the keys as row text (ROW(key columns)::text) and whose values are arrays of
// the sums, one per counter in their order. Read it in the same statement as the rows
// (CounterAsOf), so that both are of the same moment; as one row it joins the rows without
// a join strategy (the read sessions allow only nested loops), each lookup a jsonb probe.
func LateDeltas(changeTable string, keys, counters []string, snapshot string) string {
	d := Alias + "."
	cols := catalog.QuoteCols(d, keys)
	sums := make([]string, len(counters))
	for i, c := range counters {
		sums[i] = fmt.Sprintf(`sum(%s)`, d+qi(DeltaCol(c)))
	}
	return fmt.Sprintf(`SELECT coalesce(jsonb_object_agg(k, v), '{}') AS j FROM (SELECT ROW(%s)::text AS k, jsonb_build_array(%s) AS v FROM %s %s WHERE %s AND NOT %s GROUP BY %s) x`,
		cols, strings.Join(sums, ", "), changeTable, Alias, isRow(d), visibleIn(d, catalog.QuoteLiteral(snapshot)), cols)
}

// CounterAsOf is the value of counter column col (the i-th counter, of type typ) of the row
// named alias, whose key columns are keys, as of the run's snapshot: its value minus the
// late deltas of its key (LateDeltas, joined as late); the value as it is when there are
// none.
func CounterAsOf(alias, late string, keys []string, i int, col, typ string) string {
	l := fmt.Sprintf(`(%s.j -> ROW(%s)::text ->> %d)`, late, catalog.QuoteCols(alias+".", keys), i)
	v := alias + "." + qi(col)
	return fmt.Sprintf(`CASE WHEN %[1]s IS NULL THEN %[2]s ELSE (coalesce(%[2]s, 0) - %[1]s::numeric)::%[3]s END`, l, v, typ)
}

// KeyQuantiles samples the distribution of the pending change rows of changeTable, whose
// key is the one column key: it returns one row of the number of pending rows and n keys
// (percentile_disc of the key, as text[]) at the fractions 1/n, 2/n, ..., n/n of them (the
// last is the largest key), so that each marks the end of a range holding about 1/n of the
// rows.
func KeyQuantiles(changeTable, key string, n int, snapshot string, watermarks []string) string {
	fracs := make([]string, max(n, 0))
	for i := range fracs {
		fracs[i] = strconv.FormatFloat(float64(i+1)/float64(n), 'f', -1, 64)
	}
	return fmt.Sprintf(`SELECT count(*), percentile_disc(ARRAY[%s]::float8[]) WITHIN GROUP (ORDER BY %s)::text[] FROM %s %s WHERE %s`,
		strings.Join(fracs, ","), Alias+"."+qi(key), changeTable, Alias, PendingCond(snapshot, watermarks)+" AND "+isRow(Alias+"."))
}

// KeyRead is the COPY TO STDOUT reading the pending changed keys (row changes, not
// TRUNCATEs) of one bucket of changeTable, one line per key: the key columns, the time of
// its latest change (max "$at", microseconds since the epoch), whether its first pending
// change is an insert and whether its last is a delete (t or f: what the changes did to
// the row, for a conflict's type), then one flag per watermark, in their order: t when
// that receiver has not applied some change of the key yet (always t without a watermark).
//
// With counters (the table's counter columns, whose deltas the change table records), each
// line ends with one sum per counter and watermark, counter by counter, watermarks in their
// order: the sum of the deltas of the key's changes that receiver has not applied yet
// (numeric or float8 text), NULL (\N) when one of them has no delta (captured before the
// column was a counter).
//
// With columns (conflict_detect=columns), each line ends with the names of the columns the
// key's pending updates changed, separated by ColsSep (see ColsCol), or NULL when an insert
// or delete is among them.
//
// KeyReadOld is KeyRead whose lines then end, with old, with the old row (OldCol, JSON) of
// the key's first pending change, NULL when that change is an insert or when the change
// table does not record old rows.
//
// Keys are grouped by their text: equal values that print differently (1.5, 1.50) are
// different keys to a run, which matches rows by their text. With keyRange, bucket is a
// range of a key that prints one way only (an integer or uuid), grouped as it is, and it
// comes before the visibility checks: it is cheaper and leaves out most rows of a large
// backlog (the planner keeps the order of equally cheap conditions).
func KeyRead(changeTable string, keys []string, snapshot string, watermarks []string, bucket string, keyRange bool, counters []string, columns bool) string {
	return KeyReadOld(changeTable, keys, snapshot, watermarks, bucket, keyRange, counters, columns, false)
}

// KeyReadOld: see KeyRead.
func KeyReadOld(changeTable string, keys []string, snapshot string, watermarks []string, bucket string, keyRange bool, counters []string, columns, old bool) string {
	d := Alias + "."
	var flags []string
	for _, wm := range watermarks {
		if wm == "" {
			flags = append(flags, "true")
			continue
		}
		flags = append(flags, fmt.Sprintf(`bool_or(NOT %s)`, visibleIn(d, catalog.QuoteLiteral(wm))))
	}
	for _, c := range counters {
		dc := d + qi(DeltaCol(c))
		for _, wm := range watermarks {
			pend := "true"
			if wm != "" {
				pend = "NOT " + visibleIn(d, catalog.QuoteLiteral(wm))
			}
			flags = append(flags, fmt.Sprintf(`CASE WHEN count(*) FILTER (WHERE %[1]s AND %[2]s IS NULL) = 0 THEN coalesce(sum(%[2]s) FILTER (WHERE %[1]s), 0) END`, pend, dc))
		}
	}
	if columns {
		// The columns the key's pending updates changed, names separated by ColsSep; NULL
		// when an insert or delete (or a change captured before) touched every column.
		cc := d + qi(ColsCol)
		flags = append(flags, fmt.Sprintf(`CASE WHEN bool_or(%[1]s IS NULL) THEN NULL ELSE coalesce(string_agg(array_to_string(%[1]s, E'\x1f'), E'\x1f'), '') END`, cc))
	}
	if old {
		// The first pending change's: the row as it was before the source's changes.
		flags = append(flags, fmt.Sprintf(`(array_agg(%s ORDER BY %s, %s))[1]::text`, d+qi(OldCol), d+qi(AtCol), d+qi(TxidCol)))
	}
	var pick, group []string
	for _, k := range keys {
		q := d + qi(k)
		if keyRange {
			pick, group = append(pick, q), append(group, q)
			continue
		}
		pick = append(pick, "(array_agg("+q+"))[1]")
		group = append(group, q+"::text")
	}
	where := PendingCond(snapshot, watermarks) + " AND " + bucket + " AND " + isRow(d)
	if keyRange {
		where = bucket + " AND " + PendingCond(snapshot, watermarks) + " AND " + isRow(d)
	}
	at := d + qi(AtCol)
	// Whether the key's first pending change is an insert, whether its last is a delete.
	kind := fmt.Sprintf(`coalesce(min(%[1]s) FILTER (WHERE %[2]s = %[3]s) = min(%[1]s), false), coalesce(max(%[1]s) FILTER (WHERE %[2]s = %[4]s) = max(%[1]s), false)`,
		at, d+qi(OpCol), catalog.QuoteLiteral(OpInsert), catalog.QuoteLiteral(OpDelete))
	return fmt.Sprintf(`COPY (SELECT %s, (extract(epoch FROM max(%s)) * 1000000)::bigint, %s, %s FROM %s %s WHERE %s GROUP BY %s) TO STDOUT`,
		strings.Join(pick, ", "), at, kind, strings.Join(flags, ", "), changeTable, Alias, where, strings.Join(group, ", "))
}

// KeyReadRows is KeyRead without the grouping, for a key of one column that prints one
// way only (an integer or uuid) and a table without counters or conflict_detect=columns:
// one line per pending change row instead of one per key, which the caller merges by key
// (the server's hash aggregate of a large batch costs more than the scan it groups). It
// is a COPY in binary format (the key and the time are sent as stored, not printed: the
// time's text as microseconds cost the server about as much as the rest of the scan),
// each tuple: the key, the change's time (timestamptz), its operation (OpCol, "char":
// one byte, OpInsert, OpUpdate, OpDelete or OpRow), then one boolean per watermark, in
// their order: true when that receiver has not applied the change (always true without a
// watermark, and when every watermark is the same: the condition itself says so). With
// keyRange, bucket comes before the visibility checks, as in KeyRead.
func KeyReadRows(changeTable, key, snapshot string, watermarks []string, bucket string, keyRange bool) string {
	d := Alias + "."
	// A flag whose check is the whole applied condition (every receiver at the same
	// watermark: a single receiver, or all of them served by the same runs) is what the
	// pending condition says already: true, sent as a constant rather than checked again
	// per row.
	applied := appliedAt(d, watermarks)
	var flags []string
	for _, wm := range watermarks {
		c := visibleIn(d, catalog.QuoteLiteral(wm))
		if wm == "" || c == applied {
			flags = append(flags, "true")
			continue
		}
		flags = append(flags, "NOT "+c)
	}
	where := PendingCond(snapshot, watermarks) + " AND " + bucket + " AND " + isRow(d)
	if keyRange {
		where = bucket + " AND " + PendingCond(snapshot, watermarks) + " AND " + isRow(d)
	}
	sel := []string{d + qi(key), d + qi(AtCol), d + qi(OpCol)}
	return fmt.Sprintf(`COPY (SELECT %s FROM %s %s WHERE %s) TO STDOUT (FORMAT binary)`, strings.Join(append(sel, flags...), ", "), changeTable, Alias, where)
}

// Consume deletes the change rows of the buckets a run has committed on every db: those of
// bucket visible in the run's snapshot.
func Consume(changeTable, bucket, snapshot string) string {
	return fmt.Sprintf(`DELETE FROM %s %s WHERE %s AND %s`, changeTable, Alias, bucket, visibleIn(Alias+".", catalog.QuoteLiteral(snapshot)))
}

// Purge deletes the change rows every receiver has applied: those visible in all
// watermarks (one per receiver of the source). It returns "" when there is nothing it may
// delete (no receivers, or one without a watermark).
func Purge(changeTable string, watermarks []string) string {
	cond := appliedCond(watermarks)
	if cond == "" {
		return ""
	}
	return `DELETE FROM ` + changeTable + ` WHERE ` + cond
}

// appliedCond is the condition of the change rows every receiver has applied (visible in
// all watermarks), "" when none may be removed (no receivers, or one without a watermark).
func appliedCond(watermarks []string) string { return appliedAt("", watermarks) }

// appliedAt is appliedCond for change rows named by prefix. Receivers that took part in
// the same runs share a watermark: it is said once.
func appliedAt(prefix string, watermarks []string) string {
	var conds []string
	for _, wm := range watermarks {
		if wm == "" {
			return ""
		}
		if c := visibleIn(prefix, catalog.QuoteLiteral(wm)); !slices.Contains(conds, c) {
			conds = append(conds, c)
		}
	}
	return strings.Join(conds, " AND ")
}

// TruncateMaxBytes is the largest change table PurgeAll empties with TRUNCATE: the check
// that it holds nothing else reads the whole table while the application's writes into it
// wait (about 2,000 pages: some 250,000 change rows, tens of milliseconds).
const TruncateMaxBytes = 16 << 20

// PurgeAll is Purge for a change table a run removed many rows of: when it holds no other
// row (nothing a receiver still lacks: every row visible in all watermarks), is at most
// TruncateMaxBytes, and no other session holds a lock on it (no transaction that wrote to
// the captured table is open: LOCK ... NOWAIT), it is emptied by TRUNCATE, a few WAL
// records instead of one per row and no dead rows left behind; otherwise its applied rows
// are deleted as Purge does, after the block's lock is let go. It is one transaction
// (BEGIN; DO; COMMIT), so that the lock lasts only that long.
func PurgeAll(changeTable string, watermarks []string) string {
	cond := appliedCond(watermarks)
	if cond == "" {
		return ""
	}
	body := fmt.Sprintf(`
BEGIN
  IF pg_relation_size(%s::regclass) <= %d THEN
    BEGIN
      LOCK TABLE %s IN ACCESS EXCLUSIVE MODE NOWAIT;
      IF EXISTS (SELECT 1 FROM %s WHERE NOT (%s)) THEN
        RAISE SQLSTATE 'IBXP1';
      END IF;
      TRUNCATE %s;
      RETURN;
    EXCEPTION WHEN lock_not_available OR insufficient_privilege OR SQLSTATE 'IBXP1' THEN
      NULL; -- the lock is let go with the block
    END;
  END IF;
  DELETE FROM %s WHERE %s;
END`, catalog.QuoteLiteral(changeTable), TruncateMaxBytes, changeTable, changeTable, cond, changeTable, changeTable, cond)
	tag := dollarTag(body)
	return `BEGIN; DO ` + tag + body + tag + `; COMMIT`
}

// Vacuum is the VACUUM that frees the space of change tables' purged rows once a run has
// removed many: until then every scan of a table (each run counts, reads and purges it)
// steps over the dead rows, and a run after a large backlog took several times as long
// until autovacuum came by. One statement for all the tables (a list); SKIP_LOCKED: a
// table another session holds a conflicting lock on is left alone (for the next run, or
// autovacuum); VACUUM never blocks the application's writes.
func Vacuum(changeTables ...string) string {
	return `VACUUM (SKIP_LOCKED) ` + strings.Join(changeTables, ", ")
}

// DropLateKeys is the COPY TO STDOUT that, on a source receiving rows, deletes from
// keyTable (a table of keys, named k) the keys the source's own application changed
// after the run's snapshot (their change rows are not visible in it: that change is newer
// and left to the next run), and prints them (key columns, tab-separated).
func DropLateKeys(keyTable, changeTable string, keys []string, snapshot string) string {
	ret := make([]string, len(keys))
	for i, k := range keys {
		ret[i] = "k." + qi(k)
	}
	return fmt.Sprintf(`COPY (DELETE FROM %s k USING %s %s WHERE %s AND NOT %s RETURNING %s) TO STDOUT`,
		keyTable, changeTable, Alias, catalog.KeyJoin("k", Alias, keys), visibleIn(Alias+".", catalog.QuoteLiteral(snapshot)), strings.Join(ret, ", "))
}

// CountLateChanges counts the change rows of the keys of keyTable (named k) that the
// source's application wrote after the run's snapshot: on a source receiving rows, a
// count above 0 after the writes means the application changed some of those keys
// meanwhile.
func CountLateChanges(keyTable, changeTable string, keys []string, snapshot string) string {
	return fmt.Sprintf(`SELECT count(*) FROM %s k JOIN %s %s ON %s WHERE NOT %s`,
		keyTable, changeTable, Alias, catalog.KeyJoin("k", Alias, keys), visibleIn(Alias+".", catalog.QuoteLiteral(snapshot)))
}

// ColsSep separates column names in KeyRead's changed columns (a unit separator, which
// COPY text leaves as it is).
const ColsSep = "\x1f"

// ChangedKeys lists the key columns (named as in the table) of every change row of
// changeTable that is a row change (ibex compare: a key with a change row is in flight;
// change rows are purged once every receiver has them).
func ChangedKeys(changeTable string, keys []string) string {
	return `SELECT ` + catalog.QuoteCols(Alias+".", keys) + ` FROM ` + changeTable + ` ` + Alias + ` WHERE ` + isRow(Alias+".")
}

// HasTruncate says whether changeTable holds a TRUNCATE (one boolean).
func HasTruncate(changeTable string) string {
	return `SELECT EXISTS (SELECT 1 FROM ` + changeTable + ` ` + Alias + ` WHERE ` + isTruncate(Alias+".") + `)`
}

// PendingStats counts the change rows of changeTable and gives the time of the oldest
// (NULL when none): a source's lag for one table (ibex status).
func PendingStats(changeTable string) string {
	return `SELECT count(*), min(` + Alias + `.` + qi(AtCol) + `) FROM ` + changeTable + ` ` + Alias
}
