package main

// The peers section: ibex side by side with PostgreSQL's native logical replication
// (publication / subscription) and, when installed, pglogical, one source -> one target,
// measured in the same run on the same two private clusters (wal_level = logical,
// pglogical preloaded): the catch-up of a backlog of pgbench transactions, of a backlog
// of a million changed rows, and commit-to-visible latency under a steady pgbench load.
// See bench/README.md, "peers".

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/control"
)

const (
	peerPub      = "ibex_bench_pub" // the native publication
	peerSub      = "ibex_bench_sub" // the native and the pglogical subscription
	peerProvider = "ibex_bench_provider"
	peerReceiver = "ibex_bench_subscriber"
	// peerMarkBase is the aid of the first marker row, far above pgbench's accounts.
	peerMarkBase = 100_000_000
	// peerClients is the pgbench clients of the backlog and steady loads.
	peerClients = 4
	// Bounds of the waits.
	peerSettle     = 90 * time.Second // replication starting or stopping
	peerCatchUpMax = 30 * time.Minute // one catch-up
	peerLoadMax    = 30 * time.Minute // one backlog load
	peerTailMax    = 30 * time.Second // the last steady markers becoming visible
	// How often the target is polled: for the markers of the steady load, and for the
	// marker that ends a catch-up (which lasts seconds).
	peerPoll      = 5 * time.Millisecond
	peerCatchPoll = 10 * time.Millisecond
	peerMarkEvery = 100 * time.Millisecond
)

// peerTables are the replicated tables: pgbench's three keyed tables and pgbench_history,
// which gets a bigserial primary key hid in the templates (ibex needs a key; pgbench names
// its columns, so its inserts fill hid from the sequence).
var peerTables = slices.Concat(pgbenchTables, []tableSpec{{"pgbench_history", "hid"}})

// peerSet is what one system replicates: database src of cluster S into database tgt of
// cluster T.
type peerSet struct {
	s, t     *privCluster
	src, tgt string
	ctl      string // ibex's control database, on S
	nextMark int
	// srcConn and tgtConn are the harness's sessions: markers and polls.
	srcConn, tgtConn *pgx.Conn
}

func (p *peerSet) srcInfo() string {
	return fmt.Sprintf("host=%s port=%d dbname=%s user=postgres", p.s.sock, p.s.port, p.src)
}

func (p *peerSet) tgtInfo() string {
	return fmt.Sprintf("host=%s port=%d dbname=%s user=postgres", p.t.sock, p.t.port, p.tgt)
}

// mark commits a marker row on the source and returns its aid. The replicators apply the
// source's transactions in commit order (native and pglogical) or take everything
// committed before a run (ibex), so once the marker is on the target so is every
// transaction committed before it.
func (p *peerSet) mark(ctx context.Context) (int, time.Time, error) {
	aid := peerMarkBase + p.nextMark
	p.nextMark++
	if _, err := p.srcConn.Exec(ctx, `INSERT INTO pgbench_accounts (aid, bid, abalance, filler) VALUES ($1, 1, 0, 'ibex bench marker')`, aid); err != nil {
		return 0, time.Time{}, fmt.Errorf("inserting marker %d on %s: %w", aid, p.src, err)
	}
	return aid, time.Now(), nil
}

// waitMark polls the target until it holds marker aid.
func (p *peerSet) waitMark(ctx context.Context, aid int, limit time.Duration) error {
	return waitFor(ctx, fmt.Sprintf("marker %d on %s", aid, p.tgt), limit, peerCatchPoll, func(ctx context.Context) (bool, error) {
		var ok bool
		err := p.tgtConn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pgbench_accounts WHERE aid = $1)`, aid).Scan(&ok)
		return ok, err
	})
}

// waitFor calls cond every `every` until it is true, for at most limit.
func waitFor(ctx context.Context, what string, limit, every time.Duration, cond func(ctx context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		ok, err := cond(ctx)
		if ok && err == nil {
			return nil
		}
		if ctx.Err() != nil {
			if err == nil {
				err = ctx.Err()
			}
			return fmt.Errorf("waiting for %s (at most %s): %w", what, limit, err)
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(every):
		}
	}
}

// slotState waits until replication slot name on S streams to a walsender (streaming) or
// is released (not streaming).
func (p *peerSet) slotState(ctx context.Context, name string, streaming bool) error {
	q := `SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND NOT active)`
	what := "slot " + name + " on the source released"
	if streaming {
		q = `SELECT EXISTS (SELECT 1 FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = $1 AND r.state = 'streaming')`
		what = "slot " + name + " on the source streaming"
	}
	return waitFor(ctx, what, peerSettle, 50*time.Millisecond, func(ctx context.Context) (bool, error) {
		var ok bool
		err := p.s.db.admin.QueryRow(ctx, q, name).Scan(&ok)
		return ok, err
	})
}

// replicator is one replication system from the source db to the target db.
type replicator interface {
	name() string
	key() string // short, in database names
	// setup configures replication of peerTables and returns once it runs, with nothing pending.
	setup(ctx context.Context, p *peerSet) error
	// pause stops applying changes: they stay pending on the source.
	pause(ctx context.Context, p *peerSet) error
	// catchUp resumes and returns once the target holds marker mark and what the source
	// committed before it.
	catchUp(ctx context.Context, p *peerSet, mark int) error
	// follow makes the target follow the source continuously until stop.
	follow(ctx context.Context, p *peerSet) (stop func() error, err error)
	// teardown undoes setup (best effort: the harness then removes any slot left).
	teardown(ctx context.Context, p *peerSet) error
}

// ---- native logical replication

type nativeLR struct{}

func (nativeLR) name() string { return "logical replication" }
func (nativeLR) key() string  { return "lr" }

func (nativeLR) setup(ctx context.Context, p *peerSet) error {
	var tables []string
	for _, t := range peerTables {
		tables = append(tables, pgx.Identifier{t.name}.Sanitize())
	}
	if _, err := p.srcConn.Exec(ctx, `CREATE PUBLICATION `+pgx.Identifier{peerPub}.Sanitize()+` FOR TABLE `+strings.Join(tables, ", ")); err != nil {
		return fmt.Errorf("CREATE PUBLICATION on %s: %w", p.src, err)
	}
	// copy_data = false: the target already holds the same rows (the same template).
	if _, err := p.tgtConn.Exec(ctx, `CREATE SUBSCRIPTION `+pgx.Identifier{peerSub}.Sanitize()+` CONNECTION `+sqlLiteral(p.srcInfo())+
		` PUBLICATION `+pgx.Identifier{peerPub}.Sanitize()+` WITH (copy_data = false)`); err != nil {
		return fmt.Errorf("CREATE SUBSCRIPTION on %s: %w", p.tgt, err)
	}
	return p.slotState(ctx, peerSub, true)
}

func (nativeLR) alter(ctx context.Context, p *peerSet, what string) error {
	if _, err := p.tgtConn.Exec(ctx, `ALTER SUBSCRIPTION `+pgx.Identifier{peerSub}.Sanitize()+` `+what); err != nil {
		return fmt.Errorf("ALTER SUBSCRIPTION %s %s on %s: %w", peerSub, what, p.tgt, err)
	}
	return nil
}

func (n nativeLR) pause(ctx context.Context, p *peerSet) error {
	if err := n.alter(ctx, p, "DISABLE"); err != nil {
		return err
	}
	return p.slotState(ctx, peerSub, false)
}

func (n nativeLR) catchUp(ctx context.Context, p *peerSet, mark int) error {
	if err := n.alter(ctx, p, "ENABLE"); err != nil {
		return err
	}
	return p.waitMark(ctx, mark, peerCatchUpMax)
}

func (nativeLR) follow(context.Context, *peerSet) (func() error, error) {
	return func() error { return nil }, nil
}

func (nativeLR) teardown(ctx context.Context, p *peerSet) error {
	// Also drops the slot on the source.
	if _, err := p.tgtConn.Exec(ctx, `DROP SUBSCRIPTION IF EXISTS `+pgx.Identifier{peerSub}.Sanitize()); err != nil {
		return fmt.Errorf("DROP SUBSCRIPTION on %s: %w", p.tgt, err)
	}
	return nil
}

// ---- pglogical

type pglogical struct {
	slot string // its slot on the source, once set up
}

func (*pglogical) name() string { return "pglogical" }
func (*pglogical) key() string  { return "pgl" }

func (g *pglogical) setup(ctx context.Context, p *peerSet) error {
	for _, st := range []struct {
		c    *pgx.Conn
		db   string
		sql  string
		args []any
	}{
		{p.srcConn, p.src, `CREATE EXTENSION IF NOT EXISTS pglogical`, nil},
		{p.srcConn, p.src, `SELECT pglogical.create_node(node_name := $1, dsn := $2)`, []any{peerProvider, p.srcInfo()}},
		{p.tgtConn, p.tgt, `CREATE EXTENSION IF NOT EXISTS pglogical`, nil},
		{p.tgtConn, p.tgt, `SELECT pglogical.create_node(node_name := $1, dsn := $2)`, []any{peerReceiver, p.tgtInfo()}},
	} {
		if _, err := st.c.Exec(ctx, st.sql, st.args...); err != nil {
			return fmt.Errorf("%s on %s: %w", st.sql, st.db, err)
		}
	}
	for _, t := range peerTables {
		if _, err := p.srcConn.Exec(ctx, `SELECT pglogical.replication_set_add_table('default', $1::regclass)`, pgx.Identifier{"public", t.name}.Sanitize()); err != nil {
			return fmt.Errorf("pglogical.replication_set_add_table of %s on %s: %w", t.name, p.src, err)
		}
	}
	// synchronize_data = false: the target already holds the same rows.
	if _, err := p.tgtConn.Exec(ctx, `SELECT pglogical.create_subscription(subscription_name := $1, provider_dsn := $2,
		replication_sets := ARRAY['default'], synchronize_structure := false, synchronize_data := false)`, peerSub, p.srcInfo()); err != nil {
		return fmt.Errorf("pglogical.create_subscription on %s: %w", p.tgt, err)
	}
	var status string
	err := waitFor(ctx, "the pglogical subscription replicating", peerSettle, 50*time.Millisecond, func(ctx context.Context) (bool, error) {
		err := p.tgtConn.QueryRow(ctx, `SELECT status, slot_name FROM pglogical.show_subscription_status($1)`, peerSub).Scan(&status, &g.slot)
		return status == "replicating", err
	})
	if err != nil {
		return fmt.Errorf("%w (status %q)", err, status)
	}
	return p.slotState(ctx, g.slot, true)
}

func (g *pglogical) pause(ctx context.Context, p *peerSet) error {
	if _, err := p.tgtConn.Exec(ctx, `SELECT pglogical.alter_subscription_disable($1, true)`, peerSub); err != nil {
		return fmt.Errorf("pglogical.alter_subscription_disable on %s: %w", p.tgt, err)
	}
	return p.slotState(ctx, g.slot, false)
}

func (g *pglogical) catchUp(ctx context.Context, p *peerSet, mark int) error {
	if _, err := p.tgtConn.Exec(ctx, `SELECT pglogical.alter_subscription_enable($1, true)`, peerSub); err != nil {
		return fmt.Errorf("pglogical.alter_subscription_enable on %s: %w", p.tgt, err)
	}
	return p.waitMark(ctx, mark, peerCatchUpMax)
}

func (*pglogical) follow(context.Context, *peerSet) (func() error, error) {
	return func() error { return nil }, nil
}

func (*pglogical) teardown(ctx context.Context, p *peerSet) error {
	var errs []error
	// drop_subscription also drops the slot on the source.
	if _, err := p.tgtConn.Exec(ctx, `SELECT pglogical.drop_subscription($1, true)`, peerSub); err != nil {
		errs = append(errs, fmt.Errorf("pglogical.drop_subscription on %s: %w", p.tgt, err))
	}
	for _, n := range []struct {
		c        *pgx.Conn
		db, node string
	}{{p.tgtConn, p.tgt, peerReceiver}, {p.srcConn, p.src, peerProvider}} {
		if _, err := n.c.Exec(ctx, `SELECT pglogical.drop_node($1, true)`, n.node); err != nil {
			errs = append(errs, fmt.Errorf("pglogical.drop_node on %s: %w", n.db, err))
		}
	}
	return errors.Join(errs...)
}

// ---- ibex

type ibexPeer struct {
	b *bench
}

func (ibexPeer) name() string { return "ibex" }
func (ibexPeer) key() string  { return "ibex" }

// setup configures a sync source -> target of peerTables (control database on S) and
// kicks it once (its first run takes the tables in; native and pglogical are streaming
// when their catch-up starts).
func (ibexPeer) setup(ctx context.Context, p *peerSet) error {
	members := []syncMember{{dbRef{p.s.db, p.src}, control.RoleSource}, {dbRef{p.t.db, p.tgt}, control.RoleTarget}}
	if err := p.s.db.setupSyncOf(ctx, p.ctl, members, peerTables); err != nil {
		return fmt.Errorf("configuring the sync: %w", err)
	}
	if _, err := p.s.db.kickAny(ctx, p.ctl); err != nil {
		return fmt.Errorf("the first kick: %w", err)
	}
	return nil
}

// pause: no kick.
func (ibexPeer) pause(context.Context, *peerSet) error { return nil }

func (ibexPeer) catchUp(ctx context.Context, p *peerSet, _ int) error {
	kctx, cancel := context.WithTimeout(ctx, peerCatchUpMax)
	defer cancel()
	var env []string
	if debug {
		env = append(env, "IBEX_LOG_LEVEL=debug")
	}
	kr, err := p.s.db.kick(kctx, p.ctl, env...)
	if err != nil {
		return err
	}
	if debug {
		progress("  the kick's log:\n%s", kr.stderr)
	}
	progress("  ibex kick: sync %.3f s, inserts %d, deletes %d, peak RSS %.1f MiB", secs(kr.sync), kr.inserts, kr.deletes, mib(kr.rssKiB))
	return nil
}

// follow turns autokick on and runs the scheduler until stop, which ends it (SIGTERM).
func (x ibexPeer) follow(ctx context.Context, p *peerSet) (func() error, error) {
	if _, err := p.s.db.ibex(ctx, p.ctl, "update", "sync", syncName, "autokick=true"); err != nil {
		return nil, err
	}
	bin, err := x.b.env.schedulerBin(ctx)
	if err != nil {
		return nil, err
	}
	sp, err := startScheduler(ctx, bin, x.b.env.tmp, p.s.db.toolEnv("IBEX_DSN="+p.s.db.conninfo(p.ctl)))
	if err != nil {
		return nil, err
	}
	return sp.stop, nil
}

func (ibexPeer) teardown(context.Context, *peerSet) error { return nil }

// schedProc is a running ibex scheduler.
type schedProc struct {
	cmd  *exec.Cmd
	log  string
	done chan error
}

// startScheduler starts the scheduler (its log in a file under dir) and returns once it
// listens on the sync's source (its metric ibex_listen_connected{db="t1"} is 1).
func startScheduler(ctx context.Context, bin, dir string, env []string) (*schedProc, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("finding a free port for the scheduler's /metrics: %w", err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	f, err := os.CreateTemp(dir, "scheduler-*.log")
	if err != nil {
		return nil, fmt.Errorf("creating the scheduler's log file: %w", err)
	}
	sp := &schedProc{log: f.Name(), done: make(chan error, 1)}
	sp.cmd = exec.CommandContext(ctx, bin, "--listen", addr, "--reload", "1s")
	sp.cmd.Env = env
	if debug {
		sp.cmd.Env = append(sp.cmd.Env, "IBEX_LOG_LEVEL=debug")
	}
	sp.cmd.Stdout, sp.cmd.Stderr = f, f
	sp.cmd.Cancel = func() error { return sp.cmd.Process.Signal(syscall.SIGTERM) }
	sp.cmd.WaitDelay = 30 * time.Second
	progress("  starting the ibex scheduler (autokick; /metrics on %s, log %s)", addr, sp.log)
	if err := sp.cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	go func() {
		sp.done <- sp.cmd.Wait()
		_ = f.Close()
	}()
	hc := &http.Client{Timeout: 2 * time.Second}
	err = waitFor(ctx, "the scheduler listening on the source", peerSettle, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		select {
		case werr := <-sp.done:
			sp.done <- werr
			return false, fmt.Errorf("the scheduler exited: %v\n%s", werr, sp.logTail())
		default:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
		if err != nil {
			return false, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return false, nil // not up yet
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return err == nil && strings.Contains(string(body), `ibex_listen_connected{db="t1"} 1`), nil
	})
	if err != nil {
		_ = sp.stop()
		return nil, fmt.Errorf("%w\n%s", err, sp.logTail())
	}
	return sp, nil
}

func (sp *schedProc) logTail() string {
	b, _ := os.ReadFile(sp.log)
	return tail(b, 2000)
}

// stop sends SIGTERM and waits (bounded) for the scheduler to exit.
func (sp *schedProc) stop() error {
	if debug {
		defer func() {
			b, _ := os.ReadFile(sp.log)
			progress("  the scheduler's log:\n%s", b)
		}()
	}
	_ = sp.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-sp.done:
		if err != nil {
			return fmt.Errorf("the scheduler exited with %v\n%s", err, sp.logTail())
		}
		return nil
	case <-time.After(90 * time.Second):
		_ = sp.cmd.Process.Kill()
		<-sp.done
		return fmt.Errorf("the scheduler did not stop within 90 s of SIGTERM (killed)\n%s", sp.logTail())
	}
}

// ---- the section

// peerRun is one system's figures of one repeat (NaN: not measured).
type peerRun struct {
	catch, wal, tps [2]float64 // per backlog: catch-up seconds, target WAL MiB, load TPS
	floor           [2]float64 // per backlog (ibex only): the plain-SQL floor, seconds
	p50, p99        float64    // steady state, seconds
	steadyTPS       float64
}

func nanRun() peerRun {
	n := math.NaN()
	return peerRun{catch: [2]float64{n, n}, wal: [2]float64{n, n}, tps: [2]float64{n, n}, floor: [2]float64{n, n}, p50: n, p99: n, steadyTPS: n}
}

// peersScale is the pgbench scale of the section: 10, or more when -peers-rows needs it.
func (b *bench) peersScale() int { return max(10, (b.cfg.peersRows+99999)/100000) }

// peerBacklogs name the two backlogs in progress lines and the table.
func (b *bench) peerBacklogs() [2]string {
	return [2]string{
		fmt.Sprintf("%s tx backlog", thousands(peerClients*b.cfg.peersTx)),
		fmt.Sprintf("%s rows backlog", thousands(b.cfg.peersRows)),
	}
}

// peersPglogical reports whether pglogical can be measured (after installing it under
// -peers install), and when not, why.
func (b *bench) peersPglogical(ctx context.Context) (bool, string) {
	if m := missingServer(); m != "" {
		return false, "missing " + m
	}
	lib := filepath.Join("/usr/lib/postgresql", pgMajor, "lib", "pglogical.so")
	switch b.cfg.peersMode {
	case "off":
		return false, "-peers off"
	case "install":
		if !isFile(lib) {
			// Debian's package is built for the server of its name's major version: it
			// installs alone, without upgrading the running server.
			if err := aptInstall(ctx, "peers", "postgresql-"+pgMajor+"-pglogical"); err != nil {
				b.rep.fail("peers: installing pglogical (apt-get install): %v", err)
				return false, "apt-get install of postgresql-" + pgMajor + "-pglogical failed: see FAIL lines below"
			}
		}
	}
	if !isFile(lib) {
		return false, "not installed (" + lib + "); run with -peers install (apt-get, as root) to measure it"
	}
	return true, ""
}

// peers is the peers section.
func (b *bench) peers(ctx context.Context) error {
	cfg := b.cfg
	withPgl, why := b.peersPglogical(ctx)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	extra := [][2]string{{"wal_level", "logical"}, {"max_wal_senders", "10"}, {"max_replication_slots", "10"},
		{"max_worker_processes", "16"}, {"max_logical_replication_workers", "4"}}
	if withPgl {
		extra = append(extra, [2]string{"shared_preload_libraries", "pglogical"})
	}
	var clusters [2]*privCluster
	defer func() {
		for _, c := range clusters {
			if c != nil {
				progress("peers: stopping the private %s cluster, removing %s", c.label, c.dir)
				c.destroy()
			}
		}
	}()
	for i, which := range []string{"source", "target"} {
		c, err := newPrivCluster(ctx, b.env, "peers "+which, "ibex-bench-peers-"+which+"-", extra)
		clusters[i] = c
		if err != nil {
			if c != nil {
				err = fmt.Errorf("%w\nserver log:\n%s", err, c.logTail(2000))
			}
			return fmt.Errorf("creating the private %s cluster: %w", which, err)
		}
	}
	s, t := clusters[0], clusters[1]
	if withPgl {
		// Where the server has output_plugin_libraries (this machine's PostgreSQL 15.20 does:
		// pgoutput and test_decoding by default), it must name pglogical's output plugin,
		// or the provider refuses to create the subscription's slot.
		for _, c := range clusters {
			if _, err := c.appendToList(ctx, "output_plugin_libraries", "pglogical_output"); err != nil {
				return fmt.Errorf("the %s cluster: %w", c.label, err)
			}
		}
	}
	scale := b.peersScale()
	tmpl := prefix + "pr_tmpl"
	for _, c := range clusters {
		progress("peers: pgbench -i -s %d into %s on the %s cluster, primary key hid on pgbench_history", scale, tmpl, c.label)
		if err := b.peerTemplate(ctx, c, tmpl, scale); err != nil {
			return err
		}
	}
	systems := []replicator{nativeLR{}}
	if withPgl {
		systems = append(systems, &pglogical{})
	}
	systems = append(systems, ibexPeer{b: b})
	runs := make(map[string][]peerRun)
	for _, sys := range systems {
		runs[sys.name()] = make([]peerRun, cfg.peersRepeats)
		for r := range runs[sys.name()] {
			runs[sys.name()][r] = nanRun()
		}
	}
	for r := 0; r < cfg.peersRepeats; r++ {
		order := slices.Clone(systems)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, sys := range order {
			label := fmt.Sprintf("peers repeat %d/%d, %s", r+1, cfg.peersRepeats, sys.name())
			pr, err := b.peerRepeat(ctx, label, sys, s, t, tmpl, fmt.Sprintf("%spr%d_%s_", prefix, r+1, sys.key()))
			runs[sys.name()][r] = pr
			if err != nil {
				b.rep.fail("%s: %v", label, err)
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	b.peersReport(systems, runs, withPgl, why)
	return nil
}

// peerTemplate makes the template database tmpl on cluster c: pgbench -i -s scale and a
// primary key on pgbench_history.
func (b *bench) peerTemplate(ctx context.Context, c *privCluster, tmpl string, scale int) error {
	if err := c.db.create(ctx, tmpl, "", false); err != nil {
		return err
	}
	if err := c.db.pgbenchInit(ctx, tmpl, scale); err != nil {
		return err
	}
	conn, err := c.db.connect(ctx, tmpl)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `ALTER TABLE pgbench_history ADD COLUMN hid bigserial PRIMARY KEY`); err != nil {
		return fmt.Errorf("adding a primary key to pgbench_history in %s: %w", tmpl, err)
	}
	return nil
}

// peerRepeat measures one system once, on fresh copies of the templates named name+"src"
// and name+"tgt": the two backlogs, then the steady state. Replication is torn down at the
// end, also on failure.
func (b *bench) peerRepeat(ctx context.Context, label string, sys replicator, s, t *privCluster, tmpl, name string) (pr peerRun, err error) {
	pr = nanRun()
	p := &peerSet{s: s, t: t, src: name + "src", tgt: name + "tgt", ctl: name + "ctl"}
	progress("%s: %s (source cluster) and %s (target cluster) from %s (FILE_COPY)", label, p.src, p.tgt, tmpl)
	if err := s.db.create(ctx, p.src, tmpl, true); err != nil {
		return pr, err
	}
	if err := t.db.create(ctx, p.tgt, tmpl, true); err != nil {
		return pr, err
	}
	if p.srcConn, err = s.db.connect(ctx, p.src); err != nil {
		return pr, err
	}
	if p.tgtConn, err = t.db.connect(ctx, p.tgt); err != nil {
		_ = p.srcConn.Close(ctx)
		return pr, err
	}
	defer func() {
		if terr := b.peerTeardown(ctx, sys, p); terr != nil && err == nil {
			err = terr
		}
	}()
	defer func() {
		if err != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w\nthe source's server log ends:\n%s\nthe target's server log ends:\n%s", err, s.logTail(1500), t.logTail(1500))
		}
	}()
	progress("%s: setting up replication %s -> %s", label, p.src, p.tgt)
	if err := sys.setup(ctx, p); err != nil {
		return pr, fmt.Errorf("setup: %w", err)
	}
	names := b.peerBacklogs()
	for k := range 2 {
		bl := fmt.Sprintf("%s, %s", label, names[k])
		progress("%s: pausing replication", bl)
		if err := sys.pause(ctx, p); err != nil {
			return pr, fmt.Errorf("%s: pause: %w", names[k], err)
		}
		tps, err := b.peerLoad(ctx, bl, p, k)
		if err != nil {
			return pr, fmt.Errorf("%s: load: %w", names[k], err)
		}
		// ibex's backlog is also applied by plain SQL to a copy of the target (its change
		// tables name the keys): the floor of the same rows, same run.
		var fp *peerFloorPrep
		if _, ok := sys.(ibexPeer); ok {
			if fp, err = b.prepFloor(ctx, p); err != nil {
				return pr, fmt.Errorf("%s: %w", names[k], err)
			}
		}
		dur, wal, err := b.peerCatchUp(ctx, bl, sys, p)
		if err != nil {
			return pr, fmt.Errorf("%s: %w", names[k], err)
		}
		pr.catch[k], pr.wal[k], pr.tps[k] = dur.Seconds(), float64(wal)/(1<<20), tps
		if fp != nil {
			fd, err := b.floor(ctx, bl, p, fp)
			if err != nil {
				return pr, fmt.Errorf("%s: %w", names[k], err)
			}
			pr.floor[k] = fd.Seconds()
		}
	}
	lat, tps, err := b.peerSteady(ctx, label, sys, p)
	if err != nil {
		return pr, fmt.Errorf("steady state: %w", err)
	}
	pr.p50, pr.p99, pr.steadyTPS = percentile(lat, 0.50), percentile(lat, 0.99), tps
	return pr, nil
}

// peerLoad makes backlog k on the source while replication is paused: pgbench
// transactions (k = 0) or committed chunks of 100,000 updated accounts rows (k = 1). It
// returns pgbench's TPS (NaN for the updates).
func (b *bench) peerLoad(ctx context.Context, label string, p *peerSet, k int) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, peerLoadMax)
	defer cancel()
	if k == 1 {
		return math.NaN(), p.s.db.updateAccounts(ctx, label, p.src, b.cfg.peersRows)
	}
	args := []string{"-n", "-t", strconv.Itoa(b.cfg.peersTx), "-c", strconv.Itoa(peerClients), "-j", "2"}
	progress("%s: pgbench %s on %s", label, strings.Join(args, " "), p.src)
	res, err := p.s.db.pgbenchRun(ctx, p.src, args...)
	if err != nil {
		return 0, err
	}
	progress("%s: pgbench %.1f tps, %d transactions", label, res.tps, res.tx)
	return res.tps, nil
}

// peerCatchUp commits a marker, checkpoints both clusters, resumes replication and
// times it until the target holds the marker (ibex: until the kick is done), then checks
// that every table is identical on both sides. wal is what the target cluster wrote
// meanwhile (pg_current_wal_insert_lsn before and after).
func (b *bench) peerCatchUp(ctx context.Context, label string, sys replicator, p *peerSet) (time.Duration, int64, error) {
	mark, _, err := p.mark(ctx)
	if err != nil {
		return 0, 0, err
	}
	for _, c := range []*privCluster{p.s, p.t} {
		if err := c.db.checkpoint(ctx); err != nil {
			return 0, 0, err
		}
	}
	wal0, err := insertLSN(ctx, p.t)
	if err != nil {
		return 0, 0, err
	}
	progress("%s: resuming %s", label, sys.name())
	t0 := time.Now()
	if err := sys.catchUp(ctx, p, mark); err != nil {
		return 0, 0, fmt.Errorf("catch-up: %w", err)
	}
	dur := time.Since(t0)
	wal1, err := insertLSN(ctx, p.t)
	if err != nil {
		return 0, 0, err
	}
	progress("%s: %s caught up in %.3f s, %.1f MiB of WAL on the target", label, sys.name(), dur.Seconds(), float64(wal1-wal0)/(1<<20))
	if err := b.peerSame(ctx, label, p); err != nil {
		return 0, 0, err
	}
	return dur, wal1 - wal0, nil
}

// peerSame checks that every replicated table is identical on the source and the target.
func (b *bench) peerSame(ctx context.Context, label string, p *peerSet) error {
	ok, detail, err := convergedOf(ctx, []dbRef{{p.s.db, p.src}, {p.t.db, p.tgt}}, peerTables)
	if err != nil {
		return fmt.Errorf("checking convergence: %w", err)
	}
	if !ok {
		return errors.New("the target does NOT hold the source's rows: " + detail)
	}
	progress("%s: converged (the %d tables identical on source and target)", label, len(peerTables))
	return nil
}

func insertLSN(ctx context.Context, c *privCluster) (int64, error) {
	var n int64
	if err := c.db.admin.QueryRow(ctx, `SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint`).Scan(&n); err != nil {
		return 0, fmt.Errorf("reading the WAL position of the %s cluster: %w", c.label, err)
	}
	return n, nil
}

// peerSteady runs pgbench -R on the source with the target following, and measures
// commit-to-visible latency as TestAutokickLatency does: every 100 ms a marker row is
// committed on the source, and the target is polled every 5 ms until it shows it.
func (b *bench) peerSteady(ctx context.Context, label string, sys replicator, p *peerSet) ([]float64, float64, error) {
	cfg := b.cfg
	progress("%s: steady state: %s following", label, sys.name())
	stop, err := sys.follow(ctx, p)
	if err != nil {
		return nil, 0, err
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = stop()
		}
	}()
	time.Sleep(time.Second) // let the follower settle
	pctx, cancel := context.WithTimeout(ctx, time.Duration(cfg.peersSeconds)*time.Second+peerLoadMax)
	defer cancel()
	args := []string{"-n", "-c", strconv.Itoa(peerClients), "-j", "2", "-R", strconv.Itoa(cfg.peersRate), "-T", strconv.Itoa(cfg.peersSeconds)}
	progress("%s: pgbench %s on %s, a marker every %s, the target polled every %s", label, strings.Join(args, " "), p.src, peerMarkEvery, peerPoll)
	type pgbOut struct {
		res pgbenchResult
		err error
	}
	pgb := make(chan pgbOut, 1)
	go func() {
		res, err := p.s.db.pgbenchRun(pctx, p.src, args...)
		pgb <- pgbOut{res, err}
	}()
	committed := map[int]time.Time{}
	visible := map[int]time.Time{}
	first := p.nextMark + peerMarkBase // lowest marker not yet seen
	end := peerMarkBase + p.nextMark   // one past the last marker sent
	next := time.Now()
	deadline := next.Add(time.Duration(cfg.peersSeconds) * time.Second)
	var loopErr error
	for time.Now().Before(deadline) || first < end {
		now := time.Now()
		if now.After(deadline.Add(peerTailMax)) {
			loopErr = fmt.Errorf("%d of %d markers not visible on the target %s after the load", end-first, len(committed), peerTailMax)
			break
		}
		if now.Before(deadline) && !now.Before(next) {
			aid, at, err := p.mark(pctx)
			if err != nil {
				loopErr = err
				break
			}
			committed[aid] = at
			end = aid + 1
			next = next.Add(peerMarkEvery)
		}
		if first < end {
			rows, _ := p.tgtConn.Query(pctx, `SELECT aid FROM pgbench_accounts WHERE aid >= $1 AND aid < $2`, first, end)
			seen := time.Now()
			aids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
			if err != nil {
				loopErr = fmt.Errorf("polling the target for markers: %w", err)
				break
			}
			for _, a := range aids {
				if _, ok := visible[int(a)]; !ok {
					visible[int(a)] = seen
				}
			}
			for first < end {
				if _, ok := visible[first]; !ok {
					break
				}
				first++
			}
		}
		time.Sleep(peerPoll)
	}
	out := <-pgb
	stopped = true
	if serr := stop(); serr != nil && loopErr == nil {
		loopErr = fmt.Errorf("stopping %s: %w", sys.name(), serr)
	}
	if loopErr != nil {
		return nil, 0, loopErr
	}
	if out.err != nil {
		return nil, 0, out.err
	}
	var lat []float64
	for aid, c := range committed {
		lat = append(lat, visible[aid].Sub(c).Seconds())
	}
	progress("%s: pgbench %.1f tps; %d markers: commit-to-visible p50 %.1f ms, p99 %.1f ms, max %.1f ms", label, out.res.tps, len(lat),
		1000*percentile(lat, 0.5), 1000*percentile(lat, 0.99), 1000*percentile(lat, 1))
	// Everything the load committed reaches the target.
	mark, _, err := p.mark(ctx)
	if err != nil {
		return nil, 0, err
	}
	if err := sys.catchUp(ctx, p, mark); err != nil {
		return nil, 0, fmt.Errorf("after the load: %w", err)
	}
	if err := b.peerSame(ctx, label, p); err != nil {
		return nil, 0, err
	}
	return lat, out.res.tps, nil
}

// peerTeardown undoes a system's setup and ends and drops any replication slot left on the
// source for its database (one would keep WAL and decode the next system's load). The
// databases stay until the clusters are removed: pglogical 2.4.2 on PostgreSQL 15 makes a
// DROP DATABASE wait forever while its supervisor runs (2ndQuadrant/pglogical#399, #418).
func (b *bench) peerTeardown(ctx context.Context, sys replicator, p *peerSet) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*peerSettle)
	defer cancel()
	var errs []error
	if err := sys.teardown(ctx, p); err != nil {
		errs = append(errs, fmt.Errorf("teardown of %s: %w", sys.name(), err))
	}
	_ = p.srcConn.Close(ctx)
	_ = p.tgtConn.Close(ctx)
	for _, q := range []string{
		`SELECT pg_terminate_backend(active_pid, 10000) FROM pg_replication_slots WHERE database = $1 AND active`,
		`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active`,
	} {
		if _, err := p.s.db.admin.Exec(ctx, q, p.src); err != nil {
			errs = append(errs, fmt.Errorf("removing the replication slots of %s: %s: %w", p.src, q, err))
		}
	}
	return errors.Join(errs...)
}

// peersReport adds the section's rows.
func (b *bench) peersReport(systems []replicator, runs map[string][]peerRun, withPgl bool, why string) {
	cfg := b.cfg
	sec := "peers"
	present := func(v []float64) []float64 {
		var out []float64
		for _, x := range v {
			if !math.IsNaN(x) && !math.IsInf(x, 0) {
				out = append(out, x)
			}
		}
		return out
	}
	col := func(name string, f func(peerRun) float64) []float64 {
		out := make([]float64, len(runs[name]))
		for i, r := range runs[name] {
			out[i] = f(r)
		}
		return out
	}
	// paired divides per repeat, NaN where either side was not measured.
	paired := func(a, d []float64) []float64 {
		out := make([]float64, len(a))
		for i := range a {
			out[i] = math.NaN()
			if i < len(d) && d[i] > 0 {
				out[i] = a[i] / d[i]
			}
		}
		return present(out)
	}
	lr, ibex := nativeLR{}.name(), ibexPeer{}.name()
	if !withPgl {
		b.rep.text(sec, "pglogical not measured", "-", why)
	}
	names := b.peerBacklogs()
	notes := [2]string{
		fmt.Sprintf("pgbench -n -t %d -c %d -j 2 (scale %d) on the source while paused; resume to the target holding the source's rows", cfg.peersTx, peerClients, b.peersScale()),
		fmt.Sprintf("%d x UPDATE of 100,000 pgbench_accounts rows (each committed) while paused", (cfg.peersRows+99999)/100000),
	}
	targets := [2]string{"target <= 0.10", "target <= 0.9"}
	for k := range 2 {
		for i, sys := range systems {
			note := ""
			if i == 0 {
				note = notes[k]
			}
			what := "catch-up"
			if sys.name() == ibex {
				what = "catch-up (kick to done)"
			}
			b.rep.add(sec, fmt.Sprintf("%s: %s %s", names[k], sys.name(), what), uSec, present(col(sys.name(), func(r peerRun) float64 { return r.catch[k] })), note)
		}
		ibexCatch := col(ibex, func(r peerRun) float64 { return r.catch[k] })
		floor := col(ibex, func(r peerRun) float64 { return r.floor[k] })
		b.rep.add(sec, fmt.Sprintf("%s: plain-SQL floor", names[k]), uSec, present(floor),
			"the same rows again by DELETE + COPY on one session into the target, after ibex's catch-up (ibex's change tables name the keys)")
		b.rep.add(sec, fmt.Sprintf("%s: ibex / plain-SQL floor", names[k]), uRatio, paired(ibexCatch, floor), "paired by repeat")
		b.rep.add(sec, fmt.Sprintf("%s: plain-SQL floor / %s", names[k], lr), uRatio, paired(floor, col(lr, func(r peerRun) float64 { return r.catch[k] })),
			"what the same final rows cost PostgreSQL itself on one session, against the streaming catch-up")
		b.rep.add(sec, fmt.Sprintf("%s: ibex / %s", names[k], lr), uRatio, paired(ibexCatch, col(lr, func(r peerRun) float64 { return r.catch[k] })), targets[k]+" (paired by repeat)")
		if withPgl {
			b.rep.add(sec, fmt.Sprintf("%s: ibex / pglogical", names[k]), uRatio, paired(ibexCatch, col("pglogical", func(r peerRun) float64 { return r.catch[k] })), "paired by repeat")
		}
		for i, sys := range systems {
			note := ""
			if i == 0 {
				note = "written on the target cluster during the catch-up (after a CHECKPOINT)"
			}
			b.rep.add(sec, fmt.Sprintf("%s: WAL on the target, %s", names[k], sys.name()), uMiB, present(col(sys.name(), func(r peerRun) float64 { return r.wal[k] })), note)
		}
		if k == 0 {
			for i, sys := range systems {
				note := ""
				if i == 0 {
					note = "context: the load's TPS on the source (ibex: with its capture triggers)"
				}
				b.rep.add(sec, fmt.Sprintf("%s: pgbench while paused, %s", names[k], sys.name()), uTPS, present(col(sys.name(), func(r peerRun) float64 { return r.tps[k] })), note)
			}
		}
	}
	steady := fmt.Sprintf("steady -R %d", cfg.peersRate)
	for i, sys := range systems {
		note := ""
		if i == 0 {
			note = fmt.Sprintf("pgbench -R %d -T %d -c %d; a marker committed every %s, the target polled every %s", cfg.peersRate, cfg.peersSeconds, peerClients, peerMarkEvery, peerPoll)
		}
		p50note, p99note := note, ""
		if sys.name() == ibex {
			p50note, p99note = "target <= 25 ms (scheduler with autokick)", "target <= 80 ms"
		}
		b.rep.add(sec, fmt.Sprintf("%s: %s commit-to-visible p50", steady, sys.name()), uMs, present(col(sys.name(), func(r peerRun) float64 { return r.p50 })), p50note)
		b.rep.add(sec, fmt.Sprintf("%s: %s commit-to-visible p99", steady, sys.name()), uMs, present(col(sys.name(), func(r peerRun) float64 { return r.p99 })), p99note)
	}
	for _, sys := range systems {
		done := len(present(col(sys.name(), func(r peerRun) float64 { return r.p99 })))
		res := fmt.Sprintf("yes %d/%d", done, cfg.peersRepeats)
		note := "each table identical on source and target after every catch-up and after the steady load"
		if done < cfg.peersRepeats {
			res = fmt.Sprintf("FAIL (%d of %d)", cfg.peersRepeats-done, cfg.peersRepeats)
			note = "a repeat failed or did not converge: see FAIL lines below"
		}
		b.rep.text(sec, sys.name()+": converged", res, note)
	}
	b.peersInfo = fmt.Sprintf("1 source -> 1 target, two private clusters (wal_level=logical%s), pgbench scale %d, tables %s; %d repeats, the systems one after another (the order reversed every other repeat)",
		map[bool]string{true: ", pglogical preloaded", false: ""}[withPgl], b.peersScale(), tableNames(peerTables), cfg.peersRepeats)
}

func tableNames(ts []tableSpec) string {
	var n []string
	for _, t := range ts {
		n = append(n, strings.TrimPrefix(t.name, "pgbench_"))
	}
	return strings.Join(n, "/")
}
