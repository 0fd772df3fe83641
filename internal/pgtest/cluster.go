package pgtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// ClusterOptions configure a throwaway cluster.
type ClusterOptions struct {
	// Password, when set, is the superuser's (postgres) password, and TCP connections
	// must authenticate with scram-sha-256. Unix-socket connections stay trust. Without
	// it every connection is trust.
	Password string
	// HBA lines are added to pg_hba.conf before the default rules, so they take
	// precedence (pg_hba.conf is first match).
	HBA []string
	// Settings are extra server settings (-c name=value).
	Settings map[string]string
	// Files are written into the data directory before the server starts, owned by the
	// server's user with mode 0600 (as the server wants a private key), e.g. server.crt
	// and server.key for Settings ssl=on (relative paths are relative to the data
	// directory).
	Files map[string][]byte
}

// Cluster is a PostgreSQL cluster of its own, in a temporary directory, listening on a
// free port of 127.0.0.1 and on a Unix socket in that directory. It is stopped and
// removed when the test ends. Use it for node-level faults (a server that stops,
// crashes or restarts), server settings, or authentication; plain databases are
// cheaper with NewDB.
type Cluster struct {
	t        testing.TB
	Port     int
	Dir      string // the temporary directory: socket and log
	DataDir  string
	Password string // the superuser's password ("" for trust)
	bin      string
	opts     ClusterOptions
	cred     *syscall.Credential

	mu      sync.Mutex
	running bool
}

// BinDir finds the PostgreSQL server binaries: PG_BINDIR, pg_config --bindir, then the
// newest /usr/lib/postgresql/*/bin.
func BinDir() (string, error) {
	ok := func(d string) bool {
		_, err := os.Stat(filepath.Join(d, "pg_ctl"))
		return err == nil
	}
	if d := os.Getenv("PG_BINDIR"); d != "" {
		if ok(d) {
			return d, nil
		}
		return "", fmt.Errorf("PG_BINDIR=%s has no pg_ctl", d)
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if d := strings.TrimSpace(string(out)); ok(d) {
			return d, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if ok(d) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("no PostgreSQL server binaries found (set PG_BINDIR)")
}

func clusterFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("IBEX_TEST_SKIP_DB") == "1" {
		t.Skipf(format, args...)
	}
	t.Fatalf(format, args...)
}

// StartCluster creates and starts a cluster (about 0.7 s). Running as root, initdb and
// the server run as the postgres user.
func StartCluster(t testing.TB, opts ClusterOptions) *Cluster {
	t.Helper()
	bin, err := BinDir()
	if err != nil {
		clusterFail(t, "starting a cluster: %v", err)
	}
	dir, err := os.MkdirTemp("", "ibex-pg-")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, Dir: dir, DataDir: filepath.Join(dir, "data"), Password: opts.Password, bin: bin, opts: opts}
	t.Cleanup(c.destroy)
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			clusterFail(t, "running as root, the cluster needs the postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	c.watchdog()

	if err := c.initdb(); err != nil {
		clusterFail(t, "%v", err)
	}
	// pg_hba.conf: the test's lines first (first match wins), then trust on the socket
	// and trust or scram-sha-256 over TCP.
	hostAuth := "trust"
	if opts.Password != "" {
		hostAuth = "scram-sha-256"
	}
	hba := "# written by pgtest.StartCluster\n" + strings.Join(opts.HBA, "\n") + "\n" +
		"local all all trust\n" +
		"host all all 127.0.0.1/32 " + hostAuth + "\n" +
		"host all all ::1/128 " + hostAuth + "\n"
	// os.WriteFile keeps the file's owner (postgres).
	if err := os.WriteFile(filepath.Join(c.DataDir, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, content := range opts.Files {
		p := filepath.Join(c.DataDir, name)
		if err := os.WriteFile(p, content, 0o600); err != nil {
			t.Fatal(err)
		}
		if c.cred != nil {
			if err := os.Chown(p, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
				t.Fatal(err)
			}
		}
	}
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		c.Port = port
		if lastErr = c.start(); lastErr == nil {
			if opts.Password != "" {
				// The template has no password; password_encryption is scram-sha-256.
				c.MustExec("postgres", "ALTER ROLE postgres PASSWORD "+pgQuote(opts.Password))
			}
			return c
		}
	}
	clusterFail(t, "starting the cluster: %v", lastErr)
	return nil
}

// initdb fills c.DataDir. initdb takes 0.4-2 s, so its output is kept as a template
// (one per server binaries) in $TMPDIR/ibex-pgtest-initdb-* and copied.
func (c *Cluster) initdb() error {
	h := sha256.Sum256([]byte(c.bin))
	tpl := filepath.Join(os.TempDir(), fmt.Sprintf("ibex-pgtest-initdb-%d-%s", os.Geteuid(), hex.EncodeToString(h[:6])))
	if _, err := os.Stat(filepath.Join(tpl, "data", "PG_VERSION")); err != nil {
		if err := c.makeTemplate(tpl); err != nil {
			return err
		}
	}
	if out, err := exec.Command("cp", "-a", filepath.Join(tpl, "data"), c.DataDir).CombinedOutput(); err != nil {
		return fmt.Errorf("copying the initdb template %s: %v\n%s", tpl, err, out)
	}
	return nil
}

func (c *Cluster) makeTemplate(tpl string) error {
	tmp, err := os.MkdirTemp(os.TempDir(), "ibex-pgtest-initdb-tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if c.cred != nil {
		if err := os.Chown(tmp, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return err
		}
	}
	args := []string{"-D", filepath.Join(tmp, "data"), "--no-sync", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-instructions"}
	args = append(args, "-A", "trust")
	if out, err := c.command("initdb", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %v\n%s", err, out)
	}
	// Another process may have made the same template meanwhile: keep the first.
	if err := os.Rename(tmp, tpl); err != nil {
		if _, serr := os.Stat(filepath.Join(tpl, "data", "PG_VERSION")); serr != nil {
			return fmt.Errorf("saving the initdb template: %w", err)
		}
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// command runs a server binary as the cluster's user, in its own process group, with a
// clean PG* environment.
func (c *Cluster) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	cmd.Dir = c.Dir
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "PG") && !strings.HasPrefix(e, "LC_") && !strings.HasPrefix(e, "LANG") {
			env = append(env, e)
		}
	}
	cmd.Env = append(env, "LC_ALL=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: c.cred}
	return cmd
}

func (c *Cluster) serverOptions() string {
	settings := map[string]string{
		"listen_addresses":        "127.0.0.1",
		"port":                    strconv.Itoa(c.Port),
		"unix_socket_directories": c.Dir,
		"fsync":                   "off",
		"full_page_writes":        "off",
		"max_connections":         "200",
		"shared_buffers":          "32MB",
		"max_wal_size":            "1GB",
		"checkpoint_timeout":      "30min",
		"logging_collector":       "off",
		"log_min_messages":        "warning",
		"log_min_error_statement": "panic",
	}
	for k, v := range c.opts.Settings {
		settings[k] = v
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, " -c %s=%s", k, shellQuote(settings[k])) // pg_ctl runs postgres through the shell
	}
	return b.String()
}

// watchdog starts a process that outlives this one and, once this process is gone
// without having removed the cluster (killed, go test -timeout, a fuzz worker stopped by
// its coordinator), stops the server and removes the directory.
func (c *Cluster) watchdog() {
	script := fmt.Sprintf(`while [ -d /proc/%d ] && [ -d %[2]s ]; do sleep 1; done
if [ -d %[2]s ]; then
  [ -f %[2]s/data/postmaster.pid ] && %[3]s stop -D %[2]s/data -m immediate -w -t 30 >/dev/null 2>&1
  rm -rf %[2]s
fi`, os.Getpid(), shellQuote(c.Dir), shellQuote(filepath.Join(c.bin, "pg_ctl")))
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: c.cred}
	closeOnExec()
	if err := cmd.Start(); err != nil {
		c.t.Logf("no watchdog for cluster %s: %v", c.Dir, err)
		return
	}
	go func() { _ = cmd.Wait() }()
}

func pgQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// closeOnExec marks every inherited descriptor above stderr close-on-exec, so that the
// server (a daemon that outlives pg_ctl) does not keep them open: a go test -fuzz worker
// talks to its coordinator over inherited pipes (fds 3 and 4) that are not
// close-on-exec, and a server holding them would hang the coordinator when the worker
// exits.
func closeOnExec() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}

func (c *Cluster) start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running {
		return nil
	}
	closeOnExec()
	cmd := c.command("pg_ctl", "start", "-w", "-t", "60", "-D", c.DataDir, "-l", filepath.Join(c.Dir, "server.log"), "-o", c.serverOptions())
	if out, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(c.Dir, "server.log"))
		return fmt.Errorf("pg_ctl start on port %d: %v\n%s\n%s", c.Port, err, out, tail(string(log), 2000))
	}
	c.running = true
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (c *Cluster) stop(mode string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.running {
		return nil
	}
	out, err := c.command("pg_ctl", "stop", "-w", "-t", "60", "-m", mode, "-D", c.DataDir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl stop -m %s: %v\n%s", mode, err, out)
	}
	c.running = false
	return nil
}

// Start starts a stopped cluster again, on the same port.
func (c *Cluster) Start() {
	c.t.Helper()
	if err := c.start(); err != nil {
		c.t.Fatal(err)
	}
}

// Stop shuts the cluster down cleanly (fast mode: sessions are ended, committed work kept).
func (c *Cluster) Stop() {
	c.t.Helper()
	if err := c.stop("fast"); err != nil {
		c.t.Fatal(err)
	}
}

// Kill stops the cluster like a crash (immediate mode: no checkpoint; the next Start
// recovers from the WAL). synchronous_commit stays on (fsync is off), so every
// acknowledged commit survives a Kill, as on a server whose process crashed.
func (c *Cluster) Kill() {
	c.t.Helper()
	if err := c.stop("immediate"); err != nil {
		c.t.Fatal(err)
	}
}

// Running reports whether the cluster is started.
func (c *Cluster) Running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.running
}

func (c *Cluster) destroy() {
	_ = c.stop("immediate")
	if err := os.RemoveAll(c.Dir); err != nil {
		c.t.Logf("removing cluster directory %s: %v", c.Dir, err)
	}
}

// Log returns the end of the server log (for failure messages).
func (c *Cluster) Log() string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, "server.log"))
	return tail(string(b), 4000)
}

// Conn returns libpq keywords to reach dbname as the superuser over TCP, without the
// password (as an ibex db would carry them).
func (c *Cluster) Conn(dbname string) map[string]string {
	return map[string]string{"host": "127.0.0.1", "port": strconv.Itoa(c.Port), "user": "postgres", "dbname": dbname}
}

// quoteConnValue quotes a conninfo value.
func quoteConnValue(v string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(v, `\`, `\\`), `'`, `\'`) + "'"
}

// DSN is a conninfo string that reaches dbname as the superuser over TCP, with its
// password when the cluster has one.
func (c *Cluster) DSN(dbname string) string {
	s := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=%s", c.Port, quoteConnValue(dbname))
	if c.Password != "" {
		s += " password=" + quoteConnValue(c.Password)
	}
	return s
}

// SocketDSN reaches dbname as the superuser over the cluster's Unix socket (always trust).
func (c *Cluster) SocketDSN(dbname string) string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=%s", quoteConnValue(c.Dir), c.Port, quoteConnValue(dbname))
}

// Exec runs SQL as the superuser in dbname on a short-lived connection.
func (c *Cluster) Exec(dbname, sql string, args ...any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.SocketDSN(dbname))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql, args...)
	return err
}

// MustExec is Exec that fails the test on error.
func (c *Cluster) MustExec(dbname, sql string, args ...any) {
	c.t.Helper()
	if err := c.Exec(dbname, sql, args...); err != nil {
		c.t.Fatalf("%s: %v", sql, err)
	}
}

// CreateDB creates database name (owned by the superuser) and returns it as a DB whose
// DSN and Conn reach it over TCP. It is dropped with the cluster.
func (c *Cluster) CreateDB(name string) *DB {
	c.t.Helper()
	c.MustExec("postgres", "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	return &DB{Name: name, DSN: c.DSN(name), Conn: c.Conn(name)}
}

// Pgbench runs pgbench against dbname with args, as the superuser over the Unix socket.
func (c *Cluster) Pgbench(dbname string, args ...string) string {
	c.t.Helper()
	out, err := c.PgbenchCmd(dbname, args...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("pgbench %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// PgbenchCmd returns an unstarted pgbench command against dbname (for writers that run
// in the background).
func (c *Cluster) PgbenchCmd(dbname string, args ...string) *exec.Cmd {
	pgbench := filepath.Join(c.bin, "pgbench")
	if _, err := os.Stat(pgbench); err != nil {
		pgbench = "pgbench"
	}
	cmd := exec.Command(pgbench, append(args, dbname)...)
	cmd.Env = append(os.Environ(), "PGHOST="+c.Dir, "PGPORT="+strconv.Itoa(c.Port), "PGUSER=postgres")
	return cmd
}
