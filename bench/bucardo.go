package main

// The bucardo section: Bucardo 5.6 (Debian package bucardo, with PL/Perl) on the seed
// workload, in a private throwaway cluster, measured in the same run as ibex. The steps
// follow /work/shared/reference/bucardo-bench.sh (our own reference recipe): a cluster
// owned by an unprivileged OS user (postgres refuses to run as root), `bucardo install
// --batch`, an rc file with piddir/logdest, `bucardo set log_conflict_file=...`, add db /
// table / dbgroup / sync, `bucardo start`, wait for the KID pid file, `bucardo kick foobar
// 0`, then bucardo.syncrun for started/ended.

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
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgMajor is the PostgreSQL major version of the PL/Perl package Bucardo needs.
const pgMajor = "15"

// Bucardo names, as in its 2011 demo.
const (
	bucSync  = "foobar"
	bucHerd  = "therd"
	bucGroup = "tgroup"
)

// bucardoTools reports what is missing to run Bucardo ("" when nothing): the bucardo
// CLI, the PostgreSQL pgMajor server binaries and its PL/Perl.
func bucardoTools() (missing []string, bin string) {
	if _, err := exec.LookPath("bucardo"); err != nil {
		missing = append(missing, "bucardo")
	}
	bin = filepath.Join("/usr/lib/postgresql", pgMajor, "bin")
	if _, err := os.Stat(filepath.Join(bin, "initdb")); err != nil {
		missing = append(missing, "postgresql-"+pgMajor+" server binaries ("+bin+")")
	}
	if _, err := os.Stat(filepath.Join("/usr/lib/postgresql", pgMajor, "lib", "plperl.so")); err != nil {
		missing = append(missing, "postgresql-plperl-"+pgMajor)
	}
	return missing, bin
}

// installBucardo runs apt-get install -y bucardo postgresql-plperl-15, with PL/Perl
// pinned to the installed server version so that apt does not upgrade the running
// server as a side effect.
func installBucardo(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return errors.New("-bucardo install needs root (apt-get install)")
	}
	plperl := "postgresql-plperl-" + pgMajor
	if v, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f=${Version}", "postgresql-"+pgMajor).Output(); err == nil && len(bytes.TrimSpace(v)) > 0 {
		plperl += "=" + string(bytes.TrimSpace(v))
	}
	args := []string{"install", "-y", "bucardo", plperl}
	progress("bucardo: apt-get %s", strings.Join(args, " "))
	run := func(args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		return cmd.CombinedOutput()
	}
	out, err := run(args...)
	if err != nil {
		progress("bucardo: apt-get install failed; apt-get update, then again")
		if uo, uerr := run("update"); uerr != nil {
			return fmt.Errorf("apt-get update: %w\n%s", uerr, tail(uo, 2000))
		}
		if out, err = run(args...); err != nil {
			return fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, tail(out, 2000))
		}
	}
	return nil
}

// bucCluster is the private cluster and Bucardo's files, all under dir.
type bucCluster struct {
	dir, data, sock, rc, piddir, logdir string
	bin                                 string
	port                                int
	cred                                *syscall.Credential
	started                             bool
	db                                  *env // the harness's helpers, pointed at this cluster
}

// command runs a program as the cluster's OS user, in its own process group (a Ctrl-C
// reaches the harness, which then stops Bucardo and the cluster cleanly), with a clean
// environment naming the private cluster.
func (c *bucCluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
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

func (c *bucCluster) run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := c.command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, tail(out, 3000))
	}
	return string(out), nil
}

func (c *bucCluster) bucardo(ctx context.Context, args ...string) (string, error) {
	return c.run(ctx, "bucardo", append([]string{"--bucardorc", c.rc}, args...)...)
}

// settingsToCopy are the server settings the private cluster takes from the harness's
// server, so that Bucardo works on the same configuration as ibex.
var settingsToCopy = []string{"shared_buffers", "fsync", "synchronous_commit", "full_page_writes", "wal_buffers", "max_wal_size",
	"min_wal_size", "checkpoint_timeout", "checkpoint_completion_target", "work_mem", "maintenance_work_mem", "effective_cache_size",
	"autovacuum", "jit", "random_page_cost"}

// newBucCluster creates and starts the private cluster.
func newBucCluster(ctx context.Context, main *env, bin string) (*bucCluster, error) {
	dir, err := os.MkdirTemp("", "ibex-bench-bucardo-")
	if err != nil {
		return nil, err
	}
	c := &bucCluster{dir: dir, data: filepath.Join(dir, "data"), sock: filepath.Join(dir, "sock"), rc: filepath.Join(dir, "bucardorc"),
		piddir: filepath.Join(dir, "run"), logdir: filepath.Join(dir, "log"), bin: bin}
	uid, gid := os.Getuid(), os.Getgid()
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return c, fmt.Errorf("running as root, the cluster needs the unprivileged OS user postgres: %w", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	for _, d := range []string{dir, filepath.Join(dir, "home"), c.sock, c.piddir, c.logdir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return c, err
		}
		if err := os.Chown(d, uid, gid); err != nil {
			return c, err
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return c, err
	}
	c.port = l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	progress("bucardo: initdb of a private cluster in %s (as OS user uid %d)", dir, uid)
	if _, err := c.run(ctx, filepath.Join(bin, "initdb"), "-D", c.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8",
		"--no-sync", "--no-instructions"); err != nil {
		return c, err
	}
	conf := fmt.Sprintf("port = %d\nlisten_addresses = ''\nunix_socket_directories = '%s'\n", c.port, c.sock)
	for _, name := range settingsToCopy {
		var v string
		if err := main.admin.QueryRow(ctx, `SELECT current_setting($1)`, name).Scan(&v); err == nil {
			conf += fmt.Sprintf("%s = '%s'\n", name, strings.ReplaceAll(v, "'", "''"))
		}
	}
	if err := os.WriteFile(filepath.Join(c.data, "postgresql.auto.conf"), []byte(conf), 0o600); err != nil {
		return c, err
	}
	if err := os.Chown(filepath.Join(c.data, "postgresql.auto.conf"), uid, gid); err != nil {
		return c, err
	}
	if _, err := c.run(ctx, filepath.Join(bin, "pg_ctl"), "start", "-w", "-t", "60", "-D", c.data, "-l", filepath.Join(c.logdir, "postgres.log")); err != nil {
		b, _ := os.ReadFile(filepath.Join(c.logdir, "postgres.log"))
		return c, fmt.Errorf("%w\n%s", err, tail(b, 2000))
	}
	c.started = true
	rc := fmt.Sprintf("dbhost = %s\ndbport = %d\ndbname = bucardo\ndbuser = bucardo\npiddir = %s\nlogdest = %s\n", c.sock, c.port, c.piddir, c.logdir)
	if err := os.WriteFile(c.rc, []byte(rc), 0o644); err != nil {
		return c, err
	}
	_ = os.Chown(c.rc, uid, gid)
	c.db = &env{host: c.sock, port: strconv.Itoa(c.port), user: "postgres", tmp: dir}
	c.db.admin, err = pgx.Connect(ctx, c.db.conninfo("postgres"))
	if err != nil {
		return c, fmt.Errorf("connecting to the private cluster: %w", err)
	}
	return c, nil
}

func (c *bucCluster) mcpPID() int {
	b, err := os.ReadFile(filepath.Join(c.piddir, "bucardo.mcp.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	return pid
}

// alive reports whether pid runs (a zombie does not count).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// stopBucardo stops Bucardo (bucardo stop, then waits for its MCP to exit) and ends
// any Bucardo process of ours still alive: those named by the pid files in our piddir.
func (c *bucCluster) stopBucardo() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if pid := c.mcpPID(); pid > 0 && alive(pid) {
		if _, err := c.bucardo(ctx, "stop", "ibex bench"); err != nil {
			progress("bucardo: bucardo stop: %v", err)
		}
		for i := 0; i < 300 && alive(pid); i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
	pids, _ := filepath.Glob(filepath.Join(c.piddir, "*.pid"))
	for _, f := range pids {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
		if pid <= 0 || !alive(pid) {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if bytes.Contains(bytes.ToLower(cmdline), []byte("bucardo")) {
			progress("bucardo: ending leftover Bucardo process %d (%s)", pid, filepath.Base(f))
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
	}
}

// destroy stops Bucardo and the cluster and removes the directory.
func (c *bucCluster) destroy() {
	c.stopBucardo()
	if c.db != nil && c.db.admin != nil {
		_ = c.db.admin.Close(context.Background())
	}
	if c.started {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		if _, err := c.run(ctx, filepath.Join(c.bin, "pg_ctl"), "stop", "-w", "-t", "60", "-m", "fast", "-D", c.data); err != nil {
			progress("bucardo: stopping the private cluster: %v; immediate mode", err)
			_, _ = c.run(ctx, filepath.Join(c.bin, "pg_ctl"), "stop", "-w", "-t", "20", "-m", "immediate", "-D", c.data)
		}
	}
	if err := os.RemoveAll(c.dir); err != nil {
		progress("bucardo: removing %s: %v", c.dir, err)
	}
}

// bucRun is one Bucardo kick.
type bucRun struct {
	wall, toCommit, sync        float64 // seconds
	inserts, deletes, conflicts float64
	tps                         []float64 // pgbench on the sources
}

// stepError names the step that failed.
type stepError struct {
	step string
	err  error
}

func (e *stepError) Error() string { return e.step + ": " + e.err.Error() }

func step(name string, err error) error {
	if err == nil {
		return nil
	}
	return &stepError{name, err}
}

var backspaced = regexp.MustCompile(`[^\x08]\x08`)

// bucardoRepeat runs one repeat from scratch in cluster c.
func (b *bench) bucardoRepeat(ctx context.Context, c *bucCluster, label string) (bucRun, error) {
	cfg := b.cfg
	var br bucRun
	n := cfg.sources + cfg.targets
	var dbs, srcNames []string
	for i := 1; i <= n; i++ {
		dbs = append(dbs, fmt.Sprintf("%sbucardo_%d", prefix, i))
		if i <= cfg.sources {
			srcNames = append(srcNames, dbs[i-1])
		}
	}
	c.stopBucardo()
	if _, err := c.db.admin.Exec(ctx, `DROP DATABASE IF EXISTS bucardo WITH (FORCE)`); err != nil {
		return br, step("dropping the bucardo database", err)
	}
	_ = os.Remove(filepath.Join(c.logdir, "log.bucardo"))
	progress("%s: creating %d databases (pgbench -i -s %d, then TEMPLATE copies)", label, n, cfg.scale)
	if err := c.db.create(ctx, dbs[0], "", false); err != nil {
		return br, step("creating the databases", err)
	}
	if err := c.db.pgbenchInit(ctx, dbs[0], cfg.scale); err != nil {
		return br, step("pgbench -i", err)
	}
	for _, db := range dbs[1:] {
		if err := c.db.create(ctx, db, dbs[0], false); err != nil {
			return br, step("creating the databases", err)
		}
	}
	progress("%s: bucardo install, add db/table/dbgroup/sync %s", label, bucSync)
	if _, err := c.bucardo(ctx, "install", "--batch", "--dbuser", "postgres", "--dbname", "postgres"); err != nil {
		return br, step("bucardo install", err)
	}
	if _, err := c.bucardo(ctx, "set", "log_conflict_file="+filepath.Join(c.logdir, "conflict.log"),
		"warning_file="+filepath.Join(c.logdir, "warning.log"), "reason_file="+filepath.Join(c.logdir, "restart.reason")); err != nil {
		return br, step("bucardo set", err)
	}
	var members []string
	for i, db := range dbs {
		name := fmt.Sprintf("t%d", i+1)
		if _, err := c.bucardo(ctx, "add", "db", name, "dbname="+db, "host="+c.sock, "port="+strconv.Itoa(c.port), "user=bucardo"); err != nil {
			return br, step("bucardo add db", err)
		}
		role := "source"
		if i >= cfg.sources {
			role = "target"
		}
		members = append(members, name+":"+role)
	}
	add := []string{"add", "table"}
	for _, t := range pgbenchTables {
		add = append(add, t.name)
	}
	if _, err := c.bucardo(ctx, append(add, "db=t1", "herd="+bucHerd)...); err != nil {
		return br, step("bucardo add table", err)
	}
	if _, err := c.bucardo(ctx, append([]string{"add", "dbgroup", bucGroup}, members...)...); err != nil {
		return br, step("bucardo add dbgroup", err)
	}
	if _, err := c.bucardo(ctx, "add", "sync", bucSync, "herd="+bucHerd, "dbs="+bucGroup, "autokick=false"); err != nil {
		return br, step("bucardo add sync", err)
	}
	progress("%s: bucardo start, waiting for the KID", label)
	if _, err := c.bucardo(ctx, "start", "--sendmail=0", "ibex bench"); err != nil {
		return br, step("bucardo start", err)
	}
	kidUp := false
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(100 * time.Millisecond) {
		if m, _ := filepath.Glob(filepath.Join(c.piddir, "bucardo.kid.sync.*.pid")); len(m) > 0 {
			kidUp = true
			break
		}
	}
	if !kidUp {
		lg, _ := os.ReadFile(filepath.Join(c.logdir, "log.bucardo"))
		return br, step("bucardo start", fmt.Errorf("no KID pid file in %s after 60 s; log.bucardo ends:\n%s", c.piddir, tail(lg, 2000)))
	}
	if err := c.db.checkpoint(ctx); err != nil {
		return br, step("CHECKPOINT", err)
	}
	progress("%s: pgbench -n -t %d on %d sources (concurrently)", label, cfg.tx, cfg.sources)
	tps, err := c.db.pgbenchAll(ctx, srcNames, cfg.tx)
	if err != nil {
		return br, step("pgbench on the sources", err)
	}
	br.tps = tps
	if err := c.db.checkpoint(ctx); err != nil {
		return br, step("CHECKPOINT", err)
	}
	progress("%s: bucardo kick %s 0", label, bucSync)
	kctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	cmd := c.command(kctx, "bucardo", "--bucardorc", c.rc, "kick", bucSync, "0")
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	br.wall = time.Since(t0).Seconds()
	kout := string(out)
	for backspaced.MatchString(kout) {
		kout = backspaced.ReplaceAllString(kout, "")
	}
	kout = strings.TrimSpace(kout)
	if err != nil || !strings.Contains(kout, "DONE") {
		return br, step("bucardo kick", fmt.Errorf("exit %v, output: %s", err, tail([]byte(kout), 2000)))
	}
	bc, err := c.db.connect(ctx, "bucardo")
	if err != nil {
		return br, step("reading bucardo.syncrun", err)
	}
	var started, ended *float64
	var status *string
	var ins, del, conf *int64
	err = bc.QueryRow(ctx, `SELECT extract(epoch FROM started)::float8, extract(epoch FROM ended)::float8, inserts, deletes, conflicts, status
		FROM bucardo.syncrun WHERE sync = $1 ORDER BY started DESC LIMIT 1`, bucSync).Scan(&started, &ended, &ins, &del, &conf, &status)
	_ = bc.Close(context.WithoutCancel(ctx))
	if err != nil {
		return br, step("reading bucardo.syncrun", err)
	}
	if started == nil || ended == nil {
		return br, step("reading bucardo.syncrun", errors.New("the run has no started/ended time"))
	}
	launch := float64(t0.UnixNano()) / 1e9
	if *started < launch-1 {
		return br, step("reading bucardo.syncrun", fmt.Errorf("the latest run started %.3f s before the kick", launch-*started))
	}
	br.toCommit, br.sync = *ended-launch, *ended-*started
	for _, p := range []struct {
		dst *float64
		src *int64
	}{{&br.inserts, ins}, {&br.deletes, del}, {&br.conflicts, conf}} {
		if p.src != nil {
			*p.dst = float64(*p.src)
		}
	}
	st := ""
	if status != nil {
		st = *status
	}
	progress("%s: kick to done %.3f s, kick to commit %.3f s, sync %.3f s, inserts %.0f, deletes %.0f, conflicts %.0f (%s; kick said %q)",
		label, br.wall, br.toCommit, br.sync, br.inserts, br.deletes, br.conflicts, st, kout)
	ok, detail, err := c.db.converged(ctx, dbs)
	if err != nil {
		return br, step("checking convergence", err)
	}
	if !ok {
		return br, step("convergence", errors.New("the databases did NOT converge after the kick: "+detail))
	}
	progress("%s: converged (all %d databases identical)", label, len(dbs))
	return br, nil
}

// bucardoMeasure runs Bucardo for every repeat; it returns the runs that converged and
// the first failure (then it stops).
func (b *bench) bucardoMeasure(ctx context.Context, bin string) ([]bucRun, error) {
	c, err := newBucCluster(ctx, b.env, bin)
	if c != nil {
		defer func() {
			progress("bucardo: stopping Bucardo and the private cluster, removing %s", c.dir)
			c.destroy()
		}()
	}
	if err != nil {
		return nil, step("creating the private cluster", err)
	}
	if v, err := c.run(ctx, "bucardo", "--version"); err == nil {
		progress("bucardo: %s", strings.TrimSpace(v))
	}
	var runs []bucRun
	for r := 1; r <= b.cfg.repeats; r++ {
		br, err := b.bucardoRepeat(ctx, c, fmt.Sprintf("bucardo repeat %d/%d", r, b.cfg.repeats))
		if err != nil {
			return runs, err
		}
		runs = append(runs, br)
	}
	return runs, nil
}

// bucardo is section 3. It never fails the other sections: a failure of Bucardo is a
// FAIL line naming the step.
func (b *bench) bucardo(ctx context.Context) {
	sec := "bucardo"
	mode := b.cfg.bucardoMode
	missing, bin := bucardoTools()
	if mode == "install" && len(missing) > 0 {
		if err := installBucardo(ctx); err != nil {
			b.rep.fail("bucardo: installing Bucardo (apt-get install): %v", err)
			b.rep.text(sec, "Bucardo 5.6", "FAIL", "apt-get install failed: see FAIL lines below")
			b.bucardoReference(sec, "")
			return
		}
		missing, bin = bucardoTools()
	}
	if mode == "off" || len(missing) > 0 {
		how := "-bucardo off"
		if mode != "off" {
			how = "not installed: " + strings.Join(missing, ", ") + "; run with -bucardo install (apt-get, as root) to measure it"
		}
		b.bucardoReference(sec, how)
		return
	}
	runs, err := b.bucardoMeasure(ctx, bin)
	if err != nil {
		var se *stepError
		stepName := "Bucardo"
		if errors.As(err, &se) {
			stepName = se.step
		}
		b.rep.fail("bucardo: %v", err)
		b.rep.text(sec, "Bucardo 5.6", "FAIL", "at step: "+stepName+" (see FAIL lines below)")
	}
	if len(runs) == 0 {
		return
	}
	var wall, toCommit, sync, ins, del, conf, tps []float64
	for _, r := range runs {
		wall, toCommit, sync = append(wall, r.wall), append(toCommit, r.toCommit), append(sync, r.sync)
		ins, del, conf, tps = append(ins, r.inserts), append(del, r.deletes), append(conf, r.conflicts), append(tps, r.tps...)
	}
	cfg := b.cfg
	demo := fmt.Sprintf("private cluster, %d src + %d tgt, scale %d, %d tx/src", cfg.sources, cfg.targets, cfg.scale, cfg.tx)
	b.rep.add(sec, "Bucardo kick to done (CLI wall)", uSec, wall, demo+"; the CLI polls once per second")
	b.rep.add(sec, "Bucardo kick to commit", uSec, toCommit, "syncrun.ended - launch of bucardo kick")
	b.rep.add(sec, "Bucardo sync (syncrun)", uSec, sync, "syncrun.ended - started")
	b.rep.add(sec, "Bucardo inserts", uRows, ins, "distinct changed rows (ibex counts each once per receiving db)")
	b.rep.add(sec, "Bucardo deletes", uRows, del, "rows replaced in receiving dbs: compare with ibex's inserts")
	b.rep.add(sec, "Bucardo conflicts", uRows, conf, "")
	b.rep.add(sec, "pgbench on sources, Bucardo triggers on", uTPS, tps, "per source, during the load")
	b.rep.text(sec, "Bucardo converged", fmt.Sprintf("yes %d/%d", len(runs), cfg.repeats), "md5 fingerprint of every table equal in all dbs")
	if len(b.seedKick) == 0 {
		b.rep.text(sec, "ibex / Bucardo", "-", "needs the seed section in the same run (-sections seed,bucardo)")
		return
	}
	note := fmt.Sprintf("ibex seed median (%d repeats) / each Bucardo repeat, same run", len(b.seedKick))
	b.rep.add(sec, "ibex kick to done / Bucardo kick to done", uRatio, inverse(median(b.seedKick), wall), note)
	b.rep.add(sec, "ibex sync / Bucardo sync", uRatio, inverse(median(b.seedSync), sync), note)
	if len(b.parFloor) > 0 {
		b.rep.add(sec, "parallel floor / Bucardo kick to done", uRatio, inverse(median(b.parFloor), wall), "what plain SQL can reach against Bucardo")
	}
}

// inverse returns x / v[i] for every v[i] > 0.
func inverse(x float64, v []float64) []float64 {
	var out []float64
	for _, d := range v {
		if d > 0 {
			out = append(out, x/d)
		}
	}
	return out
}

// Reference figures from /work/shared/reference/bucardo-bench-report.md (final run, 5 repeats).
var (
	refBucardoCLIWall  = []float64{3.202, 3.216, 4.210, 3.203, 3.206}
	refBucardoKickDone = []float64{3.005, 2.695, 2.850, 2.933, 2.580}
	refBucardoSyncrun  = []float64{2.186, 2.085, 2.056, 2.024, 1.954}
)

const refBucardoWall = 3.2

// bucardoReference prints the reference figures (Bucardo not measured in this run) and,
// when how != "", a line saying why and how to get real ones.
func (b *bench) bucardoReference(sec, how string) {
	if how != "" {
		b.rep.text(sec, "Bucardo not measured in this run", "-", how)
	}
	ref := "reference, not measured in this run"
	b.rep.add(sec, "Bucardo 5.6 kick to done (CLI wall)", uSec, refBucardoCLIWall, ref)
	b.rep.add(sec, "Bucardo 5.6 kick to commit", uSec, refBucardoKickDone, ref)
	b.rep.add(sec, "Bucardo 5.6 sync (syncrun)", uSec, refBucardoSyncrun, ref+" (earlier run: median 1.78 s)")
	cfg := b.cfg
	if len(b.seedKick) == 0 {
		return
	}
	if cfg.scale != 1 || cfg.tx != 10000 || cfg.sources != 4 || cfg.targets != 1 {
		b.rep.text(sec, "ibex vs Bucardo reference", "-", "not comparable: the reference is 4 src + 1 tgt, scale 1, 10000 tx/src")
		return
	}
	b.rep.add(sec, "ibex kick to done / 3.2 s (reference)", uRatio, scaled(b.seedKick, 1/refBucardoWall), "against the reference, not a same-run baseline")
	b.rep.add(sec, "ibex sync / 2.056 s (reference)", uRatio, scaled(b.seedSync, 1/median(refBucardoSyncrun)), "against the reference, not a same-run baseline")
}
