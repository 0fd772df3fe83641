package cli_test

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/internal/ibextest"
)

// TestNoCommandPrintsAPassword gives dbs passwords (pass=env: and pass=file:; the test
// server trusts, so it accepts any) and runs every kind of command, good and failing, at
// the most talkative log level: no output and no control table holds a password.
// Not parallel: it sets the environment.
func TestNoCommandPrintsAPassword(t *testing.T) {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	envSecret := "EnvS3cret-" + hex.EncodeToString(b)
	fileSecret := "FileS3cret-" + hex.EncodeToString(b)
	literal := "LiteralS3cret-" + hex.EncodeToString(b)
	t.Setenv("IBEX_TEST_SECRET_PW", envSecret)
	pwFile := filepath.Join(t.TempDir(), "pgpass-like")
	if err := os.WriteFile(pwFile, []byte(fileSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	ctl := newControl(t)
	db1 := newDB(t, smallSQL+`INSERT INTO accounts VALUES (1, 'one');`)
	db2 := newDB(t, smallSQL)
	var outputs []string
	run := func(wantOK bool, a ...string) {
		t.Helper()
		r := ibex(t, ctl.DSN, append([]string{"--log-level", "debug"}, a...)...)
		outputs = append(outputs, r.Out+r.Err) // not the command line: it has the literal
		if (r.Code == 0) != wantOK {
			t.Errorf("ibex %s: %s", strings.Join(a, " "), r)
		}
	}
	run(true, ibextest.AddDBArgs("t1", db1.Conn, "pass=env:IBEX_TEST_SECRET_PW")...)
	run(true, ibextest.AddDBArgs("t2", db2.Conn, "pass=file:"+pwFile)...)
	run(false, ibextest.AddDBArgs("t3", db2.Conn, "pass="+literal)...)
	run(false, ibextest.AddDBArgs("t3", db2.Conn, "password="+literal)...)
	run(false, ibextest.AddDBArgs("t3", db2.Conn, "pass=env:IBEX_TEST_SECRET_PW", "port=1")...)
	run(false, ibextest.AddDBArgs("t3", db2.Conn, "pass=file:"+pwFile, "dbname=ibex_no_such_db")...)
	run(true, ibextest.AddDBArgs("t3", db2.Conn, "pass=env:IBEX_TEST_SECRET_PW", "port=1", "--force")...)
	run(true, "list", "dbs")
	run(true, "list", "dbs", "--json")
	run(true, "add", "table", "accounts", "branches", "db=t1", "herd=h")
	run(true, "add", "dbgroup", "g", "t1:source", "t2:target")
	run(true, "add", "sync", "s", "herd=h", "dbs=g")
	run(true, "validate", "s")
	run(true, "kick", "s")
	run(true, "kick", "s", "--json")
	// A failing run: its target cannot be reached.
	run(true, "update", "db", "t2", "port=1", "--force")
	run(false, "kick", "s")
	run(false, "validate", "s")
	run(true, "status")
	run(true, "status", "s")
	run(true, "status", "--json")
	run(true, "conflicts", "s")
	run(true, "export")
	run(true, "add", "dbgroup", "g2", "t3:source", "t1:target")
	run(false, "add", "sync", "s2", "herd=h", "dbs=t3:source,t1:target")
	run(false, "remove", "sync", "s")
	run(true, "remove", "sync", "s", "--force")

	all := strings.Join(outputs, "\n")
	for _, s := range []string{envSecret, fileSecret, literal} {
		if strings.Contains(all, s) {
			t.Errorf("a command printed a password:\n%s", all)
		}
	}
	// The failures said why, so the test did look at failing paths.
	for _, s := range []string{"a literal password is never stored", "connection refused", `database "ibex_no_such_db" does not exist`, "Kick s: Empty", "Kick s: Bad"} {
		if !strings.Contains(all, s) {
			t.Errorf("the outputs lack %q:\n%s", s, all)
		}
	}
	dump := controlDump(t, ctl.DSN)
	for _, s := range []string{envSecret, fileSecret, literal} {
		if strings.Contains(dump, s) {
			t.Errorf("the control database holds a password:\n%s", dump)
		}
	}
	if !strings.Contains(dump, "env:IBEX_TEST_SECRET_PW") || !strings.Contains(dump, "file:"+pwFile) {
		t.Errorf("the control database should hold the password references:\n%s", dump)
	}
}
