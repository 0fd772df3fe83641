package faults

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/ibextest"
	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/job"
)

// TestSchemaDrift proves that a run refuses to write anything when a table differs
// between dbs (a column on one db only, a column whose type changed, a table missing),
// names the table and the column in its error, keeps the captured changes, and succeeds
// once the schemas agree again.
func TestSchemaDrift(t *testing.T) {
	t.Parallel()
	e := newEnv(t, pgtest.ClusterOptions{})
	dsns := map[string]string{}
	for _, name := range []string{"a", "b"} {
		d := e.ctl.CreateDB(name)
		dsns[name] = d.DSN
		ibextest.Exec(t, d.DSN, `CREATE TABLE t (id int PRIMARY KEY, n int, v text)`)
		e.must(ibextest.AddDBArgs(name, d.Conn)...)
	}
	e.must("add", "table", "t", "db=a", "herd=h")
	e.must("add", "sync", "s", "herd=h", "dbs=a:source,b:source")
	s := e.store()
	mustState(t, s, "s", job.Options{}, control.StateEmpty)
	changes := `ibex."s.public.t"`

	refused := func(t *testing.T, id int, bTable string, wantErr ...string) {
		t.Helper()
		ibextest.Exec(t, dsns["a"], fmt.Sprintf(`INSERT INTO t (id, n, v) VALUES (%d, %d, 'x')`, id, id))
		res, err := kick(t, t.Context(), s, "s", job.Options{})
		if err == nil || res.State != control.StateBad || !contains(res.Error, wantErr...) {
			t.Fatalf("run: state %q error %q (%v); want bad, an error with %q", res.State, res.Error, err, wantErr)
		}
		if res.Inserts+res.Deletes != 0 {
			t.Errorf("the refused run wrote: %+v", res)
		}
		if got := ibextest.One(t, dsns["b"], `SELECT count(*)::text FROM `+bTable+` WHERE id = $1`, id); got != "0" {
			t.Errorf("b got row %d from a refused run", id)
		}
		if got := count(t, dsns["a"], changes); got == 0 {
			t.Errorf("the refused run consumed a's captured changes")
		}
		// The CLI says the same and exits 1.
		out, errOut, code := e.run("kick", "s")
		if code != 1 || !contains(out+errOut, wantErr...) {
			t.Errorf("ibex kick: exit %d, output %q; want 1 and %q", code, out+errOut, wantErr)
		}
	}
	converges := func(t *testing.T, rows int) {
		t.Helper()
		mustState(t, s, "s", job.Options{}, control.StateGood)
		if got := ibextest.SameEverywhere(t, "t", "", dsns); int64(len(got)) != int64(rows) {
			t.Errorf("%d rows, want %d", int64(len(got)), rows)
		}
	}

	t.Run("column on one db only", func(t *testing.T) {
		ibextest.Exec(t, dsns["b"], `ALTER TABLE t ADD COLUMN extra int`)
		refused(t, 1, "t", "schema drift", "public.t", `column "extra" is on db b but not on db a`)
		ibextest.Exec(t, dsns["a"], `ALTER TABLE t ADD COLUMN extra int`)
		converges(t, 1)
	})
	t.Run("changed column type", func(t *testing.T) {
		ibextest.Exec(t, dsns["b"], `ALTER TABLE t ALTER COLUMN n TYPE bigint`)
		refused(t, 2, "t", "schema drift", "public.t", `column "n" is integer on db a but bigint on db b`)
		ibextest.Exec(t, dsns["a"], `ALTER TABLE t ALTER COLUMN n TYPE bigint`)
		converges(t, 2)
	})
	t.Run("table missing", func(t *testing.T) {
		ibextest.Exec(t, dsns["b"], `ALTER TABLE t RENAME TO t_away`)
		refused(t, 3, "t_away", "table public.t does not exist on db b")
		ibextest.Exec(t, dsns["b"], `ALTER TABLE t_away RENAME TO t`)
		converges(t, 3)
	})
}

// TestAddDBFailures proves that 'ibex add db' with settings that cannot connect exits
// non-zero within a bounded time with an error that says why and what to do, and adds
// nothing (ibex export is unchanged): a closed port, an unknown host name, a host that
// never answers (with connect_timeout=2 and with the default 10 s), a wrong password on
// a scram-sha-256 server, a connection pg_hba.conf rejects, an unset password variable,
// a missing password file, a literal password.
func TestAddDBFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t, pgtest.ClusterOptions{Password: "ctl-superuser-pw", HBA: []string{"host all shunned 127.0.0.1/32 reject"}})
	e.ctl.MustExec("postgres", `CREATE ROLE app LOGIN PASSWORD 'app-right-pw'; CREATE ROLE shunned LOGIN`)
	e.ctl.CreateDB("appdb")
	port := strconv.Itoa(e.ctl.Port)
	before := e.must("export")

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()

	// A host that accepts TCP connections and never answers.
	hole := newProxy(t, "127.0.0.1:"+port)
	addToxic(t, hole, `{"name":"hole","type":"timeout","stream":"downstream","attributes":{"timeout":0}}`)
	holeHost, holePort, _ := net.SplitHostPort(hole.Listen)

	dir := t.TempDir()
	wrongPW := filepath.Join(dir, "wrong")
	if err := os.WriteFile(wrongPW, []byte("not-the-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name     string
		args     []string
		min, max time.Duration
		code     int
		want     []string
	}{
		{"closed port", []string{"host=127.0.0.1", "port=" + closedPort, "dbname=appdb"}, 0, 5 * time.Second, 1,
			[]string{"cannot connect to db x", "port=" + closedPort, "connection refused", "--force"}},
		{"unknown host", []string{"host=no-such-host.invalid", "port=5432", "dbname=appdb"}, 0, 15 * time.Second, 1,
			[]string{"cannot connect to db x", "no-such-host.invalid"}},
		{"no answer, connect_timeout=2", []string{"host=" + holeHost, "port=" + holePort, "dbname=appdb", "connect_timeout=2"}, 2 * time.Second, 6 * time.Second, 1,
			[]string{"cannot connect to db x", "timeout"}},
		{"no answer, default timeout", []string{"host=" + holeHost, "port=" + holePort, "dbname=appdb"}, 10 * time.Second, 15 * time.Second, 1,
			[]string{"cannot connect to db x", "timeout"}},
		{"wrong password", []string{"host=127.0.0.1", "port=" + port, "dbname=appdb", "user=app", "pass=file:" + wrongPW}, 0, 5 * time.Second, 1,
			[]string{"cannot connect to db x", `password authentication failed for user "app"`}},
		{"rejected by pg_hba.conf", []string{"host=127.0.0.1", "port=" + port, "dbname=appdb", "user=shunned"}, 0, 5 * time.Second, 1,
			[]string{"cannot connect to db x", `pg_hba.conf rejects connection`, `user "shunned"`}},
		{"unset password variable", []string{"host=127.0.0.1", "port=" + port, "dbname=appdb", "user=app", "pass=env:IBEX_T_NEVER_SET"}, 0, 5 * time.Second, 1,
			[]string{"password variable IBEX_T_NEVER_SET is not set"}},
		{"missing password file", []string{"host=127.0.0.1", "port=" + port, "dbname=appdb", "user=app", "pass=file:" + filepath.Join(dir, "nope")}, 0, 5 * time.Second, 1,
			[]string{"reading password file", "no such file"}},
		{"literal password", []string{"host=127.0.0.1", "port=" + port, "dbname=appdb", "user=app", "pass=app-right-pw"}, 0, 5 * time.Second, 2,
			[]string{"a literal password is never stored", "pass=env:VAR or pass=file:PATH"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			t0 := time.Now()
			out, errOut, code := e.run(append([]string{"add", "db", "x"}, c.args...)...)
			d := time.Since(t0)
			if code != c.code || !contains(errOut, c.want...) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errOut, c.code, c.want)
			}
			if d < c.min || d > c.max {
				t.Errorf("took %s, want %s to %s", d, c.min, c.max)
			}
			if strings.Contains(out+errOut, "app-right-pw") || strings.Contains(out+errOut, "not-the-password") {
				t.Errorf("a password was printed: %q", out+errOut)
			}
			t.Logf("%s in %s: %s", c.name, d.Round(time.Millisecond), strings.TrimSpace(errOut))
		})
	}
	t.Cleanup(func() {
		if after := e.must("export"); after != before {
			t.Errorf("ibex export changed after failed add db:\n%s\nwas\n%s", after, before)
		}
		if out := e.must("list", "dbs"); !strings.Contains(out, "No dbs") {
			t.Errorf("list dbs after failed adds: %s", out)
		}
	})
	// And the right password works.
	pw := filepath.Join(dir, "right")
	if err := os.WriteFile(pw, []byte("app-right-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.must("add", "db", "ok", "host=127.0.0.1", "port="+port, "dbname=appdb", "user=app", "pass=file:"+pw)
	e.must("remove", "db", "ok")
}

// TestApplyMalformed proves that 'ibex apply' refuses malformed or inconsistent YAML with
// exit code 2 and an error that names the line or the object, and changes nothing; and
// that a well-formed file whose db cannot be reached changes nothing either.
func TestApplyMalformed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, pgtest.ClusterOptions{})
	d := e.ctl.CreateDB("a")
	ibextest.Exec(t, d.DSN, `CREATE TABLE t (id int PRIMARY KEY)`)
	e.must(ibextest.AddDBArgs("a", d.Conn)...)
	e.must("add", "table", "t", "db=a", "herd=h")
	e.must("add", "sync", "s", "herd=h", "dbs=a:source")
	before := e.must("export")
	dir := t.TempDir()
	// A db that cannot be reached, in a new dbgroup, for the last case.
	withZ := strings.Replace(before, "dbs:\n", "dbs:\n  z:\n    dbname: z\n    host: 127.0.0.1\n    port: \"1\"\n", 1)
	withZ = strings.Replace(withZ, "dbgroups:\n", "dbgroups:\n  g2:\n    - z:source\n", 1)
	if withZ == before || !strings.HasSuffix(withZ, "status: active\n") {
		t.Fatalf("unexpected export layout:\n%s", before)
	}
	// a's own settings changed to a port where nothing listens.
	movedA := strings.Replace(before, "port: \""+d.Conn["port"]+"\"", "port: \"1\"", 1)
	if movedA == before {
		t.Fatalf("unexpected export layout:\n%s", before)
	}
	cases := []struct {
		name, yaml string
		code       int
		want       []string
	}{
		{"syntax", "dbs:\n  a: [unclosed\n", 2, []string{"line"}},
		{"tab indentation", "dbs:\n\ta:\n\t\tdbname: x\n", 2, []string{"line 2"}},
		{"unknown db key", "dbs:\n  a:\n    dbname: a\n    hots: localhost\n", 2, []string{"line 4", `unknown db setting "hots"`}},
		{"unknown top-level key", "dbz:\n  a:\n    dbname: a\n", 2, []string{"line 1", "dbz"}},
		{"wrong type", "dbs:\n  a:\n    dbname: a\ntables:\n  public.t:\n    db: a\n    key: [id]\n    keykind: primary key\nherds:\n  h: [public.t]\ndbgroups:\n  g: [\"a:source\"]\nsyncs:\n  s:\n    herd: h\n    dbs: g\n    autokick: maybe\n", 2,
			[]string{"line 17", "syncs.s.autokick", "maybe"}},
		{"dangling herd", "dbs:\n  a:\n    dbname: a\ndbgroups:\n  g: [\"a:source\"]\nsyncs:\n  s:\n    herd: nope\n    dbs: g\n", 2, []string{"sync s", `herd "nope"`}},
		{"no source", "dbs:\n  a:\n    dbname: a\ndbgroups:\n  g: [\"a:target\"]\n", 2, []string{"dbgroup g has no source"}},
		{"literal password", "dbs:\n  a:\n    dbname: a\n    pass: hunter2\n", 2, []string{"line 4", "literal password"}},
		// The connection of every added or changed db is tested before anything changes.
		{"new sync on an unreachable db", withZ + "  s2:\n    herd: h\n    dbs: g2\n    conflict_strategy: latest\n    status: active\n",
			1, []string{"nothing changed: cannot connect to db z (host=127.0.0.1 port=1", "connection refused", "--force"}},
		{"a db moved where nothing listens", movedA, 1, []string{"nothing changed: cannot connect to db a (", "port=1 ", "connection refused", "--force"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".yaml")
			if err := os.WriteFile(f, []byte(c.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			out, errOut, code := e.run("apply", "-f", f)
			if code != c.code || !contains(errOut, c.want...) {
				t.Errorf("exit %d\nstdout %s\nstderr %s\nwant exit %d and %q", code, out, errOut, c.code, c.want)
			}
			if after := e.must("export"); after != before {
				t.Errorf("export changed:\n%s", after)
			}
		})
	}
}
