package job

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/sqlstate"
)

func (r *runner) rollbackAll() {
	for _, m := range r.members {
		r.rollback(m)
	}
}

// begin opens the batch transaction of a member if none is open.
func (r *runner) begin(ctx context.Context, m *member) error {
	if m.tx {
		return nil
	}
	sk, err := r.openSink(m)
	if err != nil {
		return err
	}
	if err := sk.Begin(ctx); err != nil {
		return err
	}
	m.tx = true
	return nil
}

func (r *runner) rollback(m *member) {
	if !m.tx || m.sink == nil {
		m.tx = false
		return
	}
	m.sink.Rollback(context.Background())
	m.tx = false
}

func (r *runner) commit(ctx context.Context, m *member) error {
	if !m.tx {
		return nil
	}
	m.tx = false
	return m.sink.Commit(ctx)
}

// How a run's writes are grouped in transactions.
//
// A run writes each receiver in one transaction across all the tables of the sync (a
// unit), so that a failure on any table rolls back everything the run wrote there: a
// receiver never holds a state no source had (a parent without the child inserted with
// it). Only a backlog larger than the batch budget (batch_size changed keys) is written in
// several units, each committed on its own, one after another in the herd's table order
// and, within a table, in batch order: a reader of a receiver may then see the first
// tables (or the first key ranges of a table) of the run applied and the rest not yet.
// single_transaction=on on the sync makes the whole run one unit whatever its size.
//
// A receiver whose transaction fails with a serialization failure or a deadlock is
// rolled back and takes no part in the rest of the unit; once the others have committed,
// the unit is applied again to it alone, after a short backoff, up to maxAttempts times
// in all. Any other failure makes the receiver leave the run (rolled back), as does the
// last failed attempt; the other receivers are served, and the next run catches it up.

// maxAttempts is how many times a receiver's transaction is tried in one unit when it
// fails with a serialization failure or a deadlock.
const maxAttempts = 4

// retryBackoff is the wait before the second attempt; it doubles for each further one.
const retryBackoff = 100 * time.Millisecond

// retryable reports whether err is a serialization failure or a deadlock: the receiver's
// transaction can be tried again.
func retryable(err error) bool {
	return sqlstate.Retryable(err)
}

// step is one batch: bucket b of nb of table t; or, with trunc, the TRUNCATEs a run
// applies before its batches (t is nil).
type step struct {
	t     *table
	b, nb int
	trunc bool
}

// unit is the batches whose writes commit together on every receiver.
type unit struct {
	steps     []step
	keys      int                // changed keys of its batches
	counts    map[*table][]Stats // rows written per table and receiver (member idx), not yet committed
	conflicts []control.Conflict
	// rejected are the rows each receiver (member idx) refused in the unit, not yet
	// committed; parked those of receivers that committed, to record.
	rejected map[int][]control.Exception
	parked   []control.Exception
	// clog is the copy of its conflicts to the control database under way (conflictlog.go).
	clog *conflictLog
}

func (u *unit) empty() bool { return len(u.steps) == 0 }

// add records a batch applied in the unit.
func (u *unit) add(r *runner, s step, res batchResult) {
	u.steps = append(u.steps, s)
	if s.trunc {
		return
	}
	u.keys += res.keys
	u.conflicts = append(u.conflicts, res.conflicts...)
	if u.counts == nil {
		u.counts = map[*table][]Stats{}
	}
	cs := u.counts[s.t]
	if cs == nil {
		cs = make([]Stats, len(r.members))
		u.counts[s.t] = cs
	}
	for i := range cs {
		cs[i].Inserts += res.inserts[i]
		cs[i].Deletes += res.deletes[i]
	}
	for i, rej := range res.rejected {
		if len(rej) > 0 {
			if u.rejected == nil {
				u.rejected = map[int][]control.Exception{}
			}
			u.rejected[i] = append(u.rejected[i], rej...)
		}
	}
}

// forget drops what m wrote in the unit (rolled back).
func (u *unit) forget(m *member) {
	for _, cs := range u.counts {
		cs[m.idx] = Stats{}
	}
	delete(u.rejected, m.idx)
}

// receives reports whether m is written in the batches being applied: not waiting for a
// retry, and, while a unit is applied again, one of the receivers it is applied to.
func (r *runner) receives(m *member) bool {
	return m.retry == nil && m.recvErr == nil && (r.only == 0 || r.only&bit(m.idx) != 0)
}

// fail handles a receiver's failure in a unit: its transaction is rolled back; on a
// serialization failure or a deadlock with attempts left it waits for the unit to be
// applied to it again, otherwise it leaves the run.
func (r *runner) fail(ctx context.Context, m *member, err error) {
	r.rollback(m)
	m.attempts++
	if retryable(err) && m.attempts < maxAttempts {
		m.retry = err
		r.logger.WarnContext(ctx, "receiver transaction failed, retrying", slog.String("db", m.name),
			slog.Int("attempt", m.attempts), slog.Int("of", maxAttempts), slog.String("error", err.Error()))
		return
	}
	if retryable(err) {
		err = fmt.Errorf("%w (after %d attempts)", err, m.attempts)
	}
	if m.isSource() && m.pg() && m.conn != nil && !m.conn.IsClosed() && r.ctx != nil && r.ctx.Err() == nil {
		// Its session works: it stops receiving but goes on sending its changes, so that
		// the others' applying them is recorded (a counter's delta applied and not
		// recorded would be applied again next run).
		m.recvErr = err
		r.skip(m, err, "db stops receiving in this run")
		return
	}
	r.drop(m, err)
}

// applyTables applies every table's pending changes, batch by batch, in units of at most
// the batch budget of changed keys (see above), then records the watermarks.
func (r *runner) applyTables(ctx context.Context) error {
	defer r.settleConsume(ctx)
	budget := r.batchSize()
	u := &unit{}
	defer func() { r.abortLog(ctx, u) }() // a unit left without finishUnit
	r.lastConsume = time.Now()
	if r.truncating() {
		// TRUNCATEs are committed in a unit of their own (whatever single_transaction
		// says): a receiver's TRUNCATE holds an exclusive lock on its table until it
		// commits, which the batches' reads of that db's rows would wait for.
		if err := r.applyStep(ctx, u, step{trunc: true}, nil, nil); err != nil {
			return err
		}
		if err := r.finishUnit(ctx, u); err != nil {
			return err
		}
		u = &unit{}
		r.consumeTruncated(ctx)
	}
	for _, t := range r.tables {
		if n, counted := r.pendingN[t]; counted && n == 0 {
			// Nothing pending when the run began (a db leaving since only makes less so):
			// not even the round trip per source that reads no keys.
			continue
		}
		nb, split, err := r.plan(ctx, t, true)
		if err != nil {
			return err
		}
		for b := 0; b < nb; b++ {
			if u.empty() && r.deadlinePassed() {
				r.stopAtDeadline(ctx, t)
				return nil
			}
			// This bucket's keys may have been read ahead, while the previous batch was
			// applied, or with the whole backlog; they hold if the same dbs are still
			// taking part.
			var keys map[string]*keyState
			var order *keyOrder
			if split != nil {
				keys, order = split.take(b, r.aliveMask())
			} else if kr := r.ahead; kr != nil && kr.t == t && kr.b == b {
				r.ahead = nil
				if kr.alive == r.aliveMask() {
					keys, order = r.finishKeyReadOrder(kr)
				} else {
					kr.wg.Wait()
				}
			}
			// This bucket's read starts first: the read ahead may wait for its sessions.
			var kr *keyRead
			if keys == nil && order == nil {
				kr = r.startKeyRead(ctx, t, b, nb, false)
			}
			if b+1 < nb && r.ahead == nil && split == nil {
				r.readAhead(ctx, t, b+1, nb)
			}
			if kr != nil {
				keys, order = r.finishKeyReadOrder(kr)
			}
			if !u.empty() && !r.singleTransaction() && u.keys+batchLen(keys, order) > budget {
				if err := r.finishUnit(ctx, u); err != nil {
					return err
				}
				u = &unit{}
				if r.deadlinePassed() {
					r.stopAtDeadline(ctx, t)
					return nil
				}
			}
			if err := r.applyStep(ctx, u, step{t: t, b: b, nb: nb}, keys, order); err != nil {
				return err
			}
			r.logAhead(ctx, u)
			if r.opts.Progress != nil {
				r.opts.Progress(t.name, b+1, nb)
			}
		}
	}
	if err := r.finishUnit(ctx, u); err != nil {
		return err
	}
	return r.advance(ctx)
}

// stopAtDeadline ends a run whose deadline is near, between units: the change rows of
// what it committed are consumed so that the next run does not apply them again.
func (r *runner) stopAtDeadline(ctx context.Context, t *table) {
	r.res.Partial = true
	r.logger.WarnContext(ctx, "deadline near: stopping before the next batch", slog.String("table", t.name))
	r.consumeCommitted(ctx)
}

// applyStep applies one batch in the unit's transactions (its keys read already, with
// their order when known, or nil). When a sending db fails, every receiver has rolled
// the unit back: its earlier batches are applied again first (without that db), then
// this one.
func (r *runner) applyStep(ctx context.Context, u *unit, s step, keys map[string]*keyState, order *keyOrder) error {
	for {
		var res batchResult
		var err error
		if s.trunc {
			res, err = r.truncate(ctx)
		} else {
			res, err = r.batch(ctx, s.t, s.b, s.nb, keys, order)
		}
		if errors.Is(err, errRetryBatch) {
			done := u.steps
			r.abortLog(ctx, u)
			*u = unit{}
			for _, m := range r.members {
				m.retry = nil // rolled back with the others: it takes part again
			}
			for _, p := range done {
				if err := r.applyStep(ctx, u, p, nil, nil); err != nil {
					return err
				}
			}
			keys, order = nil, nil
			continue
		}
		if err != nil {
			return err
		}
		u.add(r, s, res)
		return nil
	}
}

// finishUnit commits the unit on every receiver, applies it again to the receivers whose
// transaction failed with a serialization failure or a deadlock, then records its
// conflicts and, every consumeEvery, consumes the change rows of the batches committed.
func (r *runner) finishUnit(ctx context.Context, u *unit) error {
	if u.empty() {
		return nil
	}
	r.commitReceivers(ctx, u)
	for {
		var redo []*member
		var mask uint64
		attempt := 0
		for _, m := range r.alive() {
			if m.retry != nil {
				redo, mask = append(redo, m), mask|bit(m.idx)
				attempt = max(attempt, m.attempts)
			}
		}
		if len(redo) == 0 {
			break
		}
		wait := retryBackoff << (attempt - 1)
		wait += rand.N(wait / 2)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			for _, m := range redo {
				m.retry = nil
			}
			return ctx.Err()
		}
		if err := r.replay(ctx, u, redo, mask); err != nil {
			return err
		}
		r.commitReceivers(ctx, u)
	}
	for _, m := range r.members {
		m.attempts = 0
	}
	for _, c := range u.conflicts {
		r.res.add(c.Table, Stats{Conflicts: 1})
	}
	r.res.addConflicts(u.conflicts)
	// The conflicts are recorded before the batches' change rows are consumed: a run that
	// dies in between finds them again next time.
	if err := r.commitConflicts(ctx, u); err != nil {
		return err
	}
	if err := r.recordParked(ctx, u.parked); err != nil {
		return err
	}
	all := r.allReceiving()
	for _, s := range u.steps {
		if s.trunc {
			r.truncated()
			continue
		}
		if all {
			s.t.committed = max(s.t.committed, s.b+1)
		}
	}
	if !all {
		// A db stopped receiving or left: the watermarks recorded at the end will leave
		// it out, so the batches every db committed are consumed now (see consume).
		r.consumeCommitted(ctx)
		return nil
	}
	// A multi-batch table's committed batches are consumed every consumeEvery (a scan of
	// the change table each time) so that a run killed later keeps its progress; the purge
	// at the end does the rest.
	r.settleConsume(ctx)
	if t := u.steps[len(u.steps)-1].t; t != nil && t.nb > 1 && time.Since(r.lastConsume) >= consumeEvery && t.consumed < t.committed {
		r.consume(ctx, t, t.consumed, t.committed-1, t.nb)
		t.consumed, r.lastConsume = t.committed, time.Now()
	} else if t != nil && t.nb > 1 {
		// Only its last batch left: the key sessions are idle, they consume meanwhile.
		r.consumeAhead(ctx, t)
	}
	return nil
}

// replay applies the unit's batches again, to the receivers in redo only.
func (r *runner) replay(ctx context.Context, u *unit, redo []*member, mask uint64) error {
	r.only = mask
	defer func() { r.only = 0 }()
	for _, m := range redo {
		m.retry = nil
		u.forget(m)
	}
	again := &unit{}
	for _, s := range u.steps {
		if err := r.applyStep(ctx, again, s, nil, nil); err != nil {
			return err
		}
	}
	for t, cs := range again.counts {
		for _, m := range redo {
			u.counts[t][m.idx] = cs[m.idx]
		}
	}
	for _, m := range redo {
		if rej := again.rejected[m.idx]; len(rej) > 0 {
			if u.rejected == nil {
				u.rejected = map[int][]control.Exception{}
			}
			u.rejected[m.idx] = rej
		}
	}
	return nil
}

// commitReceivers commits every open receiver transaction at once and adds what each
// wrote to the run's counts.
func (r *runner) commitReceivers(ctx context.Context, u *unit) {
	var open []*member
	for _, m := range r.alive() {
		if m.tx {
			open = append(open, m)
		}
	}
	if len(open) == 0 {
		return
	}
	if last := u.steps[len(u.steps)-1]; last.t != nil {
		r.logger.Debug("batch written, committing", slog.String("table", last.t.name), slog.Int("bucket", last.b))
	}
	t0 := time.Now()
	errs := r.each(open, func(m *member) error { return r.commit(ctx, m) })
	for _, m := range open {
		if errs[m.idx] != nil {
			r.fail(ctx, m, errs[m.idx]) // a sink's errors name its db and the commit
			continue
		}
		for t, cs := range u.counts {
			r.res.add(t.name, Stats{Inserts: cs[m.idx].Inserts, Deletes: cs[m.idx].Deletes})
			cs[m.idx] = Stats{}
		}
		u.parked = append(u.parked, u.rejected[m.idx]...)
		delete(u.rejected, m.idx)
	}
	r.logger.Debug("receivers committed", slog.Int("batches", len(u.steps)), slog.Int("keys", u.keys), slog.Duration("commit", time.Since(t0)))
}

// singleTransaction reports whether the sync asks for one unit whatever the backlog.
func (r *runner) singleTransaction() bool { return r.sync.SingleTransaction }
