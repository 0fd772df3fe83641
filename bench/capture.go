package main

// The capture section: what ibex's capture triggers cost the application writing a source,
// against the same pgbench without them, and against what a logical replication
// publication costs (wal_level = logical, a publication of the same tables, a slot being
// consumed).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/control"
)

// The capture section's systems (capSystem.key).
const (
	capPlain   = "plain"
	capCapture = "capture"
	capPub     = "publication"
)

// capPubName and capSlot are the publication and logical slot of the logical cluster.
const (
	capPubName = "ibex_bench_pub"
	capSlot    = "ibex_bench_slot"
)

// capSystem is one database the capture section runs pgbench on, and what it measured
// there, one value per round.
type capSystem struct {
	key     string
	at      *env         // its server
	cluster *privCluster // nil: the harness's server (shared with other sessions)
	db      string
	oid     uint32
	walDB   string // a database of its server with pg_walinspect; "" when it could not be installed
	// tps, wal (bytes per transaction), cpu (the cluster's CPU seconds per transaction:
	// private clusters only) and p10 (the 10th percentile of the transactions' latencies,
	// seconds) of each round.
	tps, wal, cpu, p10 []float64
}

// capSetup is what the capture section runs on, and what it leaves to stop at the end.
type capSetup struct {
	systems []*capSystem
	info    string // for the report's header
	stop    []func()
}

func (s *capSetup) close() {
	for i := len(s.stop) - 1; i >= 0; i-- {
		s.stop[i]()
	}
}

func (s *capSetup) system(key string) *capSystem {
	for _, sys := range s.systems {
		if sys.key == key {
			return sys
		}
	}
	return nil
}

// loadNow is the load average (1, 5, 15 minutes) as /proc/loadavg says, "?" without it.
func loadNow() string {
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			return strings.Join(f[:3], " ")
		}
	}
	return "?"
}

// ---- 4: capture overhead on pgbench

func (b *bench) capture(ctx context.Context) error {
	cfg := b.cfg
	progress("capture: load average %s at the start", loadNow())
	var set *capSetup
	var err error
	if cfg.capturePrivate {
		if m := missingServer(); m != "" {
			progress("capture: missing %s: no private clusters, the harness's server only, no publication", m)
		} else {
			set, err = b.captureClustersSetup(ctx)
			if err != nil {
				if set != nil {
					set.close()
				}
				return err
			}
		}
	}
	if set == nil {
		if set, err = b.captureHarnessSetup(ctx); err != nil {
			return err
		}
	}
	defer set.close()
	b.captureInfo = set.info
	sec := "capture"
	plain, capt, pub := set.system(capPlain), set.system(capCapture), set.system(capPub)
	for _, script := range cfg.captureScripts {
		args := []string{"-n", "-b", script, "-T", strconv.Itoa(cfg.captureSeconds), "-c", "2", "-j", "2"}
		for _, sys := range set.systems {
			sys.tps, sys.wal, sys.cpu, sys.p10 = nil, nil, nil, nil
			progress("capture %s: warm-up of %s: pg_prewarm of the pgbench tables and their keys, pgbench -n -b %s -T 3 -c 2 -j 2 (not recorded)", script, sys.key, script)
			if err := capWarmUp(ctx, sys, script); err != nil {
				return err
			}
		}
		for r := 0; r < cfg.capturePairs; r++ {
			// Each round runs every system once; the order turns by one each round, so each
			// takes each place in turn.
			order := slices.Clone(set.systems)
			k := r % len(order)
			order = append(order[k:], order[:k]...)
			for _, sys := range order {
				label := fmt.Sprintf("capture %s round %d/%d, %s", script, r+1, cfg.capturePairs, sys.key)
				if err := capRun(ctx, label, sys, args); err != nil {
					return err
				}
			}
		}
		progress("capture %s: load average %s", script, loadNow())
		b.captureReport(sec, script, plain, capt, pub)
	}
	progress("capture: load average %s at the end", loadNow())
	if plain.cluster == nil {
		return b.env.dropNow(ctx, cfg.keep, prefix+"cap_ctl", capt.db, prefix+"cap_target", plain.db)
	}
	return nil
}

// captureReport adds the figures of one script.
func (b *bench) captureReport(sec, script string, plain, capt, pub *capSystem) {
	cfg := b.cfg
	where := "the harness's server"
	if plain.cluster != nil {
		where = "a private cluster (wal_level=replica)"
	}
	note := fmt.Sprintf("pgbench -n -b %s -T %d -c 2 -j 2, scale %d, on %s; interleaved rounds", script, cfg.captureSeconds, cfg.scale, where)
	b.rep.add(sec, script+": pgbench without capture", uTPS, plain.tps, note)
	b.rep.add(sec, script+": pgbench with ibex capture", uTPS, capt.tps, "same server, one db each")
	if pub != nil {
		b.rep.add(sec, script+": pgbench with a publication, slot consumed", uTPS, pub.tps, "a private cluster with wal_level=logical, pg_recvlogical (pgoutput) consuming")
	}
	cr := ratios(capt.tps, plain.tps)
	b.rep.add(sec, script+": TPS ratio capture / without", uRatio, cr, "target >= 0.95 (issue 18): median of the rounds' ratios; Bucardo's triggers: 0.74-0.86")
	b.rep.text(sec, script+": the rounds' capture ratios, sorted", spread(cr), "between the quartiles in brackets")
	if pub != nil {
		pr := ratios(pub.tps, plain.tps)
		b.rep.add(sec, script+": TPS ratio publication / without", uRatio, pr, "the same rounds")
		b.rep.text(sec, script+": the rounds' publication ratios, sorted", spread(pr), "")
	}
	b.rep.add(sec, script+": latency p10 without capture", uMs, plain.p10, "the 10th percentile of the run's transaction latencies (pgbench -l): the transactions that waited least for the CPU")
	b.rep.add(sec, script+": latency p10 with capture", uMs, capt.p10, "")
	if pub != nil {
		b.rep.add(sec, script+": latency p10 with a publication", uMs, pub.p10, "")
	}
	b.rep.add(sec, script+": latency p10 ratio without / capture", uRatio, ratios(plain.p10, capt.p10), "per round; read as a TPS ratio (1: capture costs nothing)")
	if pub != nil {
		b.rep.add(sec, script+": latency p10 ratio without / publication", uRatio, ratios(plain.p10, pub.p10), "per round")
	}
	walNote := "the WAL records of the run touching its db, without full-page images (pg_walinspect) / its transactions"
	if plain.cluster != nil {
		walNote = "the run's WAL records touching its db or no relation (commits), without full-page images (pg_walinspect) / its transactions"
	}
	if plain.walDB == "" {
		walNote = "the server's WAL over the run / its transactions (other sessions' WAL too)"
	}
	b.rep.add(sec, script+": WAL bytes/tx without capture", uRows, plain.wal, walNote)
	b.rep.add(sec, script+": WAL bytes/tx with capture", uRows, capt.wal, "")
	if pub != nil {
		b.rep.add(sec, script+": WAL bytes/tx with a publication (wal_level=logical)", uRows, pub.wal, "")
	}
	b.rep.add(sec, script+": WAL bytes/tx capture adds", uRows, []float64{median(capt.wal) - median(plain.wal)}, "median with - median without")
	if pub != nil {
		b.rep.add(sec, script+": WAL bytes/tx a publication adds", uRows, []float64{median(pub.wal) - median(plain.wal)}, "median logical - median replica")
	}
	if len(plain.cpu) > 0 && len(capt.cpu) > 0 {
		b.rep.add(sec, script+": server CPU/tx without capture", uUs, plain.cpu, "the cluster's processes (/proc), over the run / its transactions")
		b.rep.add(sec, script+": server CPU/tx with capture", uUs, capt.cpu, "")
		if pub != nil && len(pub.cpu) > 0 {
			b.rep.add(sec, script+": server CPU/tx with a publication", uUs, pub.cpu, "the walsender's decoding included, pg_recvlogical's not")
		}
		b.rep.add(sec, script+": server CPU/tx ratio capture / without", uRatio, ratios(capt.cpu, plain.cpu), "per round")
		if pub != nil && len(pub.cpu) > 0 {
			b.rep.add(sec, script+": server CPU/tx ratio publication / without", uRatio, ratios(pub.cpu, plain.cpu), "per round")
		}
	}
}

// spread lists ratios sorted, those between the quartiles in brackets (the middle half).
func spread(v []float64) string {
	s := slices.Sorted(slices.Values(v))
	if len(s) == 0 {
		return "-"
	}
	n := float64(len(s) - 1)
	lo, hi := int(math.Ceil(n/4)), int(math.Floor(3*n/4))
	parts := make([]string, len(s))
	for i, x := range s {
		parts[i] = fmt.Sprintf("%.2f", x)
		if i == lo {
			parts[i] = "[" + parts[i]
		}
		if i == hi {
			parts[i] += "]"
		}
	}
	return strings.Join(parts, " ")
}

// captureHarnessSetup makes the section's databases on the harness's server: plain
// (pgbench -i) and capture and a target from it, with the sync capturing capture's tables.
func (b *bench) captureHarnessSetup(ctx context.Context) (*capSetup, error) {
	cfg := b.cfg
	plain, capt, tgt, ctl := prefix+"cap_plain", prefix+"cap_capture", prefix+"cap_target", prefix+"cap_ctl"
	progress("capture: creating %s (pgbench -i -s %d), %s and %s from it, and a sync %s -> %s", plain, cfg.scale, capt, tgt, capt, tgt)
	if err := capDBs(ctx, b.env, plain, capt, tgt, ctl, cfg.scale); err != nil {
		return nil, err
	}
	set := &capSetup{info: fmt.Sprintf("the harness's server (shared with other sessions): %s and %s", plain, capt)}
	walDB := plain
	if c, err := b.env.connect(ctx, plain); err == nil {
		if _, err := c.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_walinspect`); err != nil {
			progress("capture: pg_walinspect not available (%v): WAL bytes/tx are the whole server's", err)
			walDB = ""
		}
		_ = c.Close(ctx)
	}
	for _, p := range [][2]string{{capPlain, plain}, {capCapture, capt}} {
		sys := &capSystem{key: p[0], at: b.env, db: p[1], walDB: walDB}
		if err := b.env.admin.QueryRow(ctx, `SELECT oid FROM pg_database WHERE datname = $1`, sys.db).Scan(&sys.oid); err != nil {
			return nil, fmt.Errorf("reading the oid of %s: %w", sys.db, err)
		}
		set.systems = append(set.systems, sys)
	}
	return set, nil
}

// capDBs makes plain (pgbench -i -s scale), capt and tgt from it, and the sync capt ->
// tgt (control database ctl) on e's server.
func capDBs(ctx context.Context, e *env, plain, capt, tgt, ctl string, scale int) error {
	if err := e.create(ctx, plain, "", false); err != nil {
		return err
	}
	if err := e.pgbenchInit(ctx, plain, scale); err != nil {
		return err
	}
	for _, db := range []string{capt, tgt} {
		if err := e.create(ctx, db, plain, false); err != nil {
			return err
		}
	}
	if err := e.setupSync(ctx, ctl, []string{capt, tgt}, []string{control.RoleSource, control.RoleTarget}); err != nil {
		return fmt.Errorf("configuring the sync: %w", err)
	}
	return nil
}

// captureClustersSetup makes two private clusters with the harness's settings: one with
// wal_level = replica holding the databases without and with capture (as the harness's
// server does), one with wal_level = logical holding the same pgbench database with a
// publication of the tables ibex captures and a logical slot that pg_recvlogical consumes
// (pgoutput, as a subscription would) all along. Their WAL and CPU are the runs' own.
func (b *bench) captureClustersSetup(ctx context.Context) (set *capSetup, err error) {
	cfg := b.cfg
	set = &capSetup{}
	var clusters [2]*privCluster
	for i, level := range []string{"replica", "logical"} {
		extra := [][2]string{{"wal_level", level}, {"max_wal_senders", "10"}, {"max_replication_slots", "10"}}
		c, err := newPrivCluster(ctx, b.env, "capture "+level, "ibex-bench-capture-"+level+"-", extra)
		if c != nil {
			set.stop = append(set.stop, func() {
				progress("capture: stopping the private %s cluster, removing %s", c.label, c.dir)
				c.destroy()
			})
		}
		if err != nil {
			if c != nil {
				err = fmt.Errorf("%w\nserver log:\n%s", err, c.logTail(2000))
			}
			return set, fmt.Errorf("creating the private cluster with wal_level=%s: %w", level, err)
		}
		if _, err := c.db.admin.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_walinspect`); err != nil {
			return set, fmt.Errorf("the %s cluster: CREATE EXTENSION pg_walinspect: %w", c.label, err)
		}
		clusters[i] = c
	}
	rc, lc := clusters[0], clusters[1]
	plain, capt, tgt, ctl, pubDB := prefix+"cap_plain", prefix+"cap_capture", prefix+"cap_target", prefix+"cap_ctl", prefix+"cap_pub"
	progress("capture: on the replica cluster, %s (pgbench -i -s %d), %s and %s from it, and a sync %s -> %s", plain, cfg.scale, capt, tgt, capt, tgt)
	if err := capDBs(ctx, rc.db, plain, capt, tgt, ctl, cfg.scale); err != nil {
		return set, err
	}
	progress("capture: on the logical cluster, %s (pgbench -i -s %d), publication %s of %s, slot %s consumed by pg_recvlogical", pubDB, cfg.scale, capPubName, tableNames(pgbenchTables), capSlot)
	if err := lc.db.create(ctx, pubDB, "", false); err != nil {
		return set, err
	}
	if err := lc.db.pgbenchInit(ctx, pubDB, cfg.scale); err != nil {
		return set, err
	}
	conn, err := lc.db.connect(ctx, pubDB)
	if err != nil {
		return set, err
	}
	var tables []string
	for _, t := range pgbenchTables {
		tables = append(tables, pgx.Identifier{"public", t.name}.Sanitize())
	}
	_, err = conn.Exec(ctx, `CREATE PUBLICATION `+pgx.Identifier{capPubName}.Sanitize()+` FOR TABLE `+strings.Join(tables, ", "))
	_ = conn.Close(ctx)
	if err != nil {
		return set, fmt.Errorf("creating the publication: %w", err)
	}
	stop, err := capConsume(ctx, lc, pubDB)
	if stop != nil {
		set.stop = append(set.stop, stop)
	}
	if err != nil {
		return set, err
	}
	for _, s := range []struct {
		key string
		c   *privCluster
		db  string
	}{{capPlain, rc, plain}, {capCapture, rc, capt}, {capPub, lc, pubDB}} {
		sys := &capSystem{key: s.key, at: s.c.db, cluster: s.c, db: s.db, walDB: "postgres"}
		if err := s.c.db.admin.QueryRow(ctx, `SELECT oid FROM pg_database WHERE datname = $1`, s.db).Scan(&sys.oid); err != nil {
			return set, fmt.Errorf("reading the oid of %s: %w", s.db, err)
		}
		set.systems = append(set.systems, sys)
	}
	set.info = fmt.Sprintf("two private clusters with the harness's settings: wal_level=replica (%s without, %s with ibex capture) and wal_level=logical (%s: publication %s, slot %s consumed by pg_recvlogical, pgoutput)",
		plain, capt, pubDB, capPubName, capSlot)
	return set, nil
}

// capConsume creates the logical slot on db of cluster c and starts pg_recvlogical
// consuming it (pgoutput, the publication's changes, written to /dev/null, confirmed every
// second), then waits until the slot is active. stop ends it.
func capConsume(ctx context.Context, c *privCluster, db string) (stop func(), err error) {
	conn, err := c.db.connect(ctx, db)
	if err != nil {
		return nil, err
	}
	_, err = conn.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, capSlot)
	_ = conn.Close(ctx)
	if err != nil {
		return nil, fmt.Errorf("creating the logical slot: %w", err)
	}
	var out bytes.Buffer
	cmd := c.command(ctx, filepath.Join(c.bin, "pg_recvlogical"), "-d", db, "--slot", capSlot, "--start", "--no-loop",
		"-o", "proto_version=1", "-o", "publication_names="+capPubName, "-f", "/dev/null", "-s", "1", "-F", "1")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting pg_recvlogical: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stop = func() {
		select {
		case err := <-done:
			progress("capture: pg_recvlogical had ended (%v): %s", err, tail(out.Bytes(), 500))
			return
		default:
		}
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		select {
		case err := <-done:
			done <- err
			return stop, fmt.Errorf("pg_recvlogical ended: %v\n%s", err, tail(out.Bytes(), 2000))
		default:
		}
		var active bool
		if err := c.db.admin.QueryRow(ctx, `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, capSlot).Scan(&active); err != nil {
			return stop, fmt.Errorf("reading the logical slot's state: %w", err)
		}
		if active {
			return stop, nil
		}
		if time.Now().After(deadline) {
			return stop, errors.New("the logical slot is not active 30 s after pg_recvlogical started")
		}
	}
}

// capWarmUp reads sys's pgbench tables and their keys into shared_buffers (pg_prewarm when
// the server has it) and runs script for 3 s: every system starts with the same cache.
func capWarmUp(ctx context.Context, sys *capSystem, script string) error {
	c, err := sys.at.connect(ctx, sys.db)
	if err != nil {
		return err
	}
	if _, err := c.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_prewarm`); err == nil {
		if _, err := c.Exec(ctx, `SELECT pg_prewarm(c.oid) FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'i') AND c.relname LIKE 'pgbench\_%'`); err != nil {
			_ = c.Close(ctx)
			return fmt.Errorf("pg_prewarm in %s: %w", sys.db, err)
		}
	}
	_ = c.Close(ctx)
	_, err = sys.at.pgbench(ctx, sys.db, "-n", "-b", script, "-T", "3", "-c", "2", "-j", "2")
	return err
}

// capRun is one timed pgbench run on sys. Before it, pgbench's own tables are reset as
// pgbench does without -n (history emptied, the small tables vacuumed: the runs start
// alike, whatever ran before) and the server checkpoints; the run's WAL is kept by a
// temporary slot until it is read.
func capRun(ctx context.Context, label string, sys *capSystem, args []string) error {
	e := sys.at
	c, err := e.connect(ctx, sys.db)
	if err != nil {
		return err
	}
	for _, s := range []string{`TRUNCATE pgbench_history`, `VACUUM pgbench_branches, pgbench_tellers`} {
		if _, err := c.Exec(ctx, s); err != nil {
			_ = c.Close(ctx)
			return fmt.Errorf("%s in %s: %w", s, sys.db, err)
		}
	}
	_ = c.Close(ctx)
	if err := e.checkpoint(ctx); err != nil {
		return err
	}
	if sys.walDB != "" {
		if _, err := e.admin.Exec(ctx, `SELECT pg_create_physical_replication_slot($1, true, true)`, prefix+"wal"); err != nil {
			return fmt.Errorf("creating a temporary replication slot to keep the run's WAL: %w", err)
		}
	}
	lsn0, err := e.walLSN(ctx)
	if err != nil {
		return err
	}
	var cpu0 time.Duration
	cpuOK := sys.cluster != nil
	if cpuOK {
		if cpu0, err = capServerCPU(ctx, sys); err != nil {
			progress("%s: no CPU figures: %v", label, err)
			cpuOK = false
		}
	}
	logDir, err := os.MkdirTemp("", "ibex-bench-capture-log-")
	if err != nil {
		return fmt.Errorf("creating a directory for pgbench's transaction log: %w", err)
	}
	defer os.RemoveAll(logDir)
	res, err := e.pgbenchRun(ctx, sys.db, append(slices.Clone(args), "-l", "--log-prefix", filepath.Join(logDir, "tx"))...)
	if err != nil {
		return err
	}
	lat, err := txLatencies(logDir)
	if err != nil {
		return err
	}
	var cpu time.Duration
	if cpuOK {
		if err := capBackendsGone(ctx, e, sys.db); err != nil {
			return err
		}
		cpu1, err := capServerCPU(ctx, sys)
		if err != nil {
			return err
		}
		cpu = cpu1 - cpu0
	}
	lsn1, err := e.walLSN(ctx)
	if err != nil {
		return err
	}
	bytes := lsn1 - lsn0
	if sys.walDB != "" {
		bytes, err = e.walOfDB(ctx, sys.walDB, sys.oid, lsn0, lsn1, sys.cluster != nil)
		if _, derr := e.admin.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, prefix+"wal"); derr != nil && err == nil {
			err = derr
		}
		if err != nil {
			return err
		}
	}
	if res.tx == 0 {
		return fmt.Errorf("%s: pgbench processed no transaction", label)
	}
	perTx := float64(bytes) / float64(res.tx)
	p10 := quantile(lat, 0.1)
	sys.tps, sys.wal, sys.p10 = append(sys.tps, res.tps), append(sys.wal, perTx), append(sys.p10, p10)
	line := fmt.Sprintf("%s: pgbench %s on %s: %.1f tps, latency p10 %.2f ms, %.0f WAL bytes/tx", label, strings.Join(args, " "), sys.db, res.tps, p10*1000, perTx)
	if cpuOK {
		perCPU := cpu.Seconds() / float64(res.tx)
		sys.cpu = append(sys.cpu, perCPU)
		line += fmt.Sprintf(", server CPU %.0f µs/tx", perCPU*1e6)
	}
	progress("%s (load %s)", line, loadNow())
	return nil
}

// capServerCPU is the CPU time sys's cluster has used (serverCPU), read once no child of
// its postmaster waits to be reaped (at most 5 s).
func capServerCPU(ctx context.Context, sys *capSystem) (time.Duration, error) {
	for deadline := time.Now().Add(5 * time.Second); ; {
		cpu, zombies, err := serverCPU(filepath.Join(sys.cluster.data, "postmaster.pid"))
		if err != nil || zombies == 0 {
			return cpu, err
		}
		if time.Now().After(deadline) {
			return cpu, fmt.Errorf("the cluster's postmaster has not reaped %d ended children in 5 s", zombies)
		}
		select {
		case <-ctx.Done():
			return cpu, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// txLatencies reads the latencies (seconds) of the transactions pgbench -l logged in dir
// (one file per thread; the third field of each line is the latency in microseconds).
func txLatencies(dir string) ([]float64, error) {
	files, err := filepath.Glob(filepath.Join(dir, "tx*"))
	if err != nil {
		return nil, err
	}
	var lat []float64
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading pgbench's transaction log: %w", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			fields := strings.Fields(line)
			if len(fields) < 3 {
				continue
			}
			us, err := strconv.ParseFloat(fields[2], 64)
			if err != nil {
				return nil, fmt.Errorf("pgbench's transaction log %s: %q: %w", f, line, err)
			}
			lat = append(lat, us/1e6)
		}
	}
	if len(lat) == 0 {
		return nil, fmt.Errorf("pgbench logged no transaction in %s", dir)
	}
	return lat, nil
}

// quantile is the q-quantile of v (nearest rank).
func quantile(v []float64, q float64) float64 {
	s := slices.Sorted(slices.Values(v))
	if len(s) == 0 {
		return math.NaN()
	}
	return s[min(len(s)-1, max(0, int(math.Ceil(q*float64(len(s))))-1))]
}

// capBackendsGone waits (at most 5 s) until the client backends of db have ended, so that
// the postmaster has counted their CPU time.
func capBackendsGone(ctx context.Context, e *env, db string) error {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var n int
		if err := e.admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid()`, db).Scan(&n); err != nil {
			return fmt.Errorf("waiting for pgbench's sessions to end: %w", err)
		}
		if n == 0 || time.Now().After(deadline) {
			// A backend leaves pg_stat_activity a moment before its process exits, and
			// right after a backend ended, its CPU time was seen missing from the
			// postmaster's reaped children and from /proc alike for a while (a tenth of
			// the runs, up to 0.5 s).
			time.Sleep(500 * time.Millisecond)
			return nil
		}
	}
}
