package job

import (
	"context"
	"fmt"
	"log/slog"
	"math/bits"
	"slices"
	"strings"

	"github.com/ibexrepl/ibex/internal/capture"
	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/internal/control"
)

// resolve picks each key's winner and receivers; it returns the conflicts.
func (r *runner) resolve(t *table, keys map[string]*keyState) []control.Conflict {
	var out []control.Conflict
	recv := r.routeMask()
	for k, ks := range keys {
		if c, ok := r.resolveKey(t, k, ks, recv); ok {
			out = append(out, c)
		}
	}
	return out
}

// resolveKey picks the winner of key k and its receivers (of the members in recv, see
// routeMask); ok reports a conflict, c.
func (r *runner) resolveKey(t *table, k string, ks *keyState, recv uint64) (c control.Conflict, ok bool) {
	defer r.routeKeyIn(ks, recv)
	if len(ks.changes) == 1 {
		// Its one changer (mergeParts set its bit with the change).
		ks.winner = bits.TrailingZeros64(ks.changer)
		if ks.changer == 0 || ks.changer&(ks.changer-1) != 0 {
			ks.winner = r.memberByName(ks.changes[0].DB).idx
		}
		return c, false
	}
	typ := conflict.Classify(ks.changes)
	st := r.strategies.For(typ)
	d, overlap, byCols := r.mergeColumns(t, ks, st, typ)
	if !byCols {
		d = r.decide(st, ks.changes)
	} else if !overlap {
		// Sources changed different columns: merged, not a conflict.
		ks.winner = r.memberByName(d.Winner).idx
		r.useDecision(t, ks, d)
		return c, false
	}
	w := d.Winner
	c = control.Conflict{Sync: r.sync.Name, Table: t.name, Key: keyText(t, k), Type: typ, Strategy: st.String(), Resolution: "applied"}
	for _, ch := range ks.changes {
		c.DBs = append(c.DBs, ch.DB)
	}
	if w == "" {
		c.Resolution = "skipped"
		if st.Kind == conflict.Abort {
			c.Resolution = "aborted"
		}
	} else {
		c.Winner = w
		ks.winner = r.memberByName(w).idx
		r.useDecision(t, ks, d)
	}
	return c, true
}

// useDecision makes d, the decision on a key changed on several sources whose winner is
// ks.winner, the key's: counters added, and a row built when it is not the winner's.
func (r *runner) useDecision(t *table, ks *keyState, d conflict.Decision) {
	if r.holdsDecided(ks.winner) {
		// The unit is being applied again to receivers that failed, and the winner
		// committed it: its row is the one decided (a counter's deltas added, a
		// function's row), and is sent as it is. Deciding again would build on that
		// row and add the deltas, or call the function on its result, a second time.
		return
	}
	if len(t.rel.Counters) > 0 && ks.sums() != nil && d.Func == "" {
		d = r.addCounters(t, ks, ks.winner, d)
	}
	if !d.Whole() {
		x := ks.extra()
		ks.built, x.decision = true, &d
		for _, db := range d.Sources() {
			x.from |= bit(r.memberByName(db).idx)
		}
	}
}

// holdsDecided reports whether member w holds the rows decided in the unit being applied:
// while the unit is applied again to the receivers whose transaction failed (replay), w
// is not one of them and committed it. A winner that skipped a key (its application
// changed it after the run's snapshot) holds its own newer change, which wins next run;
// its counters, read as of the snapshot, are still the decided ones.
func (r *runner) holdsDecided(w int) bool {
	if r.only == 0 || w < 0 || r.only&bit(w) != 0 {
		return false
	}
	m := r.members[w]
	return m.alive() && m.recvErr == nil && m.retry == nil
}

// routeMask is the members a decided key may be routed to: those alive and receiving.
func (r *runner) routeMask() uint64 {
	var mask uint64
	for _, m := range r.members {
		if m.alive() && r.receives(m) {
			mask |= bit(m.idx)
		}
	}
	return mask
}

// routeKeyIn sets the receivers of a decided key, among the members in mask (routeMask):
// those that changed it (but a winner whose own row it is) or lack a change of it.
func (r *runner) routeKeyIn(ks *keyState, mask uint64) {
	if ks.winner < 0 {
		return
	}
	to := (ks.changer | ks.need) & mask
	if !ks.built {
		// A built row differs from every version: the winner receives it too.
		to &^= bit(ks.winner)
	}
	ks.recv |= to
}

// mergeColumns decides, on a table with conflict_detect=columns, a row that several
// sources updated (and none inserted or deleted) from the columns each changed: a column
// changed by one source takes its value, a column changed by several is a conflict decided
// by st among them; the base is st's winner (latest when st decides none and no column
// overlaps). byCols is false when the key is not decided so (another conflict type, a
// conflict function, a change whose columns are not known); overlap reports whether some
// column was changed by several sources. Counter columns are left to the counters.
func (r *runner) mergeColumns(t *table, ks *keyState, st conflict.Strategy, typ string) (d conflict.Decision, overlap, byCols bool) {
	if ks.cols() == nil || typ != conflict.TypeUpdateUpdate || st.Kind == conflict.Function {
		return d, false, false
	}
	by := map[string][]conflict.Change{}
	for _, ch := range ks.changes {
		m := r.memberByName(ch.DB)
		if m == nil {
			return d, false, false
		}
		raw, ok := ks.cols()[m.idx]
		if !ok || raw == nullText {
			return d, false, false
		}
		for _, c := range strings.Split(raw, capture.ColsSep) {
			if c != "" && !slices.Contains(t.rel.Counters, c) {
				by[c] = append(by[c], ch)
				overlap = overlap || len(by[c]) > 1
			}
		}
	}
	base := st
	if !overlap && (st.Kind == conflict.Skip || st.Kind == conflict.Abort) {
		base = conflict.Strategy{Kind: conflict.Latest}
	}
	d = conflict.Decision{Winner: base.Decide(ks.changes).Winner}
	if d.None() {
		return d, overlap, true // skip or abort: the row is left alone
	}
	for c, chs := range by {
		w := chs[0].DB
		if len(chs) > 1 {
			w = base.Decide(chs).Winner
		}
		if w != d.Winner {
			if d.Columns == nil {
				d.Columns = map[string]string{}
			}
			d.Columns[c] = w
		}
	}
	return d, overlap, true
}

// decide returns the decision on a row changed on several sources.
func (r *runner) decide(st conflict.Strategy, changes []conflict.Change) conflict.Decision {
	if r.opts.decide != nil {
		return r.opts.decide(changes)
	}
	return st.Decide(changes)
}

// keyText renders a key for the conflict log: col=value pairs.
func keyText(t *table, k string) string {
	f := strings.Split(k, "\t")
	parts := make([]string, len(f))
	for i := range f {
		parts[i] = t.keyCols[i] + "=" + f[i]
	}
	return strings.Join(parts, ", ")
}

func (r *runner) recordConflicts(ctx context.Context, cs []control.Conflict) error {
	if len(cs) == 0 {
		return nil
	}
	r.stampRun(cs)
	tx, err := r.ctlBegin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	cctx := r.ctlCtx(ctx)
	if err := control.RecordConflicts(cctx, tx, cs); err != nil {
		return fmt.Errorf("recording conflicts: %w", err)
	}
	return tx.Commit(cctx)
}

// abortCheck reads every pending key (no writes) and fails the run if a row was changed on
// more than one source in a conflict whose type's strategy is abort.
func (r *runner) abortCheck(ctx context.Context) error {
	var all []control.Conflict
	for _, t := range r.tables {
		nb, err := r.buckets(ctx, t)
		if err != nil {
			return err
		}
		for b := 0; b < nb; b++ {
			for _, c := range r.resolve(t, r.readKeys(ctx, t, b, nb)) {
				if c.Resolution == "aborted" {
					all = append(all, c)
				}
			}
		}
	}
	if len(all) == 0 {
		return nil
	}
	if err := r.recordConflicts(ctx, all); err != nil {
		return err
	}
	r.res.Conflicts = int64(len(all))
	r.res.addConflicts(all)
	var ex []string
	for i, c := range all {
		if i == 5 {
			ex = append(ex, "...")
			break
		}
		ex = append(ex, fmt.Sprintf("%s %s (changed on %s)", c.Table, c.Key, strings.Join(c.DBs, ", ")))
	}
	return fmt.Errorf("conflict_strategy abort: %d rows were changed on more than one source, nothing was applied: %s; see 'ibex conflicts %s'",
		len(all), strings.Join(ex, "; "), r.sync.Name)
}

// recordParked logs the rows receivers refused under on_error=skip (their units
// committed), before the change rows are consumed, and counts them in the run's result.
func (r *runner) recordParked(ctx context.Context, es []control.Exception) error {
	if len(es) == 0 {
		return nil
	}
	for i := range es {
		es[i].Run = r.res.RunID
		r.logger.Warn("row refused by a receiver, parked (on_error=skip)", slog.String("table", es[i].Table), slog.String("db", es[i].DB),
			slog.String("key", es[i].Key), slog.String("error", es[i].Error))
	}
	tx, err := r.ctlBegin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	cctx := r.ctlCtx(ctx)
	if err := control.RecordExceptions(cctx, tx, es); err != nil {
		return fmt.Errorf("recording parked rows: %w", err)
	}
	if err := tx.Commit(cctx); err != nil {
		return err
	}
	r.res.Parked += int64(len(es))
	return nil
}
