package capture

import (
	"fmt"
	"strconv"

	"github.com/ibexrepl/ibex/internal/catalog"
)

// The format of change tables (their bookkeeping columns, see columns) has a version.
// Format 1 is "$txid" xid8, "$at" timestamptz, then the key columns: the format of every
// change table made before versions were recorded, which carry no version. Format 2 adds
// "$op" "char" (OpInsert, OpUpdate, OpDelete; OpTruncate for a captured TRUNCATE, whose
// key columns are NULL; OpRow for the rows of format 1 it migrates);
// a table migrated from format 1 has it after the key columns, one made afresh before
// them: statements name columns, never rely on their order.
//
// The version is recorded in the change table's COMMENT, as "ibex change table (format N)
// of sync S for table T", rather than in a table of its own (say ibex.capture_format):
//   - it is read in the same query as the rest of the capture's state (obj_description),
//     so QueueInstalled still costs no round trip of its own;
//   - it lives and dies with the change table: DROP TABLE, DROP SCHEMA ibex CASCADE, a
//     dump and restore or a DBA dropping a change table by hand leave no version behind
//     that speaks of a table that is gone, and no other object needs creating, granting
//     or cleaning up on every source;
//   - it is written in the same transaction as the DDL that makes the format true, by the
//     role that owns the change table (COMMENT needs ownership: the application roles
//     that write the change table cannot change it).
//
// A comment without the marker (an older ibex's, or one a DBA rewrote) reads as format 1.

// Migration takes a change table from one format version to the next, in place: its rows,
// the pending changes, are kept. A migration that adds or drops a bookkeeping column also
// changes columns, so that a change table made afresh has the same format.
type Migration struct {
	// Summary says what the migration changes.
	Summary string
	// SQL returns the statements applied to the change table ct (quoted) of table t, in
	// the transaction that then reinstalls capture (DDL). They should be safe to run again
	// on a migrated table (ADD COLUMN IF NOT EXISTS...), in case the version was lost.
	SQL func(ct string, t *catalog.Table) []string
}

// migrations[i] takes a change table from format i+1 to format i+2. Tests extend it (see
// export_test.go).
var migrations = []Migration{
	// 1 -> 2: the operation column, so that a TRUNCATE is a change row too (DDL adds the
	// statement trigger recording it). The rows already there are row changes: the
	// column's default. Adding a column with a constant default rewrites nothing.
	{
		Summary: `adds "$op" (row change or TRUNCATE)`,
		SQL: func(ct string, _ *catalog.Table) []string {
			return []string{fmt.Sprintf(`ALTER TABLE %s ADD COLUMN IF NOT EXISTS %s "char" NOT NULL DEFAULT %s`, ct, qi(OpCol), catalog.QuoteLiteral(OpRow))}
		},
	},
	// 2 -> 3: the origin column, the sync that applied a change captured under makedelta
	// (NULL: the application's). The rows already there are the application's.
	{
		Summary: `adds "$origin" (the sync that applied a change, makedelta)`,
		SQL: func(ct string, _ *catalog.Table) []string {
			return []string{fmt.Sprintf(`ALTER TABLE %s ADD COLUMN IF NOT EXISTS %s text DEFAULT %s`, ct, qi(OriginCol), originDefault)}
		},
	},
}

// Format is the format version of the change tables this ibex makes and reads.
func Format() int { return 1 + len(migrations) }

// formatRe finds the version in a change table's comment.
const formatRe = `^ibex change table \(format ([0-9]{1,9})\)`

// formatComment is the statement recording the current format in the comment of the
// change table of sync for t.
func formatComment(sync string, t *catalog.Table) string {
	ct := ChangeTable(sync, t.Schema, t.Name).Sanitize()
	text := "ibex change table (format " + strconv.Itoa(Format()) + ") of sync " + sync + " for table " + t.Ident().Sanitize()
	return fmt.Sprintf(`COMMENT ON TABLE %s IS %s`, ct, catalog.QuoteLiteral(text))
}

// MigrateDDL returns the statements that bring the change table of sync for t from format
// version from (State.Format) to the current one, in place, and record the new version.
// Run DDL after them, in the same transaction.
//
// The first locks t as DDL's CREATE TRIGGER does (SHARE ROW EXCLUSIVE): the application's
// writers lock t, then the change table (their trigger's insert), so a migration that
// altered the change table first could wait for a writer's lock on t while the writer
// waits for the change table: a deadlock (TestMigrateUnderWrites). Locking t first, it
// waits for the writers before it touches the change table.
func MigrateDDL(sync string, t *catalog.Table, from int) []string {
	ct := ChangeTable(sync, t.Schema, t.Name).Sanitize()
	stmts := []string{`LOCK TABLE ` + t.Ident().Sanitize() + ` IN SHARE ROW EXCLUSIVE MODE`}
	for v := max(from, 1); v < Format(); v++ {
		stmts = append(stmts, migrations[v-1].SQL(ct, t)...)
	}
	return append(stmts, formatComment(sync, t))
}
