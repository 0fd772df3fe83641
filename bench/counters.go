package main

import (
	"context"
	"fmt"
	"strings"
)

// counterColumns are the seed demo's counters: each table's balance.
var counterColumns = map[string]string{
	"pgbench_accounts": "abalance",
	"pgbench_branches": "bbalance",
	"pgbench_tellers":  "tbalance",
}

// counters times the seed demo twice per repeat, once with counters on the three balances
// and once without (alternating which goes first), on fresh copies of the same databases,
// and checks that with counters every db's three sums equal the sum of pgbench's deltas.
func (b *bench) counters(ctx context.Context) error {
	cfg := b.cfg
	n := cfg.sources + cfg.targets
	sl := b.seedLayout(prefix + "c")
	dbs, sources := sl.dbs, sl.sources
	ctl := prefix + "cctl"
	var on, off, ratio, tpsOn, tpsOff, confOn []float64
	sumsOK := 0
	for r := 1; r <= cfg.repeats; r++ {
		modes := []bool{true, false}
		if r%2 == 0 {
			modes = []bool{false, true}
		}
		var wall [2]float64
		for _, withCounters := range modes {
			label := fmt.Sprintf("counters repeat %d/%d, counters %v", r, cfg.repeats, withCounters)
			progress("%s: creating %d databases (pgbench -i -s %d, then TEMPLATE copies)", label, n, cfg.scale)
			configure := func() error {
				if !withCounters {
					return nil
				}
				for _, t := range pgbenchTables {
					if col, ok := counterColumns[t.name]; ok {
						if _, err := b.env.ibex(ctx, ctl, "update", "table", t.name, "counters="+col); err != nil {
							return err
						}
					}
				}
				return nil
			}
			if err := b.setupSeed(ctx, sl, ctl, configure); err != nil {
				return err
			}
			progress("%s: pgbench -n -t %d on %d sources (concurrently)", label, cfg.tx, cfg.sources)
			tps, err := b.env.pgbenchAll(ctx, sl.srcNames, cfg.tx)
			if err != nil {
				return err
			}
			pr, err := b.kickAndFloor(ctx, label, ctl, dbs, sources, floors{})
			if err != nil {
				return err
			}
			k := pr.kick
			if withCounters {
				wall[0] = secs(k.wall)
				on, tpsOn, confOn = append(on, secs(k.wall)), append(tpsOn, tps...), append(confOn, float64(k.conflicts))
				ok, detail, err := b.sumsAddUp(ctx, dbs, sl.srcNames)
				if err != nil {
					return err
				}
				if !ok {
					b.rep.fail("%s: %s", label, detail)
				} else {
					sumsOK++
				}
				progress("%s: %s", label, detail)
			} else {
				wall[1] = secs(k.wall)
				off, tpsOff = append(off, secs(k.wall)), append(tpsOff, tps...)
			}
		}
		if wall[0] > 0 && wall[1] > 0 {
			ratio = append(ratio, wall[0]/wall[1])
		}
	}
	sec := "counters"
	demo := fmt.Sprintf("seed demo, %d src + %d tgt, scale %d, %d tx/src", cfg.sources, cfg.targets, cfg.scale, cfg.tx)
	b.rep.add(sec, "kick to done, counters on", uSec, on, demo+"; abalance, bbalance, tbalance")
	b.rep.add(sec, "kick to done, counters off", uSec, off, "the same demo on fresh copies, same repeat")
	b.rep.add(sec, "counters on / off", uRatio, ratio, "target <= 1.3x")
	b.rep.add(sec, "conflicts, counters on", uRows, confOn, "balances add; other columns by the strategy")
	b.rep.add(sec, "pgbench on sources, counters on", uTPS, tpsOn, "per source, during the load")
	b.rep.add(sec, "pgbench on sources, counters off", uTPS, tpsOff, "")
	b.rep.text(sec, "sums equal pgbench's deltas", fmt.Sprintf("yes %d/%d", sumsOK, len(on)), "SUM(abalance) = SUM(bbalance) = SUM(tbalance) = SUM(pgbench_history.delta) on every db")
	return b.env.dropNow(ctx, cfg.keep, append([]string{ctl}, dbs...)...)
}

// sumsAddUp compares every db's three balance sums with the sum of the deltas pgbench
// recorded in pgbench_history on the sources.
func (b *bench) sumsAddUp(ctx context.Context, dbs, sources []string) (bool, string, error) {
	var want int64
	for _, db := range sources {
		c, err := b.env.connect(ctx, db)
		if err != nil {
			return false, "", err
		}
		var d int64
		err = c.QueryRow(ctx, `SELECT coalesce(sum(delta), 0) FROM pgbench_history`).Scan(&d)
		c.Close(ctx)
		if err != nil {
			return false, "", fmt.Errorf("%s: summing pgbench_history: %w", db, err)
		}
		want += d
	}
	var bad []string
	for _, db := range dbs {
		c, err := b.env.connect(ctx, db)
		if err != nil {
			return false, "", err
		}
		var a, br, t int64
		err = c.QueryRow(ctx, `SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(bbalance) FROM pgbench_branches), (SELECT sum(tbalance) FROM pgbench_tellers)`).Scan(&a, &br, &t)
		c.Close(ctx)
		if err != nil {
			return false, "", fmt.Errorf("%s: summing the balances: %w", db, err)
		}
		if a != want || br != want || t != want {
			bad = append(bad, fmt.Sprintf("%s: %d %d %d", db, a, br, t))
		}
	}
	if len(bad) > 0 {
		return false, fmt.Sprintf("balances do NOT add up to the deltas (%d): %s", want, strings.Join(bad, "; ")), nil
	}
	return true, fmt.Sprintf("balances add up on all %d dbs (%d)", len(dbs), want), nil
}
