package cli_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ibexrepl/ibex/internal/ibextest"
	"github.com/ibexrepl/ibex/internal/pgtest"
)

// TestSeedStepsVIAndVII runs steps VI and VII of the seed demo
// (reference/bucardo5-announcement.txt) with ibex against five databases made by
// pgbench -i, then takes it all apart again.
func TestSeedStepsVIAndVII(t *testing.T) {
	t.Parallel()
	ctl := newControl(t)
	var dbs []*pgtest.DB
	for range 5 {
		dbs = append(dbs, pgbenchDB(t))
	}

	// VI. Tell ibex about the databases and tables.
	for i, db := range dbs {
		name := fmt.Sprintf("t%d", i+1)
		if out := ok(t, ctl.DSN, "add", "db", name, "dbname="+db.Name, "host="+db.Conn["host"], "port="+db.Conn["port"], "user="+db.Conn["user"]); out != "Added db "+name+"\n" {
			t.Errorf("add db %s said %q", name, out)
		}
	}
	list := ok(t, ctl.DSN, "list", "dbs")
	if lines := strings.Split(strings.TrimSpace(list), "\n"); len(lines) != 6 {
		t.Errorf("list dbs:\n%s", list)
	}
	for i, db := range dbs {
		if !strings.Contains(list, fmt.Sprintf("t%d   | postgres | active | dbname='%s' host='%s' port='%s' user='%s' | (PGPASSWORD/.pgpass)\n",
			i+1, db.Name, db.Conn["host"], db.Conn["port"], db.Conn["user"])) {
			t.Errorf("list dbs lacks t%d:\n%s", i+1, list)
		}
	}

	out := ok(t, ctl.DSN, "add", "table", "pgbench_accounts", "pgbench_branches", "pgbench_tellers", "db=t1", "herd=therd")
	want := `Added table public.pgbench_accounts: primary key (aid)
Added table public.pgbench_branches: primary key (bid)
Added table public.pgbench_tellers: primary key (tid)
Herd therd has the tables
`
	if out != want {
		t.Errorf("add table said:\n%s\nwant:\n%s", out, want)
	}
	want = `Table                     Key                 DB   Herds
public.pgbench_accounts | primary key (aid) | t1 | therd
public.pgbench_branches | primary key (bid) | t1 | therd
public.pgbench_tellers  | primary key (tid) | t1 | therd
`
	if got := ok(t, ctl.DSN, "list", "tables"); got != want {
		t.Errorf("list tables:\n%s\nwant:\n%s", got, want)
	}

	// pgbench_history has no primary key and no unique index: refused, named, nothing kept.
	before := state(t, ctl.DSN)
	msg := refused(t, ctl.DSN, 1, args("add", "table", "pgbench_history", "db=t1", "herd=h2"))
	if want := "ibex: table public.pgbench_history has no primary key and no unique index over NOT NULL columns, so its rows cannot be identified: add a primary key, or add it with keyless=fullcopy to use it only in fullcopy syncs\n"; msg != want {
		t.Errorf("add table pgbench_history:\n%s\nwant:\n%s", msg, want)
	}
	unchanged(t, ctl.DSN, before, "the refused add table pgbench_history")

	// VII. Group the databases and set their roles; create the sync.
	out = ok(t, ctl.DSN, "add", "dbgroup", "tgroup", "t1:source", "t2:source", "t3:source", "t4:source", "t5:target")
	if want := "Added dbgroup tgroup: t1:source t2:source t3:source t4:source t5:target\n"; out != want {
		t.Errorf("add dbgroup said %q", out)
	}
	out = ok(t, ctl.DSN, "add", "sync", "foobar", "herd=therd", "dbs=tgroup", "ping=false")
	if want := "Added sync foobar: herd therd, dbgroup tgroup, conflict_strategy latest, capture on 12 tables\n"; out != want {
		t.Errorf("add sync said %q, want %q", out, want)
	}
	if diff := cmp.Diff([][]string{{"foobar", "therd", "tgroup", "latest", "false", "0", "", "active", "0", "false"}}, syncRows(t, ctl.DSN)); diff != "" {
		t.Errorf("ibex.sync (-want +got):\n%s", diff)
	}

	// Capture on the four sources, none on the target.
	wantTrig := []string{"pgbench_accounts ibex_foobar", "pgbench_accounts ibex_truncate_foobar", "pgbench_branches ibex_foobar",
		"pgbench_branches ibex_truncate_foobar", "pgbench_tellers ibex_foobar", "pgbench_tellers ibex_truncate_foobar"}
	wantCT := []string{"foobar.public.pgbench_accounts", "foobar.public.pgbench_branches", "foobar.public.pgbench_tellers"}
	for i, db := range dbs[:4] {
		if diff := cmp.Diff(wantTrig, triggers(t, db.DSN)); diff != "" {
			t.Errorf("triggers on source t%d (-want +got):\n%s", i+1, diff)
		}
		if diff := cmp.Diff(wantCT, ibexTables(t, db.DSN)); diff != "" {
			t.Errorf("change tables on source t%d (-want +got):\n%s", i+1, diff)
		}
	}
	if got := triggers(t, dbs[4].DSN); len(got) != 0 {
		t.Errorf("triggers on target t5: %v", got)
	}
	if got := ibexTables(t, dbs[4].DSN); len(got) != 0 {
		t.Errorf("change tables on target t5: %v", got)
	}
	// The capture captures: a pgbench-like write on t2 is recorded; one on t5 is not.
	ibextest.Exec(t, dbs[1].DSN, `UPDATE pgbench_accounts SET abalance = abalance + 7 WHERE aid = 42`)
	ibextest.Exec(t, dbs[4].DSN, `UPDATE pgbench_accounts SET abalance = abalance + 7 WHERE aid = 42`)
	if got := ibextest.One(t, dbs[1].DSN, `SELECT string_agg(aid::text, ',') FROM ibex."foobar.public.pgbench_accounts"`); got != "42" {
		t.Errorf("captured keys on t2: %q, want 42", got)
	}

	wantStatus := "Name     State              Last good   Time   Last I/D/C   Last bad   Time   Pending\nfoobar | No records found |           |      |            | none     |      | 1\n"
	if got := ok(t, ctl.DSN, "status"); got != wantStatus {
		t.Errorf("status:\n%q\nwant:\n%q", got, wantStatus)
	}
	detail := ok(t, ctl.DSN, "status", "foobar")
	for _, line := range []string{
		"Sync name                        : foobar\n",
		"Herd/dbs                         : therd / tgroup (t1:source t2:source t3:source t4:source t5:target)\n",
		"Tables in sync                   : 3\n",
		"Status                           : Active\n",
		"Conflict strategy                : latest\n",
		"Autokick                         : No\n",
		"Onetimecopy                      : No\n",
	} {
		if !strings.Contains(detail, line) {
			t.Errorf("status foobar lacks %q:\n%s", line, detail)
		}
	}

	var b strings.Builder
	b.WriteString("# ibex configuration: apply with 'ibex apply -f FILE'\ndbs:\n")
	for i, db := range dbs {
		fmt.Fprintf(&b, "  t%d:\n    dbname: %s\n    host: %s\n    port: \"%s\"\n    user: %s\n", i+1, db.Name, db.Conn["host"], db.Conn["port"], db.Conn["user"])
	}
	b.WriteString(`tables:
  public.pgbench_accounts:
    db: t1
    key: [aid]
    keykind: primary key
  public.pgbench_branches:
    db: t1
    key: [bid]
    keykind: primary key
  public.pgbench_tellers:
    db: t1
    key: [tid]
    keykind: primary key
herds:
  therd:
    - public.pgbench_accounts
    - public.pgbench_branches
    - public.pgbench_tellers
dbgroups:
  tgroup:
    - t1:source
    - t2:source
    - t3:source
    - t4:source
    - t5:target
syncs:
  foobar:
    herd: therd
    dbs: tgroup
    conflict_strategy: latest
    autokick: false
    onetimecopy: 0
    status: active
`)
	if diff := cmp.Diff(b.String(), ok(t, ctl.DSN, "export")); diff != "" {
		t.Errorf("export (-want +got):\n%s", diff)
	}

	// Taking it apart: remove sync removes the triggers, functions and change tables.
	before = state(t, ctl.DSN)
	refused(t, ctl.DSN, 1, args("remove", "herd", "therd"), `herd "therd" is in use by sync foobar`)
	refused(t, ctl.DSN, 1, args("remove", "dbgroup", "tgroup"), `dbgroup "tgroup" is in use by sync foobar`)
	refused(t, ctl.DSN, 1, args("remove", "table", "pgbench_accounts"), "table public.pgbench_accounts is in use by sync foobar")
	refused(t, ctl.DSN, 1, args("remove", "db", "t5"), `db "t5" is in use by dbgroup tgroup`)
	unchanged(t, ctl.DSN, before, "refused removes")
	if out := ok(t, ctl.DSN, "remove", "sync", "foobar"); out != "Removed sync foobar\n" {
		t.Errorf("remove sync said %q", out)
	}
	for i, db := range dbs {
		if got := triggers(t, db.DSN); len(got) != 0 {
			t.Errorf("t%d keeps triggers %v", i+1, got)
		}
		if got := ibexTables(t, db.DSN); len(got) != 0 {
			t.Errorf("t%d keeps change tables %v", i+1, got)
		}
		if got := ibextest.One(t, db.DSN, `SELECT count(*)::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'ibex'`); got != "0" {
			t.Errorf("t%d keeps %s functions in schema ibex", i+1, got)
		}
	}
	ok(t, ctl.DSN, "remove", "dbgroup", "tgroup")
	ok(t, ctl.DSN, "remove", "herd", "therd")
	ok(t, ctl.DSN, "remove", "table", "pgbench_accounts", "pgbench_branches", "pgbench_tellers")
	ok(t, ctl.DSN, "remove", "db", "t1", "t2", "t3", "t4", "t5")
	if got := ok(t, ctl.DSN, "export"); got != "# ibex configuration: apply with 'ibex apply -f FILE'\n{}\n" {
		t.Errorf("export of an empty configuration: %q", got)
	}
}
