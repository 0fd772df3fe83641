package faults

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/internal/ibextest"
	"github.com/ibexrepl/ibex/internal/pgtest"
)

// TestSecrets proves the second half of invariant 7: no secret is ever printed or
// stored. On a scram-sha-256 server, with passwords given as pass=env:VAR and
// pass=file:PATH (and in IBEX_DSN for the control database), every command's stdout
// and stderr at --log-level debug, including failed authentications and malformed
// control DSNs, and every row of every table in schema ibex (control and capture) are
// searched for the passwords. It also checks sslmode: require against a server without
// SSL fails clearly; disable works.
func TestSecrets(t *testing.T) {
	const (
		superPW  = "Sup3r-Walrus-8841-secret"
		rolePW   = "Zebra-Quartz-7713-secret"
		wrongPW  = "Wrong-Marmot-4242-secret"
		badDSNPW = "Dsn-Pelican-5151-secret"
	)
	secrets := []string{superPW, rolePW, wrongPW, badDSNPW}
	c := pgtest.StartCluster(t, pgtest.ClusterOptions{Password: superPW})
	c.MustExec("postgres", `CREATE ROLE ibexrole LOGIN PASSWORD '`+rolePW+`'`)
	for _, db := range []string{"ctl", "d1", "d2"} {
		c.MustExec("postgres", "CREATE DATABASE "+db+" OWNER ibexrole")
	}
	for _, db := range []string{"d1", "d2"} {
		c.MustExec(db, `CREATE TABLE t (id int PRIMARY KEY, v text); ALTER TABLE t OWNER TO ibexrole`)
	}
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(rolePW+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(c.Port)
	t.Setenv("IBEX_DSN", "host=127.0.0.1 port="+port+" dbname=ctl user=ibexrole password="+rolePW)
	t.Setenv("IBEX_T_PW", rolePW)
	conn := func(db string) []string {
		m := maps.Clone(c.Conn(db))
		m["user"] = "ibexrole"
		return ibextest.ConnArgs(m)
	}

	var transcript strings.Builder
	ibex := func(wantCode int, args ...string) string {
		t.Helper()
		args = append(args, "--log-level", "debug")
		out, errOut, code := ibextest.Ibex("", args...)
		fmt.Fprintf(&transcript, "$ ibex %s\n%s%s[exit %d]\n", strings.Join(args, " "), out, errOut, code)
		if (wantCode == 0) != (code == 0) {
			t.Fatalf("ibex %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, wantCode, out, errOut)
		}
		return out + errOut
	}

	ibex(0, "install")
	ibex(0, append([]string{"add", "db", "d1", "pass=env:IBEX_T_PW"}, conn("d1")...)...)
	ibex(0, append([]string{"add", "db", "d2", "pass=file:" + pwFile}, conn("d2")...)...)
	ibex(0, "add", "table", "t", "db=d1", "herd=h")
	ibex(0, "add", "sync", "s", "herd=h", "dbs=d1:source,d2:source")
	ibex(0, "list", "dbs")
	ibex(0, "list", "dbs", "--json")
	ibex(0, "list", "syncs", "--json")
	ibex(0, "export")
	c.MustExec("d1", `INSERT INTO t VALUES (1, 'one')`)
	c.MustExec("d2", `INSERT INTO t VALUES (1, 'uno'), (2, 'two')`)
	if out := ibex(0, "kick", "s"); !strings.Contains(out, "Kick s: Good.") {
		t.Errorf("kick: %s", out)
	}
	ibex(0, "kick", "s", "--json")
	ibex(0, "status")
	ibex(0, "status", "--json")
	ibex(0, "status", "s")
	ibex(0, "status", "s", "--json")
	ibex(0, "conflicts", "s")
	ibex(0, "conflicts", "s", "--json")
	ibex(0, "validate", "s")
	ibex(0, "update", "db", "d1", "sslmode=disable")

	// sslmode=require against a server without SSL.
	out := ibex(1, append([]string{"add", "db", "x1", "pass=env:IBEX_T_PW", "sslmode=require"}, conn("d1")...)...)
	if !contains(out, "cannot connect to db x1", "server refused TLS connection") {
		t.Errorf("sslmode=require without SSL on the server: %s", out)
	}
	ibex(0, append([]string{"add", "db", "x2", "pass=env:IBEX_T_PW", "sslmode=disable"}, conn("d1")...)...)
	ibex(0, "remove", "db", "x2")

	// Failed authentication: the variable holds a wrong password.
	t.Setenv("IBEX_T_PW", wrongPW)
	c.MustExec("d2", `INSERT INTO t VALUES (3, 'three')`)
	out = ibex(1, "kick", "s")
	if !contains(out, "skipped db d1", `password authentication failed for user "ibexrole"`) {
		t.Errorf("kick with a wrong password: %s", out)
	}
	ibex(1, "kick", "s", "--json")
	ibex(0, "status", "s")
	ibex(0, "status", "s", "--json")
	ibex(1, append([]string{"add", "db", "d3", "pass=env:IBEX_T_PW"}, conn("d1")...)...)
	ibex(1, "update", "db", "d1", "port="+port)
	ibex(1, "validate", "s")

	// Control DSNs that fail: a wrong password, and malformed ones holding a password.
	for _, dsn := range []string{
		"host=127.0.0.1 port=" + port + " dbname=ctl user=ibexrole password=" + badDSNPW,
		"host=127.0.0.1 port=notaport dbname=ctl user=ibexrole password=" + badDSNPW,
		"postgres://ibexrole:" + badDSNPW + "@127.0.0.1:" + port + "/ctl?sslmode=bogus",
		"postgres://ibexrole:" + badDSNPW + "@127.0.0.1:notaport/ctl",
		"host=127.0.0.1 port=" + port + " dbname=ctl user=ibexrole password='" + badDSNPW,
	} {
		t.Setenv("IBEX_DSN", dsn)
		ibex(1, "status")
		ibex(1, "kick", "s")
	}
	t.Setenv("IBEX_T_PW", rolePW)

	text := transcript.String()
	for _, s := range secrets {
		if i := strings.Index(text, s); i >= 0 {
			start := max(0, strings.LastIndex(text[:i], "$ ibex"))
			t.Errorf("password %q printed, in:\n%s", s, text[start:min(len(text), i+200)])
		}
	}
	t.Logf("%d bytes of output checked", len(text))
	if os.Getenv("IBEX_T_SHOW") != "" {
		t.Log(text)
	}

	// Nothing stored: every row of every table in schema ibex, on every database.
	for _, db := range []string{"ctl", "d1", "d2"} {
		dsn := c.DSN(db)
		tables := ibextest.Column(t, dsn, `SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname = 'ibex' ORDER BY 1`)
		if db == "ctl" && len(tables) < 8 {
			t.Fatalf("only %d control tables: %v", len(tables), tables)
		}
		for _, tbl := range tables {
			for _, row := range ibextest.Column(t, dsn, `SELECT ROW(x.*)::text FROM `+tbl+` x`) {
				for _, s := range secrets {
					if strings.Contains(row, s) {
						t.Errorf("db %s table %s stores a password: %s", db, tbl, row)
					}
				}
			}
		}
	}
	// And the file reference is what is stored for d2.
	if got := ibextest.One(t, c.DSN("ctl"), `SELECT pass FROM ibex.db WHERE name = 'd2'`); got != "file:"+pwFile {
		t.Errorf("d2's pass is stored as %q", got)
	}
}
