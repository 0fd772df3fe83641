package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ibexrepl/ibex/internal/ibextest"
)

// TestTargetDBs: dbs that are not PostgreSQL are added with their sink's settings (checked,
// their connection tested in bounded time, no password printed or stored), listed with
// their type, exported and applied back unchanged, and refused as sources or alone.
func TestTargetDBs(t *testing.T) {
	t.Parallel()
	ctl := newControl(t)
	src := newDB(t, `CREATE TABLE item (id int PRIMARY KEY, v text)`)
	dir := t.TempDir()
	file := filepath.Join(dir, "target.sqlite")

	ok(t, ctl.DSN, "add", "db", "s1", "dbname="+src.Name, "host="+src.Conn["host"], "port="+src.Conn["port"], "user="+src.Conn["user"])
	if out := ok(t, ctl.DSN, "add", "db", "lite", "type=sqlite", "path="+file); out != "Added db lite (type sqlite)\n" {
		t.Errorf("add db type=sqlite said %q", out)
	}
	if out := ok(t, ctl.DSN, "add", "db", "ff", "type=flatfile", "path="+filepath.Join(dir, "sql"), "dialect=mysql"); out != "Added db ff (type flatfile)\n" {
		t.Errorf("add db type=flatfile said %q", out)
	}
	if got := getDBRow(t, ctl.DSN, "lite"); got == nil || len(got.Conn) != 1 || got.Conn["path"] != file || got.Pass != "<null>" {
		t.Errorf("ibex.db row of lite: %+v", got)
	}
	if got := ibextest.One(t, ctl.DSN, `SELECT dbtype FROM ibex.db WHERE name = 'lite'`); got != "sqlite" {
		t.Errorf("dbtype of lite = %q", got)
	}
	list := ok(t, ctl.DSN, "list", "dbs")
	for _, want := range []string{"Name   Type       Status", "lite | sqlite   | active | path='" + file + "'", "ff   | flatfile | active", "s1   | postgres | active"} {
		if !strings.Contains(list, want) {
			t.Errorf("list dbs lacks %q:\n%s", want, list)
		}
	}
	before := state(t, ctl.DSN)

	// A Redis that does not answer: refused in bounded time, and the password it was
	// given never appears.
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("s3cret-redis-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	msg := refused(t, ctl.DSN, 1, args("add", "db", "r", "type=redis", "host="+silentServer(t), "connect_timeout=1", "pass=file:"+pwFile), "db r: ", "fix the settings, or add --force")
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("add db type=redis against a silent server took %s", d)
	}
	if strings.Contains(msg, "s3cret-redis-pw") {
		t.Errorf("the password was printed: %s", msg)
	}
	refuseAll(t, ctl.DSN,
		rf(2, args("add", "db", "x", "type=oracle", "path=/x"), `db x: unknown type "oracle" (use postgres, mariadb, mysql, sqlite, redis, flatfile)`),
		rf(2, args("add", "db", "x", "type=redis", "bogus=1"), `db x (type redis): unknown setting "bogus" for a redis db (allowed: connect_timeout, db, host, port, prefix, timeout, tls, user)`),
		rf(2, args("add", "db", "x", "type=sqlite"), "db x (type sqlite): "),
		rf(2, args("add", "db", "x", "type=redis", "pass=hunter2"), "a literal password is never stored"),
		rf(2, args("update", "db", "lite", "type=redis"), "db lite: its type is sqlite and cannot be changed: remove the db and add it again"),
		rf(1, args("add", "dbgroup", "g1", "s1:source", "lite:source"), "dbgroup g1: db lite (type sqlite) cannot be a source: ibex captures changes with PostgreSQL triggers, so only PostgreSQL dbs are sources; give it the role target or fullcopy"),
		rf(1, args("add", "dbgroup", "g2", "lite:source"), "dbgroup g2: db lite (type sqlite) cannot be its only db: a sqlite db is a target only, and a dbgroup needs a PostgreSQL source"),
		rf(2, args("add", "table", "item", "db=lite"), "db lite is a sqlite db: reading its tables needs a PostgreSQL db"),
	)
	unchanged(t, ctl.DSN, before, "refused commands")
	if _, err := os.Stat(filepath.Join(dir, "r")); err == nil {
		t.Error("a refused add created something")
	}

	// YAML: exported with its type, applied back to a fresh control database unchanged.
	exported := ok(t, ctl.DSN, "export")
	for _, want := range []string{"  lite:\n    path: " + file + "\n    type: sqlite\n", "    dialect: mysql\n", "    type: flatfile\n"} {
		if !strings.Contains(exported, want) {
			t.Errorf("the export lacks %q:\n%s", want, exported)
		}
	}
	yml := filepath.Join(dir, "ibex.yaml")
	if err := os.WriteFile(yml, []byte(exported), 0o600); err != nil {
		t.Fatal(err)
	}
	ctl2 := newControl(t)
	ok(t, ctl2.DSN, "apply", "-f", yml)
	if got := ok(t, ctl2.DSN, "export"); got != exported {
		t.Errorf("export after apply differs:\n%s\n---\n%s", got, exported)
	}
	if err := os.WriteFile(yml, []byte("dbs:\n  r:\n    type: redis\n    prefx: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	refused(t, ctl2.DSN, 2, args("apply", "-f", yml), `db r (type redis): unknown setting "prefx" for a redis db`)
}
