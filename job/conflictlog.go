package job

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/control"
)

// A unit's conflicts are recorded on the control database before its batches' change rows
// are consumed (finishUnit), so that a run dying in between finds them again next time.
// They are copied there while the unit's later batches are applied and its receivers
// commit, in a control transaction that finishUnit commits once they have: the log of a
// seed-demo run (4,700 conflicts) then costs the run the commit's round trip instead of
// its 25 ms COPY. A unit applied again from its first batch (a sender failed, see
// applyStep) rolls that transaction back first; a run that fails before finishUnit rolls
// it back too. Where a conflict strategy is a function, the control session answers the
// function's calls during the batches: the conflicts are then recorded by finishUnit
// alone, as they are when the control database refuses the copy ahead.

// conflictLog is the copy ahead of a unit's conflicts.
type conflictLog struct {
	tx   pgx.Tx
	n    int           // the unit's conflicts copied (or being copied) so far
	done chan struct{} // closed when the copy under way ended; nil: none
	err  error         // the copy ahead failed: finishUnit records them all itself
}

// logAhead starts copying the unit's conflicts not copied yet into its control
// transaction (opened on first use), unless the control session may be needed meanwhile.
func (r *runner) logAhead(ctx context.Context, u *unit) {
	if len(u.conflicts) == 0 || len(r.strategies.Functions()) > 0 {
		return
	}
	l := u.clog
	if l == nil {
		l = &conflictLog{}
		u.clog = l
	}
	if l.n == len(u.conflicts) {
		return
	}
	prev := l.done
	cs := u.conflicts[l.n:]
	l.n = len(u.conflicts)
	r.stampRun(cs)
	done := make(chan struct{})
	l.done = done
	go func() {
		defer close(done)
		if prev != nil {
			<-prev
		}
		if l.err != nil {
			return
		}
		if l.tx == nil {
			if l.tx, l.err = r.ctlBegin(ctx); l.err != nil {
				return
			}
		}
		l.err = control.RecordConflicts(r.ctlCtx(ctx), l.tx, cs)
	}()
}

// wait waits for the copy under way, if any.
func (l *conflictLog) wait() {
	if l != nil && l.done != nil {
		<-l.done
	}
}

// abortLog rolls back the unit's copy ahead, if any: its conflicts are not recorded.
func (r *runner) abortLog(ctx context.Context, u *unit) {
	l := u.clog
	if l == nil {
		return
	}
	l.wait()
	if l.tx != nil {
		_ = l.tx.Rollback(context.WithoutCancel(ctx))
	}
	u.clog = nil
}

// commitConflicts records the unit's conflicts: it commits the copy ahead with the rest
// of them, or, when there was none or it failed, records them all in a transaction of
// their own.
func (r *runner) commitConflicts(ctx context.Context, u *unit) error {
	l := u.clog
	if l == nil {
		return r.recordConflicts(ctx, u.conflicts)
	}
	l.wait()
	if l.err != nil {
		r.abortLog(ctx, u)
		return r.recordConflicts(ctx, u.conflicts)
	}
	rest := u.conflicts[l.n:]
	r.stampRun(rest)
	cctx := r.ctlCtx(ctx)
	if err := control.RecordConflicts(cctx, l.tx, rest); err != nil {
		r.abortLog(ctx, u)
		return fmt.Errorf("recording conflicts: %w", err)
	}
	err := l.tx.Commit(cctx)
	u.clog = nil
	if err != nil {
		return fmt.Errorf("recording conflicts: %w", err)
	}
	return nil
}

// stampRun sets the run of conflicts to this run.
func (r *runner) stampRun(cs []control.Conflict) {
	for i := range cs {
		cs[i].Run = r.res.RunID
	}
}
