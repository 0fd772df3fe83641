// Package dbconn turns a db object (libpq keywords plus a password reference) into a
// connection. Passwords are never stored: a db names where its password comes from
// (pass=env:VAR or pass=file:PATH), or relies on PGPASSWORD or .pgpass as libpq does.
package dbconn

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgservicefile"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Keys are the connection keywords a db may carry, besides pass: libpq's (less hostaddr
// and sslcrl, see unsupportedKeys; servicefile is PostgreSQL 18's), with libpq's
// meaning, and reply_timeout, ibex's own.
// keepalives, keepalives_idle, keepalives_interval, keepalives_count and
// tcp_user_timeout are applied by ibex to the socket (pgx does not know them);
// reply_timeout bounds how long a connection waits for a reply that is due.
var Keys = []string{
	"application_name", "channel_binding", "connect_timeout", "dbname", "host",
	"keepalives", "keepalives_count", "keepalives_idle", "keepalives_interval", "options",
	"passfile", "port", "reply_timeout", "require_auth", "service", "servicefile", "sslcert", "sslkey", "sslmode",
	"sslnegotiation", "sslrootcert", "sslsni", "target_session_attrs", "tcp_user_timeout", "user",
}

// unsupportedKeys are libpq keywords ibex refuses, with what to do instead: pgx does not
// implement them, and passing them on would make the server refuse every connection
// (unrecognized configuration parameter) or, worse, drop a security check silently.
var unsupportedKeys = map[string]string{
	"hostaddr": "give the address as host= instead (with sslmode=verify-full the server certificate must then name that address)",
	"sslcrl":   "ibex does not check certificate revocation lists; remove the revoked certificate from the server, or trust a CA that no longer covers it",
}

// socketKeys are the keywords ibex applies itself: they are never handed to pgx, which
// would send them to the server as session parameters.
var socketKeys = []string{"keepalives", "keepalives_count", "keepalives_idle", "keepalives_interval", "reply_timeout", "tcp_user_timeout"}

// ErrNoDBName is returned for a db that names no database: neither dbname= nor a
// service (whose dbname then names it).
var ErrNoDBName = errors.New("dbname= or service= is required (the database's name on its server, or a service of pg_service.conf that sets dbname)")

// NamesDB reports whether a db's settings name its database, with dbname= or service=
// (Connect checks that the service sets dbname).
func NamesDB(conn map[string]string) bool { return conn["dbname"] != "" || conn["service"] != "" }

// lookupService finds the service a db connects through (its service=, else PGSERVICE)
// where libpq looks for it: the file named by servicefile= (PostgreSQL 18), else by
// PGSERVICEFILE, else ~/.pg_service.conf; then, when that file is missing or lacks the
// service, pg_service.conf in PGSYSCONFDIR. libpq's compiled-in system directory, used
// when PGSYSCONFDIR is unset, is unknown to ibex and not read. It returns the service's
// name, the file defining it and the service's settings, which may hold a password:
// callers must never print them. With no service, all are empty.
func lookupService(conn map[string]string) (name, file string, settings map[string]string, err error) {
	name = conn["service"]
	if name == "" {
		name = os.Getenv("PGSERVICE")
	}
	if name == "" {
		return "", "", nil, nil
	}
	var files []string
	if f := conn["servicefile"]; f != "" {
		files = append(files, f)
	} else if f := os.Getenv("PGSERVICEFILE"); f != "" {
		files = append(files, f)
	} else if home, err := os.UserHomeDir(); err == nil {
		files = append(files, filepath.Join(home, ".pg_service.conf"))
	}
	if dir := os.Getenv("PGSYSCONFDIR"); dir != "" {
		files = append(files, filepath.Join(dir, "pg_service.conf"))
	}
	var looked []string
	for _, f := range files {
		sf, err := pgservicefile.ReadServicefile(f)
		if errors.Is(err, fs.ErrNotExist) {
			looked = append(looked, f+" (no such file)")
			continue
		}
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return name, "", nil, fmt.Errorf("reading service file %s: %w", f, err)
		}
		if s, err := sf.GetService(name); err == nil {
			return name, f, s.Settings, nil
		}
		looked = append(looked, f)
	}
	if len(looked) == 0 {
		return name, "", nil, fmt.Errorf("service %q is not defined: no service file (set PGSERVICEFILE, servicefile= or PGSYSCONFDIR)", name)
	}
	return name, "", nil, fmt.Errorf("service %q is not defined in %s", name, strings.Join(looked, " nor in "))
}

// ErrLiteralPassword is returned for pass=<literal>.
var ErrLiteralPassword = errors.New("a literal password is never stored: use pass=env:VAR or pass=file:PATH, or PGPASSWORD or ~/.pgpass")

// Defaults for a db that does not set the keyword (libpq's keyword in parentheses).
const (
	// DefaultConnectTimeout bounds every connection attempt (connect_timeout).
	DefaultConnectTimeout = 10 * time.Second
	// DefaultTCPUserTimeout is how long data sent may stay unacknowledged before the
	// kernel drops the connection (tcp_user_timeout; Linux only).
	DefaultTCPUserTimeout = 30 * time.Second
	// DefaultKeepalivesIdle, DefaultKeepalivesInterval and DefaultKeepalivesCount make
	// the kernel drop an idle connection whose peer has gone within about a minute
	// (keepalives_idle, keepalives_interval, keepalives_count).
	DefaultKeepalivesIdle     = 30 * time.Second
	DefaultKeepalivesInterval = 10 * time.Second
	DefaultKeepalivesCount    = 3
	// DefaultReplyTimeout is how long Connect's connections wait for a server that
	// sends nothing while a reply is due (reply_timeout, ibex's own). It must exceed the
	// longest legitimate statement, lock waits included.
	DefaultReplyTimeout = 10 * time.Minute
)

// ValidKey reports whether k is an accepted connection keyword.
func ValidKey(k string) bool { return slices.Contains(Keys, k) }

// CheckKey returns nil for an accepted connection keyword, else an error that says why
// not and, for a libpq keyword ibex refuses, what to do instead.
func CheckKey(k string) error {
	if ValidKey(k) {
		return nil
	}
	if why, ok := unsupportedKeys[k]; ok {
		return fmt.Errorf("connection keyword %q is not supported: %s", k, why)
	}
	return fmt.Errorf("unknown connection keyword %q (known: %s)", k, strings.Join(Keys, ", "))
}

// CheckPass validates a password reference without reading it.
func CheckPass(ref string) error {
	if ref == "" {
		return nil
	}
	kind, rest, ok := strings.Cut(ref, ":")
	if !ok || rest == "" || (kind != "env" && kind != "file") {
		return ErrLiteralPassword
	}
	return nil
}

// ResolvePass reads the password a reference points to. Errors never contain the value.
func ResolvePass(ref string) (string, error) {
	if ref == "" {
		return "", nil
	}
	if err := CheckPass(ref); err != nil {
		return "", err
	}
	kind, rest, _ := strings.Cut(ref, ":")
	if kind == "env" {
		v, ok := os.LookupEnv(rest)
		if !ok {
			return "", fmt.Errorf("password variable %s is not set in the environment", rest)
		}
		return v, nil
	}
	b, err := os.ReadFile(rest)
	if err != nil {
		return "", fmt.Errorf("reading password file %s: %w", rest, errors.Unwrap(err))
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// ConnString renders libpq keywords as a conninfo string, values quoted.
func ConnString(conn map[string]string) string {
	keys := make([]string, 0, len(conn))
	for k := range conn {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		v := strings.ReplaceAll(conn[k], `\`, `\\`)
		v = strings.ReplaceAll(v, `'`, `\'`)
		fmt.Fprintf(&b, "%s='%s'", k, v)
	}
	return b.String()
}

// Target describes a db for messages: never includes a password.
func Target(name string, c *pgx.ConnConfig) string {
	host := c.Host
	if strings.HasPrefix(host, "/") {
		host = "socket " + host
	}
	return fmt.Sprintf("db %s (host=%s port=%d dbname=%s user=%s)", name, host, c.Port, c.Database, c.User)
}

// sessionParams make every ibex session print values the same way on every db, so key
// text compares equal across databases.
var sessionParams = map[string]string{
	"application_name":   "ibex",
	"timezone":           "UTC",
	"datestyle":          "ISO, MDY",
	"intervalstyle":      "postgres",
	"extra_float_digits": "3",
	"bytea_output":       "hex",
}

// Config builds the pgx configuration of a db. Its service (see lookupService), PG*
// variables and .pgpass fill what the db leaves unset, as with libpq; the database must
// be named by the db's dbname or its service's (ErrNoDBName). Its DialFunc applies tcp_user_timeout and the keepalives
// (ibex's defaults when the db sets none). It does not apply reply_timeout, which only
// Connect does: a connection that waits for notifications (LISTEN) legitimately reads
// for ever.
func Config(name string, conn map[string]string, pass string) (*pgx.ConnConfig, error) {
	cfg, _, err := config(name, conn, pass)
	return cfg, err
}

func config(name string, conn map[string]string, pass string) (*pgx.ConnConfig, sockOpts, error) {
	var so sockOpts
	for k := range conn {
		if err := CheckKey(k); err != nil {
			return nil, so, fmt.Errorf("db %s: %w", name, err)
		}
	}
	libpq := make(map[string]string, len(conn))
	for k, v := range conn {
		if !slices.Contains(socketKeys, k) {
			libpq[k] = v
		}
	}
	// The database is named by the db or by its service: never by PGDATABASE or the
	// user's name, which would replicate into whatever database they happen to name.
	if !NamesDB(conn) {
		return nil, so, fmt.Errorf("db %s: %w", name, ErrNoDBName)
	}
	svc, file, svcSettings, err := lookupService(conn)
	if err != nil {
		return nil, so, fmt.Errorf("db %s: %w", name, err)
	}
	if conn["dbname"] == "" && svcSettings["dbname"] == "" {
		return nil, so, fmt.Errorf("db %s: service %q (in %s) does not set dbname: set it there, or give the db dbname=", name, svc, file)
	}
	if file != "" {
		// Where lookupService found it: pgx itself does not look in PGSYSCONFDIR.
		libpq["servicefile"] = file
	}
	cfg, err := pgx.ParseConfig(ConnString(libpq))
	if err != nil {
		return nil, so, fmt.Errorf("db %s: invalid connection settings: %w", name, err)
	}
	// A service file may carry any libpq keyword: pgx hands the ones it does not know to
	// the server. Take ibex's from there (the db's own win), and refuse the others.
	for k := range unsupportedKeys {
		if _, ok := cfg.RuntimeParams[k]; ok {
			return nil, so, fmt.Errorf("db %s (in its service file): %w", name, CheckKey(k))
		}
	}
	settings := map[string]string{}
	for _, k := range socketKeys {
		if v, ok := cfg.RuntimeParams[k]; ok {
			settings[k] = v
			delete(cfg.RuntimeParams, k)
		}
		if v, ok := conn[k]; ok {
			settings[k] = v
		}
	}
	if so, err = parseSockOpts(settings); err != nil {
		return nil, so, fmt.Errorf("db %s: %w", name, err)
	}
	if pass != "" {
		pw, err := ResolvePass(pass)
		if err != nil {
			return nil, so, fmt.Errorf("db %s: %w", name, err)
		}
		cfg.Password = pw
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	cfg.DialFunc = so.dialer(cfg.ConnectTimeout).DialContext
	// A run's statements are each sent a few times at most: one round trip each, instead
	// of a prepare and an execute.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	for k, v := range sessionParams {
		if k == "application_name" {
			if _, ok := conn[k]; ok {
				continue
			}
		}
		cfg.RuntimeParams[k] = v
	}
	return cfg, so, nil
}

// Connect opens a connection to a db; the error names the db and the server's reason.
// The connection fails when the server sends nothing for reply_timeout while a reply is
// due (see DefaultReplyTimeout).
func Connect(ctx context.Context, name string, conn map[string]string, pass string) (*pgx.Conn, error) {
	cfg, so, err := config(name, conn, pass)
	if err != nil {
		return nil, err
	}
	if so.replyTimeout > 0 {
		// Below TLS, so that pgx still sees the *tls.Conn (channel binding needs it).
		dial := cfg.DialFunc
		cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &replyGuard{Conn: c, timeout: so.replyTimeout}, nil
		}
	}
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("cannot connect to %s: %s", Target(name, cfg), Reason(err))
	}
	return c, nil
}

// Harden applies to a connection configuration parsed elsewhere (the control database's
// IBEX_DSN) what Connect applies to a db's: the socket settings (keepalives*,
// tcp_user_timeout, reply_timeout, with ibex's defaults), taken out of the parameters pgx
// would otherwise send to the server, and the refusal of keywords ibex does not support.
func Harden(cfg *pgconn.Config) error {
	for k := range unsupportedKeys {
		if _, ok := cfg.RuntimeParams[k]; ok {
			return CheckKey(k)
		}
	}
	settings := map[string]string{}
	for _, k := range socketKeys {
		if v, ok := cfg.RuntimeParams[k]; ok {
			settings[k] = v
			delete(cfg.RuntimeParams, k)
		}
	}
	so, err := parseSockOpts(settings)
	if err != nil {
		return err
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	dial := so.dialer(cfg.ConnectTimeout).DialContext
	cfg.DialFunc = dial
	if so.replyTimeout > 0 {
		cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &replyGuard{Conn: c, timeout: so.replyTimeout}, nil
		}
	}
	return nil
}

// Reason extracts the server's or network's reason from a connect error, without the
// connection string.
func Reason(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Message
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		if u := errors.Unwrap(ce); u != nil {
			// pgx joins one error per attempt (sslmode=prefer tries TLS, then plain):
			// say each distinct reason once, on one line.
			var lines []string
			for _, l := range strings.Split(u.Error(), "\n") {
				if l = strings.TrimSpace(l); l != "" && !slices.Contains(lines, l) {
					lines = append(lines, l)
				}
			}
			return strings.Join(lines, "; ")
		}
	}
	return err.Error()
}

// ServerMajor is the major version of the server a connection talks to (15 for 15.20),
// from the server_version it reported at startup; 0 when it cannot be read.
func ServerMajor(pc *pgconn.PgConn) int {
	v := pc.ParameterStatus("server_version")
	if i := strings.IndexAny(v, ". "); i >= 0 {
		v = v[:i]
	}
	n, _ := strconv.Atoi(v)
	return n
}

// WALCompressionSQL is a query that turns on wal_compression for the session when the
// server has it off and the role may set it (a superuser, or from PostgreSQL 15 a role
// granted SET ON PARAMETER wal_compression), and does nothing otherwise; it never fails.
// Applying rows right after a checkpoint writes a full-page image of every page it
// touches: compressed (lz4 where the server has it), ibex's WAL is about half as large,
// and the sessions wait less on WAL writes.
func WALCompressionSQL(major int) string {
	if major >= 15 {
		return `SELECT set_config('wal_compression', CASE WHEN 'lz4' = ANY(enumvals) THEN 'lz4' ELSE 'pglz' END, false)
  FROM pg_settings WHERE name = 'wal_compression' AND setting = 'off' AND has_parameter_privilege('wal_compression', 'SET')`
	}
	return `SELECT set_config('wal_compression', 'on', false)
  WHERE current_setting('wal_compression') = 'off' AND current_setting('is_superuser') = 'on'`
}

// ExecAll sends several statements (no parameters: values are literals) in one round trip
// and returns every statement's result.
func ExecAll(ctx context.Context, conn *pgx.Conn, sql string) ([]*pgconn.Result, error) {
	return conn.PgConn().Exec(ctx, sql).ReadAll()
}
