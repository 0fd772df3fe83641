package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ibexrepl/ibex/internal/compare"
	"github.com/ibexrepl/ibex/internal/control"
)

// compareBench measures ibex compare on pgbench_accounts of cfg.compareScale x 100,000
// rows on 3 dbs into which cfg.compareDiffs differing rows were written behind ibex's
// back, against the floor of plain SQL computing one digest per db in parallel
// (md5(string_agg(row, ” ORDER BY aid))), and checks that every difference is found.
func (b *bench) compareBench(ctx context.Context) error {
	cfg := b.cfg
	tmpl, ctl := prefix+"cmp_tmpl", prefix+"cmp_ctl"
	dbs := []string{prefix + "cmp_1", prefix + "cmp_2", prefix + "cmp_3"}
	progress("compare: pgbench -i -s %d into %s (%d accounts rows)", cfg.compareScale, tmpl, cfg.compareScale*100000)
	if err := b.env.create(ctx, tmpl, "", false); err != nil {
		return err
	}
	if err := b.env.pgbenchInit(ctx, tmpl, cfg.compareScale); err != nil {
		return err
	}
	for _, db := range dbs {
		if err := b.env.create(ctx, db, tmpl, true); err != nil {
			return err
		}
	}
	if err := b.env.setupSync(ctx, ctl, dbs, []string{control.RoleSource, control.RoleSource, control.RoleTarget}); err != nil {
		return fmt.Errorf("configuring the sync: %w", err)
	}
	// The differences, behind ibex's back: updates on the second db, deletes and inserts
	// on the third, spread over the table.
	n := cfg.compareDiffs
	rows := cfg.compareScale * 100000
	want := map[string]bool{}
	var upd, del, ins []int
	for i := range n {
		aid := 1 + (i*7919+13)%rows
		switch i % 3 {
		case 0:
			upd = append(upd, aid)
		case 1:
			del = append(del, aid)
		default:
			aid = rows + 1 + i
			ins = append(ins, aid)
		}
		want[strconv.Itoa(aid)] = true
	}
	if len(want) != n {
		return fmt.Errorf("the %d injected keys are not distinct", n)
	}
	for _, st := range []struct {
		db, sql string
		keys    []int
	}{
		{dbs[1], `UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = ANY($1)`, upd},
		{dbs[2], `DELETE FROM pgbench_accounts WHERE aid = ANY($1)`, del},
		{dbs[2], `INSERT INTO pgbench_accounts SELECT a, 1, 0, 'x' FROM unnest($1::int[]) a`, ins},
	} {
		c, err := b.env.connect(ctx, st.db)
		if err != nil {
			return err
		}
		_, err = c.Exec(ctx, `SET session_replication_role = replica`)
		if err == nil {
			_, err = c.Exec(ctx, st.sql, st.keys)
		}
		_ = c.Close(ctx)
		if err != nil {
			return fmt.Errorf("injecting differences on %s: %w", st.db, err)
		}
	}
	floorOnce := func() (time.Duration, error) {
		t0 := time.Now()
		var wg sync.WaitGroup
		errs := make([]error, len(dbs))
		for i, db := range dbs {
			wg.Go(func() {
				c, err := b.env.connect(ctx, db)
				if err != nil {
					errs[i] = err
					return
				}
				defer c.Close(ctx)
				var s string
				errs[i] = c.QueryRow(ctx, `SELECT md5(string_agg(t::text, '' ORDER BY aid)) FROM pgbench_accounts t`).Scan(&s)
			})
		}
		wg.Wait()
		return time.Since(t0), errors.Join(errs...)
	}
	compareOnce := func() (time.Duration, int64, *compare.Report, error) {
		cmd := exec.CommandContext(ctx, b.env.ibexBin, "compare", syncName, "pgbench_accounts", "--json", "--limit", strconv.Itoa(n+10))
		cmd.Env = b.env.toolEnv("IBEX_DSN=" + b.env.conninfo(ctl))
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		t0 := time.Now()
		if err := cmd.Start(); err != nil {
			return 0, 0, nil, err
		}
		stop := watchRSS(cmd.Process.Pid)
		err := cmd.Wait()
		d := time.Since(t0)
		rss := stop(cmd.ProcessState)
		if code := cmd.ProcessState.ExitCode(); code != 1 {
			return 0, 0, nil, fmt.Errorf("ibex compare: exit %d (want 1: rows differ): %v\n%s", code, err, tail(errb.Bytes(), 2000))
		}
		var r compare.Report
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			return 0, 0, nil, fmt.Errorf("ibex compare --json: %w", err)
		}
		return d, rss, &r, nil
	}
	// Warm both once (the tables into the cache).
	progress("compare: warming up")
	if _, err := floorOnce(); err != nil {
		return err
	}
	if _, _, _, err := compareOnce(); err != nil {
		return err
	}
	var cmpT, floorT, ratio, rss, found []float64
	for r := 1; r <= cfg.compareRepeats; r++ {
		label := fmt.Sprintf("compare repeat %d/%d", r, cfg.compareRepeats)
		fd, err := floorOnce()
		if err != nil {
			return err
		}
		cd, kib, rep, err := compareOnce()
		if err != nil {
			return err
		}
		got := 0
		for _, t := range rep.Tables {
			for _, d := range t.Diffs {
				if want[d.Label()] && !d.InFlight {
					got++
				}
			}
		}
		if got != n || rep.Diverged() != int64(n) {
			b.rep.fail("%s: ibex compare found %d of the %d differences (%d reported)", label, got, n, rep.Diverged())
		}
		progress("%s: ibex compare %.3f s (peak RSS %.1f MiB, %d differences found), floor %.3f s", label, secs(cd), mib(kib), got, secs(fd))
		cmpT, floorT, ratio = append(cmpT, secs(cd)), append(floorT, secs(fd)), append(ratio, secs(cd)/secs(fd))
		rss, found = append(rss, mib(kib)), append(found, float64(got))
	}
	sec := "compare"
	note := fmt.Sprintf("pgbench_accounts, %d rows on 3 dbs, %d rows differ", rows, n)
	b.rep.add(sec, "ibex compare (process start to exit)", uSec, cmpT, note)
	b.rep.add(sec, "floor: md5(string_agg) per db, in parallel", uSec, floorT, "one digest per db, finds nothing")
	b.rep.add(sec, "ibex compare / floor", uRatio, ratio, "target <= 1.5x")
	b.rep.add(sec, "differences found", uRows, found, fmt.Sprintf("of %d", n))
	b.rep.add(sec, "peak RSS of ibex compare", uMiB, rss, "target <= 200 MB")
	if m := median(ratio); m > 1.5 {
		b.rep.fail("compare: ibex compare takes %.2fx the floor (target <= 1.5x)", m)
	}
	if slices.Max(rss) > 200 {
		b.rep.fail("compare: peak RSS %.1f MiB (target <= 200 MB)", slices.Max(rss))
	}
	return nil
}
