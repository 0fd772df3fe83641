package dbconn_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/dbconn"
	"github.com/ibexrepl/ibex/internal/pgtest"
)

// TestKeysConnect connects for real with every accepted keyword: none of them reaches the
// server as a session parameter (which would refuse the connection), and those ibex
// applies to the socket are applied. Not parallel: a row sets PGSERVICEFILE.
func TestKeysConnect(t *testing.T) {
	db := pgtest.NewDB(t, "")
	dir := t.TempDir()
	passfile := filepath.Join(dir, "pgpass")
	if err := os.WriteFile(passfile, []byte("*:*:*:*:unused\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	testCA := pgtest.NewCA(t, "ca")
	ca := pgtest.WriteFile(t, dir, "ca.crt", testCA.PEM)
	crt, key := testCA.ClientPair(t, "client")
	clientCert, clientKey := pgtest.WriteFile(t, dir, "client.crt", crt), pgtest.WriteFile(t, dir, "client.key", key)
	services := filepath.Join(dir, "pg_service.conf")
	svc := "[ibexkeys]\nhost=" + db.Conn["host"] + "\nport=" + db.Conn["port"] + "\nkeepalives_idle=21\ntcp_user_timeout=4321\n" +
		"[crl]\nsslcrl=/etc/ssl/crl.pem\n"
	if err := os.WriteFile(services, []byte(svc), 0o600); err != nil {
		t.Fatal(err)
	}
	defaults := sockState{keepalive: 1, idle: 30, interval: 10, count: 3, userTimeout: 30000}

	type row struct {
		name   string
		conn   map[string]string // added to the db's host, port, user and dbname
		env    map[string]string
		sql    string // returns one text value...
		want   string // ...this one
		socket *sockState
	}
	with := func(f func(*sockState)) *sockState {
		s := defaults
		f(&s)
		return &s
	}
	rows := []row{
		{name: "host port user dbname", sql: `SELECT current_database()`, want: db.Name, socket: &defaults},
		{name: "application_name", conn: map[string]string{"application_name": "ibex keys"}, sql: `SELECT current_setting('application_name')`, want: "ibex keys"},
		{name: "channel_binding", conn: map[string]string{"channel_binding": "disable"}},
		{name: "connect_timeout", conn: map[string]string{"connect_timeout": "5"}},
		{name: "keepalives off", conn: map[string]string{"keepalives": "0"}, socket: with(func(s *sockState) { *s = systemSockState(t); s.userTimeout = 30000 })},
		{name: "keepalives on", conn: map[string]string{"keepalives": "1"}, socket: &defaults},
		{name: "keepalives_idle", conn: map[string]string{"keepalives_idle": "20"}, socket: with(func(s *sockState) { s.idle = 20 })},
		{name: "keepalives_interval", conn: map[string]string{"keepalives_interval": "5"}, socket: with(func(s *sockState) { s.interval = 5 })},
		{name: "keepalives_count", conn: map[string]string{"keepalives_count": "4"}, socket: with(func(s *sockState) { s.count = 4 })},
		{name: "options", conn: map[string]string{"options": "-c search_path=pg_catalog"}, sql: `SELECT current_setting('search_path')`, want: "pg_catalog"},
		{name: "passfile", conn: map[string]string{"passfile": passfile}},
		{name: "reply_timeout", conn: map[string]string{"reply_timeout": "60"}},
		{name: "require_auth", conn: map[string]string{"require_auth": "none"}},
		{name: "service", conn: map[string]string{"service": "ibexkeys", "host": "", "port": ""}, env: map[string]string{"PGSERVICEFILE": services},
			sql: `SELECT inet_server_port()::text`, want: db.Conn["port"], socket: with(func(s *sockState) { s.idle, s.userTimeout = 21, 4321 })},
		{name: "servicefile", conn: map[string]string{"service": "ibexkeys", "servicefile": services, "host": "", "port": ""},
			sql: `SELECT inet_server_port()::text`, want: db.Conn["port"]},
		{name: "sslmode disable", conn: map[string]string{"sslmode": "disable"}, sql: `SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()`, want: "false"},
		{name: "sslmode require", conn: map[string]string{"sslmode": "require"}, sql: `SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()`, want: "true", socket: &defaults},
		{name: "sslcert sslkey", conn: map[string]string{"sslmode": "require", "sslcert": clientCert, "sslkey": clientKey}, sql: `SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()`, want: "true"},
		{name: "sslnegotiation", conn: map[string]string{"sslmode": "require", "sslnegotiation": "postgres"}},
		{name: "sslrootcert", conn: map[string]string{"sslmode": "prefer", "sslrootcert": ca}},
		{name: "sslsni", conn: map[string]string{"sslmode": "require", "sslsni": "0"}},
		{name: "target_session_attrs", conn: map[string]string{"target_session_attrs": "read-write"}},
		{name: "tcp_user_timeout", conn: map[string]string{"tcp_user_timeout": "12345"}, socket: with(func(s *sockState) { s.userTimeout = 12345 })},
		{name: "system defaults", conn: map[string]string{"keepalives_idle": "0", "keepalives_interval": "0", "keepalives_count": "0", "tcp_user_timeout": "0"},
			socket: with(func(s *sockState) { *s = systemSockState(t); s.keepalive = 1 })}, // ...with keepalives on
	}
	covered := map[string]bool{}
	for _, r := range rows {
		for k := range r.conn {
			covered[k] = true
		}
	}
	for _, k := range dbconn.Keys {
		if !covered[k] && !slices.Contains([]string{"host", "port", "user", "dbname"}, k) {
			t.Errorf("no row connects with keyword %s", k)
		}
	}

	ctx := context.Background()
	// A service file may not bring in a keyword ibex refuses.
	t.Run("service with sslcrl", func(t *testing.T) {
		t.Setenv("PGSERVICEFILE", services)
		conn := maps.Clone(db.Conn)
		conn["service"] = "crl"
		_, err := dbconn.Connect(ctx, "t1", conn, "")
		if want := `db t1 (in its service file): connection keyword "sslcrl" is not supported: `; err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("service with sslcrl: %v, want %s...", err, want)
		}
	})
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			for k, v := range r.env {
				t.Setenv(k, v)
			}
			conn := maps.Clone(db.Conn)
			for k, v := range r.conn {
				if v == "" {
					delete(conn, k)
				} else {
					conn[k] = v
				}
			}
			c, err := dbconn.Connect(ctx, "t1", conn, "")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(ctx)
			sql, want := r.sql, r.want
			if sql == "" {
				sql, want = `SELECT current_database()`, db.Name
			}
			var got string
			if err := c.QueryRow(ctx, sql).Scan(&got); err != nil || got != want {
				t.Errorf("%s = %q, %v; want %q", sql, got, err, want)
			}
			if r.socket != nil && runtime.GOOS == "linux" {
				if got := socketState(t, c); got != *r.socket {
					t.Errorf("socket options %+v, want %+v", got, *r.socket)
				}
			}
		})
	}
}

// netConn returns the TCP connection under a connection made by dbconn.Connect.
func netConn(t *testing.T, c *pgx.Conn) *net.TCPConn {
	t.Helper()
	nc := c.PgConn().Conn()
	for {
		switch x := nc.(type) {
		case *net.TCPConn:
			return x
		case interface{ NetConn() net.Conn }: // *tls.Conn, dbconn's reply guard
			nc = x.NetConn()
		default:
			t.Fatalf("connection of type %T", nc)
		}
	}
}

func TestKeysRefused(t *testing.T) {
	t.Parallel()
	base := map[string]string{"host": "127.0.0.1", "port": "1", "dbname": "x", "user": "postgres"}
	for _, tc := range []struct{ key, val, want string }{
		{"hostaddr", "127.0.0.1", `db t1: connection keyword "hostaddr" is not supported: give the address as host= instead (with sslmode=verify-full the server certificate must then name that address)`},
		{"sslcrl", "/etc/ssl/crl.pem", `db t1: connection keyword "sslcrl" is not supported: ibex does not check certificate revocation lists; remove the revoked certificate from the server, or trust a CA that no longer covers it`},
		{"keepalives", "2", `db t1: keepalives must be 1 (on) or 0 (off), not "2"`},
		{"keepalives", "on", `db t1: keepalives must be 1 (on) or 0 (off), not "on"`},
		{"keepalives_idle", "-1", `db t1: keepalives_idle must be a whole number of seconds (0: the system's default), not "-1"`},
		{"keepalives_interval", "1s", `db t1: keepalives_interval must be a whole number of seconds (0: the system's default), not "1s"`},
		{"keepalives_count", "x", `db t1: keepalives_count must be a whole number (0: the system's default), not "x"`},
		{"tcp_user_timeout", "30s", `db t1: tcp_user_timeout must be a whole number of milliseconds (0: the system's default), not "30s"`},
		{"reply_timeout", "1.5", `db t1: reply_timeout must be a whole number of seconds (0: no limit), not "1.5"`},
	} {
		conn := maps.Clone(base)
		conn[tc.key] = tc.val
		if _, err := dbconn.Connect(context.Background(), "t1", conn, ""); err == nil || err.Error() != tc.want {
			t.Errorf("%s=%s: %v\nwant: %s", tc.key, tc.val, err, tc.want)
		}
		if dbconn.ValidKey(tc.key) != !strings.Contains(tc.want, "not supported") {
			t.Errorf("ValidKey(%s) = %v", tc.key, dbconn.ValidKey(tc.key))
		}
	}
}

// TestReplyTimeout: a connection made by Connect fails when the server sends nothing for
// reply_timeout while a reply is due, not while idle between statements; a context's
// deadline still interrupts a statement, earlier than reply_timeout.
func TestReplyTimeout(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t, "")
	ctx := context.Background()
	conn := maps.Clone(db.Conn)
	conn["reply_timeout"] = "1"
	c, err := dbconn.Connect(ctx, "t1", conn, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, `SELECT pg_sleep(0.3)`); err != nil {
		t.Fatalf("a statement shorter than reply_timeout: %v", err)
	}
	time.Sleep(1500 * time.Millisecond) // idle: no reply is due
	if _, err := c.Exec(ctx, `SELECT 1`); err != nil {
		t.Fatalf("after idling longer than reply_timeout: %v", err)
	}
	t0 := time.Now()
	_, err = c.Exec(ctx, `SELECT pg_sleep(30)`)
	d := time.Since(t0)
	var rte *dbconn.ReplyTimeoutError
	if !errors.As(err, &rte) || !strings.Contains(err.Error(), "the server sent nothing for 1s while a reply was due (reply_timeout=1)") {
		t.Errorf("a statement longer than reply_timeout: %v", err)
	}
	if d < time.Second || d > 5*time.Second {
		t.Errorf("the statement failed after %s, want about 1s", d)
	}
	if !c.IsClosed() {
		t.Errorf("the connection is still open after its reply timed out")
	}

	// The context ends first: its error, not the guard's.
	conn["reply_timeout"] = "20"
	c2, err := dbconn.Connect(ctx, "t1", conn, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close(ctx)
	for range 3 { // the guard must not undo the deadline pgx sets when the context ends
		if _, err := c2.Exec(ctx, `SELECT 1`); err != nil {
			t.Fatal(err)
		}
	}
	qctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	t0 = time.Now()
	_, err = c2.Exec(qctx, `SELECT pg_sleep(30)`)
	if d := time.Since(t0); !errors.Is(err, context.DeadlineExceeded) || errors.As(err, &rte) || d > 5*time.Second {
		t.Errorf("a statement past its context's deadline: %v after %s", err, d)
	}

	// COPY FROM STDIN streaming for longer than reply_timeout: pgx reads all along (for an
	// early error), but the server owes nothing while rows keep coming.
	conn["reply_timeout"] = "1"
	c3, err := dbconn.Connect(ctx, "t1", conn, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close(ctx)
	if _, err := c3.Exec(ctx, `CREATE TEMP TABLE slow (n int)`); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() {
		for i := range 25 { // 2.5 s
			time.Sleep(100 * time.Millisecond)
			if _, err := fmt.Fprintf(pw, "%d\n", i); err != nil {
				return
			}
		}
		pw.Close()
	}()
	tag, err := c3.PgConn().CopyFrom(ctx, pr, `COPY slow FROM STDIN`)
	if err != nil || tag.RowsAffected() != 25 {
		t.Errorf("a COPY FROM streaming for 2.5 s with reply_timeout=1: %v, %d rows", err, tag.RowsAffected())
	}
}
