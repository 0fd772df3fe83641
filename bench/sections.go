package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ibexrepl/ibex/internal/control"
)

func secs(d time.Duration) float64 { return d.Seconds() }

func mib(kib int64) float64 { return float64(kib) / 1024 }

// pairRun is one kick of a sync and, optionally, the floor for the same rows.
type pairRun struct {
	kick  kickResult
	floor floorResult
	// pfloor is the parallel floor (every receiver at once), when asked for.
	pfloor floorResult
}

// floors says which raw floors kickAndFloor times after the kick, and on which dbs.
type floors struct {
	serial, parallel bool // the receivers one after another; every receiver at once
	// serialDBs and parallelDBs, when not nil, are copies of the kick's dbs made before
	// the kick, that went through the same changes: that floor runs there, as cold (in
	// shared_buffers, in pruning and hint bits, after the same CHECKPOINT) as the kick
	// found its dbs, instead of on the kick's dbs right after it (where it finds the pages
	// the kick read, pruned and set hint bits on). nil: on the kick's dbs.
	serialDBs, parallelDBs []string
	parallelFirst          bool // with both floors: the parallel one goes first
}

func (f floors) any() bool { return f.serial || f.parallel }

// kickAndFloor reads the changed keys of the sources, kicks the sync, checks that all
// dbs converged and times the raw floors fl asks for, for the same rows. sources are
// indexes into dbs. The floors run one after another (see floors.parallelFirst), a
// CHECKPOINT before each.
func (b *bench) kickAndFloor(ctx context.Context, label, ctl string, dbs []string, sources []int, fl floors) (pairRun, error) {
	var pr pairRun
	var perSource []keySet
	if fl.any() {
		for _, s := range sources {
			ks, err := b.env.readKeys(ctx, dbs[s])
			if err != nil {
				return pr, err
			}
			perSource = append(perSource, ks)
		}
	}
	if err := b.env.checkpoint(ctx); err != nil {
		return pr, err
	}
	progress("%s: ibex kick %s", label, syncName)
	kr, err := b.env.kick(ctx, ctl)
	if err != nil {
		return pr, err
	}
	pr.kick = kr
	if debug && len(kr.stderr) > 0 {
		progress("%s: the kick's log:\n%s", label, kr.stderr)
	}
	progress("%s: kick to done %.3f s, sync %.3f s, inserts %d, deletes %d, conflicts %d, peak RSS %.1f MiB",
		label, secs(kr.wall), secs(kr.sync), kr.inserts, kr.deletes, kr.conflicts, mib(kr.rssKiB))
	ok, detail, err := b.env.converged(ctx, dbs)
	if err != nil {
		return pr, fmt.Errorf("checking convergence: %w", err)
	}
	if !ok {
		b.rep.fail("%s: the databases did NOT converge after the kick: %s", label, detail)
		return pr, nil
	}
	progress("%s: converged (all %d databases identical)", label, len(dbs))
	if !fl.any() {
		return pr, nil
	}
	owned := ownKeys(perSource)
	var order []bool
	if fl.serial {
		order = append(order, false)
	}
	if fl.parallel {
		order = append(order, true)
	}
	if len(order) == 2 && fl.parallelFirst {
		order = []bool{true, false}
	}
	for _, parallel := range order {
		if err := b.env.checkpoint(ctx); err != nil {
			return pr, err
		}
		floorDBs, where := dbs, "on the kick's dbs"
		if parallel && fl.parallelDBs != nil {
			floorDBs, where = fl.parallelDBs, "on copies made before the kick"
		} else if !parallel && fl.serialDBs != nil {
			floorDBs, where = fl.serialDBs, "on copies made before the kick"
		}
		what := "raw floor (DELETE + COPY of the same rows, plain SQL, receivers one after another)"
		if parallel {
			what = "parallel floor (the same DELETE + COPY, one session per receiver, all receivers at once)"
		}
		progress("%s: %s, %s", label, what, where)
		fr, err := b.env.floor(ctx, floorDBs, sources, owned, parallel)
		if err != nil {
			return pr, err
		}
		if parallel {
			pr.pfloor = fr
		} else {
			pr.floor = fr
		}
		progress("%s: %s floor %.3f s (%d rows deleted, %d copied)", label, map[bool]string{false: "serial", true: "parallel"}[parallel], secs(fr.dur), fr.deleted, fr.wrote)
		ok, detail, err = b.env.converged(ctx, floorDBs)
		if err != nil {
			return pr, fmt.Errorf("checking convergence after the floor: %w", err)
		}
		if !ok {
			return pr, fmt.Errorf("%s: the floor run broke convergence (a harness bug): %s", label, detail)
		}
	}
	return pr, nil
}

// ---- 1 + 2: the seed demo and its raw floor

func (b *bench) seed(ctx context.Context) error {
	cfg := b.cfg
	withFloor := cfg.sections["floor"]
	n := cfg.sources + cfg.targets
	sl := b.seedLayout(prefix)
	dbs, sources := sl.dbs, sl.sources
	ctl := prefix + "ctl"
	var wall, sync, rate, rss, ins, del, conf, tps, floor, floorRate, floorRows, kickFloor, syncFloor []float64
	var pfloor, pfloorRows, kickPFloor, syncPFloor []float64
	fails := len(b.rep.failures)
	for r := 1; r <= cfg.repeats; r++ {
		label := fmt.Sprintf("seed repeat %d/%d", r, cfg.repeats)
		progress("%s: creating %d databases (pgbench -i -s %d, then TEMPLATE copies) and control db %s", label, n, cfg.scale, ctl)
		if err := b.setupSeed(ctx, sl, ctl, nil); err != nil {
			return err
		}
		progress("%s: pgbench -n -t %d on %d sources (concurrently)", label, cfg.tx, cfg.sources)
		t, err := b.env.pgbenchAll(ctx, sl.srcNames, cfg.tx)
		if err != nil {
			return err
		}
		tps = append(tps, t...)
		// The floors' copies of the dbs, as the kick will find them.
		fl := floors{serial: withFloor, parallel: withFloor, parallelFirst: r%2 == 0}
		if withFloor {
			progress("%s: two copies of the %d databases for the floors (FILE_COPY)", label, n)
			for _, db := range dbs {
				fs, fp := db+"_fs", db+"_fp"
				for _, c := range []string{fs, fp} {
					if err := b.env.create(ctx, c, db, true); err != nil {
						return err
					}
				}
				fl.serialDBs, fl.parallelDBs = append(fl.serialDBs, fs), append(fl.parallelDBs, fp)
			}
		}
		pr, err := b.kickAndFloor(ctx, label, ctl, dbs, sources, fl)
		if err != nil {
			return err
		}
		k := pr.kick
		wall, sync, rate, rss = append(wall, secs(k.wall)), append(sync, secs(k.sync)), append(rate, k.rowsPerSec()), append(rss, mib(k.rssKiB))
		ins, del, conf = append(ins, float64(k.inserts)), append(del, float64(k.deletes)), append(conf, float64(k.conflicts))
		if withFloor && pr.floor.dur > 0 {
			floor, floorRate, floorRows = append(floor, secs(pr.floor.dur)), append(floorRate, pr.floor.rowsPerSec()), append(floorRows, float64(pr.floor.wrote))
			kickFloor, syncFloor = append(kickFloor, secs(k.wall)/secs(pr.floor.dur)), append(syncFloor, secs(k.sync)/secs(pr.floor.dur))
		}
		if withFloor && pr.pfloor.dur > 0 {
			pfloor, pfloorRows = append(pfloor, secs(pr.pfloor.dur)), append(pfloorRows, float64(pr.pfloor.wrote))
			kickPFloor, syncPFloor = append(kickPFloor, secs(k.wall)/secs(pr.pfloor.dur)), append(syncPFloor, secs(k.sync)/secs(pr.pfloor.dur))
		}
	}
	b.seedKick, b.seedSync = wall, sync
	sec := "seed"
	demo := fmt.Sprintf("%d src + %d tgt, scale %d, %d tx/src", cfg.sources, cfg.targets, cfg.scale, cfg.tx)
	b.rep.add(sec, "kick to done (exec to exit)", uSec, wall, demo)
	b.rep.add(sec, "sync time (duration_ns)", uSec, sync, "")
	b.rep.add(sec, "rows applied/s, (ins+del)/sync", uRate, rate, "")
	b.rep.add(sec, "peak RSS of the kick process", uMiB, rss, "")
	b.rep.add(sec, "inserts", uRows, ins, "")
	b.rep.add(sec, "deletes", uRows, del, "")
	b.rep.add(sec, "conflicts", uRows, conf, "Bucardo: ~4.8k at the reference workload")
	b.rep.add(sec, "pgbench on sources, capture on", uTPS, tps, "per source, during the load")
	conv := fmt.Sprintf("yes %d/%d", len(wall), cfg.repeats)
	note := "md5 fingerprint of every table equal in all dbs"
	if f := len(b.rep.failures) - fails; f > 0 {
		conv = fmt.Sprintf("FAIL (%d of %d)", f, cfg.repeats)
		note = "NOT CONVERGED: see FAIL lines below"
	}
	b.rep.text(sec, "converged", conv, note)
	if withFloor {
		sec = "floor"
		b.rep.add(sec, "raw floor: DELETE+COPY, dbs serially", uSec, floor, "same rows, on copies of the dbs made before the kick; Bucardo report: ~0.74 s")
		b.rep.add(sec, "floor rows written", uRows, floorRows, "each changed row into every db but its source")
		b.rep.add(sec, "floor rows/s, (del+copy)/time", uRate, floorRate, "")
		b.rep.add(sec, "ibex kick to done / floor", uRatio, kickFloor, "Bucardo: ~3.2 s / 0.74 s = 4.3x")
		b.rep.add(sec, "ibex sync / floor", uRatio, syncFloor, "Bucardo: ~2.06 s / 0.74 s = 2.8x")
		b.rep.add(sec, "parallel floor: all receivers at once", uSec, pfloor, "the same DELETE+COPY, one session per receiver, concurrently, on copies made before the kick")
		b.rep.add(sec, "parallel floor rows written", uRows, pfloorRows, "")
		b.rep.add(sec, "ibex kick to done / parallel floor", uRatio, kickPFloor, "target <= 1.2 (ibex applies receivers concurrently)")
		b.rep.add(sec, "ibex sync / parallel floor", uRatio, syncPFloor, "")
		b.parFloor = pfloor
	}
	return nil
}

// ---- 3: Bucardo: bucardo.go

// ---- 4: capture overhead on pgbench: capture.go

// ---- 5: growth with table size

func (b *bench) growth(ctx context.Context) error {
	cfg := b.cfg
	type perScale struct {
		scale             int
		wall, sync, floor []float64
		rows              []float64
	}
	var all []perScale
	for _, scale := range cfg.growthScales {
		ps := perScale{scale: scale}
		tmpl := fmt.Sprintf("%sg%d_tmpl", prefix, scale)
		src, tgt, ctl := fmt.Sprintf("%sg%d_src", prefix, scale), fmt.Sprintf("%sg%d_tgt", prefix, scale), fmt.Sprintf("%sg%d_ctl", prefix, scale)
		fsrc, ftgt := fmt.Sprintf("%sg%d_fsrc", prefix, scale), fmt.Sprintf("%sg%d_ftgt", prefix, scale)
		progress("growth scale %d: pgbench -i -s %d into %s (%d accounts rows; scale 100 takes minutes)", scale, scale, tmpl, scale*100000)
		if err := b.env.create(ctx, tmpl, "", false); err != nil {
			return err
		}
		if err := b.env.pgbenchInit(ctx, tmpl, scale); err != nil {
			return err
		}
		for r := 1; r <= cfg.growthRepeats; r++ {
			label := fmt.Sprintf("growth scale %d repeat %d/%d", scale, r, cfg.growthRepeats)
			progress("%s: %s and %s from %s (FILE_COPY), sync 1 source -> 1 target; %s and %s for the floor", label, src, tgt, tmpl, fsrc, ftgt)
			for _, db := range []string{src, tgt, fsrc, ftgt} {
				if err := b.env.create(ctx, db, tmpl, true); err != nil {
					return err
				}
			}
			dbs := []string{src, tgt}
			if err := b.env.setupSync(ctx, ctl, dbs, []string{control.RoleSource, control.RoleTarget}); err != nil {
				return fmt.Errorf("configuring the sync: %w", err)
			}
			if err := b.env.checkpoint(ctx); err != nil {
				return err
			}
			// One client and a fixed seed: the same changes on the floor's copy.
			seed := strconv.Itoa(1000 + r)
			progress("%s: pgbench -n -t %d -b %s --random-seed %s on %s and %s", label, cfg.growthTx, cfg.growthScript, seed, src, fsrc)
			for _, db := range []string{src, fsrc} {
				if _, err := b.env.pgbenchAll(ctx, []string{db}, cfg.growthTx, "-b", cfg.growthScript, "--random-seed", seed); err != nil {
					return err
				}
			}
			pr, err := b.kickAndFloor(ctx, label, ctl, dbs, []int{0}, floors{serial: true, serialDBs: []string{fsrc, ftgt}})
			if err != nil {
				return err
			}
			if pr.floor.dur == 0 { // not converged: reported as FAIL
				continue
			}
			ps.wall, ps.sync = append(ps.wall, secs(pr.kick.wall)), append(ps.sync, secs(pr.kick.sync))
			ps.floor, ps.rows = append(ps.floor, secs(pr.floor.dur)), append(ps.rows, float64(pr.kick.inserts))
		}
		all = append(all, ps)
		if err := b.env.dropNow(ctx, cfg.keep, ctl, src, tgt, fsrc, ftgt, tmpl); err != nil {
			return err
		}
	}
	sec := "growth"
	base := all[0]
	for _, ps := range all {
		note := fmt.Sprintf("1 src + 1 tgt, %d tx -b %s, %d accounts rows", cfg.growthTx, cfg.growthScript, ps.scale*100000)
		b.rep.add(sec, fmt.Sprintf("scale %d: ibex sync", ps.scale), uSec, ps.sync, note)
		b.rep.add(sec, fmt.Sprintf("scale %d: ibex kick to done", ps.scale), uSec, ps.wall, "")
		b.rep.add(sec, fmt.Sprintf("scale %d: rows inserted", ps.scale), uRows, ps.rows, "")
		b.rep.add(sec, fmt.Sprintf("scale %d: raw floor", ps.scale), uSec, ps.floor, "same rows, plain SQL, on a copy that went through the same changes")
		b.rep.add(sec, fmt.Sprintf("scale %d: ibex sync / floor", ps.scale), uRatio, ratios(ps.sync, ps.floor), "")
	}
	for _, ps := range all[1:] {
		note := "paired by repeat"
		if ps.scale == 100*base.scale {
			note = "target <= 1.2 (" + note + ")"
		}
		b.rep.add(sec, fmt.Sprintf("sync scale %d / scale %d", ps.scale, base.scale), uRatio, ratios(ps.sync, base.sync), note)
		b.rep.add(sec, fmt.Sprintf("floor scale %d / scale %d", ps.scale, base.scale), uRatio, ratios(ps.floor, base.floor), "PostgreSQL's own growth")
		b.rep.add(sec, fmt.Sprintf("sync per row, scale %d / scale %d", ps.scale, base.scale), uRatio, ratios(ratios(ps.sync, ps.rows), ratios(base.sync, base.rows)), "time per row inserted, paired by repeat")
	}
	return nil
}

// ---- 6: a large backlog

// backlog kicks a sync holding -backlog-rows pending changed rows in the seed demo's
// shape: -backlog-sources sources and one target, pgbench scale 10 or more, each source
// having changed its own share of pgbench_accounts (one UPDATE per 100,000 rows, disjoint
// aid ranges, so no conflicts: every receiver gets every other db's rows). The floor is
// the parallel floor (the same DELETE + COPY, one session per receiver, all at once) on
// copies of the databases that went through the same changes, as cold as the kick's.
func (b *bench) backlog(ctx context.Context) error {
	cfg := b.cfg
	const chunk = 100000
	nsrc := max(1, cfg.backlogSources)
	scale := max(10, (cfg.backlogRows+chunk-1)/chunk)
	tmpl, ctl := prefix+"bl_tmpl", prefix+"bl_ctl"
	var dbs, fdbs, roles []string
	var sources []int
	for i := 1; i <= nsrc+1; i++ {
		dbs, fdbs = append(dbs, fmt.Sprintf("%sbl_%d", prefix, i)), append(fdbs, fmt.Sprintf("%sbl_f%d", prefix, i))
		if i <= nsrc {
			roles, sources = append(roles, control.RoleSource), append(sources, i-1)
		} else {
			roles = append(roles, control.RoleTarget)
		}
	}
	progress("backlog: pgbench -i -s %d into %s (%d accounts rows)", scale, tmpl, scale*100000)
	if err := b.env.create(ctx, tmpl, "", false); err != nil {
		return err
	}
	if err := b.env.pgbenchInit(ctx, tmpl, scale); err != nil {
		return err
	}
	var wall, sync, rss, rate, floor, floorRate, ins []float64
	for r := 1; r <= cfg.backlogRepeats; r++ {
		label := fmt.Sprintf("backlog repeat %d/%d", r, cfg.backlogRepeats)
		progress("%s: %s from %s (FILE_COPY), sync %d sources -> 1 target; %s for the floor", label, strings.Join(dbs, ", "), tmpl, nsrc, strings.Join(fdbs, ", "))
		for _, db := range append(append([]string{}, dbs...), fdbs...) {
			if err := b.env.create(ctx, db, tmpl, true); err != nil {
				return err
			}
		}
		if err := b.env.setupSync(ctx, ctl, dbs, roles); err != nil {
			return fmt.Errorf("configuring the sync: %w", err)
		}
		// The same changes on each source and on the floor's copy of it: source i changes
		// the i-th share of the rows.
		for _, si := range sources {
			lo0, hi0 := cfg.backlogRows*si/nsrc, cfg.backlogRows*(si+1)/nsrc
			for _, db := range []string{dbs[si], fdbs[si]} {
				if err := b.env.bumpAccounts(ctx, label, db, lo0, hi0, chunk); err != nil {
					return err
				}
			}
		}
		pr, err := b.kickAndFloor(ctx, label, ctl, dbs, sources, floors{parallel: true, parallelDBs: fdbs})
		if err != nil {
			return err
		}
		if pr.pfloor.dur == 0 {
			continue
		}
		k := pr.kick
		wall, sync, rss, rate = append(wall, secs(k.wall)), append(sync, secs(k.sync)), append(rss, mib(k.rssKiB)), append(rate, k.rowsPerSec())
		floor, floorRate, ins = append(floor, secs(pr.pfloor.dur)), append(floorRate, pr.pfloor.rowsPerSec()), append(ins, float64(k.inserts))
	}
	sec := "backlog"
	b.rep.add(sec, "ibex kick to done", uSec, wall, fmt.Sprintf("%d src + 1 tgt, scale %d, %d pending changed rows (each source its share)", nsrc, scale, cfg.backlogRows))
	b.rep.add(sec, "ibex sync", uSec, sync, "")
	b.rep.add(sec, "rows inserted", uRows, ins, "on every receiver together")
	b.rep.add(sec, "peak RSS of the kick process", uMiB, rss, "target <= 100 MB")
	b.rep.add(sec, "ibex rows/s, (ins+del)/sync", uRate, rate, "")
	b.rep.add(sec, "parallel floor: DELETE+COPY", uSec, floor, "same rows, plain SQL, every receiver at once, on copies that went through the same changes")
	b.rep.add(sec, "floor rows/s, (del+copy)/time", uRate, floorRate, "")
	b.rep.add(sec, "ibex sync / parallel floor", uRatio, ratios(sync, floor), "target <= 1.5")
	b.rep.add(sec, "ibex kick to done / parallel floor", uRatio, ratios(wall, floor), "")
	return b.env.dropNow(ctx, cfg.keep, append(append([]string{ctl, tmpl}, dbs...), fdbs...)...)
}

// bumpAccounts adds 1 to abalance of pgbench_accounts rows lo+1..hi on db, one UPDATE
// (one transaction) per chunk rows.
func (e *env) bumpAccounts(ctx context.Context, label, db string, lo, hi, chunk int) error {
	c, err := e.connect(ctx, db)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close(context.WithoutCancel(ctx)) }()
	for from := lo; from < hi; from += chunk {
		to := min(from+chunk, hi)
		progress("%s: UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid in (%d, %d] on %s", label, from, to, db)
		if _, err := c.Exec(ctx, `UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid > $1 AND aid <= $2`, from, to); err != nil {
			return fmt.Errorf("UPDATE pgbench_accounts on %s: %w", db, err)
		}
	}
	return nil
}

// seedShape is the seed demo's databases: cfg.sources sources, then cfg.targets targets.
type seedShape struct {
	dbs, roles, srcNames []string
	sources              []int // indexes into dbs
}

// seedLayout names the seed demo's databases prefix1, prefix2, ...
func (b *bench) seedLayout(prefix string) seedShape {
	var sl seedShape
	for i := 1; i <= b.cfg.sources+b.cfg.targets; i++ {
		db := fmt.Sprintf("%s%d", prefix, i)
		sl.dbs = append(sl.dbs, db)
		if i <= b.cfg.sources {
			sl.roles = append(sl.roles, control.RoleSource)
			sl.sources = append(sl.sources, i-1)
			sl.srcNames = append(sl.srcNames, db)
		} else {
			sl.roles = append(sl.roles, control.RoleTarget)
		}
	}
	return sl
}

// setupSeed (re)creates the seed's databases (pgbench -i on the first, TEMPLATE copies),
// configures the sync in control db ctl, runs configure (more ibex commands, or nil) and
// checkpoints.
func (b *bench) setupSeed(ctx context.Context, sl seedShape, ctl string, configure func() error) error {
	if err := b.env.create(ctx, sl.dbs[0], "", false); err != nil {
		return err
	}
	if err := b.env.pgbenchInit(ctx, sl.dbs[0], b.cfg.scale); err != nil {
		return err
	}
	for _, db := range sl.dbs[1:] {
		if err := b.env.create(ctx, db, sl.dbs[0], false); err != nil {
			return err
		}
	}
	if err := b.env.setupSync(ctx, ctl, sl.dbs, sl.roles); err != nil {
		return fmt.Errorf("configuring the sync: %w", err)
	}
	if configure != nil {
		if err := configure(); err != nil {
			return err
		}
	}
	return b.env.checkpoint(ctx)
}
