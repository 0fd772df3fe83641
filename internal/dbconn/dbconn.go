// Package dbconn turns a db object (libpq keywords plus a password reference) into a
// connection. Passwords are never stored: a db names where its password comes from
// (pass=env:VAR or pass=file:PATH), or relies on PGPASSWORD or .pgpass as libpq does.
package dbconn

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Keys are the libpq connection keywords a db may carry, besides pass.
var Keys = []string{
	"application_name", "channel_binding", "connect_timeout", "dbname", "host", "hostaddr",
	"keepalives", "keepalives_count", "keepalives_idle", "keepalives_interval", "options",
	"passfile", "port", "require_auth", "service", "sslcert", "sslcrl", "sslkey", "sslmode",
	"sslnegotiation", "sslrootcert", "sslsni", "target_session_attrs", "user",
}

// ErrLiteralPassword is returned for pass=<literal>.
var ErrLiteralPassword = errors.New("a literal password is never stored: use pass=env:VAR or pass=file:PATH, or PGPASSWORD or ~/.pgpass")

// DefaultConnectTimeout bounds every connection attempt when the db sets no connect_timeout.
const DefaultConnectTimeout = 10 * time.Second

// ValidKey reports whether k is an accepted connection keyword.
func ValidKey(k string) bool { return slices.Contains(Keys, k) }

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

// Config builds the pgx configuration of a db. PG* variables and .pgpass fill what the db
// leaves unset, as with libpq.
func Config(name string, conn map[string]string, pass string) (*pgx.ConnConfig, error) {
	for k := range conn {
		if !ValidKey(k) {
			return nil, fmt.Errorf("db %s: unknown connection keyword %q (known: %s)", name, k, strings.Join(Keys, ", "))
		}
	}
	cfg, err := pgx.ParseConfig(ConnString(conn))
	if err != nil {
		return nil, fmt.Errorf("db %s: invalid connection settings: %w", name, err)
	}
	if pass != "" {
		pw, err := ResolvePass(pass)
		if err != nil {
			return nil, fmt.Errorf("db %s: %w", name, err)
		}
		cfg.Password = pw
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	for k, v := range sessionParams {
		if k == "application_name" {
			if _, ok := conn[k]; ok {
				continue
			}
		}
		cfg.RuntimeParams[k] = v
	}
	return cfg, nil
}

// Connect opens a connection to a db; the error names the db and the server's reason.
func Connect(ctx context.Context, name string, conn map[string]string, pass string) (*pgx.Conn, error) {
	cfg, err := Config(name, conn, pass)
	if err != nil {
		return nil, err
	}
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("cannot connect to %s: %s", Target(name, cfg), Reason(err))
	}
	return c, nil
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
