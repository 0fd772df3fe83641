package dbconn_test

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ibexrepl/ibex/internal/dbconn"
	"github.com/ibexrepl/ibex/internal/pgtest"
)

func TestConnString(t *testing.T) {
	t.Parallel()
	if got := dbconn.ConnString(nil); got != "" {
		t.Errorf("ConnString(nil) = %q", got)
	}
	conn := map[string]string{
		"user":             "u s",
		"dbname":           `my 'db' \x`,
		"host":             "127.0.0.1",
		"port":             "5432",
		"application_name": `a\'b`,
		"options":          "-c search_path=s1,public",
		"sslmode":          "",
	}
	want := `application_name='a\\\'b' dbname='my \'db\' \\x' host='127.0.0.1' options='-c search_path=s1,public' port='5432' sslmode='' user='u s'`
	got := dbconn.ConnString(conn)
	if got != want {
		t.Errorf("ConnString:\n%s\nwant:\n%s", got, want)
	}
	// libpq's parser (pgconn's) reads every value back as it was.
	cfg, err := pgconn.ParseConfig(got)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Database != conn["dbname"] || cfg.User != conn["user"] || cfg.Host != "127.0.0.1" || cfg.Port != 5432 ||
		cfg.RuntimeParams["application_name"] != conn["application_name"] || cfg.RuntimeParams["options"] != conn["options"] {
		t.Errorf("ParseConfig(ConnString(...)) = db %q user %q host %q port %d params %v", cfg.Database, cfg.User, cfg.Host, cfg.Port, cfg.RuntimeParams)
	}
}

func TestCheckPass(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"", "env:PGPW", "env:a", "file:/run/secrets/pw", "file:relative/pw", "file:C:\\pw"} {
		if err := dbconn.CheckPass(ok); err != nil {
			t.Errorf("CheckPass(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"hunter2", "env:", "file:", "ENV:PGPW", "File:/x", "pass:word", ":x", "env", "envPGPW", " env:X"} {
		err := dbconn.CheckPass(bad)
		if !errors.Is(err, dbconn.ErrLiteralPassword) {
			t.Errorf("CheckPass(%q) = %v, want ErrLiteralPassword", bad, err)
			continue
		}
		if len(bad) > 5 && strings.Contains(err.Error(), bad) { // "env:" etc. are in the advice
			t.Errorf("CheckPass(%q) repeats the value: %v", bad, err)
		}
	}
	if got := dbconn.ErrLiteralPassword.Error(); got != "a literal password is never stored: use pass=env:VAR or pass=file:PATH, or PGPASSWORD or ~/.pgpass" {
		t.Errorf("ErrLiteralPassword: %q", got)
	}
}

// Not parallel: sets the environment.
func TestResolvePass(t *testing.T) {
	const secret = "R3solve-S3cret-9f8e7d"
	t.Setenv("IBEX_DBCONN_TEST_PW", secret)
	t.Setenv("IBEX_DBCONN_TEST_EMPTY", "")
	os.Unsetenv("IBEX_DBCONN_TEST_UNSET")
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	nl := write("nl", secret+"\n")
	crlf := write("crlf", secret+"\r\n")
	bare := write("bare", secret)
	spaces := write("spaces", " "+secret+" \n")

	for _, tc := range []struct{ ref, want string }{
		{"", ""},
		{"env:IBEX_DBCONN_TEST_PW", secret},
		{"env:IBEX_DBCONN_TEST_EMPTY", ""},
		{"file:" + nl, secret},
		{"file:" + crlf, secret},
		{"file:" + bare, secret},
		{"file:" + spaces, " " + secret + " "}, // only the line end is trimmed
	} {
		got, err := dbconn.ResolvePass(tc.ref)
		if err != nil || got != tc.want {
			t.Errorf("ResolvePass(%q) = %q, %v; want %q", tc.ref, got, err, tc.want)
		}
	}

	for _, tc := range []struct{ ref, msg string }{
		{"env:IBEX_DBCONN_TEST_UNSET", "password variable IBEX_DBCONN_TEST_UNSET is not set in the environment"},
		{"file:" + filepath.Join(dir, "missing"), "reading password file " + filepath.Join(dir, "missing") + ": no such file or directory"},
		{"file:" + dir, "reading password file " + dir + ": is a directory"},
		{secret, dbconn.ErrLiteralPassword.Error()},
	} {
		got, err := dbconn.ResolvePass(tc.ref)
		if err == nil || err.Error() != tc.msg {
			t.Errorf("ResolvePass(%q) = %q, %v; want the error %q", tc.ref, got, err, tc.msg)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("ResolvePass(%q): the error contains the password: %v", tc.ref, err)
		}
	}

	// Config puts the password in the pgx config, and says nothing of it in errors.
	cfg, err := dbconn.Config("t1", map[string]string{"host": "127.0.0.1", "dbname": "x"}, "env:IBEX_DBCONN_TEST_PW")
	if err != nil || cfg.Password != secret {
		t.Errorf("Config with pass=env: password %q, %v", cfg.Password, err)
	}
	_, err = dbconn.Config("t1", map[string]string{"host": "127.0.0.1", "dbname": "x"}, "env:IBEX_DBCONN_TEST_UNSET")
	if err == nil || err.Error() != "db t1: password variable IBEX_DBCONN_TEST_UNSET is not set in the environment" {
		t.Errorf("Config with an unset variable: %v", err)
	}
	// A failed connection names the db and the reason, never the password.
	ctx := context.Background()
	_, err = dbconn.Connect(ctx, "t1", map[string]string{"host": "127.0.0.1", "port": "1", "dbname": "x", "user": "postgres"}, "file:"+nl)
	if err == nil || strings.Contains(err.Error(), secret) ||
		!strings.HasPrefix(err.Error(), "cannot connect to db t1 (host=127.0.0.1 port=1 dbname=x user=postgres): ") {
		t.Errorf("Connect to a closed port: %v", err)
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	cfg, err := dbconn.Config("t1", map[string]string{"host": "db.example.com", "port": "6543", "dbname": "btest1", "user": "ibex", "sslmode": "disable"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "db.example.com" || cfg.Port != 6543 || cfg.Database != "btest1" || cfg.User != "ibex" || cfg.TLSConfig != nil {
		t.Errorf("Config: %s %d %s %s tls=%v", cfg.Host, cfg.Port, cfg.Database, cfg.User, cfg.TLSConfig != nil)
	}
	if cfg.ConnectTimeout != dbconn.DefaultConnectTimeout {
		t.Errorf("default connect timeout %s", cfg.ConnectTimeout)
	}
	wantParams := map[string]string{"application_name": "ibex", "timezone": "UTC", "datestyle": "ISO, MDY", "intervalstyle": "postgres", "extra_float_digits": "3", "bytea_output": "hex"}
	if diff := cmp.Diff(wantParams, cfg.RuntimeParams); diff != "" {
		t.Errorf("session parameters (-want +got):\n%s", diff)
	}
	cfg, err = dbconn.Config("t1", map[string]string{"host": "h", "dbname": "d", "connect_timeout": "3", "application_name": "mine"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ConnectTimeout != 3*time.Second || cfg.RuntimeParams["application_name"] != "mine" {
		t.Errorf("connect_timeout=3 application_name=mine: %s %q", cfg.ConnectTimeout, cfg.RuntimeParams["application_name"])
	}
	if _, err := dbconn.Config("t1", map[string]string{"dbname": "d", "password": "x"}, ""); err == nil || !strings.HasPrefix(err.Error(), `db t1: unknown connection keyword "password"`) {
		t.Errorf("Config with a password keyword: %v", err)
	}
	if _, err := dbconn.Config("t1", map[string]string{"dbname": "d", "port": "notaport"}, ""); err == nil || !strings.HasPrefix(err.Error(), "db t1: invalid connection settings: ") {
		t.Errorf("Config with a bad port: %v", err)
	}
	for _, k := range []string{"host", "port", "dbname", "user", "sslmode", "sslrootcert", "connect_timeout", "application_name", "options", "service", "target_session_attrs"} {
		if !dbconn.ValidKey(k) {
			t.Errorf("ValidKey(%q) = false", k)
		}
	}
	for _, k := range []string{"pass", "password", "Host", "bogus", ""} {
		if dbconn.ValidKey(k) {
			t.Errorf("ValidKey(%q) = true", k)
		}
	}
}

func TestTargetAndReason(t *testing.T) {
	t.Parallel()
	cfg, err := pgx.ParseConfig("host=/var/run/postgresql port=5433 dbname=d user=u password=hidden")
	if err != nil {
		t.Fatal(err)
	}
	if got := dbconn.Target("t9", cfg); got != "db t9 (host=socket /var/run/postgresql port=5433 dbname=d user=u)" {
		t.Errorf("Target: %q", got)
	}
	if got := dbconn.Reason(errors.New("plain")); got != "plain" {
		t.Errorf("Reason(plain) = %q", got)
	}
	if got := dbconn.Reason(fmt.Errorf("wrapped: %w", &pgconn.PgError{Severity: "FATAL", Code: "3D000", Message: `database "x" does not exist`})); got != `database "x" does not exist` {
		t.Errorf("Reason(PgError) = %q", got)
	}

	ctx := context.Background()
	// A closed port with sslmode=prefer: pgx tries twice; the reason is said once.
	_, err = pgx.Connect(ctx, "host=127.0.0.1 port=1 user=postgres dbname=x sslmode=prefer connect_timeout=5")
	if err == nil {
		t.Fatal("connected to port 1")
	}
	got := dbconn.Reason(err)
	if want := "127.0.0.1:1 (127.0.0.1): dial error: dial tcp 127.0.0.1:1: connect: connection refused"; got != want {
		t.Errorf("Reason(refused) = %q, want %q", got, want)
	}
	// The server's reason for a missing database.
	db := pgtest.NewDB(t, "")
	_, err = dbconn.Connect(ctx, "t1", map[string]string{"host": db.Conn["host"], "port": db.Conn["port"], "user": db.Conn["user"], "dbname": db.Name + "_missing"}, "")
	want := fmt.Sprintf(`cannot connect to db t1 (host=%s port=%s dbname=%s_missing user=%s): database "%s_missing" does not exist`, db.Conn["host"], db.Conn["port"], db.Name, db.Conn["user"], db.Name)
	if err == nil || err.Error() != want {
		t.Errorf("Connect to a missing database:\n%v\nwant:\n%s", err, want)
	}
	// And a good one: the session parameters are set.
	c, err := dbconn.Connect(ctx, "t1", db.Conn, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var tz, app string
	if err := c.QueryRow(ctx, `SELECT current_setting('TimeZone'), current_setting('application_name')`).Scan(&tz, &app); err != nil || tz != "UTC" || app != "ibex" {
		t.Errorf("session: TimeZone %q application_name %q %v", tz, app, err)
	}
}

// TestWALCompression: the session turns wal_compression on where the role may set it, and
// leaves it (without an error) where it may not.
func TestWALCompression(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDB(t, "")
	admin := pgtest.Conn(t, pgtest.AdminDSN())
	var server string
	if err := admin.QueryRow(ctx, `SHOW wal_compression`).Scan(&server); err != nil {
		t.Fatal(err)
	}
	if server != "off" {
		t.Skipf("the server already has wal_compression = %s", server)
	}
	var rb [4]byte
	_, _ = crand.Read(rb[:])
	role := "ibt_walc_" + hex.EncodeToString(rb[:])
	if _, err := admin.Exec(ctx, `CREATE ROLE `+role+` LOGIN`); err != nil {
		t.Fatal(err)
	}
	major := dbconn.ServerMajor(admin.PgConn())
	if major < 13 {
		t.Fatalf("ServerMajor = %d from server_version %q", major, admin.PgConn().ParameterStatus("server_version"))
	}
	t.Cleanup(func() {
		if major >= 15 {
			_, _ = admin.Exec(ctx, `REVOKE SET ON PARAMETER wal_compression FROM `+role)
		}
		_, _ = admin.Exec(ctx, `DROP ROLE IF EXISTS `+role)
	})
	setting := func(user string) string {
		t.Helper()
		conn := maps.Clone(db.Conn)
		conn["user"] = user
		c, err := dbconn.Connect(ctx, "t1", conn, "")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, dbconn.WALCompressionSQL(dbconn.ServerMajor(c.PgConn()))); err != nil {
			t.Fatalf("as %s: %v", user, err)
		}
		var v string
		if err := c.QueryRow(ctx, `SHOW wal_compression`).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	want := "on"
	if major >= 15 {
		want = "lz4"
		var lz4 bool
		if err := admin.QueryRow(ctx, `SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'wal_compression'`).Scan(&lz4); err != nil {
			t.Fatal(err)
		}
		if !lz4 {
			want = "pglz"
		}
	}
	if got := setting(db.Conn["user"]); got != want {
		t.Errorf("as the superuser %s: wal_compression = %s, want %s", db.Conn["user"], got, want)
	}
	if got := setting(role); got != "off" {
		t.Errorf("as %s, without the right to set it: wal_compression = %s, want off", role, got)
	}
	if major >= 15 {
		if _, err := admin.Exec(ctx, `GRANT SET ON PARAMETER wal_compression TO `+role); err != nil {
			t.Fatal(err)
		}
		if got := setting(role); got != want {
			t.Errorf("as %s, granted SET ON PARAMETER wal_compression: wal_compression = %s, want %s", role, got, want)
		}
	}
}
