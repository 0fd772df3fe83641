package job

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/ibexrepl/ibex/internal/capture"
	"github.com/ibexrepl/ibex/internal/dbconn"
	"github.com/ibexrepl/ibex/sinks"
)

// How a captured TRUNCATE is applied (see the README, "TRUNCATE").
//
// A TRUNCATE of a table on a source at time T (the time capture recorded, as for row
// changes) stands for "every row of the table changed at or before T is gone": like a
// delete of every row under the latest strategy, whatever the sync's strategy. So, in a
// run that finds pending TRUNCATEs of a table:
//
//   - every receiver that has not applied the latest of them yet (one from another source,
//     later than any TRUNCATE of its own) empties the table with one TRUNCATE, in a unit of
//     its own committed before any batch (a TRUNCATE holds an exclusive lock on the table
//     until it commits, which the batches' reads of that db would wait for); a receiver
//     that is itself a source keeps the rows its own application changed after T (those
//     changes are newer and go out in this run);
//   - a row change made at or before the TRUNCATE that a receiver applies (or at or before
//     the sending source's own latest TRUNCATE) is void for that receiver: it is neither
//     applied nor a candidate in a conflict, so a change made after T on any source wins,
//     and a change made before it is not applied again after it.
//
// Tables truncated together on a source (TRUNCATE a, b; CASCADE) are emptied together on
// each receiver, so that foreign keys between them hold. Right after that unit commits,
// when every db takes part, the TRUNCATEs and the changes they made void are consumed:
// a run killed later does not empty the table again. Otherwise the watermarks recorded at
// the end of the run say who applied them; a run killed before that empties the tables
// again next time, when nothing applied since has been consumed either.

// truncs is what a run knows of one table's pending TRUNCATEs, by member index: at[m] is
// the time (microseconds since the epoch) of the latest TRUNCATE from another source that
// receiver m has not applied, own[a] the time of source a's own latest pending TRUNCATE;
// 0 for none.
type truncs struct {
	at, own []int64
}

// cut is the time up to which a change is void for receiver m: the latest TRUNCATE it
// applies in this run, or its own latest one.
func (tr *truncs) cut(m int) int64 { return max(tr.at[m], tr.own[m]) }

// applies reports whether receiver m empties the table in this run: a TRUNCATE from another
// source is later than its own latest.
func (tr *truncs) applies(m int) bool { return tr.at[m] > tr.own[m] }

// void reports whether a change of source a made at time at is void for receiver m.
func (tr *truncs) void(a, m int, at int64) bool { return at <= max(tr.cut(m), tr.own[a]) }

// readTruncates reads the pending TRUNCATEs of every table that has some (all tables when
// they were not counted) from every live source, and records them in r.truncs.
func (r *runner) readTruncates(ctx context.Context) {
	r.truncs = map[*table]*truncs{}
	for _, t := range r.tables {
		if r.truncN != nil && r.truncN[t] == 0 {
			continue
		}
		srcs := r.sources()
		vals := make([][]*int64, len(r.members))
		recvs := make([][]*member, len(r.members))
		sqls := make([]string, len(r.members))
		for _, a := range srcs {
			for _, m := range r.members {
				if m != a && m.alive() {
					recvs[a.idx] = append(recvs[a.idx], m)
				}
			}
			sqls[a.idx] = capture.TruncateRead(t.change, a.snap, r.watermarks(a))
		}
		errs := r.each(srcs, func(a *member) error {
			v := make([]*int64, len(recvs[a.idx])+1)
			dest := make([]any, len(v))
			for i := range v {
				dest[i] = &v[i]
			}
			err := a.conn.QueryRow(ctx, sqls[a.idx]).Scan(dest...)
			vals[a.idx] = v
			return err
		})
		tr := &truncs{at: make([]int64, len(r.members)), own: make([]int64, len(r.members))}
		found := false
		for _, a := range srcs {
			if errs[a.idx] != nil {
				r.drop(a, fmt.Errorf("db %s: reading the TRUNCATEs of %s: %w", a.name, t.name, errs[a.idx]))
				continue
			}
			v := vals[a.idx]
			for i, m := range recvs[a.idx] {
				if v[i] != nil {
					tr.at[m.idx], found = max(tr.at[m.idx], *v[i]), true
				}
			}
			if own := v[len(v)-1]; own != nil {
				tr.own[a.idx], found = *own, true
			}
		}
		if found {
			r.truncs[t] = tr
		}
	}
}

// voidChanges drops from a source's part of a key read the changes that a TRUNCATE made
// void for some receivers (clearing those receivers' need flags), and the changes void
// for all of them.
func (r *runner) voidChanges(t *table, a *member, p *keyPart) {
	tr := r.truncs[t]
	if tr == nil {
		return
	}
	n := 0
	for i := range p.keys {
		need := p.need[i]
		for _, m := range r.members {
			if need&bit(m.idx) != 0 && tr.void(a.idx, m.idx, p.at[i]) {
				need &^= bit(m.idx)
			}
		}
		if need == 0 {
			continue
		}
		p.keys[n], p.at[n], p.kind[n], p.need[n] = p.keys[i], p.at[i], p.kind[i], need
		if p.sums != nil {
			p.sums[n] = p.sums[i]
		}
		if p.cols != nil {
			p.cols[n] = p.cols[i]
		}
		if p.ints != nil {
			p.ints[n] = p.ints[i]
		}
		n++
	}
	p.keys, p.at, p.kind, p.need = p.keys[:n], p.at[:n], p.kind[:n], p.need[:n]
	if p.sums != nil {
		p.sums = p.sums[:n]
	}
	if p.cols != nil {
		p.cols = p.cols[:n]
	}
	if p.ints != nil {
		p.ints = p.ints[:n]
	}
}

// truncating reports whether some receiver empties a table in this run.
func (r *runner) truncating() bool {
	for _, tr := range r.truncs {
		for _, m := range r.members {
			if tr.applies(m.idx) {
				return true
			}
		}
	}
	return false
}

// truncate is the first step of a run with TRUNCATEs to apply: every receiver empties, in
// the unit's transaction and in one call, the tables it must (r.tables order). A receiver
// that fails leaves the unit as in a batch.
func (r *runner) truncate(ctx context.Context) (batchResult, error) {
	res := batchResult{inserts: make([]int64, len(r.members)), deletes: make([]int64, len(r.members))}
	var recvs []*member
	todo := make([][]sinks.Truncation, len(r.members))
	for _, m := range r.alive() {
		if !r.receives(m) {
			continue
		}
		for _, t := range r.tables {
			if tr := r.truncs[t]; tr != nil && tr.applies(m.idx) {
				todo[m.idx] = append(todo[m.idx], sinks.Truncation{Table: t.sinkTables[m.idx], KeepAfter: tr.at[m.idx]})
			}
		}
		if len(todo[m.idx]) > 0 {
			recvs = append(recvs, m)
		}
	}
	errs := r.each(recvs, func(m *member) error {
		if err := r.begin(ctx, m); err != nil {
			return err
		}
		tr, ok := m.sink.(sinks.Truncater)
		if !ok {
			return fmt.Errorf("db %s: its sink cannot apply a TRUNCATE", m.name)
		}
		return tr.Truncate(ctx, todo[m.idx])
	})
	for _, m := range recvs {
		if errs[m.idx] != nil {
			r.fail(ctx, m, errs[m.idx])
			continue
		}
		names := make([]string, len(todo[m.idx]))
		for i, tr := range todo[m.idx] {
			names[i] = tr.Table.Label()
		}
		r.logger.InfoContext(ctx, "truncating", slog.String("db", m.name), slog.String("tables", strings.Join(names, ", ")))
	}
	return res, nil
}

// truncated records, once the unit holding the truncate step has committed, the TRUNCATEs
// applied on each receiver in the run's counts.
func (r *runner) truncated() {
	for _, t := range r.tables {
		tr := r.truncs[t]
		if tr == nil {
			continue
		}
		for _, m := range r.members {
			if tr.applies(m.idx) && m.receiving() {
				r.res.add(t.name, Stats{Truncates: 1})
			}
		}
	}
	r.truncDone = true
}

// consumeTruncated deletes, on every source, the TRUNCATEs every db has now applied and
// the changes they made void for every receiver, right after the unit applying them
// committed, before any batch's change rows are consumed (see above). It runs once, when
// every db takes part; a source that fails it leaves the run, so that nothing more is
// consumed.
func (r *runner) consumeTruncated(ctx context.Context) {
	if !r.truncDone || r.truncConsumed {
		return
	}
	if !r.allReceiving() {
		return
	}
	r.truncConsumed = true
	srcs := r.sources()
	stmts := make([]string, len(r.members))
	for _, a := range srcs {
		var sqls []string
		for _, t := range r.tables {
			tr := r.truncs[t]
			if tr == nil {
				continue
			}
			// Void for every receiver: at or before the smallest of their cuts.
			var upTo int64 = -1
			for _, m := range r.members {
				if m == a {
					continue
				}
				if c := max(tr.cut(m.idx), tr.own[a.idx]); upTo < 0 || c < upTo {
					upTo = c
				}
			}
			sqls = append(sqls, capture.ConsumeTruncated(t.change, a.snap, max(upTo, 0)))
		}
		stmts[a.idx] = strings.Join(sqls, "; ")
	}
	errs := r.each(srcs, func(a *member) error {
		if stmts[a.idx] == "" {
			return nil
		}
		_, err := dbconn.ExecAll(ctx, a.conn, stmts[a.idx])
		return err
	})
	for _, a := range srcs {
		if errs[a.idx] != nil {
			r.drop(a, fmt.Errorf("db %s: removing applied TRUNCATEs: %w", a.name, errs[a.idx]))
		}
	}
}
