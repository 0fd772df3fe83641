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
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Bucardo names, as in its 2011 demo.
const (
	bucSync  = "foobar"
	bucHerd  = "therd"
	bucGroup = "tgroup"
)

// bucardoTools reports what is missing to run Bucardo (empty: nothing): the bucardo
// CLI, the PostgreSQL pgMajor server binaries and its PL/Perl.
func bucardoTools() (missing []string) {
	if _, err := exec.LookPath("bucardo"); err != nil {
		missing = append(missing, "bucardo")
	}
	if m := missingServer(); m != "" {
		missing = append(missing, m)
	}
	if _, err := os.Stat(filepath.Join("/usr/lib/postgresql", pgMajor, "lib", "plperl.so")); err != nil {
		missing = append(missing, "postgresql-plperl-"+pgMajor)
	}
	return missing
}

// installBucardo runs apt-get install -y bucardo postgresql-plperl-15, with PL/Perl
// pinned to the installed server version so that apt does not upgrade the running
// server as a side effect.
func installBucardo(ctx context.Context) error {
	return aptInstall(ctx, "bucardo", "bucardo", pinnedToServer(ctx, "postgresql-plperl-"+pgMajor))
}

// bucCluster is the private cluster and Bucardo's files, all under its directory.
type bucCluster struct {
	*privCluster
	rc, piddir string
}

func (c *bucCluster) bucardo(ctx context.Context, args ...string) (string, error) {
	return c.run(ctx, "bucardo", append([]string{"--bucardorc", c.rc}, args...)...)
}

// newBucCluster creates and starts the private cluster and writes Bucardo's rc file.
func newBucCluster(ctx context.Context, main *env) (*bucCluster, error) {
	pc, err := newPrivCluster(ctx, main, "bucardo", "ibex-bench-bucardo-", nil)
	if pc == nil {
		return nil, err
	}
	c := &bucCluster{privCluster: pc, rc: filepath.Join(pc.dir, "bucardorc")}
	if err != nil {
		return c, err
	}
	if c.piddir, err = c.mkdir("run"); err != nil {
		return c, err
	}
	rc := fmt.Sprintf("dbhost = %s\ndbport = %d\ndbname = bucardo\ndbuser = bucardo\npiddir = %s\nlogdest = %s\n", c.sock, c.port, c.piddir, c.logdir)
	if err := os.WriteFile(c.rc, []byte(rc), 0o644); err != nil {
		return c, fmt.Errorf("writing %s: %w", c.rc, err)
	}
	_ = os.Chown(c.rc, c.uid, c.gid)
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
	if c.piddir != "" {
		c.stopBucardo()
	}
	c.privCluster.destroy()
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
func (b *bench) bucardoMeasure(ctx context.Context) ([]bucRun, error) {
	c, err := newBucCluster(ctx, b.env)
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
	missing := bucardoTools()
	if mode == "install" && len(missing) > 0 {
		if err := installBucardo(ctx); err != nil {
			b.rep.fail("bucardo: installing Bucardo (apt-get install): %v", err)
			b.rep.text(sec, "Bucardo 5.6", "FAIL", "apt-get install failed: see FAIL lines below")
			b.bucardoReference(sec, "")
			return
		}
		missing = bucardoTools()
	}
	if mode == "off" || len(missing) > 0 {
		how := "-bucardo off"
		if mode != "off" {
			how = "not installed: " + strings.Join(missing, ", ") + "; run with -bucardo install (apt-get, as root) to measure it"
		}
		b.bucardoReference(sec, how)
		return
	}
	runs, err := b.bucardoMeasure(ctx)
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
