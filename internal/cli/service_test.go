package cli_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ibexrepl/ibex/internal/dbconn"
	"github.com/ibexrepl/ibex/internal/ibextest"
)

// TestDBFromService: as in libpq, a db may be only service=NAME, its service file (here
// PGSERVICEFILE) giving host, port, user, dbname and even a password, which ibex never
// prints nor stores. Such a db is listed, tested, replicated from and to, updated,
// exported and applied. A db that names no database (neither dbname= nor a service that
// sets dbname) is refused. Not parallel: it sets the environment.
func TestDBFromService(t *testing.T) {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	secret := "ServiceS3cret-" + hex.EncodeToString(b)

	ctl := newControl(t)
	src := newDB(t, smallSQL+`INSERT INTO accounts VALUES (1, 'one');`)
	dst := newDB(t, smallSQL)
	services := filepath.Join(t.TempDir(), "pg_service.conf")
	server := "host=" + src.Conn["host"] + "\nport=" + src.Conn["port"] + "\nuser=" + src.Conn["user"] + "\n"
	text := "# ibex test services\n" +
		"[ibexsrc]\n" + server + "dbname=" + src.Name + "\npassword=" + secret + "\n" +
		"[ibexdst]\n" + server + "dbname=" + dst.Name + "\n" +
		"[ibexnodb]\n" + server +
		"[ibexdown]\nhost=127.0.0.1\nport=1\nuser=postgres\ndbname=x\npassword=" + secret + "\n"
	if err := os.WriteFile(services, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PGSERVICEFILE", services)
	t.Setenv("PGSERVICE", "")
	t.Setenv("PGSYSCONFDIR", "")

	var outputs []string
	run := func(a ...string) string {
		t.Helper()
		r := ibex(t, ctl.DSN, append([]string{"--log-level", "debug"}, a...)...)
		outputs = append(outputs, r.Out+r.Err)
		if r.Code != 0 {
			t.Fatalf("ibex %s: %s", strings.Join(a, " "), r)
		}
		return r.Out
	}

	// service= alone (and Bucardo's dbservice=) is enough.
	if out := run("add", "db", "a", "service=ibexsrc"); out != "Added db a\n" {
		t.Errorf("add db a service=ibexsrc said %q", out)
	}
	if diff := cmp.Diff(&dbRow{Conn: map[string]string{"service": "ibexsrc"}, Pass: "<null>", Status: "active"}, getDBRow(t, ctl.DSN, "a")); diff != "" {
		t.Errorf("ibex.db row of a (-want +got):\n%s", diff)
	}
	run("add", "db", "b", "dbservice=ibexdst")
	wantList := "Name   Type       Status   Connection          Password\n" +
		"a    | postgres | active | service='ibexsrc' | (service/PGPASSWORD/.pgpass)\n" +
		"b    | postgres | active | service='ibexdst' | (service/PGPASSWORD/.pgpass)\n"
	if got := run("list", "dbs"); got != wantList {
		t.Errorf("list dbs:\n%s\nwant:\n%s", got, wantList)
	}

	// A connection through the service reaches the service's database.
	ctx := context.Background()
	c, err := dbconn.Connect(ctx, "a", map[string]string{"service": "ibexsrc"}, "")
	if err != nil {
		t.Fatal(err)
	}
	var got string
	if err := c.QueryRow(ctx, `SELECT current_database()`).Scan(&got); err != nil || got != src.Name {
		t.Errorf("current_database() through service ibexsrc = %q, %v; want %s", got, err, src.Name)
	}
	_ = c.Close(ctx)

	// Tables read through it, a sync between two service-only dbs, a run.
	run("add", "table", "accounts", "db=a", "herd=h")
	run("add", "sync", "s", "herd=h", "dbs=a:source,b:target")
	ibextest.Exec(t, src.DSN, `INSERT INTO accounts VALUES (42, 'through the service')`)
	if out := run("kick", "s"); !strings.HasPrefix(out, "Kick s: Good.") {
		t.Errorf("kick s: %s", out)
	}
	if n := ibextest.Rows(t, dst.DSN, `SELECT v FROM accounts WHERE id = 42`); len(n) != 1 || n[0][0] != "through the service" {
		t.Errorf("the row written on a's database did not reach b's: %v", n)
	}
	run("validate", "s")
	run("status")
	run("status", "s")
	run("list", "dbs", "--json")

	// update: a setting of the db wins over the service's; key= removes it again.
	run("update", "db", "b", "user="+dst.Conn["user"])
	if got := getDBRow(t, ctl.DSN, "b").Conn; !cmp.Equal(got, map[string]string{"service": "ibexdst", "user": dst.Conn["user"]}) {
		t.Errorf("b after update: %v", got)
	}
	run("update", "db", "b", "user=")

	// Refused, and nothing changes.
	before := state(t, ctl.DSN)
	for _, tc := range []struct {
		code int
		args []string
		want string
	}{
		{1, args("add", "db", "x", "service=nosuch"),
			`db x: service "nosuch" is not defined in ` + services + `; fix the settings, or add --force to save them untested`},
		{1, args("add", "db", "x", "service=ibexnodb"),
			`db x: service "ibexnodb" (in ` + services + `) does not set dbname: set it there, or give the db dbname=; fix the settings, or add --force to save them untested`},
		{2, args("add", "db", "x", "host=127.0.0.1", "user=postgres"),
			`db x: dbname= or service= is required (the database's name on its server, or a service of pg_service.conf that sets dbname)`},
		{2, args("update", "db", "a", "service="),
			`db a: dbname= or service= is required (the database's name on its server, or a service of pg_service.conf that sets dbname)`},
		{1, args("update", "db", "a", "service=nosuch"),
			`db a: service "nosuch" is not defined in ` + services + `; fix the settings, or add --force to save them untested`},
	} {
		msg := refused(t, ctl.DSN, tc.code, tc.args, tc.want)
		outputs = append(outputs, msg)
		if msg != "ibex: "+tc.want+"\n" {
			t.Errorf("ibex %s said:\n%s\nwant:\nibex: %s", strings.Join(tc.args, " "), msg, tc.want)
		}
	}
	msg := refused(t, ctl.DSN, 1, args("add", "db", "x", "service=ibexdown"), "cannot connect to db x (host=127.0.0.1 port=1 dbname=x user=postgres): ", "connection refused")
	outputs = append(outputs, msg)
	unchanged(t, ctl.DSN, before, "refused add/update db with a service")
	// A service without dbname serves a db that names its database itself.
	run("add", "db", "c", "service=ibexnodb", "dbname="+dst.Name)
	run("remove", "db", "c")

	// export and apply: the db is its service, nothing more.
	exported := run("export")
	for _, s := range []string{"  a:\n    service: ibexsrc\n", "  b:\n    service: ibexdst\n"} {
		if !strings.Contains(exported, s) {
			t.Errorf("the export lacks %q:\n%s", s, exported)
		}
	}
	file := writeFile(t, "services.yaml", exported)
	if out := run("apply", "-f", file); !strings.HasPrefix(out, "No changes") {
		t.Errorf("apply of the export changed something: %s", out)
	}
	ctl2 := newControl(t)
	r := ibex(t, ctl2.DSN, "apply", "-f", file)
	outputs = append(outputs, r.Out+r.Err)
	if r.Code != 0 || !strings.Contains(r.Out, "add db a\n") {
		t.Fatalf("apply into an empty control database: %s", r)
	}
	if got := ok(t, ctl2.DSN, "export"); got != exported {
		t.Errorf("export after apply differs (-want +got):\n%s", cmp.Diff(exported, got))
	}
	// Without dbname nor service: refused.
	noName := writeFile(t, "noname.yaml", strings.Replace(exported, "    service: ibexsrc\n", "    host: 127.0.0.1\n", 1))
	msg = refused(t, ctl2.DSN, 2, args("apply", "-f", noName), "ibex: "+noName+": db a: dbname or service is required\n")
	outputs = append(outputs, msg)

	// The service's password is never printed nor stored.
	all := strings.Join(outputs, "\n")
	if strings.Contains(all, secret) {
		t.Errorf("a command printed the service's password:\n%s", all)
	}
	for _, dsn := range []string{ctl.DSN, ctl2.DSN} {
		if dump := controlDump(t, dsn); strings.Contains(dump, secret) {
			t.Errorf("the control database holds the service's password:\n%s", dump)
		}
	}
}
