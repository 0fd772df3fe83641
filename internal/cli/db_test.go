package cli_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ibexrepl/ibex/internal/dbconn"
	"github.com/ibexrepl/ibex/internal/ibextest"
)

// dbRow is a row of ibex.db.
type dbRow struct {
	Conn   map[string]string
	Pass   string
	Status string
}

func getDBRow(t *testing.T, dsn, name string) *dbRow {
	t.Helper()
	rs := ibextest.Rows(t, dsn, `SELECT conn::text, coalesce(pass, '<null>'), status FROM ibex.db WHERE name = $1`, name)
	if len(rs) == 0 {
		return nil
	}
	r := &dbRow{Pass: rs[0][1], Status: rs[0][2]}
	if err := json.Unmarshal([]byte(rs[0][0]), &r.Conn); err != nil {
		t.Fatal(err)
	}
	return r
}

func dbNames(t *testing.T, dsn string) []string {
	t.Helper()
	var out []string
	for _, r := range ibextest.Rows(t, dsn, `SELECT name FROM ibex.db ORDER BY name`) {
		out = append(out, r[0])
	}
	return out
}

func TestAddUpdateRemoveDB(t *testing.T) {
	t.Parallel()
	ctl := newControl(t)
	db := ctl // the control database is the db too
	conn := map[string]string{"dbname": db.Name, "host": db.Conn["host"], "port": db.Conn["port"], "user": db.Conn["user"]}

	if out := ok(t, ctl.DSN, ibextest.AddDBArgs("t1", db.Conn)...); out != "Added db t1\n" {
		t.Errorf("add db said %q", out)
	}
	if diff := cmp.Diff(&dbRow{Conn: conn, Pass: "<null>", Status: "active"}, getDBRow(t, ctl.DSN, "t1")); diff != "" {
		t.Errorf("ibex.db row of t1 (-want +got):\n%s", diff)
	}
	wantList := "Name   Type       Status   Connection" + strings.Repeat(" ", len(dbconn.ConnString(conn))-len("Connection")) + "   Password\n" +
		"t1   | postgres | active | " + dbconn.ConnString(conn) + " | (PGPASSWORD/.pgpass)\n"
	if got := ok(t, ctl.DSN, "list", "dbs"); got != wantList {
		t.Errorf("list dbs:\n%s\nwant:\n%s", got, wantList)
	}
	before := state(t, ctl.DSN)

	// Refused, and nothing changes.
	refuseAll(t, ctl.DSN,
		rf(1, ibextest.AddDBArgs("t1", db.Conn), `db "t1" already exists: use 'ibex update db t1 ...' to change it`),
		rf(2, ibextest.AddDBArgs("t2", db.Conn, "pass=hunter2"), "db t2: a literal password is never stored: use pass=env:VAR or pass=file:PATH"),
		rf(2, ibextest.AddDBArgs("t2", db.Conn, "password=hunter2"), "a literal password is never stored"),
		rf(2, ibextest.AddDBArgs("t2", db.Conn, "dbpass=hunter2"), "a literal password is never stored"),
		rf(2, ibextest.AddDBArgs("t2", db.Conn, "pass=env:"), "a literal password is never stored"),
		rf(2, ibextest.AddDBArgs("t2", db.Conn, "bogus=1"), `db t2: unknown setting "bogus"`),
		rf(2, args("add", "db", "t2", "host=127.0.0.1"), "db t2: dbname= or service= is required"),
		rf(2, args("add", "db", "t2", "t3", "dbname=x"), "give one db name"),
	)
	refused(t, ctl.DSN, 2, args("add", "db"), "requires at least 2 arg(s), only received 1") // cobra's own usage errors exit 2 too
	refuseAll(t, ctl.DSN,
		rf(2, ibextest.AddDBArgs("t2", db.Conn, "status=maybe"), `status must be active or inactive, not "maybe"`),
		rf(1, args("add", "db", "bad name", "dbname=x", "--force"), `db "bad name": invalid value`),
		rf(1, args("update", "db", "nosuch", "host=x"), `db "nosuch" not found: see 'ibex list dbs'`),
		rf(1, args("remove", "db", "nosuch"), `db "nosuch" not found`),
		rf(2, args("remove", "db", "t1", "host=x"), "remove db takes only names"),
	)
	unsetVar := "IBEX_TEST_UNSET_PASSWORD_VAR_7Q"
	os.Unsetenv(unsetVar)
	refused(t, ctl.DSN, 1, ibextest.AddDBArgs("t2", db.Conn, "pass=env:"+unsetVar), "db t2: password variable "+unsetVar+" is not set in the environment",
		"add --force to save them untested")
	unchanged(t, ctl.DSN, before, "refused add/update/remove db")

	// pass=env: and other libpq keys, untested with --force; Bucardo's aliases.
	ok(t, ctl.DSN, "add", "db", "t2", "db="+db.Name, "dbhost=127.0.0.1", "dbport=5432", "dbuser=postgres",
		"pass=env:"+unsetVar, "sslmode=disable", "application_name=ibex test", "connect_timeout=5", "--force")
	want := &dbRow{Conn: map[string]string{"dbname": db.Name, "host": "127.0.0.1", "port": "5432", "user": "postgres",
		"sslmode": "disable", "application_name": "ibex test", "connect_timeout": "5"}, Pass: "env:" + unsetVar, Status: "active"}
	if diff := cmp.Diff(want, getDBRow(t, ctl.DSN, "t2")); diff != "" {
		t.Errorf("ibex.db row of t2 (-want +got):\n%s", diff)
	}

	// pass=file: a file the server never needs (trust), tested connection succeeds.
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("s3cr3t-in-a-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok(t, ctl.DSN, ibextest.AddDBArgs("t3", db.Conn, "pass=file:"+pwFile, "sslmode=prefer")...)
	if got := getDBRow(t, ctl.DSN, "t3"); got.Pass != "file:"+pwFile || got.Conn["sslmode"] != "prefer" {
		t.Errorf("t3: %+v", got)
	}
	refused(t, ctl.DSN, 1, ibextest.AddDBArgs("t4", db.Conn, "pass=file:"+pwFile+".missing"), "db t4: reading password file "+pwFile+".missing: no such file or directory")

	// update: key= removes a key, others change, the connection is tested again.
	if out := ok(t, ctl.DSN, "update", "db", "t2", "sslmode=", "application_name=", "connect_timeout=3", "status=inactive", "--force"); out != "Updated db t2\n" {
		t.Errorf("update db said %q", out)
	}
	want.Conn = map[string]string{"dbname": db.Name, "host": "127.0.0.1", "port": "5432", "user": "postgres", "connect_timeout": "3"}
	want.Status = "inactive"
	if diff := cmp.Diff(want, getDBRow(t, ctl.DSN, "t2")); diff != "" {
		t.Errorf("ibex.db row of t2 after update (-want +got):\n%s", diff)
	}
	refused(t, ctl.DSN, 1, args("update", "db", "t3", "port=1"), "cannot connect to db t3", "connection refused")
	if got := getDBRow(t, ctl.DSN, "t3").Conn["port"]; got != db.Conn["port"] {
		t.Errorf("a refused update changed t3's port to %s", got)
	}
	refused(t, ctl.DSN, 2, args("update", "db", "t3", "pass=plaintext"), "a literal password is never stored")

	// remove
	if out := ok(t, ctl.DSN, "remove", "db", "t2", "t3"); out != "Removed db t2\nRemoved db t3\n" {
		t.Errorf("remove said %q", out)
	}
	if diff := cmp.Diff([]string{"t1"}, dbNames(t, ctl.DSN)); diff != "" {
		t.Errorf("dbs after remove (-want +got):\n%s", diff)
	}
	// list with names, JSON
	refused(t, ctl.DSN, 1, args("list", "dbs", "t2"), "no db named t2: see 'ibex list dbs'")
	var listed []map[string]any
	if err := json.Unmarshal([]byte(ok(t, ctl.DSN, "list", "dbs", "--json")), &listed); err != nil || len(listed) != 1 || listed[0]["Name"] != "t1" {
		t.Errorf("list dbs --json: %v %v", listed, err)
	}
}

// silentServer accepts TCP connections and never answers, like a firewalled or hung host.
func silentServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
}

func TestAddDBTestsTheConnection(t *testing.T) {
	t.Parallel()
	ctl := newControl(t)
	db := ctl // the control database is the db too
	before := state(t, ctl.DSN)

	// Nothing listens on port 1: the network's reason, said once, on one line.
	start := time.Now()
	msg := refused(t, ctl.DSN, 1, args("add", "db", "bad", "dbname="+db.Name, "host=127.0.0.1", "port=1", "user=postgres"),
		"ibex: cannot connect to db bad (host=127.0.0.1 port=1 dbname="+db.Name+" user=postgres): ",
		"connect: connection refused",
		"; fix the settings, or add --force to save them untested")
	if n := strings.Count(msg, "connection refused"); n != 1 || strings.Count(msg, "\n") != 1 {
		t.Errorf("the reason should be said once, on one line:\n%s", msg)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a refused connection took %s", d)
	}

	// A database that does not exist: the server's reason.
	refused(t, ctl.DSN, 1, ibextest.AddDBArgs("bad", db.Conn, "dbname=ibex_no_such_database"),
		`cannot connect to db bad (host=127.0.0.1 port=`+db.Conn["port"]+` dbname=ibex_no_such_database user=postgres): database "ibex_no_such_database" does not exist`)
	// A role that does not exist.
	refused(t, ctl.DSN, 1, ibextest.AddDBArgs("bad", db.Conn, "user=ibex_no_such_role"), `role "ibex_no_such_role" does not exist`)

	// A host that accepts and never answers: fails within connect_timeout.
	port := silentServer(t)
	start = time.Now()
	refused(t, ctl.DSN, 1, args("add", "db", "hung", "dbname=x", "host=127.0.0.1", "port="+port, "user=postgres", "connect_timeout=1"),
		"cannot connect to db hung (host=127.0.0.1 port="+port+" dbname=x user=postgres): ", "timeout")
	if d := time.Since(start); d < 900*time.Millisecond || d > 6*time.Second { // well under the 10s default
		t.Errorf("connect_timeout=1 against a silent server took %s", d)
	}
	unchanged(t, ctl.DSN, before, "refused add db")

	// --force skips the test and stores the settings.
	if out := ok(t, ctl.DSN, "add", "db", "hung", "dbname=x", "host=127.0.0.1", "port="+port, "user=postgres", "--force"); out != "Added db hung\n" {
		t.Errorf("add db --force said %q", out)
	}
	if diff := cmp.Diff([]string{"hung"}, dbNames(t, ctl.DSN)); diff != "" {
		t.Errorf("dbs (-want +got):\n%s", diff)
	}
}

// TestAddDBDefaultConnectTimeout: without connect_timeout, the test of a silent server
// gives up after dbconn.DefaultConnectTimeout.
func TestAddDBDefaultConnectTimeout(t *testing.T) {
	t.Parallel()
	ctl := newControl(t)
	port := silentServer(t)
	start := time.Now()
	refused(t, ctl.DSN, 1, args("add", "db", "hung", "dbname=x", "host=127.0.0.1", "port="+port, "user=postgres"),
		"cannot connect to db hung", "timeout")
	d := time.Since(start)
	if d < dbconn.DefaultConnectTimeout-time.Second || d > dbconn.DefaultConnectTimeout+5*time.Second {
		t.Errorf("a silent server was given up after %s, want about %s", d, dbconn.DefaultConnectTimeout)
	}
}

// TestUpdateDBRevalidates: 'ibex update db' re-validates the syncs using the db, so that a
// db whose dbname now names another database gets capture there; when that fails, the db
// keeps its settings. --force saves untested and validates nothing.
func TestUpdateDBRevalidates(t *testing.T) {
	t.Parallel()
	ctl := newControlWith(t, smallSQL)
	src, dst := newDB(t, smallSQL), newDB(t, smallSQL)
	ok(t, ctl.DSN, ibextest.AddDBArgs("a", src.Conn)...)
	ok(t, ctl.DSN, ibextest.AddDBArgs("b", dst.Conn)...)
	ok(t, ctl.DSN, "add", "table", "accounts", "db=a", "herd=h")
	ok(t, ctl.DSN, "add", "sync", "s", "herd=h", "dbs=a:source,b:target")

	// a's dbname now names another database: capture is installed there.
	moved := newDB(t, smallSQL)
	if out := ok(t, ctl.DSN, "update", "db", "a", "dbname="+moved.Name); out != "Updated db a\n" {
		t.Errorf("update db said %q", out)
	}
	checkMovedSource(t, ctl, moved, dst)

	// A database without the sync's table: refused, naming the sync; a keeps its dbname and
	// the empty database gets no capture.
	empty := newDB(t, "")
	before := state(t, ctl.DSN)
	refused(t, ctl.DSN, 1, args("update", "db", "a", "dbname="+empty.Name), "sync s", "public.accounts")
	unchanged(t, ctl.DSN, before, "a refused update db")
	if got := getDBRow(t, ctl.DSN, "a").Conn["dbname"]; got != moved.Name {
		t.Errorf("a refused update changed a's dbname to %s", got)
	}
	if got := triggers(t, empty.DSN); len(got) != 0 {
		t.Errorf("a refused update left triggers: %v", got)
	}

	// --force: saved untested, nothing validated.
	if out := ok(t, ctl.DSN, "update", "db", "a", "dbname="+empty.Name, "--force"); out != "Updated db a\n" {
		t.Errorf("update db --force said %q", out)
	}
	if got := getDBRow(t, ctl.DSN, "a").Conn["dbname"]; got != empty.Name {
		t.Errorf("update --force left a's dbname at %s", got)
	}
}
