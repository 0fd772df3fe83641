// Package capture installs and removes ibex's change capture on a source database: per
// sync and table, a change table in schema ibex that a row trigger fills with the key of
// every inserted, updated or deleted row, the writing transaction's id (xid8) and the
// time of the change. Rows applied by ibex run with session_replication_role = replica
// (or ibex.applying = on), so the trigger does not capture them again.
package capture

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/catalog"
)

// Column names of a change table besides the key columns.
const (
	TxidCol = "$txid" // the id of the transaction that made the change
	AtCol   = "$at"   // when the change was made
	OpCol   = "$op"   // what the change was: OpInsert, OpUpdate, OpDelete, OpTruncate (format 2)
	// OriginCol is the sync that applied the change, when ibex applied it (a db with
	// makedelta: the change cascades to the other syncs); NULL for the application's own
	// changes (format 3).
	OriginCol = "$origin"
)

// OriginGUC is the session setting a receiving session of ibex sets to the name of the
// sync applying rows: a makedelta trigger records it (OriginCol) and does not capture a
// change for the sync that applied it (no echo).
const OriginGUC = "ibex.origin"

// SetOriginSQL is the statement that sets OriginGUC to sync for the session (no
// parameters: it is sent with other statements in one round trip).
func SetOriginSQL(sync string) string {
	lit := "E'" + strings.ReplaceAll(strings.ReplaceAll(sync, `\`, `\\`), "'", "''") + "'"
	return "SELECT set_config('" + OriginGUC + "', " + lit + ", false)"
}

// The values of OpCol.
const (
	// OpInsert, OpUpdate and OpDelete are a row inserted, updated (its key kept) or deleted;
	// an UPDATE that changes the key is a delete of the old key and an insert of the new.
	OpInsert = "i"
	OpUpdate = "u"
	OpDelete = "d"
	// OpRow is a row change captured in format 1, of unknown kind (the migration's default).
	OpRow = "r"
	// OpTruncate is a TRUNCATE of the table: the change row's key columns are NULL.
	OpTruncate = "t"
)

// column is a bookkeeping column of change tables: what the trigger records of a change
// besides the changed row's key. The trigger inserts the key only: the default fills it.
type column struct {
	name, typ, def string
	null           bool // the column may be NULL
}

// columns are the bookkeeping columns of the current format, in table order, before the
// key columns. They are the one definition of the change format: DDL creates them,
// QueueInstalled tells them from the key columns, and the statements of changes.go read
// them. A format migration that adds or drops one changes this list (see format.go).
var columns = []column{
	{TxidCol, "xid8", "pg_current_xact_id()", false},
	{AtCol, "timestamptz", "clock_timestamp()", false},
	{OpCol, `"char"`, "'" + OpRow + "'", false},
	{OriginCol, "text", originDefault, true},
}

// originDefault is the default of OriginCol: the applying sync, NULL outside ibex.
const originDefault = "nullif(current_setting('" + OriginGUC + "', true), '')"

// columnNames are the names of columns.
func columnNames() []string {
	names := make([]string, len(columns))
	for i, c := range columns {
		names[i] = c.name
	}
	return names
}

// Reserved reports whether name is a bookkeeping column of change tables: a table whose
// key has a column of that name cannot be captured.
func Reserved(name string) bool {
	for _, c := range columns {
		if c.name == name {
			return true
		}
	}
	return false
}

// Schema is the schema ibex creates on source databases.
const Schema = "ibex"

// Name returns the name of the change table (and trigger function) of a sync's table.
func Name(sync, schema, table string) string {
	base := sync + "." + schema + "." + table
	if len(base) <= 60 {
		return base
	}
	h := sha256.Sum256([]byte(base))
	cut := 50
	for cut > 0 && !utf8.RuneStart(base[cut]) {
		cut--
	}
	return base[:cut] + "~" + hex.EncodeToString(h[:4])
}

// ChangeTable is the quoted identifier of the change table.
func ChangeTable(sync, schema, table string) pgx.Identifier {
	return pgx.Identifier{Schema, Name(sync, schema, table)}
}

// TriggerName is the name of the capture trigger a sync puts on each of its tables.
func TriggerName(sync string) string { return "ibex_" + sync }

// KickTriggerName is the name of the autokick statement trigger.
func KickTriggerName(sync string) string { return "ibex_kick_" + sync }

// TruncTriggerName is the name of the statement trigger that records a TRUNCATE of a
// table for sync.
func TruncTriggerName(sync string) string { return "ibex_truncate_" + sync }

// truncFunc is the trigger function (one per sync) that records a TRUNCATE: it inserts an
// OpTruncate row into the change table its trigger names (TG_ARGV[0]).
func truncFunc(sync string) string { return "ibex." + qi("truncate."+sync) }

// KickChannel is the NOTIFY channel autokick triggers signal; the payload is the sync name.
const KickChannel = "ibex_kick"

func qi(s string) string { return pgx.Identifier{s}.Sanitize() }

func dollarTag(body string) string {
	tag := "$ibex$"
	for i := 0; strings.Contains(body, tag); i++ {
		tag = fmt.Sprintf("$ibex%d$", i)
	}
	return tag
}

// ensureSchema creates schema ibex only when it is missing: CREATE SCHEMA IF NOT EXISTS
// checks CREATE on the database even when the schema exists, and a DBA may have created
// it for ibex's role (owned by it, or with USAGE and CREATE granted) instead of granting
// CREATE on the database. The capture trigger runs as the writing role, so PUBLIC needs
// USAGE on the schema: ibex grants it when its role owns the schema, and refuses a schema
// someone else owns without that grant (every application write would fail). Two
// sessions creating the schema at once: the second finds it made.
const ensureSchema = `DO $s$
BEGIN
  IF to_regnamespace('ibex') IS NULL THEN
    BEGIN
      CREATE SCHEMA ibex;
    EXCEPTION WHEN duplicate_schema OR unique_violation THEN
      NULL;
    END;
  END IF;
  IF pg_has_role((SELECT nspowner FROM pg_namespace WHERE nspname = 'ibex'), 'USAGE') THEN
    GRANT USAGE ON SCHEMA ibex TO PUBLIC;
  ELSIF NOT EXISTS (SELECT 1 FROM pg_namespace n, aclexplode(n.nspacl) a
                    WHERE n.nspname = 'ibex' AND a.grantee = 0 AND a.privilege_type = 'USAGE') THEN
    RAISE EXCEPTION 'schema ibex belongs to role %, and PUBLIC has no USAGE on it: the capture trigger, which runs as the role writing a table, could not record changes; as its owner run GRANT USAGE ON SCHEMA ibex TO PUBLIC and GRANT USAGE, CREATE ON SCHEMA ibex TO %, or ALTER SCHEMA ibex OWNER TO %',
      (SELECT nspowner::regrole FROM pg_namespace WHERE nspname = 'ibex'), quote_ident(current_user), quote_ident(current_user);
  END IF;
END
$s$`

// Options are what a sync's capture of one table records besides the changed keys.
type Options struct {
	// Autokick adds the statement trigger that signals KickChannel.
	Autokick bool
	// Counters are the table's counter columns (CheckCounters): each change row also
	// records the change's delta of each, in column DeltaCol(name).
	Counters []string
	// MakeDelta: rows ibex applies on this db for other syncs are captured too (their
	// sync in OriginCol), so that they cascade to this sync's other dbs. The triggers are
	// ENABLE ALWAYS (they fire under session_replication_role = replica); a change applied
	// by this sync is not captured again (OriginGUC), nor an applied UPDATE that changes
	// nothing (a change coming back around a loop of syncs ends there).
	MakeDelta bool
	// Columns (conflict_detect=columns): each update's change row also records which
	// columns it changed, in column ColsCol.
	Columns bool
	// OldRow: each update's and delete's change row also records the row as it was before
	// (every column as text), in column OldCol (a conflict function gets it).
	OldRow bool
}

// ColsCol is the change table column recording the columns an update changed (text[]:
// their names); NULL for inserts and deletes (every column).
const ColsCol = "$cols"

// changedCols is the trigger's expression of the columns an UPDATE changed: compared as
// text, which every type has (json has no equality).
func changedCols(t *catalog.Table) string {
	parts := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		q := qi(c.Name)
		parts[i] = fmt.Sprintf(`CASE WHEN OLD.%s::text IS DISTINCT FROM NEW.%s::text THEN %s END`, q, q, catalog.QuoteLiteral(c.Name))
	}
	return `array_remove(ARRAY[` + strings.Join(parts, ", ") + `]::text[], NULL)`
}

// OldCol is the change table column recording, when capture keeps old rows, the row as an
// update or delete found it: a JSON object of column -> text (null for NULL); NULL for
// inserts.
const OldCol = "$old"

// oldRow is the trigger's expression of the old row for OldCol: jsonb_build_object of at
// most 50 columns at a time (a function takes at most 100 arguments), joined.
func oldRow(t *catalog.Table) string {
	var parts, args []string
	for i, c := range t.Columns {
		args = append(args, catalog.QuoteLiteral(c.Name), "OLD."+qi(c.Name)+"::text")
		if len(args) == 100 || i == len(t.Columns)-1 {
			parts = append(parts, "jsonb_build_object("+strings.Join(args, ", ")+")")
			args = nil
		}
	}
	if len(parts) == 0 {
		return "'{}'::jsonb"
	}
	return strings.Join(parts, " || ")
}

// DeltaPrefix begins the name of a change table's delta column.
const DeltaPrefix = "$d."

// DeltaCol is the change table column recording the delta of counter column col: the new
// value minus the old, a NULL counted as 0 (an insert: its value; a delete: minus it).
func DeltaCol(col string) string { return DeltaPrefix + col }

// deltaType is the type of the delta column of a counter of type typ: float8 for floating
// point counters, numeric (exact, never overflowing) for the others.
func deltaType(typ string) string {
	if typ == "real" || typ == "double precision" {
		return "float8"
	}
	return "numeric"
}

// ErrCounter is wrapped by CheckCounters' errors.
var ErrCounter = errors.New("invalid counter column")

// CheckCounters checks that the counter columns of t are columns of t holding numbers,
// not part of its key.
func CheckCounters(t *catalog.Table, counters []string) error {
	typeOf := map[string]string{}
	for _, c := range t.Columns {
		typeOf[c.Name] = c.Type
	}
	for _, c := range counters {
		typ, ok := typeOf[c]
		switch {
		case !ok:
			return fmt.Errorf("%w: table %s has no column %q", ErrCounter, t.Ident().Sanitize(), c)
		case slices.Contains(t.KeyCols, c):
			return fmt.Errorf("%w: column %q is part of the key of table %s", ErrCounter, c, t.Ident().Sanitize())
		case !numericType(typ):
			return fmt.Errorf("%w: column %q of table %s is %s: a counter holds a number (smallint, integer, bigint, numeric, real or double precision)", ErrCounter, c, t.Ident().Sanitize(), typ)
		case len(DeltaCol(c)) > 63:
			return fmt.Errorf("%w: the name of column %q of table %s is too long for a counter (at most 60 bytes)", ErrCounter, c, t.Ident().Sanitize())
		}
	}
	return nil
}

// numericType reports whether a column type (as format_type prints it) is a number type
// counters can be.
func numericType(typ string) bool {
	switch typ {
	case "smallint", "integer", "bigint", "real", "double precision", "numeric":
		return true
	}
	return strings.HasPrefix(typ, "numeric(")
}

// DDL returns the statements that install capture of table t for sync on a source. They
// mark the change table with the current format (Format): on a change table of an older
// format (State.Migratable), run MigrateDDL first. o.Counters must pass CheckCounters.
func DDL(sync string, t *catalog.Table, o Options) []string {
	ct := ChangeTable(sync, t.Schema, t.Name).Sanitize()
	fn := ct // the trigger function has the change table's name
	typeOf := map[string]string{}
	for _, c := range t.Columns {
		typeOf[c.Name] = c.Type
	}
	var colDefs, cols, newVals, oldVals, newText, oldText, updVals []string
	for _, c := range columns {
		null := " NOT NULL"
		if c.null {
			null = ""
		}
		colDefs = append(colDefs, qi(c.name)+" "+c.typ+null+" DEFAULT "+c.def)
	}
	for _, k := range t.KeyCols {
		colDefs = append(colDefs, qi(k)+" "+typeOf[k])
		cols = append(cols, qi(k))
		newVals = append(newVals, "NEW."+qi(k))
		oldVals = append(oldVals, "OLD."+qi(k))
		// Keys are compared as text: 1.5 and 1.50 are equal numerics but different rows'
		// text, and a run matches rows by their text.
		newText = append(newText, "NEW."+qi(k)+"::text")
		oldText = append(oldText, "OLD."+qi(k)+"::text")
	}
	updVals = slices.Clone(oldVals)
	// Counters: each change row records its delta (an insert adds its value, a delete
	// takes it away, an update adds new minus old; NULL counts as 0).
	var alter []string
	for _, c := range o.Counters {
		dt := deltaType(typeOf[c])
		colDefs = append(colDefs, qi(DeltaCol(c))+" "+dt)
		alter = append(alter, alterColumn(ct, DeltaCol(c), dt))
		cols = append(cols, qi(DeltaCol(c)))
		newV := "coalesce(NEW." + qi(c) + ", 0)::" + dt
		oldV := "coalesce(OLD." + qi(c) + ", 0)::" + dt
		newVals = append(newVals, newV)
		oldVals = append(oldVals, "-"+oldV)
		updVals = append(updVals, newV+" - "+oldV)
	}
	if o.Columns {
		colDefs = append(colDefs, qi(ColsCol)+" text[]")
		alter = append(alter, alterColumn(ct, ColsCol, "text[]"))
		cols = append(cols, qi(ColsCol))
		newVals = append(newVals, "NULL")
		oldVals = append(oldVals, "NULL")
		updVals = append(updVals, changedCols(t))
	} else {
		alter = append(alter, alterColumn(ct, ColsCol, ""))
	}
	if o.OldRow {
		colDefs = append(colDefs, qi(OldCol)+" jsonb")
		alter = append(alter, alterColumn(ct, OldCol, "jsonb"))
		cols = append(cols, qi(OldCol))
		newVals = append(newVals, "NULL")
		oldVals = append(oldVals, oldRow(t))
		updVals = append(updVals, oldRow(t))
	} else {
		alter = append(alter, alterColumn(ct, OldCol, ""))
	}
	colList := strings.Join(cols, ", ")
	ins := func(vals []string, op string) string {
		return fmt.Sprintf("INSERT INTO %s (%s, %s) VALUES (%s, %s);", ct, colList, qi(OpCol), strings.Join(vals, ", "), catalog.QuoteLiteral(op))
	}
	body := fmt.Sprintf(`
BEGIN
  %s
  IF TG_OP = 'INSERT' THEN
    %s
  ELSIF TG_OP = 'UPDATE' THEN
    IF (%s) IS DISTINCT FROM (%s) THEN
      %s
      %s
    ELSE
      %s
    END IF;
  ELSE
    %s
  END IF;
  RETURN NULL;
END`, skipApplied(sync, o.MakeDelta, true), ins(newVals, OpInsert), strings.Join(oldText, ", ")+",NULL", strings.Join(newText, ", ")+",NULL",
		ins(oldVals, OpDelete), ins(newVals, OpInsert), ins(updVals, OpUpdate), ins(oldVals, OpDelete))
	tag := dollarTag(body)
	tbl := t.Ident().Sanitize()
	stmts := []string{
		ensureSchema,
		fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (%s)`, ct, strings.Join(colDefs, ", ")),
	}
	// The delta columns of a change table made before its counters were set are added; those
	// of counters no longer set are dropped.
	stmts = append(stmts, alter...)
	stmts = append(stmts, dropDeltas(ct, o.Counters))
	stmts = append(stmts,
		formatComment(sync, t),
		fmt.Sprintf(`GRANT INSERT ON %s TO PUBLIC`, ct),
		fmt.Sprintf(`CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS %s%s%s`, fn, tag, body, tag),
		fmt.Sprintf(`CREATE OR REPLACE TRIGGER %s AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION %s()`,
			qi(TriggerName(sync)), tbl, fn),
		// A TRUNCATE (of this table alone, with others, or by CASCADE) is one change row
		// with no key. The function is the sync's, told its change table by argument.
		// Its second argument says whether the table is makedelta there.
		fmt.Sprintf(`CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $t$
BEGIN
  IF current_setting('ibex.applying', true) = 'on' AND (TG_NARGS < 2 OR TG_ARGV[1] <> 'makedelta' OR coalesce(current_setting(%s, true), '') = '') THEN
    RETURN NULL;
  END IF;
  IF current_setting(%s, true) = %s THEN
    RETURN NULL;
  END IF;
  EXECUTE format(%s, TG_ARGV[0]);
  RETURN NULL;
END$t$`, truncFunc(sync), catalog.QuoteLiteral(OriginGUC), catalog.QuoteLiteral(OriginGUC), catalog.QuoteLiteral(sync),
			catalog.QuoteLiteral(`INSERT INTO %s (`+qi(OpCol)+`) VALUES (`+catalog.QuoteLiteral(OpTruncate)+`)`)),
		fmt.Sprintf(`CREATE OR REPLACE TRIGGER %s AFTER TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION %s(%s, %s)`,
			qi(TruncTriggerName(sync)), tbl, truncFunc(sync), catalog.QuoteLiteral(ct), catalog.QuoteLiteral(makeDeltaArg(o.MakeDelta))),
	)
	triggers := []string{TriggerName(sync), TruncTriggerName(sync)}
	if o.Autokick {
		// Not for ibex's own writes when it runs with ibex.applying rather than
		// session_replication_role (which keeps every trigger from firing). With makedelta,
		// the trigger fires for what other syncs apply too (their changes cascade), not for
		// what this sync applies.
		when := `current_setting('ibex.applying', true) IS DISTINCT FROM 'on'`
		if o.MakeDelta {
			origin := "coalesce(current_setting(" + catalog.QuoteLiteral(OriginGUC) + ", true), '')"
			when = fmt.Sprintf(`(%s OR %s <> '') AND %s <> %s`, when, origin, origin, catalog.QuoteLiteral(sync))
		}
		stmts = append(stmts,
			fmt.Sprintf(`CREATE OR REPLACE FUNCTION ibex.%s() RETURNS trigger LANGUAGE plpgsql AS $k$BEGIN PERFORM pg_notify(%s, %s); RETURN NULL; END$k$`,
				qi("kick."+sync), catalog.QuoteLiteral(KickChannel), catalog.QuoteLiteral(sync)),
			fmt.Sprintf(`CREATE OR REPLACE TRIGGER %s AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH STATEMENT WHEN (%s) EXECUTE FUNCTION ibex.%s()`,
				qi(KickTriggerName(sync)), tbl, when, qi("kick."+sync)))
		triggers = append(triggers, KickTriggerName(sync))
	} else {
		stmts = append(stmts, fmt.Sprintf(`DROP TRIGGER IF EXISTS %s ON %s`, qi(KickTriggerName(sync)), tbl))
	}
	// Makedelta: the triggers fire under session_replication_role = replica too (ibex's
	// receiving sessions); without it, only outside it (ENABLE, the default). ALTER TABLE
	// needs the table's owner: it runs only when the state must change, so a role that may
	// create triggers without owning the table installs capture without makedelta.
	for _, tg := range triggers {
		enable, wrong := "ENABLE", "tgenabled = 'A'"
		if o.MakeDelta {
			enable, wrong = "ENABLE ALWAYS", "tgenabled <> 'A'"
		}
		stmts = append(stmts, fmt.Sprintf(`DO $e$ BEGIN IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname = %s AND %s) THEN EXECUTE %s; END IF; END $e$`,
			catalog.QuoteLiteral(tbl), catalog.QuoteLiteral(tg), wrong, catalog.QuoteLiteral(fmt.Sprintf(`ALTER TABLE %s %s TRIGGER %s`, tbl, enable, qi(tg)))))
	}
	return stmts
}

// makeDeltaArg is the TRUNCATE trigger's second argument.
func makeDeltaArg(on bool) string {
	if on {
		return "makedelta"
	}
	return "-"
}

// skipApplied is the start of the row trigger's body: what ibex applies is not captured
// (session_replication_role = replica keeps the trigger from firing, or ibex.applying = on
// when the role may not set it); with makedelta, what another sync applied is (the
// trigger fires always), but not what this sync applied, nor an applied UPDATE that
// changes nothing.
func skipApplied(sync string, makeDelta bool, row bool) string {
	if !makeDelta {
		return `IF current_setting('ibex.applying', true) = 'on' THEN
    RETURN NULL;
  END IF;`
	}
	origin := "current_setting(" + catalog.QuoteLiteral(OriginGUC) + ", true)"
	same := ""
	if row {
		same = fmt.Sprintf(`
  IF coalesce(%s, '') <> '' AND TG_OP = 'UPDATE' AND OLD IS NOT DISTINCT FROM NEW THEN
    RETURN NULL;
  END IF;`, origin)
	}
	return fmt.Sprintf(`IF current_setting('ibex.applying', true) = 'on' AND coalesce(%s, '') = '' THEN
    RETURN NULL;
  END IF;
  IF %s = %s THEN
    RETURN NULL;
  END IF;%s`, origin, origin, catalog.QuoteLiteral(sync), same)
}

// DropDDL returns the statements that remove capture of table t for sync.
func DropDDL(sync string, t catalog.QualName) []string {
	tbl := pgx.Identifier{t.Schema, t.Name}.Sanitize()
	ct := ChangeTable(sync, t.Schema, t.Name).Sanitize()
	return []string{
		fmt.Sprintf(`DO $d$ BEGIN IF to_regclass(%s) IS NOT NULL THEN EXECUTE %s; EXECUTE %s; EXECUTE %s; END IF; END $d$`,
			catalog.QuoteLiteral(tbl),
			catalog.QuoteLiteral(fmt.Sprintf(`DROP TRIGGER IF EXISTS %s ON %s`, qi(TriggerName(sync)), tbl)),
			catalog.QuoteLiteral(fmt.Sprintf(`DROP TRIGGER IF EXISTS %s ON %s`, qi(TruncTriggerName(sync)), tbl)),
			catalog.QuoteLiteral(fmt.Sprintf(`DROP TRIGGER IF EXISTS %s ON %s`, qi(KickTriggerName(sync)), tbl))),
		fmt.Sprintf(`DROP FUNCTION IF EXISTS %s()`, ct),
		fmt.Sprintf(`DROP TABLE IF EXISTS %s`, ct),
	}
}

// DropSyncDDL removes objects of a sync that are not per table.
func DropSyncDDL(sync string) []string {
	return []string{
		fmt.Sprintf(`DROP FUNCTION IF EXISTS ibex.%s() CASCADE`, qi("kick."+sync)),
		fmt.Sprintf(`DROP FUNCTION IF EXISTS %s() CASCADE`, truncFunc(sync)),
	}
}

// alterColumn adds column col of type typ to change table ct, or drops it when typ is "",
// only when the catalog says it must: ALTER TABLE takes the change table's ACCESS EXCLUSIVE
// lock even when ADD COLUMN IF NOT EXISTS or DROP COLUMN IF EXISTS has nothing to do, and
// an install that locked the change table before the captured table (its trigger comes
// after) deadlocked with the application's writers, which lock them the other way round.
func alterColumn(ct, col, typ string) string {
	has := fmt.Sprintf(`EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = %s::regclass AND attname = %s AND NOT attisdropped)`,
		catalog.QuoteLiteral(ct), catalog.QuoteLiteral(col))
	alter := `DROP COLUMN ` + qi(col)
	if typ != "" {
		has, alter = "NOT "+has, `ADD COLUMN `+qi(col)+` `+typ
	}
	body := fmt.Sprintf(` BEGIN IF %s THEN ALTER TABLE %s %s; END IF; END `, has, ct, alter)
	tag := dollarTag(body)
	return `DO ` + tag + body + tag
}

// dropDeltas is the statement dropping the delta columns of change table ct (quoted) that
// are not those of counters.
func dropDeltas(ct string, counters []string) string {
	keep := make([]string, len(counters))
	for i, c := range counters {
		keep[i] = catalog.QuoteLiteral(DeltaCol(c))
	}
	cond := ""
	if len(keep) > 0 {
		cond = " AND attname::text <> ALL (ARRAY[" + strings.Join(keep, ", ") + "])"
	}
	return fmt.Sprintf(`DO $x$ DECLARE c text; BEGIN
  FOR c IN SELECT attname::text FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped AND starts_with(attname::text, %s)%s LOOP
    EXECUTE format('ALTER TABLE %%s DROP COLUMN %%I', %s, c);
  END LOOP;
END $x$`, catalog.QuoteLiteral(ct), catalog.QuoteLiteral(DeltaPrefix), cond, catalog.QuoteLiteral(ct))
}

// Installed reports whether the capture trigger and change table of sync exist for t, and
// whether the change table is current: t's key columns, the current format, the deltas of
// counters.
func Installed(ctx context.Context, q catalog.Batcher, sync string, t *catalog.Table, counters []string) (bool, error) {
	c, err := Inspect(ctx, q, sync, t.Schema, t.Name)
	if err != nil {
		return false, err
	}
	return c.Matches(t) && c.Counts(counters), nil
}

// State is what a db has of a sync's capture on one table, read by QueueInstalled or
// Inspect.
type State struct {
	trigger bool
	table   bool     // the change table exists
	cols    []string // the change table's key columns
	format  int      // the change table's format version
	deltas  []string // the counters whose deltas the change table records
	always  bool     // the triggers fire always (makedelta)
	columns bool     // the change table records the columns updates changed (ColsCol)
	old     bool     // the change table records old rows (OldCol)
	Err     error
}

// MakesDelta reports whether the triggers are as makedelta wants them: enabled always
// when on, only outside replication when off.
func (c *State) MakesDelta(on bool) bool { return c.always == on }

// Detects reports whether the change table records the columns updates changed exactly
// when columns (conflict_detect=columns) asks for it.
func (c *State) Detects(columns bool) bool { return c.columns == columns }

// KeepsOld reports whether the change table records old rows exactly when old (a
// conflict function) asks for it.
func (c *State) KeepsOld(old bool) bool { return c.old == old }

// Counts reports whether the change table records the deltas of exactly the counter
// columns counters (in any order).
func (c *State) Counts(counters []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(counters)), slices.Sorted(slices.Values(c.deltas)))
}

func (c *State) sameKey(t *catalog.Table) bool {
	return strings.Join(c.cols, "\x00") == strings.Join(t.KeyCols, "\x00")
}

// Matches reports whether the capture read is installed and current for t (its trigger
// enabled, its change table holding t's key columns, in the current format).
func (c *State) Matches(t *catalog.Table) bool {
	return c.trigger && c.sameKey(t) && c.format == Format()
}

// Exists reports whether the change table exists.
func (c *State) Exists() bool { return c.table }

// Format is the format version of the change table (0 when there is none).
func (c *State) Format() int {
	if !c.table {
		return 0
	}
	return c.format
}

// Migratable reports whether the change table exists with t's key columns in an older
// format: MigrateDDL brings it to the current format and keeps its rows (the pending
// changes). Whether the trigger is there does not matter: DDL puts it back.
func (c *State) Migratable(t *catalog.Table) bool {
	return c.table && c.sameKey(t) && c.format < Format()
}
