package job

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/ibexrepl/ibex/internal/capture"
	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/conflict"
)

// Counter columns (a table's counters=, issue 2.4): each source's change to a counter is
// applied on the other dbs as a delta, so increments made on several sources all count.
//
// Capture records each change's delta (new value minus old; an insert adds its value, a
// delete takes it away), and the key read sums, per source and key, the deltas each
// receiver has not applied yet (keyPart.sums). Then:
//
//   - a key changed on one source is forwarded as a whole row, as any other: the receivers
//     held the value it started from, so its value is the right sum;
//   - a key changed on several sources gets the strategy's winner for its other columns and,
//     for each counter, the winner's value plus the deltas of the other sources that the
//     winner has not applied (a built row, sent to every receiver, the winner too). A source
//     whose changes end in a delete adds nothing: if the row survives, the delete lost. When
//     the winner deleted the row, it is deleted everywhere;
//   - a receiver that is a source and skips a key its own application changed after the
//     run's snapshot (that newer change wins next run) still gets the other sources' deltas
//     added to its row (sinks.SkippedAdder): its row, sent as a whole next run, then holds
//     them.
//
// Rows are read from a sender as its application leaves them, which may include changes
// made after the run's snapshot (pending for the next run). Their counter deltas would
// then reach the receivers twice (in this row, and as a delta next run), so a sender reads
// each counter as of the snapshot: its value minus the deltas of those later changes
// (readAsOf). The other columns are read as they are, as without counters.
//
// A change captured before the column was a counter has no delta: such a key is decided as
// a whole row (its counters follow the winner, as without counters) and the run logs how
// many keys that was.

// othersDelta returns the sum of the deltas of counter c (index in t.rel.Counters) that
// the sources of ks other than to made and to has not applied, leaving out sources whose
// changes end in a delete; ok is false when one of them is not known.
func (r *runner) othersDelta(ks *keyState, c, to int) (sum string, ok bool) {
	nm := len(r.members)
	sum = "0"
	for _, ch := range ks.changes {
		src := r.memberByName(ch.DB)
		if src == nil || src.idx == to || ch.Kind == conflict.KindDelete {
			continue
		}
		d := ks.sums()[src.idx][c*nm+to]
		if d == "" || d == nullText {
			return "", false
		}
		var err error
		if sum, err = conflict.AddNumbers(sum, d); err != nil {
			return "", false
		}
	}
	return sum, true
}

// addCounters adds to d, the decision on a key changed on several sources of a table with
// counters, the other sources' deltas of each counter to the winner's value (w: the
// winner's member index).
func (r *runner) addCounters(t *table, ks *keyState, w int, d conflict.Decision) conflict.Decision {
	for _, ch := range ks.changes {
		if ch.DB == r.members[w].name && ch.Kind == conflict.KindDelete {
			return d // deleted everywhere
		}
	}
	for c, col := range t.rel.Counters {
		sum, ok := r.othersDelta(ks, c, w)
		if !ok {
			r.noDeltas.Add(1)
			return d
		}
		if conflict.IsZero(sum) {
			continue
		}
		if d.Add == nil {
			d.Add = map[string]string{}
		}
		d.Add[col] = sum
	}
	return d
}

// skippedDeltas returns, for receiver m (a source) of a batch of a table with counters,
// one line per key of keys whose counters the other sources changed: the key and the sum
// of their deltas for each counter (sinks.SkippedAdder). The sink adds them to the rows it
// skips.
func (r *runner) skippedDeltas(t *table, keys map[string]*keyState, recv []string, m *member) []string {
	var lines []string
	for _, k := range recv {
		ks := keys[k]
		if ks == nil || ks.sums() == nil {
			continue
		}
		line := k
		zero := true
		for c := range t.rel.Counters {
			sum, ok := r.othersDelta(ks, c, m.idx)
			if !ok {
				r.noDeltas.Add(1)
				zero = true
				break
			}
			zero = zero && conflict.IsZero(sum)
			line += "\t" + sum
		}
		if !zero {
			lines = append(lines, line)
		}
	}
	return lines
}

// readAsOf is the COPY a sender of a table with counters reads the rows of the keys of
// wkeys (see shipKeys) with, its counters as of its snapshot snap (see above).
func (t *table) readAsOf(snap, wkeys string) string {
	typeOf := map[string]string{}
	for _, c := range t.desc.Columns {
		typeOf[c.Name] = c.Type
	}
	sel := make([]string, len(t.cols))
	for i, c := range t.cols {
		sel[i] = "t." + catalog.QuoteCols("", []string{c})
		if n := slices.Index(t.rel.Counters, c); n >= 0 {
			sel[i] = capture.CounterAsOf("t", "l", t.keyCols, n, c, typeOf[c])
		}
	}
	return fmt.Sprintf(`COPY (SELECT %s%s FROM (%s) l, %s w JOIN %s t ON %s%s) TO STDOUT`,
		strings.Join(sel, ", "), t.extraCols(), capture.LateDeltas(t.change, t.keyCols, t.rel.Counters, snap),
		wkeys, t.filtered(), catalog.KeyJoin("w", "t", t.keyCols), t.laterals())
}

// noDeltaCount counts keys of counter tables decided without deltas (changes captured
// before the column was a counter).
type noDeltaCount = atomic.Int64
