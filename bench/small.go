package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ibexrepl/ibex/internal/control"
)

// ---- small runs: the fixed cost of a run

// small measures a run that has almost nothing to do: one source and one target (the
// three keyed pgbench tables, scale 1), one accounts row changed before each kick, and
// `ibex kick bench --json` timed from exec to exit, -small-kicks times. A run's fixed
// costs (process start, the control database, sessions, catalog checks, round trips)
// are then all there is. An empty kick (nothing pending) is timed the same way.
//
// Its databases are reached over the local unix socket (smallSocket) when there is one
// and PGHOST does not name a server, as the figure asks: TCP to 127.0.0.1 costs
// a connection several milliseconds more here (TLS is negotiated).
func (b *bench) small(ctx context.Context) error {
	cfg := b.cfg
	via := "host " + b.env.host
	if os.Getenv("PGHOST") == "" {
		if st, err := os.Stat(filepath.Join(smallSocket, ".s.PGSQL."+b.env.port)); err == nil && st.Mode()&os.ModeSocket != 0 {
			host := b.env.host
			b.env.host = smallSocket
			defer func() { b.env.host = host }()
			via = "the unix socket " + smallSocket
		}
	} else if strings.HasPrefix(b.env.host, "/") {
		via = "the unix socket " + b.env.host
	}
	src, tgt, ctl := prefix+"sm_src", prefix+"sm_tgt", prefix+"sm_ctl"
	progress("small: %s (pgbench -i -s 1) and %s from it, sync %s -> %s (3 tables), over %s", src, tgt, src, tgt, via)
	if err := b.env.create(ctx, src, "", false); err != nil {
		return err
	}
	if err := b.env.pgbenchInit(ctx, src, 1); err != nil {
		return err
	}
	if err := b.env.create(ctx, tgt, src, false); err != nil {
		return err
	}
	if err := b.env.setupSync(ctx, ctl, []string{src, tgt}, []string{control.RoleSource, control.RoleTarget}); err != nil {
		return fmt.Errorf("configuring the sync: %w", err)
	}
	c, err := b.env.connect(ctx, src)
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	// Two unrecorded kicks: the first run of a sync does one-time work (it takes in the
	// tables), and the page cache warms up.
	for i := 0; i < 2; i++ {
		if _, err := c.Exec(ctx, `UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = $1`, 1+i); err != nil {
			return err
		}
		if _, err := b.env.kick(ctx, ctl); err != nil {
			return err
		}
	}
	var one, empty, sync, start, session []float64
	for i := 0; i < cfg.smallKicks; i++ {
		// The machine's own fixed costs, interleaved with the kicks: the same binary's
		// process start to exit, and one session opened, asked SELECT 1 and closed.
		d, err := b.processStart(ctx)
		if err != nil {
			return err
		}
		start = append(start, secs(d))
		if d, err = b.sessionTime(ctx, src); err != nil {
			return err
		}
		session = append(session, secs(d))
		if _, err := c.Exec(ctx, `UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = $1`, 1+(i*7919)%100000); err != nil {
			return err
		}
		kr, err := b.env.kick(ctx, ctl)
		if err != nil {
			return err
		}
		if kr.inserts != 1 {
			b.rep.fail("small: kick %d applied %d rows, want 1", i+1, kr.inserts)
		}
		one, sync = append(one, secs(kr.wall)), append(sync, secs(kr.sync))
		// The same kick with nothing pending (state empty is not an error here).
		kr, err = b.env.kickAny(ctx, ctl)
		if err != nil {
			return err
		}
		empty = append(empty, secs(kr.wall))
	}
	ok, detail, err := b.env.converged(ctx, []string{src, tgt})
	if err != nil {
		return err
	}
	if !ok {
		b.rep.fail("small: the databases did NOT converge: %s", detail)
	}
	sec := "small"
	note := fmt.Sprintf("1 src -> 1 tgt, 3 tables, one row changed, %d kicks, over %s", len(one), via)
	b.rep.add(sec, "one-row kick to done (exec to exit)", uMs, one, note+"; target <= 25 ms median")
	b.rep.add(sec, "one-row kick: 90th percentile", uMs, []float64{percentile(one, 0.9)}, "")
	b.rep.add(sec, "one-row kick: sync (duration_ns)", uMs, sync, "the run itself, without process start and exit")
	b.rep.add(sec, "empty kick to done (nothing pending)", uMs, empty, "")
	// A kick cannot do less than start, open a session to the control database (which
	// names the dbs) and then the dbs' sessions (at once): its floor on this machine.
	floor := make([]float64, len(start))
	for i := range start {
		floor[i] = start[i] + 2*session[i]
	}
	b.rep.add(sec, "process start: ibex --version, exec to exit", uMs, start, "the same binary; what every kick pays before its first query")
	b.rep.add(sec, "one session: connect, SELECT 1, close", uMs, session, "pgx over the same route: the server's cost of a new session")
	b.rep.add(sec, "fixed floor: start + 2 sessions in turn", uMs, floor, "the control database's session, then the dbs' (at once)")
	ratios := make([]float64, len(one))
	for i := range one {
		ratios[i] = one[i] / floor[i]
	}
	b.rep.add(sec, "one-row kick / fixed floor", uRatio, ratios, "")
	progress("small: one-row kick median %.1f ms, empty kick median %.1f ms", median(one)*1000, median(empty)*1000)
	return b.env.dropNow(ctx, cfg.keep, ctl, src, tgt)
}

// processStart times the ibex binary's `--version` from exec to exit.
func (b *bench) processStart(ctx context.Context) (time.Duration, error) {
	t0 := time.Now()
	if out, err := exec.CommandContext(ctx, b.env.ibexBin, "--version").CombinedOutput(); err != nil {
		return 0, fmt.Errorf("%s --version: %w\n%s", b.env.ibexBin, err, out)
	}
	return time.Since(t0), nil
}

// sessionTime times one session to db: connected, SELECT 1, closed.
func (b *bench) sessionTime(ctx context.Context, db string) (time.Duration, error) {
	t0 := time.Now()
	c, err := b.env.connect(ctx, db)
	if err != nil {
		return 0, err
	}
	var one int
	err = c.QueryRow(ctx, `SELECT 1`).Scan(&one)
	cerr := c.Close(ctx)
	if err = errors.Join(err, cerr); err != nil {
		return 0, fmt.Errorf("a session to %s: %w", db, err)
	}
	return time.Since(t0), nil
}

// smallSocket is the directory of the local server's unix socket (Debian's).
const smallSocket = "/var/run/postgresql"

// percentile is the p-quantile of v (nearest rank).
func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	i := int(p*float64(len(s))+0.5) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(s) {
		i = len(s) - 1
	}
	return s[i]
}
