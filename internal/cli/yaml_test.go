package cli_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ibexrepl/ibex/internal/ibextest"
)

const demoYAML = "../../configs/demo.yaml"

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// lineOf is the 1-based number of the first line of text containing s.
func lineOf(t *testing.T, text, s string) int {
	t.Helper()
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	t.Fatalf("%q not in the text", s)
	return 0
}

func readDemo(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(demoYAML)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestExportApplyRoundTrip(t *testing.T) {
	t.Parallel()
	ctl := newControl(t)
	db1 := newDB(t, tablesSQL)
	db2 := newDB(t, tablesSQL)
	ok(t, ctl.DSN, ibextest.AddDBArgs("t1", db1.Conn, "sslmode=disable", "application_name=ibex rt")...)
	ok(t, ctl.DSN, ibextest.AddDBArgs("t2", db2.Conn)...)
	ok(t, ctl.DSN, "add", "db", "t3", "dbname=elsewhere", "host=db3.example.com", "pass=env:IBEX_RT_PW", "status=inactive", "--force")
	ok(t, ctl.DSN, "add", "table", "all", "db=t1", "herd=hall")
	ok(t, ctl.DSN, "add", "herd", "h2", `"dotted.name"`, "s2.a")
	ok(t, ctl.DSN, "add", "herd", "empty")
	ok(t, ctl.DSN, "add", "dbgroup", "g1", "t1:source", "t2:target")
	ok(t, ctl.DSN, "add", "dbgroup", "g2", "t2:source", "t1:source", "t3:target")
	ok(t, ctl.DSN, "add", "sync", "s1", "herd=hall", "dbs=g1", "conflict_strategy=t2 t1", "autokick=true", "schedule=30s", "onetimecopy=1", "batch_size=100", "single_transaction=on")
	ok(t, ctl.DSN, "add", "sync", "s2", "herd=h2", "dbs=t2:source,t1:target", "status=inactive", "conflict_strategy=skip")

	file := filepath.Join(t.TempDir(), "exported.yaml")
	if out := ok(t, ctl.DSN, "export", "-o", file); out != "" {
		t.Errorf("export -o printed %q", out)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	exported := string(b)
	if got := ok(t, ctl.DSN, "export"); got != exported {
		t.Errorf("export and export -o differ:\n%s\n---\n%s", got, exported)
	}
	for _, s := range []string{`public."dotted.name":`, `- public."dotted.name"`, `public."ünï ""q"" 'tbl'":`, `key: [Line#, Order ID]`, "pass: env:IBEX_RT_PW"} {
		if !strings.Contains(exported, s) {
			t.Errorf("the export lacks %q:\n%s", s, exported)
		}
	}

	// Into an empty control database: --dry-run lists the changes and changes nothing.
	ctl2 := newControl(t)
	before := state(t, ctl2.DSN)
	out := ok(t, ctl2.DSN, "apply", "-f", file, "--dry-run")
	want := `would add db t1
would add db t2
would add db t3
would add table Sales Dept.Order Lines
would add table public."dotted.name"
would add table public."ünï ""q"" 'tbl'"
would add table public.MixedCase
would add table public.accounts
would add table public.branches
would add table s2.a
would add table s2.b
would add herd empty
would add herd h2
would add herd hall
would add dbgroup g1
would add dbgroup g2
would add dbgroup s2
would add sync s1
would add sync s2
`
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("apply --dry-run (-want +got):\n%s", diff)
	}
	unchanged(t, ctl2.DSN, before, "apply --dry-run")

	out = ok(t, ctl2.DSN, "apply", "-f", file)
	if diff := cmp.Diff(strings.ReplaceAll(want, "would ", ""), out); diff != "" {
		t.Errorf("apply (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(exported, ok(t, ctl2.DSN, "export")); diff != "" {
		t.Errorf("export after apply differs from the applied export (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(relationRows(t, ctl.DSN), relationRows(t, ctl2.DSN)); diff != "" {
		t.Errorf("ibex.relation differs after the round trip (-first +second):\n%s", diff)
	}
	// Idempotent.
	applied := state(t, ctl2.DSN)
	if out := ok(t, ctl2.DSN, "apply", "-f", file); out != "No changes: the control database already matches "+file+"\n" {
		t.Errorf("second apply said %q", out)
	}
	unchanged(t, ctl2.DSN, applied, "a second apply")

	// Changes: one sync updated, one removed with what only it used.
	changed := strings.Replace(exported, "conflict_strategy: t2 t1", "conflict_strategy: latest", 1)
	changed = strings.Replace(changed, "\n  s2:\n    herd: h2\n    dbs: s2\n    conflict_strategy: skip\n    autokick: false\n    onetimecopy: 0\n    status: inactive\n", "\n", 1)
	changed = strings.Replace(changed, "  s2:\n    - t2:source\n    - t1:target\n", "", 1)
	if changed == exported || strings.Count(changed, "s2:") != 0 {
		t.Fatalf("could not edit the export:\n%s", changed)
	}
	changedFile := writeFile(t, "changed.yaml", changed)
	out = ok(t, ctl2.DSN, "apply", "-f", changedFile, "--dry-run")
	if want := "would remove dbgroup s2\nwould update sync s1\nwould remove sync s2\n"; out != want {
		t.Errorf("apply --dry-run of the changed file said:\n%s\nwant:\n%s", out, want)
	}
	unchanged(t, ctl2.DSN, applied, "apply --dry-run")
	if trigs, _ := captureOf(t, db2, "s2"); len(trigs) == 0 {
		t.Fatalf("s2 has no capture on its source t2")
	}
	ok(t, ctl2.DSN, "apply", "-f", changedFile)
	if diff := cmp.Diff(changed, ok(t, ctl2.DSN, "export")); diff != "" {
		t.Errorf("export after applying the changed file (-want +got):\n%s", diff)
	}
	if trigs, cts := captureOf(t, db2, "s2"); len(trigs)+len(cts) != 0 {
		t.Errorf("apply removed sync s2 but its capture stays on t2: %v %v", trigs, cts)
	}

	// Only a herd changes: the capture of its sync follows.
	if trigs, _ := captureOf(t, db1, "s1"); !slices.Contains(trigs, "s2.b ibex_s1") {
		t.Fatalf("s1 does not capture s2.b on t1: %v", trigs)
	}
	changed2 := strings.Replace(changed, "    - s2.b\n", "", 1)
	if changed2 == changed {
		t.Fatalf("could not take s2.b out of herd hall:\n%s", changed)
	}
	changedFile2 := writeFile(t, "changed2.yaml", changed2)
	if out := ok(t, ctl2.DSN, "apply", "-f", changedFile2); out != "update herd hall\n" {
		t.Errorf("apply of a herd change said %q", out)
	}
	trigs, cts := captureOf(t, db1, "s1")
	if slices.Contains(trigs, "s2.b ibex_s1") || slices.Contains(cts, "s1.s2.b") || !slices.Contains(trigs, "s2.a ibex_s1") {
		t.Errorf("s2.b left herd hall of sync s1, but the capture on t1 is: %v %v", trigs, cts)
	}

	// An empty file removes everything, capture included.
	empty := writeFile(t, "empty.yaml", "# nothing\n{}\n")
	ok(t, ctl2.DSN, "apply", "-f", empty)
	if got := ok(t, ctl2.DSN, "export"); got != "# ibex configuration: apply with 'ibex apply -f FILE'\n{}\n" {
		t.Errorf("export after applying an empty file: %q", got)
	}
}

func TestApplyRefusesBadFiles(t *testing.T) {
	t.Parallel()
	ctl := newControl(t)
	ok(t, ctl.DSN, "add", "herd", "already_here")
	before := state(t, ctl.DSN)
	demo := readDemo(t)

	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	edit := func(old, new string) string {
		t.Helper()
		if !strings.Contains(demo, old) {
			t.Fatalf("%q not in demo.yaml", old)
		}
		return strings.Replace(demo, old, new, 1)
	}
	for _, tc := range []struct {
		name, text string
		want       func(file string) string
	}{
		{"unknown db key", edit("    dbname: btest1\n", "    dbnmae: btest1\n"), func(f string) string {
			return fmt.Sprintf(`ibex: %s: line %d: unknown db setting "dbnmae" (known: `, f, lineOf(t, demo, "dbname: btest1"))
		}},
		{"autokick maybe", edit("autokick: false", "autokick: maybe"), func(f string) string {
			return fmt.Sprintf("ibex: %s: line %d: syncs.foobar.autokick: cannot unmarshal !!str `maybe` into bool\n", f, lineOf(t, demo, "autokick:"))
		}},
		{"onetimecopy x", edit("onetimecopy: 0", "onetimecopy: x"), func(f string) string {
			return fmt.Sprintf("ibex: %s: line %d: syncs.foobar.onetimecopy: cannot unmarshal !!str `x` into int\n", f, lineOf(t, demo, "onetimecopy:"))
		}},
		{"unknown sync key", edit("    autokick: false\n", "    autokick: false\n    autokik: true\n"), func(f string) string {
			return fmt.Sprintf("ibex: %s: line %d: syncs.foobar.autokik: unknown key \"autokik\"\n", f, lineOf(t, demo, "autokick:")+1)
		}},
		{"unknown table key", edit("    keykind: primary key\n", "    keykind: primary key\n    kee: [x]\n"), func(f string) string {
			return fmt.Sprintf("ibex: %s: line %d: tables.public.pgbench_accounts.kee: unknown key \"kee\"\n", f, lineOf(t, demo, "keykind:")+1)
		}},
		{"unknown section", edit("herds:\n", "herdz:\n"), func(f string) string {
			return fmt.Sprintf("ibex: %s: line %d: herdz: unknown key \"herdz\"\n", f, lineOf(t, demo, "herds:"))
		}},
		{"key not a list", edit("key: [aid]", "key: 5"), func(f string) string {
			return fmt.Sprintf("ibex: %s: line %d: tables.public.pgbench_accounts.key: cannot unmarshal !!int `5` into []string\n", f, lineOf(t, demo, "key: [aid]"))
		}},
		{"literal password", edit("    dbname: btest2\n", "    dbname: btest2\n    pass: hunter2\n"), func(f string) string {
			return fmt.Sprintf("ibex: %s: line %d: a literal password is never stored", f, lineOf(t, demo, "dbname: btest2")+1)
		}},
		{"db setting not a value", edit("    user: postgres\n", "    user: [postgres]\n"), func(f string) string {
			return fmt.Sprintf(`ibex: %s: line %d: db setting "user" must be a single value`, f, lineOf(t, demo, "user: postgres"))
		}},
		{"bad YAML", edit("    - t5:target\n", "    - [t5:target\n"), func(f string) string {
			return fmt.Sprintf("ibex: %s: ", f)
		}},
		{"missing herd", edit("    herd: therd", "    herd: nosuch"), func(f string) string {
			return fmt.Sprintf("ibex: %s: sync foobar: herd \"nosuch\" is not among the herds\n", f)
		}},
		{"missing dbgroup", edit("    dbs: tgroup", "    dbs: nogroup"), func(f string) string {
			return fmt.Sprintf("ibex: %s: sync foobar: dbgroup \"nogroup\" is not among the dbgroups\n", f)
		}},
		{"missing table db", edit("    db: t1\n    key: [bid]", "    db: t9\n    key: [bid]"), func(f string) string {
			return fmt.Sprintf("ibex: %s: table public.pgbench_branches: db \"t9\" is not among the dbs\n", f)
		}},
		{"missing member db", edit("    - t5:target", "    - t9:target"), func(f string) string {
			return fmt.Sprintf("ibex: %s: dbgroup tgroup: db \"t9\" is not among the dbs\n", f)
		}},
		{"missing herd table", edit("    - public.pgbench_tellers", "    - public.pgbench_history"), func(f string) string {
			return fmt.Sprintf("ibex: %s: herd therd: table \"public.pgbench_history\" is not among the tables\n", f)
		}},
		{"no source", strings.ReplaceAll(demo, ":source", ":target"), func(f string) string {
			return fmt.Sprintf("ibex: %s: dbgroup tgroup has no source: give at least one db the role source\n", f)
		}},
		{"bad role", edit("    - t1:source", "    - t1:boss"), func(f string) string {
			return fmt.Sprintf("ibex: %s: dbgroup tgroup: member \"t1:boss\" must be db:source, db:target or db:fullcopy\n", f)
		}},
		{"list strategy outside the sync", edit("conflict_strategy: latest", "conflict_strategy: t2 t7"), func(f string) string {
			return fmt.Sprintf("ibex: %s: sync foobar: invalid conflict_strategy \"t2 t7\": \"t7\" is not a db of this sync (its dbs: t1 t2 t3 t4 t5)", f)
		}},
		{"bad schedule", edit("    status: active\n", "    status: active\n    schedule: sometimes\n"), func(f string) string {
			return fmt.Sprintf("ibex: %s: sync foobar: schedule \"sometimes\": use an interval", f)
		}},
		{"bad status", edit("    status: active\n", "    status: paused\n"), func(f string) string {
			return fmt.Sprintf("ibex: %s: sync foobar: status must be active or inactive\n", f)
		}},
		{"onetimecopy 3", edit("onetimecopy: 0", "onetimecopy: 3"), func(f string) string {
			return fmt.Sprintf("ibex: %s: sync foobar: onetimecopy must be 0, 1 or 2\n", f)
		}},
		{"bad keykind", edit("keykind: primary key", "keykind: primary"), func(f string) string {
			return fmt.Sprintf("ibex: %s: table public.pgbench_accounts: keykind must be one of primary key, unique index, none\n", f)
		}},
		{"key without keykind", edit("key: [aid]\n    keykind: primary key", "key: []\n    keykind: primary key"), func(f string) string {
			return fmt.Sprintf("ibex: %s: table public.pgbench_accounts: key and keykind disagree\n", f)
		}},
		{"no dbname", edit("    dbname: btest3\n", ""), func(f string) string {
			return fmt.Sprintf("ibex: %s: db t3: dbname or service is required\n", f)
		}},
	} {
		file := writeFile(t, strings.ReplaceAll(tc.name, " ", "_")+".yaml", tc.text)
		want := tc.want(file)
		for _, dry := range []bool{true, false} {
			a := args("apply", "-f", file)
			if dry {
				a = append(a, "--dry-run")
			}
			wg.Add(1)
			sem <- struct{}{}
			go func() { // refused before the control database is touched: any order will do
				defer func() { <-sem; wg.Done() }()
				r := ibex(t, ctl.DSN, a...)
				if r.Code != 2 || !strings.HasPrefix(r.Err, want) || r.Out != "" {
					t.Errorf("%s: %s\nwant exit 2 and an error starting %q", tc.name, r, want)
				}
			}()
		}
	}
	wg.Wait()
	refused(t, ctl.DSN, 2, args("apply"), "ibex: apply: give the file with -f FILE")
	refused(t, ctl.DSN, 2, args("apply", "-f", "/nonexistent/ibex.yaml"), "ibex: apply: open /nonexistent/ibex.yaml: no such file or directory")
	unchanged(t, ctl.DSN, before, "refused applies")
}

// TestApplyIsAllOrNothing: a file whose sync cannot be validated (a db cannot be reached)
// is refused as a whole.
func TestApplyIsAllOrNothing(t *testing.T) {
	t.Parallel()
	ctl := newControlWith(t, smallSQL)
	db := ctl // the tables are in the control database
	ok(t, ctl.DSN, "add", "herd", "already_here")
	before := state(t, ctl.DSN)
	text := fmt.Sprintf(`dbs:
  a:
    dbname: %s
    host: %s
    port: "%s"
    user: %s
  down:
    dbname: nowhere
    host: 127.0.0.1
    port: "1"
    user: postgres
tables:
  public.accounts: {db: a, key: [id], keykind: primary key}
herds:
  h: [public.accounts]
dbgroups:
  g: [a:source, down:target]
syncs:
  s:
    herd: h
    dbs: g
`, db.Name, db.Conn["host"], db.Conn["port"], db.Conn["user"])
	file := writeFile(t, "down.yaml", text)
	// The new db's connection is tested first.
	refused(t, ctl.DSN, 1, args("apply", "-f", file), "ibex: apply "+file+": nothing changed: cannot connect to db down (host=127.0.0.1 port=1 dbname=nowhere user=postgres)",
		"connection refused", "fix the settings in the file, or add --force to apply them untested")
	unchanged(t, ctl.DSN, before, "a refused apply")
	// --force saves it untested, but sync s cannot be validated without it: all refused.
	msg := refused(t, ctl.DSN, 1, args("apply", "-f", file, "--force"), "ibex: sync s: cannot connect to db down (host=127.0.0.1 port=1 dbname=nowhere user=postgres)", "connection refused")
	if strings.Count(msg, "ibex: sync s:") != 1 || strings.Contains(msg, "sync s: sync s:") {
		t.Errorf("the error should name the sync once: %q", msg)
	}
	unchanged(t, ctl.DSN, before, "a refused apply")
	if got := triggers(t, db.DSN); len(got) != 0 {
		t.Errorf("a refused apply left triggers: %v", got)
	}
}

// TestApplyTestsChangedDBs: apply tests the connection of every db it adds or changes
// before it changes anything, and re-validates the syncs using a changed db, as
// 'ibex update db' and 'ibex validate' do.
func TestApplyTestsChangedDBs(t *testing.T) {
	t.Parallel()
	ctl := newControlWith(t, smallSQL)
	src := ctl // the source's tables are in the control database
	dst := newDB(t, smallSQL)
	ok(t, ctl.DSN, ibextest.AddDBArgs("a", src.Conn)...)
	ok(t, ctl.DSN, ibextest.AddDBArgs("b", dst.Conn)...)
	ok(t, ctl.DSN, "add", "table", "accounts", "db=a", "herd=h")
	ok(t, ctl.DSN, "add", "sync", "s", "herd=h", "dbs=a:source,b:target")
	exported := ok(t, ctl.DSN, "export")
	before := state(t, ctl.DSN)
	dstTrigs := triggers(t, dst.DSN)

	// b moved to a port where nothing listens: refused, naming the db; nothing changes.
	portB := "port: \"" + dst.Conn["port"] + "\""
	moved := strings.Replace(exported, "dbname: "+dst.Name+"\n    host: "+dst.Conn["host"]+"\n    "+portB, "dbname: "+dst.Name+"\n    host: 127.0.0.1\n    port: \"1\"", 1)
	if moved == exported {
		t.Fatalf("could not move db b in the export:\n%s", exported)
	}
	file := writeFile(t, "moved.yaml", moved)
	refused(t, ctl.DSN, 1, args("apply", "-f", file), "ibex: apply "+file+": nothing changed: cannot connect to db b (host=127.0.0.1 port=1 dbname="+dst.Name,
		"connection refused", "or add --force to apply them untested")
	if got := ok(t, ctl.DSN, "export"); got != exported {
		t.Errorf("a refused apply changed the export:\n%s\nthen:\n%s", exported, got)
	}
	unchanged(t, ctl.DSN, before, "a refused apply")
	if diff := cmp.Diff(dstTrigs, triggers(t, dst.DSN)); diff != "" {
		t.Errorf("a refused apply changed b's triggers (-before +after):\n%s", diff)
	}
	// --dry-run connects to nothing and says what would change.
	if out := ok(t, ctl.DSN, "apply", "-f", file, "--dry-run"); out != "would update db b\n" {
		t.Errorf("apply --dry-run said %q", out)
	}

	// a's dbname now names another database: capture is installed there.
	newSrc := newDB(t, smallSQL)
	if got := triggers(t, newSrc.DSN); len(got) != 0 {
		t.Fatalf("the new database already has triggers: %v", got)
	}
	renamed := strings.Replace(exported, "dbname: "+src.Name+"\n", "dbname: "+newSrc.Name+"\n", 1)
	if renamed == exported {
		t.Fatalf("could not change a's dbname in the export:\n%s", exported)
	}
	if out := ok(t, ctl.DSN, "apply", "-f", writeFile(t, "renamed.yaml", renamed)); out != "update db a\n" {
		t.Errorf("apply of a's new dbname said %q", out)
	}
	if got := ok(t, ctl.DSN, "export"); got != renamed {
		t.Errorf("export after the apply:\n%s\nwant:\n%s", got, renamed)
	}
	checkMovedSource(t, ctl, newSrc, dst)
}

// TestDemoYAML: configs/demo.yaml is the seed demo's configuration and exactly what
// 'ibex export' prints for it.
func TestDemoYAML(t *testing.T) {
	t.Parallel()
	demo := readDemo(t)
	ctl := newControl(t)
	before := state(t, ctl.DSN)
	out := ok(t, ctl.DSN, "apply", "-f", demoYAML, "--dry-run")
	want := `would add db t1
would add db t2
would add db t3
would add db t4
would add db t5
would add table public.pgbench_accounts
would add table public.pgbench_branches
would add table public.pgbench_tellers
would add herd therd
would add dbgroup tgroup
would add sync foobar
`
	if out != want {
		t.Errorf("apply --dry-run of demo.yaml said:\n%s\nwant:\n%s", out, want)
	}
	unchanged(t, ctl.DSN, before, "apply --dry-run")

	// Applied for real against five small pgbench-shaped dbs (dbnames rewritten), the
	// export gives the file back.
	// t1..t4 are one database (their capture is the same), t5 another.
	text := demo
	const pgbenchLike = `CREATE TABLE pgbench_accounts (aid int PRIMARY KEY, bid int, abalance int, filler char(84));
CREATE TABLE pgbench_branches (bid int PRIMARY KEY, bbalance int, filler char(88));
CREATE TABLE pgbench_tellers (tid int PRIMARY KEY, bid int, tbalance int, filler char(84));`
	sources, target := newDB(t, pgbenchLike), newDB(t, pgbenchLike)
	for i := 1; i <= 5; i++ {
		db := sources
		if i == 5 {
			db = target
		}
		text = strings.Replace(text, fmt.Sprintf("dbname: btest%d\n", i), "dbname: "+db.Name+"\n", 1)
		text = strings.ReplaceAll(text, "host: 127.0.0.1\n", "host: "+db.Conn["host"]+"\n")
		text = strings.ReplaceAll(text, "port: \"5432\"\n", "port: \""+db.Conn["port"]+"\"\n")
		text = strings.ReplaceAll(text, "user: postgres\n", "user: "+db.Conn["user"]+"\n")
	}
	file := writeFile(t, "demo.yaml", text)
	if out := ok(t, ctl.DSN, "apply", "-f", file); out != strings.ReplaceAll(want, "would ", "") {
		t.Errorf("apply of demo.yaml said:\n%s", out)
	}
	if diff := cmp.Diff(text, ok(t, ctl.DSN, "export")); diff != "" {
		t.Errorf("export after applying demo.yaml (-want +got):\n%s", diff)
	}
	if got := ok(t, ctl.DSN, "list", "syncs"); got != "Sync     Status   Herd    Dbgroup   Conflict   Autokick   Onetimecopy   Schedule\nfoobar | active | therd | tgroup  | latest   | no       | 0           | none\n" {
		t.Errorf("list syncs after applying demo.yaml:\n%s", got)
	}
	if got := triggers(t, sources.DSN); !cmp.Equal(got, []string{"pgbench_accounts ibex_foobar", "pgbench_accounts ibex_truncate_foobar", "pgbench_branches ibex_foobar",
		"pgbench_branches ibex_truncate_foobar", "pgbench_tellers ibex_foobar", "pgbench_tellers ibex_truncate_foobar"}) {
		t.Errorf("capture on the sources after applying demo.yaml: %v", got)
	}
	if got := triggers(t, target.DSN); len(got) != 0 {
		t.Errorf("capture on the target after applying demo.yaml: %v", got)
	}
}
