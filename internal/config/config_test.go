package config_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/config"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/pgtest"
)

func demoFile() *config.File {
	f := &config.File{DBs: map[string]config.DB{}}
	for _, n := range []string{"1", "2", "3", "4", "5"} {
		f.DBs["t"+n] = config.DB{"dbname": "btest" + n, "host": "127.0.0.1", "port": "5432", "user": "postgres"}
	}
	f.Tables = map[string]config.Table{
		"public.pgbench_accounts": {DB: "t1", Key: []string{"aid"}, KeyKind: catalog.KeyPrimary},
		"public.pgbench_branches": {DB: "t1", Key: []string{"bid"}, KeyKind: catalog.KeyPrimary},
		"public.pgbench_tellers":  {DB: "t1", Key: []string{"tid"}, KeyKind: catalog.KeyPrimary},
	}
	f.Herds = map[string][]string{"therd": {"public.pgbench_accounts", "public.pgbench_branches", "public.pgbench_tellers"}}
	f.DBGroups = map[string][]string{"tgroup": {"t1:source", "t2:source", "t3:source", "t4:source", "t5:target"}}
	f.Syncs = map[string]config.Sync{"foobar": {Herd: "therd", DBs: "tgroup", ConflictStrategy: "latest", Autokick: false, Status: "active"}}
	return f
}

// TestDemoYAMLParses: configs/demo.yaml is the seed demo, and in Marshal's exact form.
func TestDemoYAMLParses(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../configs/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f, err := config.Parse("configs/demo.yaml", strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(demoFile(), f); diff != "" {
		t.Errorf("configs/demo.yaml (-want +got):\n%s", diff)
	}
	out, err := config.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(b), string(out)); diff != "" {
		t.Errorf("Marshal(Parse(demo.yaml)) differs from the file (-file +marshal):\n%s", diff)
	}
}

func TestParseEmpty(t *testing.T) {
	t.Parallel()
	// {} says "no objects"; a file with no document at all is refused, since applying it
	// would silently remove the whole configuration.
	f, err := config.Parse("f.yaml", strings.NewReader("{}\n"))
	if err != nil || len(f.DBs)+len(f.Tables)+len(f.Herds)+len(f.DBGroups)+len(f.Syncs) != 0 {
		t.Errorf("Parse({}) = %+v, %v", f, err)
	}
	for _, in := range []string{"", "# only a comment\n"} {
		_, err := config.Parse("f.yaml", strings.NewReader(in))
		want := "f.yaml is empty: refusing to remove the whole configuration (write {} if that is what you want)"
		if err == nil || err.Error() != want {
			t.Errorf("Parse(%q) error = %v, want %q", in, err, want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, in, want string }{
		{"unknown db key", "dbs:\n  t1:\n    dbnmae: x\n",
			`f.yaml: line 3: unknown db setting "dbnmae" (known: application_name, channel_binding, connect_timeout, dbname, host, keepalives, keepalives_count, keepalives_idle, keepalives_interval, options, passfile, port, reply_timeout, require_auth, service, servicefile, sslcert, sslkey, sslmode, sslnegotiation, sslrootcert, sslsni, target_session_attrs, tcp_user_timeout, user, pass, status, makedelta)`},
		{"literal password", "dbs:\n  t1:\n    dbname: x\n    pass: hunter2\n", "f.yaml: line 4: a literal password is never stored: use pass=env:VAR or pass=file:PATH, or PGPASSWORD or ~/.pgpass"},
		{"db not a mapping", "dbs:\n  t1: [x]\n", "f.yaml: line 2: a db is a mapping of connection settings"},
		{"autokick maybe", "syncs:\n  s:\n    herd: h\n    autokick: maybe\n", "f.yaml: line 4: syncs.s.autokick: cannot unmarshal !!str `maybe` into bool"},
		{"two type errors", "syncs:\n  s:\n    autokick: maybe\n    onetimecopy: x\n",
			"f.yaml: line 3: syncs.s.autokick: cannot unmarshal !!str `maybe` into bool; line 4: syncs.s.onetimecopy: cannot unmarshal !!str `x` into int"},
		{"unknown sync key", "syncs:\n  s:\n    hrd: h\n", `f.yaml: line 3: syncs.s.hrd: unknown key "hrd"`},
		{"unknown top key", "dbz: {}\n", `f.yaml: line 1: dbz: unknown key "dbz"`},
		{"herd not a list", "herds:\n  h: public.t\n", "f.yaml: line 2: herds.h: cannot unmarshal !!str `public.t` into []string"},
		{"dbgroup member a map", "dbgroups:\n  g:\n    - {t1: source}\n", "f.yaml: line 3: dbgroups.g[0]: cannot unmarshal !!map into string"},
		{"syntax", "dbs:\n  t1: {dbname: x\n", "f.yaml: "},
		{"missing herd", "syncs:\n  s: {herd: h, dbs: g}\n", `f.yaml: sync s: herd "h" is not among the herds`},
		{"bad table name", "tables:\n  a.b.c: {key: [id], keykind: primary key}\n", `f.yaml: table name "a.b.c": expected table or schema.table`},
		{"no dbname nor service", "dbs:\n  t1:\n    host: x\n    user: u\n", "f.yaml: db t1: dbname or service is required"},
	} {
		_, err := config.Parse("f.yaml", strings.NewReader(tc.in))
		exact := tc.name != "syntax" // the YAML parser's own words
		if err == nil || (exact && err.Error() != tc.want) || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: Parse = %v\nwant %q", tc.name, err, tc.want)
		}
	}
}

// TestParseServiceDB: a db may be only a service (its file names the database), as with
// libpq, and may say where that file is (servicefile, PostgreSQL 18).
func TestParseServiceDB(t *testing.T) {
	t.Parallel()
	f, err := config.Parse("f.yaml", strings.NewReader("dbs:\n  t1:\n    service: svc\n  t2:\n    service: svc2\n    servicefile: /etc/ibex/services\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]config.DB{"t1": {"service": "svc"}, "t2": {"service": "svc2", "servicefile": "/etc/ibex/services"}}
	if diff := cmp.Diff(want, f.DBs); diff != "" {
		t.Errorf("dbs (-want +got):\n%s", diff)
	}
}

func TestTableName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ schema, name, want string }{
		{"public", "t", "public.t"},
		{"My Schema", "Order Lines", "My Schema.Order Lines"},
		{"public", "dotted.name", `public."dotted.name"`},
		{"a.b", "c", `"a.b".c`},
		{"public", `we"ird'tbl`, `public."we""ird'tbl"`},
		{"ünï", "таблица", "ünï.таблица"},
	} {
		got := config.TableName(tc.schema, tc.name)
		if got != tc.want {
			t.Errorf("TableName(%q, %q) = %q, want %q", tc.schema, tc.name, got, tc.want)
		}
		back, err := catalog.ParseName(got)
		if err != nil || back != (catalog.QualName{Schema: tc.schema, Name: tc.name}) {
			t.Errorf("ParseName(TableName(%q, %q)) = %#v, %v", tc.schema, tc.name, back, err)
		}
	}
}

func TestDiff(t *testing.T) {
	t.Parallel()
	cur := demoFile()
	want := demoFile()
	// Spelled differently but the same: no change.
	s := want.Syncs["foobar"]
	s.ConflictStrategy = "bucardo_latest"
	s.Status = ""
	want.Syncs["foobar"] = s
	want.DBs["t1"]["status"] = "active"
	if got := config.Diff(cur, want); len(got) != 0 {
		t.Errorf("Diff of equivalent files: %v", got)
	}
	want = demoFile()
	want.DBs["t6"] = config.DB{"dbname": "btest6"}
	want.DBs["t2"]["sslmode"] = "require"
	delete(want.DBs, "t5")
	want.DBGroups["tgroup"] = want.DBGroups["tgroup"][:4]
	delete(want.Syncs, "foobar")
	var got []string
	for _, c := range config.Diff(cur, want) {
		got = append(got, c.String())
	}
	if diff := cmp.Diff([]string{"update db t2", "add db t6", "remove db t5", "update dbgroup tgroup", "remove sync foobar"}, got); diff != "" {
		t.Errorf("Diff (-want +got):\n%s", diff)
	}
}

// TestExportQuotesNames: Export spells table names so that Parse reads them back, in
// tables and in herds.
func TestExportQuotesNames(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t, "")
	ctx := context.Background()
	s, err := control.Open(ctx, db.DSN, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Migrate(ctx, true); err != nil {
		t.Fatal(err)
	}
	q := s.Q()
	if err := control.EnsureHerd(ctx, q, "h"); err != nil {
		t.Fatal(err)
	}
	for _, r := range []control.Relation{
		{Schema: "public", Name: "dotted.name", KeyCols: []string{"id"}, KeyKind: catalog.KeyPrimary},
		{Schema: "My Schema", Name: `we"ird`, KeyCols: []string{`k"ey`}, KeyKind: catalog.KeyUnique},
	} {
		id, err := control.PutRelation(ctx, q, &r)
		if err != nil {
			t.Fatal(err)
		}
		if err := control.AddToHerd(ctx, q, "h", id); err != nil {
			t.Fatal(err)
		}
	}
	f, err := config.Export(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	want := &config.File{
		DBs: map[string]config.DB{},
		Tables: map[string]config.Table{
			`public."dotted.name"`: {Key: []string{"id"}, KeyKind: catalog.KeyPrimary},
			`My Schema."we""ird"`:  {Key: []string{`k"ey`}, KeyKind: catalog.KeyUnique},
		},
		Herds:    map[string][]string{"h": {`public."dotted.name"`, `My Schema."we""ird"`}},
		DBGroups: map[string][]string{},
		Syncs:    map[string]config.Sync{},
	}
	if diff := cmp.Diff(want, f); diff != "" {
		t.Errorf("Export (-want +got):\n%s", diff)
	}
	b, err := config.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	back, err := config.Parse("exported", strings.NewReader(string(b)))
	if err != nil {
		t.Fatalf("Parse(Marshal(Export)): %v\n%s", err, b)
	}
	if changes := config.Diff(f, back); len(changes) != 0 {
		t.Errorf("the export read back differs: %v\n%s", changes, b)
	}
}
