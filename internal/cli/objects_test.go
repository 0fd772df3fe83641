package cli_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ibexrepl/ibex/internal/ibextest"
	"github.com/ibexrepl/ibex/internal/pgtest"
)

// smallSQL is the schema of the small dbs of these tests.
const smallSQL = `
CREATE TABLE public.accounts (id int PRIMARY KEY, v text);
CREATE TABLE public.branches (id int PRIMARY KEY, v text);
CREATE TABLE public.other (id int PRIMARY KEY);
`

// threeDBs makes a control database with dbs t1, t2, t3 (smallSQL) and tables accounts,
// branches and other read from t1. Unless distinct, the three are the control database
// (enough where no capture is installed).
func threeDBs(t *testing.T, distinct bool) (ctl *pgtest.DB, dbs []*pgtest.DB) {
	t.Helper()
	if distinct {
		ctl = newControl(t)
	} else {
		ctl = newControlWith(t, smallSQL)
	}
	for _, n := range []string{"t1", "t2", "t3"} {
		db := ctl
		if distinct {
			db = newDB(t, smallSQL)
		}
		ok(t, ctl.DSN, ibextest.AddDBArgs(n, db.Conn)...)
		dbs = append(dbs, db)
	}
	ok(t, ctl.DSN, "add", "table", "accounts", "branches", "other", "db=t1")
	return ctl, dbs
}

func dbmapRows(t *testing.T, dsn string) [][]string {
	t.Helper()
	return ibextest.Rows(t, dsn, `SELECT g.name, coalesce(string_agg(m.db || ':' || m.role, ' ' ORDER BY m.position), '')
FROM ibex.dbgroup g LEFT JOIN ibex.dbmap m ON m.dbgroup = g.name GROUP BY 1 ORDER BY 1`)
}

func syncRows(t *testing.T, dsn string) [][]string {
	t.Helper()
	return ibextest.Rows(t, dsn, `SELECT name, herd, dbgroup, conflict_strategy, autokick::text, onetimecopy::text, schedule, status, batch_size::text, single_transaction::text
FROM ibex.sync ORDER BY name`)
}

func TestHerds(t *testing.T) {
	t.Parallel()
	ctl, _ := threeDBs(t, false)

	if out := ok(t, ctl.DSN, "add", "herd", "h1", "accounts", "public.branches"); out != "Added herd h1 (2 tables)\n" {
		t.Errorf("add herd said %q", out)
	}
	if out := ok(t, ctl.DSN, "add", "relgroup", "h2"); out != "Added herd h2 (0 tables)\n" {
		t.Errorf("add relgroup said %q", out)
	}
	before := state(t, ctl.DSN)
	refuseAll(t, ctl.DSN,
		rf(1, args("add", "herd", "h1"), `ibex: herd "h1" already exists: use 'ibex update herd h1 ...' to change it`),
		rf(1, args("add", "herd", "h3", "accounts", "nosuch"), `table "public.nosuch" not found: see 'ibex list tables' (add it first with 'ibex add table nosuch db=...')`),
		rf(2, args("add", "herd", "h3", "bogus=1"), `add herd: unknown setting "bogus"`),
		rf(1, args("update", "herd", "nosuch", "accounts"), `herd "nosuch" not found: see 'ibex list herds'`),
		rf(1, args("update", "herd", "h1", "accounts", "nosuch"), `table "public.nosuch" not found`),
		rf(1, args("remove", "herd", "nosuch"), `herd "nosuch" not found`),
		rf(2, args("add", "herd"), "requires at least 2 arg(s)"),
	)
	// Alone: its transaction and update herd h1's write the same rows.
	refused(t, ctl.DSN, 1, args("remove", "herd", "h2", "h1", "nosuch"), `herd "nosuch" not found`) // nothing removed, h1 and h2 included
	unchanged(t, ctl.DSN, before, "refused herd commands")

	if out := ok(t, ctl.DSN, "update", "herd", "h2", "other", "tables=accounts"); out != "Updated herd h2 (2 tables)\n" {
		t.Errorf("update herd said %q", out)
	}
	want := "Herd   Tables\nh1   | public.accounts, public.branches\nh2   | public.accounts, public.other\n"
	if got := ok(t, ctl.DSN, "list", "herds"); got != want {
		t.Errorf("list herds:\n%s\nwant:\n%s", got, want)
	}
	if got := ok(t, ctl.DSN, "list", "relgroups", "h1"); got != "Herd   Tables\nh1   | public.accounts, public.branches\n" {
		t.Errorf("list relgroups h1: %q", got)
	}
	if out := ok(t, ctl.DSN, "remove", "herd", "h2"); out != "Removed herd h2\n" {
		t.Errorf("remove herd said %q", out)
	}
	if diff := cmp.Diff([][]string{{"h1", "public.accounts,public.branches"}}, herdRows(t, ctl.DSN)); diff != "" {
		t.Errorf("herds (-want +got):\n%s", diff)
	}
}

func TestDBGroups(t *testing.T) {
	t.Parallel()
	ctl, _ := threeDBs(t, false)

	for _, tc := range []struct {
		args []string
		out  string
	}{
		{args("g1", "t1:source", "t2:source", "t3:target"), "Added dbgroup g1: t1:source t2:source t3:target\n"},
		{args("g2", "t1:master", "t2:slave", "t3:replica"), "Added dbgroup g2: t1:source t2:target t3:target\n"},
		{args("g3", "t1", "t2"), "Added dbgroup g3: t1:source t2:target\n"},
		{args("g4", "t3:source,t1:target"), "Added dbgroup g4: t3:source t1:target\n"},
		{args("gf", "t1:source", "t2:fullcopy", "t3:fullcopy"), "Added dbgroup gf: t1:source t2:fullcopy t3:fullcopy\n"},
	} {
		if out := ok(t, ctl.DSN, append([]string{"add", "dbgroup"}, tc.args...)...); out != tc.out {
			t.Errorf("add dbgroup %v said %q, want %q", tc.args, out, tc.out)
		}
	}
	want := [][]string{
		{"g1", "t1:source t2:source t3:target"},
		{"g2", "t1:source t2:target t3:target"},
		{"g3", "t1:source t2:target"},
		{"g4", "t3:source t1:target"},
		{"gf", "t1:source t2:fullcopy t3:fullcopy"},
	}
	if diff := cmp.Diff(want, dbmapRows(t, ctl.DSN)); diff != "" {
		t.Errorf("dbgroups (-want +got):\n%s", diff)
	}
	before := state(t, ctl.DSN)
	if msg := refused(t, ctl.DSN, 2, args("add", "dbgroup", "g5", "t1:target", "t2:target")); msg != "ibex: dbgroup g5 has no source: give at least one db the role source\n" {
		t.Errorf("a dbgroup without a source: %q", msg)
	}
	refuseAll(t, ctl.DSN,
		rf(2, args("add", "dbgroup", "g5", "t1:slave", "t2:fullcopy"), "dbgroup g5 has no source"),
		rf(2, args("add", "dbgroup", "g5", "t1:boss"), `dbgroup g5: unknown role "boss" for db t1: use source, target or fullcopy`),
		rf(2, args("add", "dbgroup", "g5", "t1:source", "t2:fullcopy", "t3:target"), "dbgroup g5: a fullcopy dbgroup has exactly one source and only fullcopy dbs besides"),
		rf(2, args("add", "dbgroup", "g5", "t1:source", "t2:source", "t3:fullcopy"), "a fullcopy dbgroup has exactly one source"),
		rf(1, args("add", "dbgroup", "g5", "t1:source", "nosuch:target"), `dbgroup "g5": db "nosuch" not found: see 'ibex list dbs'`),
		rf(1, args("add", "dbgroup", "g5", "t1:source", "t1:target"), `dbgroup "g5": db "t1" is listed twice`),
		rf(2, args("add", "dbgroup", "g5", "x=y"), `dbgroup g5: unknown setting "x"`),
		rf(2, args("add", "dbgroup", "g5"), "dbgroup g5: list its dbs as name:role"),
		rf(1, args("add", "dbgroup", "g1", "t1:source"), `dbgroup "g1" already exists: use 'ibex update dbgroup g1 ...' to change it`),
		rf(2, args("update", "dbgroup", "g1", "t1:target", "t3:target"), "dbgroup g1 has no source"),
		rf(1, args("update", "dbgroup", "nosuch", "t1:source"), `dbgroup "nosuch" not found: see 'ibex list dbgroups'`),
		rf(1, args("remove", "dbgroup", "nosuch"), `dbgroup "nosuch" not found`),
		rf(1, args("remove", "dbgroup", "g2", "nosuch"), `dbgroup "nosuch" not found`), // nothing removed, g2 included
		rf(1, args("remove", "db", "t3"), `db "t3" is in use by dbgroup g1, g2, g4, gf: remove it from the dbgroup first`),
	)
	unchanged(t, ctl.DSN, before, "refused dbgroup commands")

	if out := ok(t, ctl.DSN, "update", "dbgroup", "g3", "t2:source", "t3:source", "t1:target"); out != "Updated dbgroup g3: t2:source t3:source t1:target\n" {
		t.Errorf("update dbgroup said %q", out)
	}
	if got := ok(t, ctl.DSN, "list", "dbgroups", "g3"); got != "Dbgroup   Members\ng3      | t2:source t3:source t1:target\n" {
		t.Errorf("list dbgroups g3: %q", got)
	}
	if out := ok(t, ctl.DSN, "remove", "dbgroup", "g2", "g4", "gf"); out != "Removed dbgroup g2\nRemoved dbgroup g4\nRemoved dbgroup gf\n" {
		t.Errorf("remove dbgroup said %q", out)
	}
	if diff := cmp.Diff([][]string{{"g1", "t1:source t2:source t3:target"}, {"g3", "t2:source t3:source t1:target"}}, dbmapRows(t, ctl.DSN)); diff != "" {
		t.Errorf("dbgroups (-want +got):\n%s", diff)
	}
}

// captureOf lists the triggers of sync on a db and whether its change tables exist.
func captureOf(t *testing.T, db *pgtest.DB, sync string) (trigs, changeTables []string) {
	t.Helper()
	for _, tr := range triggers(t, db.DSN) {
		if strings.HasSuffix(tr, " ibex_"+sync) || strings.HasSuffix(tr, " ibex_kick_"+sync) {
			trigs = append(trigs, tr)
		}
	}
	for _, ct := range ibexTables(t, db.DSN) {
		if strings.HasPrefix(ct, sync+".") {
			changeTables = append(changeTables, ct)
		}
	}
	return trigs, changeTables
}

func TestSyncs(t *testing.T) {
	t.Parallel()
	ctl, dbs := threeDBs(t, true)
	t1, t2, t3 := dbs[0], dbs[1], dbs[2]
	ok(t, ctl.DSN, "add", "herd", "h1", "accounts", "branches")
	ok(t, ctl.DSN, "add", "dbgroup", "g1", "t1:source", "t2:source", "t3:target")
	ok(t, ctl.DSN, "add", "dbgroup", "g2", "t1:source", "t2:target")

	out := ok(t, ctl.DSN, "add", "sync", "s1", "herd=h1", "dbs=g1")
	if want := "Added sync s1: herd h1, dbgroup g1, conflict_strategy latest, capture on 4 tables\n"; out != want {
		t.Errorf("add sync said %q, want %q", out, want)
	}
	wantTrig := []string{"accounts ibex_s1", "branches ibex_s1"}
	wantCT := []string{"s1.public.accounts", "s1.public.branches"}
	for _, db := range []*pgtest.DB{t1, t2} {
		trigs, cts := captureOf(t, db, "s1")
		if !cmp.Equal(trigs, wantTrig) || !cmp.Equal(cts, wantCT) {
			t.Errorf("capture of s1 on a source: triggers %v, change tables %v", trigs, cts)
		}
	}
	if trigs, cts := captureOf(t, t3, "s1"); len(trigs)+len(cts) != 0 {
		t.Errorf("capture of s1 on the target: %v %v", trigs, cts)
	}

	// Every option, and Bucardo's names for some.
	ok(t, ctl.DSN, "add", "sync", "s2", "relgroup=h1", "dbgroup=g1", "conflict_strategy=t2 t1", "autokick=true", "onetimecopy=2",
		"schedule=*/5 * * * *", "status=inactive", "batch_size=500", "single_transaction=on")
	ok(t, ctl.DSN, "add", "sync", "s3", "herd=h1", "dbs=g2", "standard_conflict=bucardo_source", "ping=yes", "checktime=30s", "onetimecopy=1")
	ok(t, ctl.DSN, "add", "sync", "s4", "herd=h1", "dbs=g1", "conflict_strategy=t3,t2", "autokick=off")
	for _, cs := range []string{"skip", "abort", "bucardo_latest"} {
		ok(t, ctl.DSN, "add", "sync", "s_"+cs, "herd=h1", "dbs=g2", "conflict_strategy="+cs)
	}
	want := [][]string{
		{"s1", "h1", "g1", "latest", "false", "0", "", "active", "0", "false"},
		{"s2", "h1", "g1", "t2 t1", "true", "2", "*/5 * * * *", "inactive", "500", "true"},
		{"s3", "h1", "g2", "source", "true", "1", "30s", "active", "0", "false"},
		{"s4", "h1", "g1", "t3 t2", "false", "0", "", "active", "0", "false"},
		{"s_abort", "h1", "g2", "abort", "false", "0", "", "active", "0", "false"},
		{"s_bucardo_latest", "h1", "g2", "latest", "false", "0", "", "active", "0", "false"},
		{"s_skip", "h1", "g2", "skip", "false", "0", "", "active", "0", "false"},
	}
	if diff := cmp.Diff(want, syncRows(t, ctl.DSN)); diff != "" {
		t.Errorf("ibex.sync (-want +got):\n%s", diff)
	}
	if trigs, _ := captureOf(t, t2, "s2"); !cmp.Equal(trigs, []string{"accounts ibex_kick_s2", "accounts ibex_s2", "branches ibex_kick_s2", "branches ibex_s2"}) {
		t.Errorf("autokick sync s2 on t2: triggers %v", trigs)
	}
	wantList := `Sync               Status     Herd   Dbgroup   Conflict   Autokick   Onetimecopy   Schedule
s1               | active   | h1   | g1      | latest   | no       | 0           | none
s2               | inactive | h1   | g1      | t2 t1    | yes      | 2           | */5 * * * *
s3               | active   | h1   | g2      | source   | yes      | 1           | 30s
s4               | active   | h1   | g1      | t3 t2    | no       | 0           | none
s_abort          | active   | h1   | g2      | abort    | no       | 0           | none
s_bucardo_latest | active   | h1   | g2      | latest   | no       | 0           | none
s_skip           | active   | h1   | g2      | skip     | no       | 0           | none
`
	if got := ok(t, ctl.DSN, "list", "syncs"); got != wantList {
		t.Errorf("list syncs:\n%s\nwant:\n%s", got, wantList)
	}

	before := state(t, ctl.DSN)
	trigsBefore := [][]string{triggers(t, t1.DSN), triggers(t, t2.DSN), triggers(t, t3.DSN)}
	refused(t, ctl.DSN, 1, args("add", "sync", "s1", "herd=h1", "dbs=g1"), `ibex: sync "s1" already exists: use 'ibex update sync s1 ...' to change it`)
	if msg := refused(t, ctl.DSN, 2, args("add", "sync", "s9", "herd=h1", "dbs=g2", "conflict_strategy=t3 t1")); msg !=
		`ibex: sync s9: invalid conflict_strategy "t3 t1": "t3" is not a db of this sync (its dbs: t1 t2); use latest, source, abort, skip or a list of its db names`+"\n" {
		t.Errorf("a priority list naming a db outside the sync: %q", msg)
	}
	refused(t, ctl.DSN, 2, args("add", "sync", "s9", "herd=h1", "dbs=g1", "conflict_strategy=t1 nosuch"), `"nosuch" is not a db of this sync (its dbs: t1 t2 t3)`)
	refused(t, ctl.DSN, 2, args("add", "sync", "s9", "herd=h1", "dbs=g1", "conflict_strategy=t1 t1"), `db "t1" is listed twice`)
	refused(t, ctl.DSN, 2, args("add", "sync", "s9", "herd=h1", "dbs=g1", "foo=1"),
		`ibex: sync s9: unknown option "foo" (use herd, tables, dbs, conflict_strategy, on_insert_exists, on_update_update, on_update_delete, on_delete_delete, on_unique_clash, on_error, on_orphan, unique_clash_loser, autokick, onetimecopy, schedule, status, batch_size, single_transaction, compare_every)`)
	refuseAll(t, ctl.DSN,
		rf(2, args("add", "sync", "s9", "herd=h1", "dbs=g1", "autokick=maybe"), `sync s9: autokick must be true or false, not "maybe"`),
		rf(2, args("add", "sync", "s9", "herd=h1", "dbs=g1", "onetimecopy=x"), `sync s9: onetimecopy must be 0, 1 or 2, not "x"`),
		rf(2, args("add", "sync", "s9", "herd=h1", "dbs=g1", "onetimecopy=3"), `onetimecopy must be 0, 1 or 2, not "3"`),
		rf(2, args("add", "sync", "s9", "herd=h1", "dbs=g1", "schedule=often"), `sync s9: schedule "often": use an interval such as 30s or 5m`),
		rf(2, args("add", "sync", "s9", "herd=h1", "dbs=g1", "schedule=100ms"), `an interval must be at least 1s`),
		rf(2, args("add", "sync", "s9", "herd=h1", "dbs=g1", "status=paused"), `sync s9: status must be active or inactive, not "paused"`),
		rf(2, args("add", "sync", "s9", "herd=h1", "dbs=g1", "batch_size=-1"), `batch_size must be a whole number of rows, not "-1"`),
		rf(2, args("add", "sync", "s9", "herd=h1", "dbs=g1", "single_transaction=sometimes"), `sync s9: single_transaction must be true or false, not "sometimes"`),
		rf(2, args("add", "sync", "s9", "herd=h1", "tables=accounts", "dbs=g1"), "sync s9: give herd= or tables=, not both"),
		rf(2, args("add", "sync", "s9", "dbs=g1"), "sync s9: say which tables with herd=NAME or tables=a,b"),
		rf(2, args("add", "sync", "s9", "herd=h1"), "sync s9: say which dbs with dbs=DBGROUP or dbs=t1:source,t2:target"),
		rf(2, args("add", "sync", "s9", "extra", "herd=h1", "dbs=g1"), `give one sync name, then key=value options (got "s9 extra")`),
		rf(1, args("add", "sync", "s9", "herd=nosuch", "dbs=g1"), `sync s9: herd "nosuch" not found: add it with 'ibex add herd nosuch' or use tables=`),
		rf(1, args("add", "sync", "s9", "herd=h1", "dbs=nosuch"), `sync s9: dbgroup "nosuch" not found: see 'ibex list dbgroups'`),
		rf(1, args("add", "sync", "s9", "tables=accounts,nosuch", "dbs=g1"), `sync s9: table "public.nosuch" not found`),
		rf(1, args("add", "sync", "s9", "herd=h1", "dbs=t1:source,nosuch:target"), `db "nosuch" not found`),
		rf(2, args("add", "sync", "s9", "herd=h1", "dbs=t1:target,t2:target"), "dbgroup s9 has no source"),
		rf(1, args("add", "sync", "s.9", "herd=h1", "dbs=g1"), `sync "s.9": invalid value`),
		rf(2, args("update", "sync", "s1", "foo=1"), `sync s1: unknown option "foo"`),
		rf(2, args("update", "sync", "s4", "dbs=g2"), `ibex: sync s4: invalid conflict_strategy "t3 t2": "t3" is not a db of this sync (its dbs: t1 t2)`),
		rf(1, args("update", "sync", "nosuch", "autokick=true"), `sync "nosuch" not found: see 'ibex list syncs'`),
		rf(1, args("remove", "sync", "nosuch"), `sync "nosuch" not found`),
		rf(1, args("remove", "sync", "s3", "nosuch"), `sync "nosuch" not found`), // nothing removed, s3 included
	)
	// Objects in use.
	refuseAll(t, ctl.DSN,
		rf(1, args("remove", "herd", "h1"), `ibex: herd "h1" is in use by sync s1, s2, s3, s4, s_abort, s_bucardo_latest, s_skip: remove the sync first`),
		rf(1, args("remove", "dbgroup", "g1"), `ibex: dbgroup "g1" is in use by sync s1, s2, s4: remove the sync first`),
		rf(1, args("remove", "table", "accounts"), `ibex: table public.accounts is in use by sync s1, s2, s3, s4, s_abort, s_bucardo_latest, s_skip: remove it from the herd or remove the sync first`),
		rf(1, args("remove", "db", "t2"), `ibex: db "t2" is in use by dbgroup g1, g2: remove it from the dbgroup first`),
	)
	unchanged(t, ctl.DSN, before, "refused sync commands")
	for i, db := range dbs {
		if diff := cmp.Diff(trigsBefore[i], triggers(t, db.DSN)); diff != "" {
			t.Errorf("refused sync commands changed the triggers of t%d:\n%s", i+1, diff)
		}
	}
}

// TestSyncCaptureFollowsUpdates: update sync moves capture with the sync's dbs and
// tables; remove sync takes it all away, and leaves other syncs' alone.
func TestSyncCaptureFollowsUpdates(t *testing.T) {
	t.Parallel()
	ctl, dbs := threeDBs(t, true)
	t1, t2 := dbs[0], dbs[1]
	ok(t, ctl.DSN, "add", "herd", "h1", "accounts", "branches")
	ok(t, ctl.DSN, "add", "dbgroup", "g1", "t1:source", "t2:source", "t3:target")
	ok(t, ctl.DSN, "add", "dbgroup", "g2", "t1:source", "t2:target")
	ok(t, ctl.DSN, "add", "sync", "s1", "herd=h1", "dbs=g1")
	ok(t, ctl.DSN, "add", "sync", "s2", "herd=h1", "dbs=g1", "autokick=true")
	ok(t, ctl.DSN, "add", "sync", "s4", "herd=h1", "dbs=g1")
	wantTrig := []string{"accounts ibex_s1", "branches ibex_s1"}
	wantCT := []string{"s1.public.accounts", "s1.public.branches"}

	// update sync: options, then dbs: t2 is no longer a source, its capture goes.
	if out := ok(t, ctl.DSN, "update", "sync", "s1", "conflict_strategy=source", "autokick=true", "schedule=1m"); !strings.HasPrefix(out, "Updated sync s1: herd h1, dbgroup g1, conflict_strategy source") {
		t.Errorf("update sync said %q", out)
	}
	if trigs, _ := captureOf(t, t1, "s1"); !cmp.Equal(trigs, []string{"accounts ibex_kick_s1", "accounts ibex_s1", "branches ibex_kick_s1", "branches ibex_s1"}) {
		t.Errorf("s1 with autokick on t1: %v", trigs)
	}
	ok(t, ctl.DSN, "update", "sync", "s1", "dbs=g2", "autokick=false")
	if diff := cmp.Diff([]string{"s1", "h1", "g2", "source", "false", "0", "1m", "active", "0", "false"}, syncRows(t, ctl.DSN)[0]); diff != "" {
		t.Errorf("s1 after update (-want +got):\n%s", diff)
	}
	if trigs, cts := captureOf(t, t2, "s1"); len(trigs)+len(cts) != 0 {
		t.Errorf("t2 is no longer a source of s1 but keeps %v %v", trigs, cts)
	}
	if trigs, cts := captureOf(t, t1, "s1"); !cmp.Equal(trigs, wantTrig) || !cmp.Equal(cts, wantCT) {
		t.Errorf("s1 on t1 after update: %v %v", trigs, cts)
	}
	// update herd: capture follows the sync's tables.
	ok(t, ctl.DSN, "add", "herd", "h2", "accounts")
	ok(t, ctl.DSN, "update", "sync", "s1", "herd=h2")
	if trigs, cts := captureOf(t, t1, "s1"); !cmp.Equal(trigs, []string{"accounts ibex_s1"}) || !cmp.Equal(cts, []string{"s1.public.accounts"}) {
		t.Errorf("s1 on t1 after herd=h2: %v %v", trigs, cts)
	}

	// update herd and update table herd=: the capture of the herd's syncs follows.
	ok(t, ctl.DSN, "update", "herd", "h2", "branches")
	if trigs, cts := captureOf(t, t1, "s1"); !cmp.Equal(trigs, []string{"branches ibex_s1"}) || !cmp.Equal(cts, []string{"s1.public.branches"}) {
		t.Errorf("s1 on t1 after update herd h2 branches: %v %v", trigs, cts)
	}
	ok(t, ctl.DSN, "update", "table", "other", "herd=h2")
	if trigs, cts := captureOf(t, t1, "s1"); !cmp.Equal(trigs, []string{"branches ibex_s1", "other ibex_s1"}) || !cmp.Equal(cts, []string{"s1.public.branches", "s1.public.other"}) {
		t.Errorf("s1 on t1 after update table other herd=h2: %v %v", trigs, cts)
	}

	// remove sync: its triggers, functions and change tables go from every db; others stay.
	if out := ok(t, ctl.DSN, "remove", "sync", "s1", "s2"); out != "Removed sync s1\nRemoved sync s2\n" {
		t.Errorf("remove sync said %q", out)
	}
	for i, db := range dbs {
		for _, s := range []string{"s1", "s2"} {
			if trigs, cts := captureOf(t, db, s); len(trigs)+len(cts) != 0 {
				t.Errorf("after remove sync %s, t%d keeps %v %v", s, i+1, trigs, cts)
			}
		}
		fns := ibextest.Rows(t, db.DSN, `SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'ibex' AND (p.proname LIKE 's1.%' OR p.proname LIKE 's2.%' OR p.proname IN ('kick.s1', 'kick.s2'))`)
		if len(fns) != 0 {
			t.Errorf("after remove sync, t%d keeps functions %v", i+1, fns)
		}
	}
	if trigs, _ := captureOf(t, t1, "s4"); !slices.Equal(trigs, []string{"accounts ibex_s4", "branches ibex_s4"}) {
		t.Errorf("s4 lost its capture on t1: %v", trigs)
	}
	var names []string
	for _, r := range syncRows(t, ctl.DSN) {
		names = append(names, r[0])
	}
	if diff := cmp.Diff([]string{"s4"}, names); diff != "" {
		t.Errorf("syncs after remove (-want +got):\n%s", diff)
	}
	// update dbgroup: t1 is now a target of s4, its capture goes; t2 keeps its own.
	ok(t, ctl.DSN, "update", "dbgroup", "g1", "t2:source", "t1:target", "t3:target")
	if trigs, cts := captureOf(t, t1, "s4"); len(trigs)+len(cts) != 0 {
		t.Errorf("t1 is a target of s4 now but keeps %v %v", trigs, cts)
	}
	if trigs, _ := captureOf(t, t2, "s4"); !slices.Equal(trigs, []string{"accounts ibex_s4", "branches ibex_s4"}) {
		t.Errorf("s4 on its source t2: %v", trigs)
	}
	before := state(t, ctl.DSN)
	refused(t, ctl.DSN, 2, args("update", "dbgroup", "g1", "t2:target", "t1:target"), "dbgroup g1 has no source")
	unchanged(t, ctl.DSN, before, "a refused update dbgroup")
}

func TestSyncInlineDBsAndTables(t *testing.T) {
	t.Parallel()
	ctl, dbs := threeDBs(t, true)
	t1, t3 := dbs[0], dbs[2]

	out := ok(t, ctl.DSN, "add", "sync", "s4", "tables=accounts,branches", "dbs=t1:source,t3:target")
	if want := "Added sync s4: herd s4, dbgroup s4, conflict_strategy latest, capture on 2 tables\n"; out != want {
		t.Errorf("add sync with inline tables and dbs said %q", out)
	}
	ok(t, ctl.DSN, "add", "sync", "s5", "tables=other", "dbs=t2:source t3:target", "conflict_strategy=t3 t2")
	if diff := cmp.Diff([][]string{{"s4", "t1:source t3:target"}, {"s5", "t2:source t3:target"}}, dbmapRows(t, ctl.DSN)); diff != "" {
		t.Errorf("dbgroups made by inline dbs= (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([][]string{{"s4", "public.accounts,public.branches"}, {"s5", "public.other"}}, herdRows(t, ctl.DSN)); diff != "" {
		t.Errorf("herds made by tables= (-want +got):\n%s", diff)
	}
	if trigs, _ := captureOf(t, t1, "s4"); !cmp.Equal(trigs, []string{"accounts ibex_s4", "branches ibex_s4"}) {
		t.Errorf("s4 on t1: %v", trigs)
	}
	if trigs, _ := captureOf(t, t3, "s4"); len(trigs) != 0 {
		t.Errorf("s4 on its target t3: %v", trigs)
	}

	// The herd or dbgroup named after a sync may be used by another sync: inline
	// tables= or dbs= must not silently change that other sync's definition.
	ok(t, ctl.DSN, "add", "dbgroup", "shared", "t1:source", "t2:target")
	ok(t, ctl.DSN, "add", "herd", "sharedh", "accounts")
	ok(t, ctl.DSN, "add", "sync", "user", "herd=sharedh", "dbs=shared")
	before := state(t, ctl.DSN)
	refused(t, ctl.DSN, 1, args("add", "sync", "shared", "herd=sharedh", "dbs=t3:source,t2:target"),
		"sync shared: dbs=t3:source,t2:target would replace dbgroup shared, which sync user uses")
	refused(t, ctl.DSN, 1, args("add", "sync", "sharedh", "tables=branches", "dbs=shared"),
		"sync sharedh: tables=branches would replace herd sharedh, which sync user uses")
	unchanged(t, ctl.DSN, before, "refused inline syncs")
}
