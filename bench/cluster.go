package main

// Private throwaway PostgreSQL clusters (the bucardo and peers sections) and apt-get
// installs of the packages they need.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgMajor is the PostgreSQL major version of the private clusters' binaries and of the
// packages installed for them (PL/Perl for Bucardo, pglogical).
const pgMajor = "15"

// serverBin is the directory of the PostgreSQL pgMajor server binaries (initdb, pg_ctl).
func serverBin() string { return filepath.Join("/usr/lib/postgresql", pgMajor, "bin") }

// missingServer names the server binaries when initdb is not there ("" when it is).
func missingServer() string {
	if _, err := os.Stat(filepath.Join(serverBin(), "initdb")); err != nil {
		return "postgresql-" + pgMajor + " server binaries (" + serverBin() + ")"
	}
	return ""
}

// aptInstall runs apt-get install -y pkgs (as root, non-interactive); when that fails it
// runs apt-get update and tries once more. what names the section in progress lines and
// errors.
func aptInstall(ctx context.Context, what string, pkgs ...string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("-%s install needs root (apt-get install)", what)
	}
	args := append([]string{"install", "-y"}, pkgs...)
	progress("%s: apt-get %s", what, strings.Join(args, " "))
	run := func(args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		return cmd.CombinedOutput()
	}
	out, err := run(args...)
	if err != nil {
		progress("%s: apt-get install failed; apt-get update, then again", what)
		if uo, uerr := run("update"); uerr != nil {
			return fmt.Errorf("apt-get update: %w\n%s", uerr, tail(uo, 2000))
		}
		if out, err = run(args...); err != nil {
			return fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, tail(out, 2000))
		}
	}
	return nil
}

// pinnedToServer is pkg=<the installed postgresql-pgMajor version>, so that apt-get does
// not upgrade the running server as a side effect (pkg alone when that is unknown).
func pinnedToServer(ctx context.Context, pkg string) string {
	if v, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f=${Version}", "postgresql-"+pgMajor).Output(); err == nil && len(bytes.TrimSpace(v)) > 0 {
		return pkg + "=" + string(bytes.TrimSpace(v))
	}
	return pkg
}

// privCluster is a private throwaway cluster: initdb (PostgreSQL pgMajor binaries, C.UTF-8,
// trust) in a temporary directory, owned by the unprivileged OS user postgres when the
// bench runs as root (postgres refuses root), listening only on a unix socket in that
// directory, on a free port number, with the harness server's settings that matter for
// speed (settingsToCopy). destroy stops it and removes the directory.
type privCluster struct {
	label                   string // names it in progress lines
	dir, data, sock, logdir string
	bin                     string
	port                    int
	uid, gid                int
	cred                    *syscall.Credential // nil when the bench is not root
	started                 bool
	db                      *env // the harness's helpers, pointed at this cluster
}

// settingsToCopy are the server settings a private cluster takes from the harness's
// server, so that what runs there works on the same configuration as ibex.
var settingsToCopy = []string{"shared_buffers", "fsync", "synchronous_commit", "full_page_writes", "wal_buffers", "max_wal_size",
	"min_wal_size", "checkpoint_timeout", "checkpoint_completion_target", "work_mem", "maintenance_work_mem", "effective_cache_size",
	"autovacuum", "jit", "random_page_cost"}

// newPrivCluster creates and starts a private cluster in a new directory named after
// pattern (os.MkdirTemp), with main's settingsToCopy and then extra (name -> value, in
// order). The returned cluster is not nil when a directory was made: destroy it even when
// err is not nil.
func newPrivCluster(ctx context.Context, main *env, label, pattern string, extra [][2]string) (*privCluster, error) {
	if m := missingServer(); m != "" {
		return nil, errors.New("missing " + m)
	}
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		return nil, fmt.Errorf("creating the cluster's directory: %w", err)
	}
	c := &privCluster{label: label, dir: dir, data: filepath.Join(dir, "data"), sock: filepath.Join(dir, "sock"),
		logdir: filepath.Join(dir, "log"), bin: serverBin(), uid: os.Getuid(), gid: os.Getgid()}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return c, fmt.Errorf("running as root, the cluster needs the unprivileged OS user postgres: %w", err)
		}
		c.uid, _ = strconv.Atoi(u.Uid)
		c.gid, _ = strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(c.uid), Gid: uint32(c.gid)}
	}
	if err := os.Chown(dir, c.uid, c.gid); err != nil {
		return c, fmt.Errorf("chown %s: %w", dir, err)
	}
	for _, d := range []string{"home", "sock", "log"} {
		if _, err := c.mkdir(d); err != nil {
			return c, err
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return c, fmt.Errorf("finding a free port number: %w", err)
	}
	c.port = l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	progress("%s: initdb of a private cluster in %s (as OS user uid %d)", label, dir, c.uid)
	if _, err := c.run(ctx, filepath.Join(c.bin, "initdb"), "-D", c.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8",
		"--no-sync", "--no-instructions"); err != nil {
		return c, err
	}
	conf := fmt.Sprintf("port = %d\nlisten_addresses = ''\nunix_socket_directories = '%s'\n", c.port, c.sock)
	for _, name := range settingsToCopy {
		var v string
		if err := main.admin.QueryRow(ctx, `SELECT current_setting($1)`, name).Scan(&v); err == nil {
			conf += fmt.Sprintf("%s = %s\n", name, confValue(v))
		}
	}
	for _, kv := range extra {
		conf += fmt.Sprintf("%s = %s\n", kv[0], confValue(kv[1]))
	}
	autoConf := filepath.Join(c.data, "postgresql.auto.conf")
	if err := os.WriteFile(autoConf, []byte(conf), 0o600); err != nil {
		return c, fmt.Errorf("writing %s: %w", autoConf, err)
	}
	if err := os.Chown(autoConf, c.uid, c.gid); err != nil {
		return c, fmt.Errorf("chown %s: %w", autoConf, err)
	}
	logFile := filepath.Join(c.logdir, "postgres.log")
	if _, err := c.run(ctx, filepath.Join(c.bin, "pg_ctl"), "start", "-w", "-t", "60", "-D", c.data, "-l", logFile); err != nil {
		b, _ := os.ReadFile(logFile)
		return c, fmt.Errorf("%w\n%s", err, tail(b, 2000))
	}
	c.started = true
	c.db = &env{host: c.sock, port: strconv.Itoa(c.port), user: "postgres", tmp: dir, ibexBin: main.ibexBin}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if c.db.admin, err = pgx.Connect(cctx, c.db.conninfo("postgres")); err != nil {
		return c, fmt.Errorf("connecting to the private cluster: %w", err)
	}
	return c, nil
}

// confValue quotes v for postgresql.conf.
func confValue(v string) string { return "'" + strings.ReplaceAll(v, "'", "''") + "'" }

// mkdir creates dir/name owned by the cluster's OS user and returns its path.
func (c *privCluster) mkdir(name string) (string, error) {
	d := filepath.Join(c.dir, name)
	if err := os.MkdirAll(d, 0o700); err != nil {
		return d, fmt.Errorf("creating %s: %w", d, err)
	}
	if err := os.Chown(d, c.uid, c.gid); err != nil {
		return d, fmt.Errorf("chown %s: %w", d, err)
	}
	return d, nil
}

// command runs a program as the cluster's OS user, in its own process group (a Ctrl-C
// reaches the harness, which then stops what runs there and the cluster cleanly), with a
// clean environment naming the private cluster.
func (c *privCluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = c.dir
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "PG") && !strings.HasPrefix(e, "HOME=") && !strings.HasPrefix(e, "PATH=") {
			env = append(env, e)
		}
	}
	cmd.Env = append(env, "HOME="+filepath.Join(c.dir, "home"), "PGHOST="+c.sock, "PGPORT="+strconv.Itoa(c.port), "PGUSER=postgres",
		"PATH="+c.bin+":/usr/local/bin:/usr/bin:/bin")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: c.cred}
	return cmd
}

func (c *privCluster) run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := c.command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, tail(out, 3000))
	}
	return string(out), nil
}

// appendToList adds item to the list setting name (ALTER SYSTEM, then a reload) and waits
// until the server uses it. A server without that setting is left alone (false).
func (c *privCluster) appendToList(ctx context.Context, name, item string) (bool, error) {
	var cur string
	err := c.db.admin.QueryRow(ctx, `SELECT setting FROM pg_settings WHERE name = $1`, name).Scan(&cur)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading setting %s: %w", name, err)
	}
	var items []string
	for _, it := range strings.Split(cur, ",") {
		if it = strings.TrimSpace(it); it == item {
			return true, nil
		} else if it != "" {
			items = append(items, sqlLiteral(it))
		}
	}
	items = append(items, sqlLiteral(item))
	if _, err := c.db.admin.Exec(ctx, `ALTER SYSTEM SET `+pgx.Identifier{name}.Sanitize()+` = `+strings.Join(items, ", ")); err != nil {
		return false, fmt.Errorf("ALTER SYSTEM SET %s: %w", name, err)
	}
	if _, err := c.db.admin.Exec(ctx, `SELECT pg_reload_conf()`); err != nil {
		return false, fmt.Errorf("pg_reload_conf(): %w", err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if err := c.db.admin.QueryRow(ctx, `SELECT setting FROM pg_settings WHERE name = $1`, name).Scan(&cur); err != nil {
			return false, fmt.Errorf("reading setting %s: %w", name, err)
		}
		if slices.Contains(strings.Split(strings.ReplaceAll(cur, " ", ""), ","), item) {
			return true, nil
		}
		if time.Now().After(deadline) {
			return false, fmt.Errorf("%s is still %q 30 s after the reload", name, cur)
		}
	}
}

// logTail is the end of the cluster's server log (for error messages).
func (c *privCluster) logTail(n int) string {
	b, _ := os.ReadFile(filepath.Join(c.logdir, "postgres.log"))
	return tail(b, n)
}

// destroy stops the cluster (fast, then immediate) and removes its directory. It uses its
// own bounded context: it also runs after a failure or Ctrl-C.
func (c *privCluster) destroy() {
	if c.db != nil && c.db.admin != nil {
		_ = c.db.admin.Close(context.Background())
	}
	if c.started {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		if _, err := c.run(ctx, filepath.Join(c.bin, "pg_ctl"), "stop", "-w", "-t", "60", "-m", "fast", "-D", c.data); err != nil {
			progress("%s: stopping the private cluster: %v; immediate mode", c.label, err)
			_, _ = c.run(ctx, filepath.Join(c.bin, "pg_ctl"), "stop", "-w", "-t", "20", "-m", "immediate", "-D", c.data)
		}
	}
	if err := os.RemoveAll(c.dir); err != nil {
		progress("%s: removing %s: %v", c.label, c.dir, err)
	}
}
