package cli_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/ibextest"
	"github.com/ibexrepl/ibex/internal/pgtest"
)

// someGuardedCommands are a few of guardedCommands, for the version mismatches (each
// command checks the version through the same open).
func someGuardedCommands(t *testing.T) [][]string {
	all := guardedCommands(t)
	var out [][]string
	for _, c := range all {
		switch strings.Join(c[:min(2, len(c))], " ") {
		case "list dbs", "add db", "add sync", "remove sync", "kick s", "status s", "export", "apply -f":
			out = append(out, c)
		}
	}
	if len(out) != 8 {
		panic(fmt.Sprint(out))
	}
	return out
}

// guardedCommands are commands that must refuse to run unless the control schema is
// exactly this binary's version. apply's file is valid, so only the schema check can
// refuse it.
func guardedCommands(t *testing.T) [][]string {
	file := filepath.Join(t.TempDir(), "empty.yaml")
	if err := os.WriteFile(file, []byte("dbs: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return [][]string{
		{"list", "dbs"}, {"list", "syncs"},
		{"add", "db", "x", "dbname=x", "--force"},
		{"update", "db", "x", "host=y", "--force"},
		{"remove", "db", "x"},
		{"add", "table", "t", "db=x"},
		{"add", "herd", "h"},
		{"add", "dbgroup", "g", "x:source"},
		{"add", "sync", "s", "herd=h", "dbs=g"},
		{"remove", "sync", "s"},
		{"validate", "s"},
		{"kick", "s"},
		{"status"}, {"status", "s"},
		{"conflicts", "s"},
		{"export"},
		{"apply", "-f", file},
	}
}

func TestInstallIsIdempotent(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t, "")
	v := control.SchemaVersion()

	out := ok(t, db.DSN, "install")
	if want := fmt.Sprintf("Installed the ibex control schema (version %d)\n", v); out != want {
		t.Errorf("install said %q, want %q", out, want)
	}
	versions := ibextest.Rows(t, db.DSN, `SELECT version::text, name, applied::text FROM ibex.schema_version s ORDER BY s.version`)
	if len(versions) != v || versions[len(versions)-1][0] != fmt.Sprint(v) {
		t.Fatalf("ibex.schema_version after install: %v, want versions 1..%d", versions, v)
	}
	var tables []string
	for _, r := range ibextest.Rows(t, db.DSN, `SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'ibex' AND c.relkind = 'r' ORDER BY 1`) {
		tables = append(tables, r[0])
	}
	wantTables := []string{"conflict", "customcols", "customname", "db", "dbgroup", "dbmap", "exception", "herd", "herdmap", "herdseq", "relation", "rowfilter", "run", "schema_version", "sequence", "sync", "synctable", "watermark"}
	if diff := cmp.Diff(wantTables, tables); diff != "" {
		t.Errorf("tables of schema ibex (-want +got):\n%s", diff)
	}
	ok(t, db.DSN, "add", "herd", "h1")
	before := state(t, db.DSN)

	// Again: a no-op that says so.
	out = ok(t, db.DSN, "install")
	if want := fmt.Sprintf("The ibex control schema is already installed (version %d)\n", v); out != want {
		t.Errorf("second install said %q, want %q", out, want)
	}
	unchanged(t, db.DSN, before, "a second install")
	if diff := cmp.Diff(versions, ibextest.Rows(t, db.DSN, `SELECT version::text, name, applied::text FROM ibex.schema_version s ORDER BY s.version`)); diff != "" {
		t.Errorf("schema_version changed by a second install (-before +after):\n%s", diff)
	}

	// upgrade on an up-to-date schema: nothing to do.
	out = ok(t, db.DSN, "upgrade")
	if want := fmt.Sprintf("The ibex control schema is up to date (version %d)\n", v); out != want {
		t.Errorf("upgrade said %q, want %q", out, want)
	}
	unchanged(t, db.DSN, before, "upgrade of an up-to-date schema")
}

func TestConcurrentInstallsSerialise(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t, "")
	const n = 4
	res := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = ibex(t, db.DSN, "install")
		}()
	}
	wg.Wait()
	installed := 0
	for _, r := range res {
		if r.Code != 0 {
			t.Errorf("concurrent install: %s", r)
		}
		if strings.HasPrefix(r.Out, "Installed") {
			installed++
		}
	}
	if installed != 1 {
		t.Errorf("%d of %d concurrent installs said they installed, want 1", installed, n)
	}
	if got := ibextest.One(t, db.DSN, `SELECT count(*)::text FROM ibex.schema_version`); got != fmt.Sprint(control.SchemaVersion()) {
		t.Errorf("schema_version has %s rows", got)
	}
}

func TestCommandsRefuseMissingSchema(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t, "")
	const msg = "ibex: the ibex control schema is not installed in this database: run 'ibex install' first\n"
	for _, c := range append(guardedCommands(t), []string{"upgrade"}) {
		r := ibex(t, db.DSN, c...)
		if r.Code != 1 || r.Err != msg || r.Out != "" {
			t.Errorf("ibex %s on a database without the schema: %s\nwant exit 1 and %q", strings.Join(c, " "), r, msg)
		}
	}
	if got := ibextest.One(t, db.DSN, `SELECT (to_regnamespace('ibex') IS NULL)::text`); got != "true" {
		t.Errorf("a refused command created schema ibex")
	}
	// install, then upgrade has nothing to do.
	ok(t, db.DSN, "install")
	if out := ok(t, db.DSN, "upgrade"); !strings.Contains(out, "up to date") {
		t.Errorf("upgrade after install: %q", out)
	}
}

// setSchemaVersion makes the control schema read version v: the latest row of
// ibex.schema_version becomes v, and the rows between go (their versions must stay unique).
func setSchemaVersion(t *testing.T, dsn string, v int) {
	t.Helper()
	ibextest.Exec(t, dsn, `DELETE FROM ibex.schema_version WHERE version >= $1 AND version < (SELECT max(version) FROM ibex.schema_version)`, v)
	ibextest.Exec(t, dsn, `UPDATE ibex.schema_version SET version = $1 WHERE version = (SELECT max(version) FROM ibex.schema_version)`, v)
}

// TestCommandsRefuseOtherSchemaVersions: a schema newer or older than the binary.
func TestCommandsRefuseOtherSchemaVersions(t *testing.T) {
	t.Parallel()
	ctl := newControl(t)
	ok(t, ctl.DSN, "add", "herd", "h1")
	v := control.SchemaVersion()
	setSchemaVersion(t, ctl.DSN, v+1)
	before := controlDump(t, ctl.DSN)
	msg := fmt.Sprintf("ibex: the ibex control schema is newer than this ibex (schema version %d, this ibex knows up to %d): use a newer ibex binary\n", v+1, v)
	for _, c := range append(someGuardedCommands(t), []string{"install"}, []string{"upgrade"}) {
		r := ibex(t, ctl.DSN, c...)
		if r.Code != 1 || r.Err != msg || r.Out != "" {
			t.Errorf("ibex %s on a newer schema: %s\nwant exit 1 and %q", strings.Join(c, " "), r, msg)
		}
	}
	if after := controlDump(t, ctl.DSN); after != before {
		t.Errorf("refused commands changed the control database:\n%s\n---\n%s", before, after)
	}
	// A schema one version behind. With a single migration there is no real older
	// version (0 reads as "not installed"), so any version below is used: Check only
	// compares numbers.
	older := v - 1
	if older < 1 {
		older = -1
	}
	setSchemaVersion(t, ctl.DSN, older)
	before = controlDump(t, ctl.DSN)
	msg = fmt.Sprintf("ibex: the ibex control schema is older than this ibex (schema version %d, ibex needs %d): run 'ibex upgrade'\n", older, v)
	for _, c := range someGuardedCommands(t) {
		r := ibex(t, ctl.DSN, c...)
		if r.Code != 1 || r.Err != msg || r.Out != "" {
			t.Errorf("ibex %s on an older schema: %s\nwant exit 1 and %q", strings.Join(c, " "), r, msg)
		}
	}
	if after := controlDump(t, ctl.DSN); after != before {
		t.Errorf("refused commands changed the control database:\n%s\n---\n%s", before, after)
	}

	// Back at this binary's version, everything works again and nothing was added.
	setSchemaVersion(t, ctl.DSN, v)
	if got := ok(t, ctl.DSN, "list", "herds"); got != "Herd   Tables\nh1   |\n" {
		t.Errorf("list herds: %q", got)
	}
	if got := ok(t, ctl.DSN, "list", "dbs"); got != "No dbs\n" {
		t.Errorf("list dbs: %q", got)
	}
}

// TestIBEXDSN checks that IBEX_DSN names the control database when --dsn is not given
// (not parallel: it sets the environment).
func TestIBEXDSN(t *testing.T) {
	db := pgtest.NewDB(t, "")
	t.Setenv("IBEX_DSN", db.DSN)
	var out, errb strings.Builder
	if code := mainNoDSN([]string{"install"}, &out, &errb); code != 0 {
		t.Fatalf("install with IBEX_DSN: exit %d: %s", code, errb.String())
	}
	if !strings.HasPrefix(out.String(), "Installed") {
		t.Errorf("install with IBEX_DSN said %q", out.String())
	}
	if got := ibextest.One(t, db.DSN, `SELECT (to_regclass('ibex.sync') IS NOT NULL)::text`); got != "true" {
		t.Errorf("install with IBEX_DSN did not install in that database")
	}
	out.Reset()
	if code := mainNoDSN([]string{"list", "syncs"}, &out, &errb); code != 0 || out.String() != "No syncs\n" {
		t.Errorf("list syncs with IBEX_DSN: exit %d %q %q", code, out.String(), errb.String())
	}
	// A control database that cannot be reached: the error names it, exit 1.
	t.Setenv("IBEX_DSN", "host=127.0.0.1 port=1 user=postgres dbname=nowhere connect_timeout=2")
	errb.Reset()
	if code := mainNoDSN([]string{"list", "dbs"}, &out, &errb); code != 1 ||
		!strings.Contains(errb.String(), "control database (host=127.0.0.1 port=1 dbname=nowhere user=postgres): cannot connect") {
		t.Errorf("unreachable IBEX_DSN: exit %d %q", code, errb.String())
	}
}

// TestHelp: every command has --help, which needs no database.
func TestHelp(t *testing.T) {
	t.Parallel()
	const nowhere = "host=127.0.0.1 port=1 dbname=nowhere connect_timeout=1"
	for _, c := range []string{"", "install", "upgrade", "add", "update", "remove", "list", "validate", "kick", "status", "conflicts", "export", "apply"} {
		a := append(strings.Fields(c), "--help")
		r := ibex(t, nowhere, a...)
		if r.Code != 0 || !strings.Contains(r.Out, "Usage:") || r.Err != "" {
			t.Errorf("ibex %s --help: %s", c, r)
		}
	}
	// cobra's own usage errors exit 2, as ibex's own do, and point at the command's help.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `ibex: unknown command "frobnicate" for "ibex" (see 'ibex --help')` + "\n"},
		{[]string{"kick", "--bogus", "s"}, "ibex: unknown flag: --bogus (see 'ibex kick --help')\n"},
		{[]string{"add", "db"}, "ibex: requires at least 2 arg(s), only received 1 (see 'ibex add --help')\n"},
		{[]string{"export", "extra"}, `ibex: unknown command "extra" for "ibex export" (see 'ibex export --help')` + "\n"},
	} {
		r := ibex(t, nowhere, c.args...)
		if r.Code != 2 || r.Err != c.want || r.Out != "" {
			t.Errorf("ibex %s: %s\nwant exit 2 and %q", strings.Join(c.args, " "), r, c.want)
		}
	}
	for _, k := range []string{"bogus", "user"} {
		r := ibex(t, nowhere, "add", k, "x")
		if r.Code != 2 || r.Err != `ibex: unknown object "`+k+`": use db, table, sequence, herd (relgroup), dbgroup, sync, customname, customcols or rowfilter`+"\n" {
			t.Errorf("add %s: %s", k, r)
		}
	}
}
