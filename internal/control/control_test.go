package control_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/pgtest"
)

func open(t *testing.T, dsn string) *control.Store {
	t.Helper()
	s, err := control.Open(context.Background(), dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestMigrateAndCheck(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t, "")
	s := open(t, db.DSN)
	v := control.SchemaVersion()
	if v < 1 {
		t.Fatalf("SchemaVersion() = %d", v)
	}

	if got, err := s.Version(ctx); got != 0 || err != nil {
		t.Errorf("Version of an empty database: %d, %v", got, err)
	}
	err := s.Check(ctx)
	if !errors.Is(err, control.ErrNotInstalled) || err.Error() != "the ibex control schema is not installed in this database: run 'ibex install' first" {
		t.Errorf("Check before install: %v", err)
	}
	// A run checks the version with reading its sync and taking its lock (one round trip):
	// the same verdict, and no lock left behind.
	runConn := pgtest.Conn(t, db.DSN+" default_query_exec_mode=exec") // as the store's pool
	sameAsCheck := func(what string) {
		t.Helper()
		want := s.Check(ctx)
		_, _, locked, err := control.GetSyncAndLock(ctx, runConn, "s14208", true)
		if locked || err == nil || want == nil || err.Error() != want.Error() {
			t.Errorf("GetSyncAndLock %s: locked %v, %v; want Check's %v", what, locked, err, want)
		}
		if n := advisoryLocks(t, runConn); n != 0 {
			t.Errorf("GetSyncAndLock %s: %d advisory locks held, want 0", what, n)
		}
	}
	sameAsCheck("before install")
	if _, err := s.Migrate(ctx, false); !errors.Is(err, control.ErrNotInstalled) {
		t.Errorf("Migrate(upgrade) before install: %v", err)
	}
	applied, err := s.Migrate(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	var all []int
	for i := 1; i <= v; i++ {
		all = append(all, i)
	}
	if diff := cmp.Diff(all, applied); diff != "" {
		t.Errorf("Migrate(install) applied (-want +got):\n%s", diff)
	}
	if err := s.Check(ctx); err != nil {
		t.Errorf("Check after install: %v", err)
	}
	for _, installing := range []bool{true, false} {
		if applied, err := s.Migrate(ctx, installing); err != nil || len(applied) != 0 {
			t.Errorf("Migrate(%v) on an up-to-date schema: %v, %v", installing, applied, err)
		}
	}

	// set makes the schema read version n: the latest row becomes n, the rows between go.
	set := func(n int) {
		t.Helper()
		if _, err := s.Pool.Exec(ctx, `DELETE FROM ibex.schema_version WHERE version >= $1 AND version < (SELECT max(version) FROM ibex.schema_version)`, n); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Pool.Exec(ctx, `UPDATE ibex.schema_version SET version = $1 WHERE version = (SELECT max(version) FROM ibex.schema_version)`, n); err != nil {
			t.Fatal(err)
		}
	}
	twoSyncs(t, s.Q())
	if sy, _, locked, err := control.GetSyncAndLock(ctx, runConn, "s14208", true); err != nil || !locked || sy.Name != "s14208" {
		t.Errorf("GetSyncAndLock after install: %+v, %v, %v", sy, locked, err)
	} else if err := control.UnlockSync(ctx, runConn, sy); err != nil {
		t.Fatal(err)
	}
	set(v + 1)
	sameAsCheck("of a newer schema")
	err = s.Check(ctx)
	if !errors.Is(err, control.ErrSchemaNew) || err.Error() != fmt.Sprintf("the ibex control schema is newer than this ibex (schema version %d, this ibex knows up to %d): use a newer ibex binary", v+1, v) {
		t.Errorf("Check of a newer schema: %v", err)
	}
	for _, installing := range []bool{true, false} {
		if _, err := s.Migrate(ctx, installing); !errors.Is(err, control.ErrSchemaNew) {
			t.Errorf("Migrate(%v) of a newer schema: %v", installing, err)
		}
	}
	older := v - 1
	if older < 1 {
		older = -1 // with one migration, any version below is "older" (0 means not installed)
	}
	set(older)
	sameAsCheck("of an older schema")
	err = s.Check(ctx)
	if !errors.Is(err, control.ErrSchemaOld) || err.Error() != fmt.Sprintf("the ibex control schema is older than this ibex (schema version %d, ibex needs %d): run 'ibex upgrade'", older, v) {
		t.Errorf("Check of an older schema: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, err := control.Open(ctx, "host=127.0.0.1 port=1 user=postgres dbname=ctl password=Sekr1t-open connect_timeout=3", nil)
	if err == nil || !strings.HasPrefix(err.Error(), "control database (host=127.0.0.1 port=1 dbname=ctl user=postgres): cannot connect: ") || strings.Contains(err.Error(), "Sekr1t-open") {
		t.Errorf("Open of a closed port: %v", err)
	}
	_, err = control.Open(ctx, "host=127.0.0.1 port=notaport password=Sekr1t-open", nil)
	if err == nil || !strings.HasPrefix(err.Error(), "control database: invalid IBEX_DSN: ") || strings.Contains(err.Error(), "Sekr1t-open") {
		t.Errorf("Open of a bad DSN: %v", err)
	}
}

// TestOpenSocketSettings: libpq's keepalive keywords, tcp_user_timeout and ibex's
// reply_timeout in IBEX_DSN are applied by ibex (pgx would send them to the server, which
// refuses them); keywords ibex does not support are refused by name.
func TestOpenSocketSettings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t, "")
	s := open(t, db.DSN+" keepalives=1 keepalives_idle=5 keepalives_interval=2 keepalives_count=2 tcp_user_timeout=5000 reply_timeout=30")
	var one int
	if err := s.Pool.QueryRow(ctx, `SELECT 1`).Scan(&one); err != nil || one != 1 {
		t.Errorf("a query on a control database opened with socket settings: %v", err)
	}
	_, err := control.Open(ctx, db.DSN+" sslcrl=/tmp/crl.pem", nil)
	if err == nil || !strings.Contains(err.Error(), `connection keyword "sslcrl" is not supported`) {
		t.Errorf("Open with sslcrl: %v", err)
	}
	_, err = control.Open(ctx, db.DSN+" keepalives_idle=soon", nil)
	if err == nil || !strings.Contains(err.Error(), "keepalives_idle must be a whole number of seconds") {
		t.Errorf("Open with a bad keepalives_idle: %v", err)
	}
}

func TestObjects(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, s := installedStore(t)
	q := s.Q()

	// dbs
	d := &control.DB{Name: "t1", Conn: map[string]string{"dbname": "b1", "host": "h"}, Pass: "env:PW"}
	if err := control.PutDB(ctx, q, d, true); err != nil {
		t.Fatal(err)
	}
	if err := control.PutDB(ctx, q, d, true); !errors.Is(err, control.ErrExists) || err.Error() != `db "t1" already exists: use 'ibex update db t1 ...' to change it` {
		t.Errorf("PutDB twice: %v", err)
	}
	if err := control.PutDB(ctx, q, &control.DB{Name: "t9", Conn: map[string]string{}}, false); !errors.Is(err, control.ErrNotFound) {
		t.Errorf("PutDB(update) of a missing db: %v", err)
	}
	// The schema itself refuses a literal password and odd names.
	if err := control.PutDB(ctx, q, &control.DB{Name: "t2", Conn: map[string]string{"dbname": "x"}, Pass: "hunter2"}, true); err == nil || err.Error() != `db "t2": invalid value (db_pass_check)` {
		t.Errorf("PutDB with a literal password: %v", err)
	}
	if err := control.PutDB(ctx, q, &control.DB{Name: "has space", Conn: map[string]string{}}, true); err == nil || !strings.Contains(err.Error(), "invalid value") {
		t.Errorf("PutDB with a space in the name: %v", err)
	}
	got, err := control.GetDB(ctx, q, "t1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&control.DB{Name: "t1", Type: control.DBTypePostgres, Conn: map[string]string{"dbname": "b1", "host": "h"}, Pass: "env:PW", Status: "active"}, got); diff != "" {
		t.Errorf("GetDB (-want +got):\n%s", diff)
	}
	// A db's type is fixed; a target that is not PostgreSQL is never a source, nor a
	// dbgroup's only db.
	if err := control.PutDB(ctx, q, &control.DB{Name: "t1", Type: control.DBTypeRedis, Conn: map[string]string{}}, false); err == nil || err.Error() != `db "t1" is of type postgres and cannot become redis: remove the db and add it again` {
		t.Errorf("PutDB changing the type: %v", err)
	}
	if err := control.PutDB(ctx, q, &control.DB{Name: "r1", Type: control.DBTypeRedis, Conn: map[string]string{"host": "127.0.0.1"}}, true); err != nil {
		t.Fatal(err)
	}
	if err := control.PutDBGroup(ctx, q, &control.DBGroup{Name: "gr", Members: []control.Member{{DB: "t1", Role: "source"}, {DB: "r1", Role: "source"}}}, true); err == nil ||
		err.Error() != "dbgroup gr: db r1 (type redis) cannot be a source: ibex captures changes with PostgreSQL triggers, so only PostgreSQL dbs are sources; give it the role target or fullcopy" {
		t.Errorf("PutDBGroup with a redis source: %v", err)
	}
	if err := control.PutDBGroup(ctx, q, &control.DBGroup{Name: "gr", Members: []control.Member{{DB: "r1", Role: "source"}}}, true); err == nil ||
		err.Error() != "dbgroup gr: db r1 (type redis) cannot be its only db: a redis db is a target only, and a dbgroup needs a PostgreSQL source" {
		t.Errorf("PutDBGroup with a redis db alone: %v", err)
	}
	if _, err := q.Exec(ctx, `DELETE FROM ibex.db WHERE name = 'r1'`); err != nil {
		t.Fatal(err)
	}
	if _, err := control.GetDB(ctx, q, "nosuch"); !errors.Is(err, control.ErrNotFound) || err.Error() != `db "nosuch" not found: see 'ibex list dbs'` {
		t.Errorf("GetDB(nosuch): %v", err)
	}
	got.Pass = ""
	got.Conn["sslmode"] = "require"
	if err := control.PutDB(ctx, q, got, false); err != nil {
		t.Fatal(err)
	}
	if dbs, err := control.DBs(ctx, q); err != nil || len(dbs) != 1 || dbs[0].Pass != "" || dbs[0].Conn["sslmode"] != "require" {
		t.Errorf("DBs after update: %+v %v", dbs, err)
	}
	if err := control.PutDB(ctx, q, &control.DB{Name: "t2", Conn: map[string]string{"dbname": "b2"}}, true); err != nil {
		t.Fatal(err)
	}

	// tables and herds, in priority then id order
	ids := map[string]int64{}
	for _, n := range []string{"c", "a", "b"} {
		id, err := control.PutRelation(ctx, q, &control.Relation{Schema: "public", Name: n, DB: "t1", KeyCols: []string{"id"}, KeyKind: "primary key"})
		if err != nil {
			t.Fatal(err)
		}
		ids[n] = id
	}
	if id, err := control.PutRelation(ctx, q, &control.Relation{Schema: "public", Name: "a", DB: "t2", KeyCols: []string{"k1", "k2"}, KeyKind: "unique index"}); err != nil || id != ids["a"] {
		t.Errorf("PutRelation of an existing table: id %d (was %d), %v", id, ids["a"], err)
	}
	if _, err := control.PutRelation(ctx, q, &control.Relation{Schema: "public", Name: "x", KeyKind: "foreign key"}); err == nil {
		t.Errorf("PutRelation with a bad keykind succeeded")
	}
	rel, err := control.GetRelation(ctx, q, "public", "a")
	if err != nil || rel.DB != "t2" || !cmp.Equal(rel.KeyCols, []string{"k1", "k2"}) || rel.KeyKind != "unique index" || rel.QualName() != "public.a" {
		t.Errorf("GetRelation: %+v %v", rel, err)
	}
	if _, err := control.GetRelation(ctx, q, "public", "nosuch"); !errors.Is(err, control.ErrNotFound) {
		t.Errorf("GetRelation(nosuch): %v", err)
	}
	if err := control.CreateHerd(ctx, q, "h"); err != nil {
		t.Fatal(err)
	}
	if err := control.CreateHerd(ctx, q, "h"); !errors.Is(err, control.ErrExists) {
		t.Errorf("CreateHerd twice: %v", err)
	}
	if err := control.EnsureHerd(ctx, q, "h"); err != nil {
		t.Errorf("EnsureHerd of an existing herd: %v", err)
	}
	for _, n := range []string{"c", "a", "b"} {
		if err := control.AddToHerd(ctx, q, "h", ids[n]); err != nil {
			t.Fatal(err)
		}
	}
	if err := control.AddToHerd(ctx, q, "h", ids["a"]); err != nil {
		t.Errorf("AddToHerd twice: %v", err)
	}
	if _, err := s.Pool.Exec(ctx, `UPDATE ibex.herdmap SET priority = 5 WHERE relation = $1`, ids["b"]); err != nil {
		t.Fatal(err)
	}
	herds, err := control.Herds(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]control.Herd{{Name: "h", Tables: []string{"public.b", "public.c", "public.a"}}}, herds); diff != "" {
		t.Errorf("Herds (-want +got):\n%s", diff)
	}

	// dbgroups
	g := &control.DBGroup{Name: "g", Members: []control.Member{{DB: "t2", Role: "source"}, {DB: "t1", Role: "target"}}}
	if err := control.PutDBGroup(ctx, q, g, true); err != nil {
		t.Fatal(err)
	}
	if err := control.PutDBGroup(ctx, q, &control.DBGroup{Name: "g2", Members: []control.Member{{DB: "nosuch", Role: "source"}}}, true); err == nil ||
		err.Error() != `dbgroup "g2": db "nosuch" not found: see 'ibex list dbs'` {
		t.Errorf("PutDBGroup with a missing db: %v", err)
	}
	if err := control.PutDBGroup(ctx, q, &control.DBGroup{Name: "nosuch"}, false); !errors.Is(err, control.ErrNotFound) {
		t.Errorf("PutDBGroup(update) of a missing group: %v", err)
	}
	gg, err := control.GetDBGroup(ctx, q, "g")
	if err != nil || !cmp.Equal(gg, g) {
		t.Errorf("GetDBGroup: %+v %v", gg, err)
	}

	// syncs, and what is in use
	sy := &control.Sync{Name: "s", Herd: "h", DBGroup: "g", ConflictStrategy: "latest", Status: "active"}
	if err := control.PutSync(ctx, q, sy, true); err != nil {
		t.Fatal(err)
	}
	if err := control.PutSync(ctx, q, sy, true); !errors.Is(err, control.ErrExists) {
		t.Errorf("PutSync twice: %v", err)
	}
	if err := control.PutSync(ctx, q, &control.Sync{Name: "s2", Herd: "h", DBGroup: "g", Onetimecopy: 7, Status: "active"}, true); err == nil || !strings.Contains(err.Error(), "invalid value") {
		t.Errorf("PutSync with onetimecopy 7: %v", err)
	}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{control.RemoveDB(ctx, q, "t1"), `db "t1" is in use by dbgroup g: remove it from the dbgroup first`},
		{control.RemoveHerd(ctx, q, "h"), `herd "h" is in use by sync s: remove the sync first`},
		{control.RemoveDBGroup(ctx, q, "g"), `dbgroup "g" is in use by sync s: remove the sync first`},
		{control.RemoveRelation(ctx, q, "public", "a"), `table public.a is in use by sync s: remove it from the herd or remove the sync first`},
	} {
		if !errors.Is(tc.err, control.ErrInUse) || tc.err.Error() != tc.want {
			t.Errorf("remove in use: %v, want %q", tc.err, tc.want)
		}
	}
	if err := control.SetWatermark(ctx, q, "s", "t2", "t1", "10:10:"); err != nil {
		t.Fatal(err)
	}
	if err := control.RemoveSync(ctx, q, "s"); err != nil {
		t.Fatal(err)
	}
	if wm, err := control.Watermarks(ctx, q, "s"); err != nil || len(wm) != 0 {
		t.Errorf("watermarks of a removed sync: %v %v", wm, err)
	}
	if err := control.RemoveSync(ctx, q, "s"); !errors.Is(err, control.ErrNotFound) {
		t.Errorf("RemoveSync twice: %v", err)
	}
	for _, err := range []error{
		control.RemoveDBGroup(ctx, q, "g"), control.RemoveHerd(ctx, q, "h"), control.RemoveRelation(ctx, q, "public", "a"),
		control.RemoveDB(ctx, q, "t1"),
	} {
		if err != nil {
			t.Errorf("remove after the sync is gone: %v", err)
		}
	}
	for _, err := range []error{
		control.RemoveDBGroup(ctx, q, "g"), control.RemoveHerd(ctx, q, "h"), control.RemoveRelation(ctx, q, "public", "a"),
		control.RemoveDB(ctx, q, "t1"),
	} {
		if !errors.Is(err, control.ErrNotFound) {
			t.Errorf("remove twice: %v", err)
		}
	}
}
