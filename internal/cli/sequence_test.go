package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/internal/ibextest"
)

// sequencesSQL is a database with sequences of every kind, and a table.
const sequencesSQL = `
CREATE SCHEMA s2;
CREATE SEQUENCE public.s1;
CREATE SEQUENCE public."Odd ""q""";
CREATE SEQUENCE s2.x;
CREATE SEQUENCE s2.down INCREMENT BY -1;
CREATE TABLE public.tbl (id int PRIMARY KEY);
`

func TestSequenceCommands(t *testing.T) {
	t.Parallel()
	ctl := newControlWith(t, sequencesSQL)
	db := ctl // the sequences are in the control database
	ok(t, ctl.DSN, ibextest.AddDBArgs("t1", db.Conn)...)

	out := ok(t, ctl.DSN, "add", "sequence", "s1", `"Odd ""q"""`, "db=t1", "herd=h1")
	if want := "Added sequence public.s1\nAdded sequence public.Odd \"q\"\nHerd h1 has the sequences\n"; out != want {
		t.Errorf("add sequence said:\n%s\nwant:\n%s", out, want)
	}
	before := state(t, ctl.DSN)
	refuseAll(t, ctl.DSN,
		rf(1, args("add", "sequence", "s2.x", "nosuch", "db=t1", "herd=h2"), "ibex: sequence public.nosuch does not exist in db t1 (dbname "+db.Name+"): check the name or say db="),
		rf(1, args("add", "sequence", "tbl", "db=t1"), "ibex: sequence public.tbl does not exist in db t1 (dbname "+db.Name+"): check the name or say db="),
		rf(1, args("add", "sequence", "s1", "db=t1"), "ibex: sequence public.s1 already exists: use 'ibex update sequence public.s1 herd=...' to put it in a herd"),
		rf(1, args("add", "sequence", "s2.down", "db=t1"), "ibex: sequence s2.down in db t1 descends (INCREMENT BY -1): ibex replicates ascending sequences only"),
		rf(1, args("add", "sequence", "zz*", "db=t1"), `ibex: sequence pattern "zz*" matches no sequence`),
		rf(1, args("add", "sequence", "s2.x", "db=nosuch"), `db "nosuch" not found: see 'ibex list dbs'`),
		rf(2, args("add", "sequence", "s2.x", "db=t1", "bogus=1"), `ibex: add sequence: unknown setting "bogus" (use db= or herd=)`),
		rf(2, args("add", "sequence", "db=t1"), "ibex: add sequence: name the sequences (or all, or a pattern such as public.*)"),
		rf(2, args("add", "sequence", "s2.x", "db=t1", "herd="), "ibex: herd= needs a name"),
		rf(1, args("update", "sequence", "nosuch", "herd=h1"), `ibex: sequence "public.nosuch" not found: see 'ibex list sequences'`),
		rf(2, args("update", "sequence", "s1"), "ibex: update sequence: say what to change: db=, herd= or interleave=on|off"),
		rf(2, args("update", "sequence", "s1", "interleave=maybe"), "interleave"),
		rf(2, args("update", "sequence", "s1", "bogus=1"), `ibex: update sequence: unknown setting "bogus" (use db=, herd= or interleave=on|off)`),
		rf(1, args("update", "sequence", "s1", "interleave=on"), "ibex: sequence public.s1 is in no sync's herd: interleave sets its increments on the sources of the syncs of its herds; put it in a herd with 'ibex update sequence public.s1 herd=...' first"),
		rf(1, args("remove", "sequence", "s1", "nosuch"), `ibex: sequence "public.nosuch" not found: see 'ibex list sequences'`),
		rf(2, args("remove", "sequence", "x=1"), "ibex: remove sequence: give the sequence's name"),
		rf(2, args("list", "bogus"), "ibex: unknown object \"bogus\": use db, table, sequence, herd (relgroup), dbgroup, sync, customname, customcols or rowfilter"),
	)
	unchanged(t, ctl.DSN, before, "refused sequence commands")

	// A pattern skips descending sequences and says so; relgroup= is herd=.
	out = ok(t, ctl.DSN, "add", "sequences", "s2.*", "db=t1", "relgroup=h2")
	if want := "Added sequence s2.x\nSkipped sequence s2.down: it descends (ibex replicates ascending sequences only)\nHerd h2 has the sequences\n"; out != want {
		t.Errorf("add sequences s2.* said:\n%s\nwant:\n%s", out, want)
	}
	if out := ok(t, ctl.DSN, "update", "sequence", "s1", "herd=h2"); out != "Updated sequence public.s1\n" {
		t.Errorf("update sequence said %q", out)
	}
	wantList := `Sequence         DB   Herds    Interleave
public.Odd "q" | t1 | h1     | no
public.s1      | t1 | h1, h2 | no
s2.x           | t1 | h2     | no
`
	if got := ok(t, ctl.DSN, "list", "sequences"); got != wantList {
		t.Errorf("list sequences:\n%s\nwant:\n%s", got, wantList)
	}
	if got := ok(t, ctl.DSN, "list", "sequence", "x"); got != "Sequence   DB   Herds   Interleave\ns2.x     | t1 | h2    | no\n" {
		t.Errorf("list sequence x:\n%s", got)
	}
	// The herds keep their tables apart: list herds lists tables only.
	if got := ok(t, ctl.DSN, "list", "herds"); got != "Herd   Tables\nh1   |\nh2   |\n" {
		t.Errorf("list herds:\n%q", got)
	}
	if out := ok(t, ctl.DSN, "remove", "sequence", "s2.x"); out != "Removed sequence s2.x\n" {
		t.Errorf("remove sequence said %q", out)
	}
	if got := ok(t, ctl.DSN, "list", "sequences"); strings.Contains(got, "s2.x") {
		t.Errorf("s2.x is still listed:\n%s", got)
	}
	// all: every sequence outside the system schemas and ibex's own.
	out = ok(t, ctl.DSN, "add", "sequence", "all", "db=t1")
	if want := "Added sequence s2.x\nSkipped sequence public.Odd \"q\": already added (db t1)\nSkipped sequence public.s1: already added (db t1)\nSkipped sequence s2.down: it descends (ibex replicates ascending sequences only)\n"; out != want {
		t.Errorf("add sequence all said:\n%s\nwant:\n%s", out, want)
	}
	for _, cmd := range []string{"add", "update", "remove", "list"} {
		h := ok(t, ctl.DSN, cmd, "--help")
		if !strings.Contains(h, "sequence") {
			t.Errorf("ibex %s --help does not mention sequences:\n%s", cmd, h)
		}
	}
	if h := ok(t, ctl.DSN, "update", "--help"); !strings.Contains(h, "ibex update sequence public.s interleave=on|off") || !strings.Contains(h, "INCREMENT BY n and RESTART WITH") {
		t.Errorf("update --help does not explain interleave:\n%s", h)
	}
}

func TestSequenceYAMLRoundTrip(t *testing.T) {
	t.Parallel()
	ctl := newControlWith(t, sequencesSQL)
	ok(t, ctl.DSN, ibextest.AddDBArgs("t1", ctl.Conn)...)
	ok(t, ctl.DSN, "add", "table", "tbl", "db=t1", "herd=h1")
	ok(t, ctl.DSN, "add", "sequence", "s1", `"Odd ""q"""`, "db=t1", "herd=h1")
	ok(t, ctl.DSN, "add", "sequence", "s2.x", "db=t1")
	ok(t, ctl.DSN, "update", "sequence", "s1", "herd=h2")

	exported := ok(t, ctl.DSN, "export")
	want := `sequences:
  public."Odd ""q""":
    db: t1
    herds: [h1]
  public.s1:
    db: t1
    herds: [h1, h2]
  s2.x:
    db: t1
`
	if !strings.Contains(exported, want) {
		t.Errorf("the export lacks\n%s\nin:\n%s", want, exported)
	}
	file := filepath.Join(t.TempDir(), "seq.yaml")
	if err := os.WriteFile(file, []byte(exported), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := ok(t, ctl.DSN, "apply", "-f", file); out != "No changes: the control database already matches "+file+"\n" {
		t.Errorf("apply of the export said %q", out)
	}

	// Change herds, drop one, add one, record interleave.
	changed := strings.Replace(exported, want, `sequences:
  public."Odd ""q""":
    db: t1
    herds: [h2]
    interleave: true
  public.s1:
    db: t1
    herds: [h1, h2]
  s2.y:
    herds: [h1]
`, 1)
	if err := os.WriteFile(file, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	out := ok(t, ctl.DSN, "apply", "-f", file)
	wantOut := `update sequence public."Odd ""q"""
add sequence s2.y
remove sequence s2.x
Sequence public."Odd ""q""": interleave=on is recorded; run 'ibex update sequence public."Odd ""q""" interleave=on' to set the increments on its sources
`
	if out != wantOut {
		t.Errorf("apply said:\n%s\nwant:\n%s", out, wantOut)
	}
	if got := ok(t, ctl.DSN, "export"); got != changed {
		t.Errorf("export after apply:\n%s\nwant:\n%s", got, changed)
	}
	wantList := `Sequence         DB   Herds    Interleave
public.Odd "q" | t1 | h2     | yes
public.s1      | t1 | h1, h2 | no
s2.y           |    | h1     | no
`
	if got := ok(t, ctl.DSN, "list", "sequences"); got != wantList {
		t.Errorf("list sequences after apply:\n%s\nwant:\n%s", got, wantList)
	}
	// A sequence naming an unknown herd or db is refused with the file unchanged.
	bad := writeFile(t, "bad.yaml", strings.Replace(changed, "herds: [h2]", "herds: [nosuch]", 1))
	refused(t, ctl.DSN, 2, args("apply", "-f", bad), `sequence public."Odd ""q""": herd "nosuch" is not among the herds`)
}
