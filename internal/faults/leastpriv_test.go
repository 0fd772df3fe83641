package faults

// Least privilege: what the role ibex connects as needs (PostgreSQL 15). Measured by
// TestLeastPrivilege below, on a scram-sha-256 cluster, with a role created as
//
//	CREATE ROLE app LOGIN PASSWORD '...' NOSUPERUSER NOCREATEDB NOCREATEROLE;
//
// and databases owned by the superuser, not by app.
//
// Control database (IBEX_DSN):
//	GRANT CREATE ON DATABASE ctl TO app;   -- ibex install creates schema ibex; app then
//	                                       -- owns the schema and everything in it.
//	(Owning the database works too, and so does a schema a DBA made for app instead:
//	CREATE SCHEMA ibex AUTHORIZATION app. Nothing else is needed: advisory locks and
//	pg_stat_activity are open to every role.)
//
// Each source db (its tables are captured, and receive the other sources' rows):
//	GRANT CREATE ON DATABASE a TO app;     -- add sync / validate create schema ibex
//	                                       -- when it is missing; instead, a DBA may
//	                                       -- pre-create it:
//	CREATE SCHEMA ibex AUTHORIZATION app;  -- or, owned by someone else:
//	GRANT USAGE, CREATE ON SCHEMA ibex TO app; GRANT USAGE ON SCHEMA ibex TO PUBLIC;
//	                                       -- (ibex refuses such a schema without PUBLIC's
//	                                       -- USAGE: the capture trigger runs as the writer)
//	ALTER TABLE ... OWNER TO app;          -- for every replicated table
//	(TEMPORARY on the database, which PUBLIC has by default, is used by every run.)
//	Ownership can be replaced by GRANT SELECT, INSERT, UPDATE, DELETE, TRIGGER ON ...
//	(UPDATE because a receiving source is written with INSERT ... ON CONFLICT DO
//	UPDATE): add sync, validate and runs work, but 'ibex remove sync' is then refused
//	before it removes anything, naming the table and the ALTER TABLE ... OWNER TO fix.
//	Without TRIGGER (nor ownership) add sync is refused the same way.
//	Application roles that write the tables need nothing more than their own grants
//	(tested: pgbench as a role with SELECT, INSERT, UPDATE only): ibex grants USAGE on
//	schema ibex and INSERT on its change tables to PUBLIC, and the capture trigger runs
//	as the writing role.
//
// Each target db (receives only):
//	GRANT SELECT, INSERT, DELETE ON <each replicated table> TO app;
//	(TEMPORARY on the database, PUBLIC's by default. No CREATE, no ownership, no UPDATE.)
//
// session_replication_role:
//	GRANT SET ON PARAMETER session_replication_role TO app;   -- PostgreSQL 15+
//	is optional. With it, rows ibex applies fire no user trigger and no foreign-key
//	check (as with Bucardo). Without it, ibex warns ("cannot set
//	session_replication_role") and falls back to SET ibex.applying = on, which only its
//	own capture triggers honour: ordinary user triggers fire for every applied row
//	(an audit trigger on a receiver records ibex's writes), and foreign keys between
//	replicated tables are checked as each table's batch is applied (each table commits
//	on its own, in herd order): a new child row whose table comes before its parent's
//	in the herd fails with a foreign-key violation, the receiving db leaves every run,
//	and the sync stays bad until the grant is given.
//
// The superuser is never needed.

import (
	"maps"
	"strconv"
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/internal/ibextest"
	"github.com/ibexrepl/ibex/internal/pgtest"
)

// TestLeastPrivilege proves invariant 7: ibex installs, is configured and runs as a
// plain role with only the privileges listed at the top of this file, first without and
// then with SET on session_replication_role, and reports what changes between the two.
func TestLeastPrivilege(t *testing.T) {
	c := pgtest.StartCluster(t, pgtest.ClusterOptions{Password: "lp-superuser-pw"})
	const appPW = "lp-app-pw"
	c.MustExec("postgres", `CREATE ROLE app LOGIN PASSWORD '`+appPW+`' NOSUPERUSER NOCREATEDB NOCREATEROLE;
CREATE ROLE writer LOGIN NOSUPERUSER`)
	for _, db := range []string{"ctl", "a", "b", "c", "d", "pre1", "pre2", "noschema", "ctlpre", "ctlnone", "ctlshut"} {
		c.CreateDB(db)
	}
	c.MustExec("ctl", `GRANT CREATE ON DATABASE ctl TO app`)
	audit := `CREATE TABLE audit (who text, tbl text, op text);
GRANT INSERT ON audit TO PUBLIC;
CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN
  INSERT INTO audit VALUES (session_user, TG_TABLE_NAME, TG_OP); RETURN NULL; END$$;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON pgbench_branches FOR EACH ROW EXECUTE FUNCTION audit();
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON pgbench_accounts FOR EACH ROW EXECUTE FUNCTION audit();
CREATE TABLE parent (id int PRIMARY KEY);
CREATE TABLE child (id int PRIMARY KEY, pid int NOT NULL REFERENCES parent);
CREATE TABLE kv (id int PRIMARY KEY, v text)`
	for _, db := range []string{"a", "b", "c"} {
		c.Pgbench(db, "-i", "-s", "1", "--no-vacuum", "-q")
		c.MustExec(db, audit)
	}
	for _, db := range []string{"a", "b"} { // sources: tables owned by app, CREATE on the db
		c.MustExec(db, `GRANT CREATE ON DATABASE `+db+` TO app;
ALTER TABLE pgbench_accounts OWNER TO app; ALTER TABLE pgbench_branches OWNER TO app; ALTER TABLE pgbench_tellers OWNER TO app;
ALTER TABLE parent OWNER TO app; ALTER TABLE child OWNER TO app;
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO writer`)
	}
	// The target: tables owned by the superuser, three grants.
	c.MustExec("c", `GRANT SELECT, INSERT, DELETE ON pgbench_accounts, pgbench_branches, pgbench_tellers, kv TO app`)
	// A source whose table app does not own, with grants instead.
	c.MustExec("d", `CREATE TABLE kv (id int PRIMARY KEY, v text);
GRANT CREATE ON DATABASE d TO app; GRANT SELECT, INSERT, UPDATE, DELETE, TRIGGER ON kv TO app`)
	if got := ibextest.One(t, c.DSN("postgres"), `SELECT rolsuper::text FROM pg_roles WHERE rolname = 'app'`); got != "false" {
		t.Fatal("app is a superuser")
	}

	dsns := map[string]string{}
	for _, db := range []string{"a", "b", "c"} {
		dsns[db] = c.DSN(db)
	}
	t.Setenv("IBEX_DSN", "host=127.0.0.1 port="+strconv.Itoa(c.Port)+" dbname=ctl user=app password="+appPW)
	t.Setenv("IBEX_APP_PW", appPW)
	ibex := func(args ...string) (string, string) {
		t.Helper()
		out, errOut, code := ibextest.Ibex("", args...)
		if code != 0 {
			t.Fatalf("ibex %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
		return out, errOut
	}
	ibex("install")
	for _, db := range []string{"a", "b", "c", "d"} {
		conn := maps.Clone(c.Conn(db))
		conn["user"] = "app"
		ibex(append([]string{"add", "db", db, "pass=env:IBEX_APP_PW"}, ibextest.ConnArgs(conn)...)...)
	}
	ibex("add", "table", "pgbench_accounts", "pgbench_branches", "pgbench_tellers", "db=a", "herd=h")
	ibex("add", "dbgroup", "g", "a:source", "b:source", "c:target")
	ibex("add", "sync", "s", "herd=h", "dbs=g")
	// The foreign-key pair, child first.
	ibex("add", "table", "child", "parent", "db=a", "herd=fk")
	ibex("add", "sync", "sfk", "herd=fk", "dbs=a:source,b:source")
	ibex("add", "table", "kv", "db=d", "herd=hkv")
	ibex("add", "sync", "skv", "herd=hkv", "dbs=d:source,c:target")
	ibex("kick", "s", "sfk", "skv")

	writes := func() {
		t.Helper()
		for _, db := range []string{"a", "b"} {
			cmd := c.PgbenchCmd(db, "-n", "-t", "100", "-c", "2")
			cmd.Env = append(cmd.Env, "PGUSER=writer")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("pgbench as writer on %s: %v\n%s", db, err, out)
			}
		}
	}
	appliedAudits := func(db string) int {
		n, _ := strconv.Atoi(ibextest.One(t, dsns[db], `SELECT count(*)::text FROM audit WHERE who = 'app'`))
		return n
	}
	converged := func() {
		t.Helper()
		for _, tbl := range []string{"pgbench_accounts", "pgbench_branches", "pgbench_tellers"} {
			ibextest.SameEverywhere(t, tbl, "", dsns)
		}
	}

	t.Run("without SET on session_replication_role", func(t *testing.T) {
		writes()
		out, errOut := ibex("kick", "s")
		if !strings.HasPrefix(out, "Kick s: Good.") {
			t.Fatalf("kick: %s%s", out, errOut)
		}
		if !strings.Contains(errOut, "cannot set session_replication_role") {
			t.Errorf("no warning about session_replication_role: %q", errOut)
		}
		converged()
		if appliedAudits("b") == 0 || appliedAudits("c") == 0 {
			t.Errorf("user triggers did not fire for applied rows without the grant (b %d, c %d)", appliedAudits("b"), appliedAudits("c"))
		}
		if n := count(t, dsns["a"], `audit WHERE who = 'app'`); n == 0 {
			t.Errorf("a's trigger did not fire for rows applied there")
		}
		status, _ := ibex("status")
		if !strings.Contains(status, "s ") || !strings.Contains(status, "Good") {
			t.Errorf("status: %s", status)
		}
		ibex("status", "s")

		// Foreign keys: the child table's batch is applied before its parent's.
		c.MustExec("a", `INSERT INTO parent VALUES (1); INSERT INTO child VALUES (1, 1)`)
		out, errOut, code := ibextest.Ibex("", "kick", "sfk")
		if code != 1 || !strings.Contains(out+errOut, "violates foreign key constraint") {
			t.Errorf("kick sfk without the grant: exit %d %s%s; want a foreign-key violation", code, out, errOut)
		}
		t.Logf("without the grant, the foreign-key sync: %s", strings.TrimSpace(out))

		// A source whose table app does not own.
		c.MustExec("d", `INSERT INTO kv VALUES (1, 'd')`)
		if out, _ := ibex("kick", "skv"); !strings.HasPrefix(out, "Kick skv: Good.") {
			t.Errorf("kick skv: %s", out)
		}
		if got := ibextest.TableRows(t, dsns["c"], "kv", ""); len(got) != 1 || got[0] != "(1,d)" {
			t.Errorf("c's kv: %v", got)
		}
	})

	c.MustExec("postgres", `GRANT SET ON PARAMETER session_replication_role TO app`)

	t.Run("with SET on session_replication_role", func(t *testing.T) {
		before := map[string]int{"b": appliedAudits("b"), "c": appliedAudits("c")}
		writes()
		out, errOut := ibex("kick", "s")
		if !strings.HasPrefix(out, "Kick s: Good.") {
			t.Fatalf("kick: %s%s", out, errOut)
		}
		if strings.Contains(errOut, "session_replication_role") {
			t.Errorf("warning despite the grant: %q", errOut)
		}
		converged()
		for db, n := range before {
			if got := appliedAudits(db); got != n {
				t.Errorf("db %s: user triggers fired for %d applied rows despite the grant", db, got-n)
			}
		}
		if out, _ := ibex("kick", "sfk"); !strings.HasPrefix(out, "Kick sfk: Good.") {
			t.Errorf("kick sfk with the grant: %s", out)
		}
		if got := ibextest.TableRows(t, dsns["b"], "child", ""); len(got) != 1 || got[0] != "(1,1)" {
			t.Errorf("b's child: %v", got)
		}
		ibex("status", "--json")
		ibex("remove", "sync", "sfk")
	})

	t.Run("validate needs no CREATE on a db once schema ibex is there", func(t *testing.T) {
		// Schema ibex exists (app made it): validate and runs need no CREATE on the database.
		c.MustExec("a", `REVOKE CREATE ON DATABASE a FROM app`)
		ibex("validate", "s")
		c.MustExec("a", `UPDATE pgbench_branches SET bbalance = bbalance + 1 WHERE bid = 1`)
		if out, _ := ibex("kick", "s"); !strings.HasPrefix(out, "Kick s: Good.") {
			t.Errorf("kick s without CREATE on a: %s", out)
		}
		converged()
		c.MustExec("a", `GRANT CREATE ON DATABASE a TO app`)
	})

	t.Run("schema ibex pre-created by a DBA instead of CREATE on the database", func(t *testing.T) {
		// No CREATE on these databases for app. pre1: the DBA made schema ibex for app.
		// pre2: the DBA owns it and grants app USAGE and CREATE (then PUBLIC needs USAGE).
		// noschema: nothing, so capture cannot be installed.
		pre := `CREATE TABLE pre (id int PRIMARY KEY, v text)`
		for _, db := range []string{"pre1", "pre2", "noschema"} {
			c.MustExec(db, pre+`; ALTER TABLE pre OWNER TO app; GRANT SELECT, INSERT, UPDATE ON pre TO writer`)
			conn := maps.Clone(c.Conn(db))
			conn["user"] = "app"
			ibex(append([]string{"add", "db", db, "pass=env:IBEX_APP_PW"}, ibextest.ConnArgs(conn)...)...)
		}
		c.MustExec("c", pre+`; GRANT SELECT, INSERT, DELETE ON pre TO app`)
		c.MustExec("pre1", `CREATE SCHEMA ibex AUTHORIZATION app`)
		c.MustExec("pre2", `CREATE SCHEMA ibex; GRANT USAGE, CREATE ON SCHEMA ibex TO app`)
		for _, db := range []string{"pre1", "pre2", "noschema"} {
			if got := ibextest.One(t, c.DSN(db), `SELECT has_database_privilege('app', current_database(), 'CREATE')::text`); got != "false" {
				t.Fatalf("app has CREATE on %s", db)
			}
		}
		ibex("add", "table", "pre", "db=pre1", "herd=hpre")
		writeAs := func(db, sql string) {
			t.Helper()
			ibextest.Exec(t, c.SocketDSN(db)+" user=writer", sql)
		}

		ibex("add", "sync", "spre1", "herd=hpre", "dbs=pre1:source,c:target")
		writeAs("pre1", `INSERT INTO pre VALUES (1, 'pre1')`)
		if out, _ := ibex("kick", "spre1"); !strings.HasPrefix(out, "Kick spre1: Good.") {
			t.Errorf("kick spre1: %s", out)
		}

		// pre2 before PUBLIC may use the schema: refused, naming the fix; nothing changes.
		before, _ := ibex("export")
		_, errOut, code := ibextest.Ibex("", "add", "sync", "spre2", "herd=hpre", "dbs=pre2:source,c:target")
		if code != 1 || !contains(errOut, "db pre2", "schema ibex belongs to role postgres, and PUBLIC has no USAGE on it",
			"GRANT USAGE ON SCHEMA ibex TO PUBLIC") {
			t.Errorf("add sync spre2 (schema ibex without PUBLIC USAGE): exit %d %q", code, errOut)
		}
		if after, _ := ibex("export"); after != before {
			t.Errorf("the refused add sync changed the configuration:\n%s\nthen\n%s", before, after)
		}
		if n := ibextest.One(t, c.DSN("pre2"), `SELECT count(*)::text FROM pg_class WHERE relnamespace = 'ibex'::regnamespace`); n != "0" {
			t.Errorf("the refused add sync left %s objects in pre2's schema ibex", n)
		}
		c.MustExec("pre2", `GRANT USAGE ON SCHEMA ibex TO PUBLIC`)
		ibex("add", "sync", "spre2", "herd=hpre", "dbs=pre2:source,c:target")
		writeAs("pre2", `INSERT INTO pre VALUES (2, 'pre2')`)
		if out, _ := ibex("kick", "spre2"); !strings.HasPrefix(out, "Kick spre2: Good.") {
			t.Errorf("kick spre2: %s", out)
		}
		if got := ibextest.TableRows(t, dsns["c"], "pre", ""); strings.Join(got, " ") != "(1,pre1) (2,pre2)" {
			t.Errorf("c's pre: %v", got)
		}

		// No schema, no CREATE: refused, naming the db and both fixes.
		_, errOut, code = ibextest.Ibex("", "add", "sync", "snoschema", "herd=hpre", "dbs=noschema:source,c:target")
		if code != 1 || !contains(errOut, "db noschema", "permission denied for database noschema",
			"GRANT CREATE ON DATABASE noschema TO app, or have a DBA run CREATE SCHEMA ibex AUTHORIZATION app") {
			t.Errorf("add sync snoschema: exit %d %q", code, errOut)
		}
		ibex("remove", "sync", "spre1", "spre2")
	})

	t.Run("control database: schema ibex pre-created by a DBA instead of CREATE on it", func(t *testing.T) {
		// ctlpre: the DBA made schema ibex for app. ctlnone: nothing. ctlshut: a schema app
		// may use but not create in.
		c.MustExec("ctlpre", `CREATE SCHEMA ibex AUTHORIZATION app`)
		c.MustExec("ctlshut", `CREATE SCHEMA ibex; GRANT USAGE ON SCHEMA ibex TO app`)
		dsn := func(db string) string {
			return "host=127.0.0.1 port=" + strconv.Itoa(c.Port) + " dbname=" + db + " user=app password=" + appPW
		}
		if out, errOut, code := ibextest.Ibex(dsn("ctlpre"), "install"); code != 0 {
			t.Errorf("install in ctlpre (schema ibex made for app, no CREATE on the database): exit %d %s%s", code, out, errOut)
		}
		if got := ibextest.One(t, c.DSN("ctlpre"), `SELECT count(*)::text FROM ibex.schema_version`); got == "0" {
			t.Errorf("install in ctlpre recorded no schema version")
		}
		_, errOut, code := ibextest.Ibex(dsn("ctlnone"), "install")
		if code != 1 || !contains(errOut, "creating schema ibex: permission denied for database ctlnone",
			"GRANT CREATE ON DATABASE ctlnone TO app, or have a DBA run CREATE SCHEMA ibex AUTHORIZATION app") {
			t.Errorf("install in ctlnone: exit %d %q", code, errOut)
		}
		if got := ibextest.One(t, c.DSN("ctlnone"), `SELECT (to_regnamespace('ibex') IS NULL)::text`); got != "true" {
			t.Errorf("the refused install left schema ibex in ctlnone")
		}
		_, errOut, code = ibextest.Ibex(dsn("ctlshut"), "install")
		if code != 1 || !contains(errOut, "permission denied for schema ibex",
			"as the schema's owner run GRANT USAGE, CREATE ON SCHEMA ibex TO app, or ALTER SCHEMA ibex OWNER TO app") {
			t.Errorf("install in ctlshut: exit %d %q", code, errOut)
		}
	})

	t.Run("capture DDL on a table app does not own", func(t *testing.T) {
		// Without TRIGGER (nor ownership), add sync is refused, naming table, db and fix.
		c.MustExec("d", `CREATE TABLE kv2 (id int PRIMARY KEY, v text); GRANT SELECT, INSERT, UPDATE, DELETE ON kv2 TO app`)
		c.MustExec("c", `CREATE TABLE kv2 (id int PRIMARY KEY, v text); GRANT SELECT, INSERT, DELETE ON kv2 TO app`)
		ibex("add", "table", "kv2", "db=d", "herd=hkv2")
		before, _ := ibex("export")
		_, errOut, code := ibextest.Ibex("", "add", "sync", "skv2", "herd=hkv2", "dbs=d:source,c:target")
		if code != 1 || !contains(errOut, "db d: installing capture of public.kv2: ", "permission denied for table kv2",
			"role app must own table public.kv2", "ALTER TABLE public.kv2 OWNER TO app, on db d (dbname d)", `README's "Privileges"`) {
			t.Errorf("add sync skv2 (kv2 neither owned nor with TRIGGER): exit %d %q", code, errOut)
		}
		if after, _ := ibex("export"); after != before {
			t.Errorf("the refused add sync changed the configuration")
		}
	})

	t.Run("remove sync needs table ownership", func(t *testing.T) {
		before, _ := ibex("export")
		_, errOut, code := ibextest.Ibex("", "remove", "sync", "skv")
		want := `ibex: cannot remove the capture of sync skv, nothing was removed: on db d (dbname d), role app must own table public.kv to create and drop ibex's triggers on it: as its owner or a superuser, run ALTER TABLE public.kv OWNER TO app; see the README's "Privileges"` + "\n"
		if code != 1 || errOut != want {
			t.Fatalf("remove sync skv (kv not owned by app): exit %d %q\nwant %q", code, errOut, want)
		}
		if after, _ := ibex("export"); after != before {
			t.Errorf("the refused remove sync changed the configuration")
		}
		// Several syncs at once: all are checked before any goes.
		_, errOut, code = ibextest.Ibex("", "remove", "sync", "s", "skv")
		if code != 1 || !strings.Contains(errOut, "cannot remove the capture of sync skv, nothing was removed") {
			t.Errorf("remove sync s skv: exit %d %q", code, errOut)
		}
		if after, _ := ibex("export"); after != before {
			t.Errorf("the refused remove sync s skv changed the configuration")
		}
		if n := ibextest.One(t, c.DSN("a"), `SELECT count(*)::text FROM pg_trigger WHERE tgname = 'ibex_s'`); n == "0" {
			t.Errorf("s's capture was removed by the refused remove sync s skv")
		}
		if n := ibextest.One(t, c.DSN("d"), `SELECT count(*)::text FROM pg_trigger WHERE tgname = 'ibex_skv'`); n != "1" {
			t.Errorf("%s capture triggers of skv left on d, want 1 (nothing removed)", n)
		}
		c.MustExec("d", `ALTER TABLE kv OWNER TO app`)
		ibex("remove", "sync", "skv")
		if n := ibextest.One(t, c.DSN("d"), `SELECT count(*)::text FROM pg_trigger WHERE tgname = 'ibex_skv'`); n != "0" {
			t.Errorf("%s capture triggers of skv left on d after remove", n)
		}
	})
}
