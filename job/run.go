package job

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/internal/control"
)

func (r *runner) runDelta(ctx context.Context) error {
	if err := r.takeSnapshots(ctx); err != nil {
		return err
	}
	r.readTruncates(ctx)
	if err := r.saveParents(ctx); err != nil {
		return err
	}
	if r.strategies.Aborts() {
		if err := r.abortCheck(ctx); err != nil {
			return err
		}
	}
	if err := r.applyTables(ctx); err != nil {
		return err
	}
	return r.fixOrphans(ctx)
}

// takeSnapshots records each live source's snapshot (once per run): the changes a run
// handles are those visible in it.
func (r *runner) takeSnapshots(ctx context.Context) error {
	var srcs []*member
	for _, m := range r.sources() {
		if m.snap == "" {
			srcs = append(srcs, m)
		}
	}
	snaps := make([]string, len(r.members))
	errs := r.each(srcs, func(m *member) error {
		return m.conn.QueryRow(ctx, `SELECT pg_current_snapshot()::text`).Scan(&snaps[m.idx])
	})
	for _, m := range srcs {
		if err := errs[m.idx]; err != nil {
			r.drop(m, fmt.Errorf("db %s: reading its snapshot: %w", m.name, err))
			continue
		}
		if !snapRe.MatchString(snaps[m.idx]) {
			return fmt.Errorf("db %s: unexpected snapshot %q", m.name, snaps[m.idx])
		}
		m.snap = snaps[m.idx]
	}
	return nil
}

// runner is one run of a sync: its session (dbs, tables) and the run's state.
type runner struct {
	session
	opts Options
	res  *Result
	// ctl is the control database session holding the sync's lock, nil outside Run: the
	// run's own control statements go through it (ctlQ).
	ctl *pgxpool.Conn
	// strategies are the sync's conflict strategies (by type where it sets some).
	strategies conflict.Strategies
	// wm holds the watermarks: {source, receiver} -> the source's snapshot as of the last
	// run both took part in.
	wm map[[2]string]string
	// ahead is the key read of the next batch under way, if any.
	ahead *keyRead
	// host is this machine's name, recorded with the run.
	host string
	// seqs are the herd's sequences as load read them (nil when it did not).
	seqs *herdSeqs
	// consuming is the consume of committed batches under way on the key sessions, if any
	// (consumeAhead).
	consuming *aheadConsume
	// pendingN counts each table's pending changes over all sources, taken once per run
	// by countPending (nil: not taken).
	pendingN map[*table]int64
	// truncN counts each table's pending TRUNCATEs (with pendingN); truncs is what
	// readTruncates found of them (tables without any are absent); truncDone is set once
	// the unit applying them has committed, truncConsumed once they are consumed.
	truncN map[*table]int64
	// changesOf is, by table and member index, the changes each source had pending when
	// counted (countPending or plan; see srcPending): a run that removed vacuumMinChanges
	// of them or more vacuums that change table there (advance chooses, closeAll vacuums).
	changesOf map[*table][]int64
	// vacuum are, by member index, the change tables closeAll vacuums (vacuumChanges).
	vacuum                   [][]*table
	truncs                   map[*table]*truncs
	truncDone, truncConsumed bool
	// only, when not 0, limits the receivers written to these members (a unit applied
	// again to the receivers whose transaction failed).
	only uint64
	// added are the tables of the herd (schema.table) the sync has not taken in yet
	// (control.AddedTables): copied once to the targets before the deltas.
	added []string
	// lastConsume is when committed change rows were last consumed.
	lastConsume time.Time
	// noDeltas counts keys of tables with counters whose changes had no deltas (see
	// counters.go): logged at the end of the run.
	noDeltas noDeltaCount
	// links are the foreign keys between tables of the sync (read once, linksRead), and
	// saved the temp table of each parent table's saved rows (on_orphan=restore; see
	// orphans.go).
	links     []orphanLink
	linksRead bool
	saved     map[*table]string
}

// load reads the sync's definition, its conflict strategy and its watermarks.
func (r *runner) load(ctx context.Context) error {
	q := r.ctlQ()
	var wmErr, addedErr error
	var seqs []control.Sequence
	var seqsErr, startErr error
	var runID int64
	err := r.session.load(ctx, q, func(b *pgx.Batch) {
		control.QueueWatermarks(b, r.sync.Name, &r.wm, &wmErr)
		control.QueueAddedTables(b, r.sync.Name, &r.added, &addedErr)
		// The herd's sequences too, for syncSequences at the end: a round trip fewer.
		control.QueueHerdSequences(b, r.sync.Herd, &seqs, &seqsErr)
		// Last, so that it runs only when the reads before it succeeded: the run's record
		// (a read that failed leaves it to Run, which records the run with the error).
		control.QueueStartRun(b, r.sync.Name, r.host, os.Getpid(), &runID, &startErr)
	})
	if err == nil || errors.Is(err, errNoTables) { // the batch was read
		r.seqs = &herdSeqs{seqs, seqsErr}
		if startErr == nil && runID != 0 {
			r.runID = runID
			r.started()
		}
	}
	if err != nil {
		return err
	}
	if startErr != nil {
		return fmt.Errorf("recording the run of sync %s: %w", r.sync.Name, startErr)
	}
	if err := cmp.Or(wmErr, addedErr); err != nil {
		return err
	}
	if r.strategies, err = conflict.ParseAll(r.sync.ConflictStrategy, r.sync.ConflictByType, r.names, r.sourceNames); err != nil {
		return fmt.Errorf("sync %s: %w", r.sync.Name, err)
	}
	for _, fn := range r.strategies.Functions() {
		if err := control.CheckConflictFunction(ctx, q, fn); err != nil {
			return fmt.Errorf("sync %s: %w", r.sync.Name, err)
		}
	}
	return nil
}

// started records that the run has its id: the result carries it and the log says so.
func (r *runner) started() {
	r.res.RunID = r.runID
	r.logger.Info("run started", slog.Int64("run", r.runID))
}

// closeAll waits for a read ahead under way, then closes every connection.
func (r *runner) closeAll() {
	if r.ahead != nil {
		r.ahead.wg.Wait()
		r.ahead = nil
	}
	r.vacuumChanges()
	r.session.closeAll()
}

var snapRe = regexp.MustCompile(`^[0-9]+:[0-9]+:[0-9,]*$`)

func (r *runner) run(ctx context.Context) error {
	r.ctx = ctx // its sessions are closed by Run (closeAll), once the run is recorded
	defer func() {
		if len(r.skipped) > 0 {
			r.res.Skipped = r.skipped
		}
	}()
	t0 := time.Now()
	if err := r.load(ctx); err != nil {
		if errors.Is(err, errNoTables) && r.sequencesOnly(ctx) {
			// A herd of sequences only (Bucardo's sequence-only syncs).
			r.connect(ctx)
			return r.syncSequences(ctx)
		}
		return err
	}
	t1 := time.Now()
	r.connect(ctx)
	t2 := time.Now()
	if !r.fullcopy && r.sync.Onetimecopy == 0 && len(r.added) == 0 {
		if n, err := r.countPending(ctx); err == nil && n == 0 {
			r.logger.DebugContext(ctx, "no changes pending", slog.Duration("load", t1.Sub(t0)), slog.Duration("connect", t2.Sub(t1)), slog.Duration("count", time.Since(t2)))
			return r.syncSequences(ctx)
		}
	}
	r.compressWAL = r.walMembers()
	for _, m := range r.members {
		m.compressReads = r.compressWAL&bit(m.idx) != 0
	}
	r.openSourceSessions(ctx)
	t3 := time.Now()
	if err := r.checkSchemas(ctx, true); err != nil {
		return err
	}
	r.logger.DebugContext(ctx, "ready", slog.Duration("load", t1.Sub(t0)), slog.Duration("connect", t2.Sub(t1)), slog.Duration("count", t3.Sub(t2)), slog.Duration("schemas", time.Since(t3)))
	if err := r.runTables(ctx); err != nil {
		return err
	}
	return r.syncSequences(ctx)
}

// compressWALRows is how many pending changes make a run compress its WAL (see
// dbconn.WALCompressionSQL): below it, the few full-page images a run writes are not
// worth the millisecond that asking costs a new session.
const compressWALRows = 1000

// walMembers returns the members (bit(m.idx)) whose sessions compress their WAL: every
// member when the run may write or read compressWALRows rows or more (its changes were
// counted to that many, or not counted: a copy). A source that only sends writes WAL too:
// its reads prune the pages of the table they read, and right after a checkpoint each
// pruned page is a full-page image (in the seed demo, half of the run's WAL was images
// written by the senders' reads).
func (r *runner) walMembers() uint64 {
	var all uint64
	for _, m := range r.members {
		all |= bit(m.idx)
	}
	if r.pendingN == nil {
		return all
	}
	var n int64
	for _, c := range r.pendingN {
		n += c
	}
	if n < compressWALRows {
		return 0
	}
	return all
}

// openSourceSessions starts opening, when the backlog was counted, the read session of
// every live source that has more changes of a table than a statement takes keys (it
// sends that table's rows from a temp table of keys at the first batch) and, when a table
// needs more than one batch, every source's key session (it reads the next batch's keys
// ahead): they open while the tables are described, not at the first batch.
func (r *runner) openSourceSessions(ctx context.Context) {
	if r.pendingN == nil {
		return
	}
	long := false
	for _, n := range r.pendingN {
		long = long || n > catalog.InlineKeysMax
	}
	key := r.keySessionUseful()
	for _, a := range r.sources() {
		// A source that only sends short key lists reads them on its first session (see
		// shipKeys): it needs a read session when a list is long or when it receives too.
		a.openEarly(ctx, r.srcPending(a) > 0 && (long || r.receivesChanges(a)), key)
	}
}

// keySessionUseful reports whether the sources' key sessions may serve the run, so that
// openSourceSessions opens them early: a table of several batches reads the next batch's
// keys ahead on them (readAhead), unless one scan reads all its keys (readSplit: one key
// column, as the table's key is recorded, no TRUNCATE pending, at most oneScanBatches
// batches), and consumes its committed batches on them while the last one is applied
// (consumeAhead), unless its change table is to be emptied by TRUNCATE (truncatable).
// Otherwise nothing uses them; readAhead opens them when a table's key turns out not to
// be split by one scan after all.
func (r *runner) keySessionUseful() bool {
	batch := int64(r.batchSize())
	for _, t := range r.tables {
		n := r.pendingN[t]
		if n <= batch {
			continue
		}
		oneScan := len(t.rel.KeyCols) == 1 && r.truncN[t] == 0 && n <= oneScanBatches*batch
		if !oneScan || !r.truncatable(t) {
			return true
		}
	}
	return false
}

// srcPending is source a's largest count of pending changes of one table (0 when not
// counted).
func (r *runner) srcPending(a *member) int64 {
	var n int64
	for _, c := range r.changesOf {
		n = max(n, c[a.idx])
	}
	return n
}

// receivesChanges reports whether source a has rows to receive: another source has
// changes pending (counted).
func (r *runner) receivesChanges(a *member) bool {
	for _, o := range r.sources() {
		if o != a && r.srcPending(o) > 0 {
			return true
		}
	}
	return false
}

// runTables applies the tables: a whole copy (fullcopy, onetimecopy), the changes, or both.
func (r *runner) runTables(ctx context.Context) error {
	if r.fullcopy {
		return r.runFullcopy(ctx)
	}
	if r.sync.Onetimecopy > 0 {
		if err := r.runOnetimecopy(ctx); err != nil {
			return err
		}
	} else if err := r.copyAddedTables(ctx); err != nil {
		return err
	}
	return r.runDelta(ctx)
}

func (r *runner) deadlinePassed() bool {
	if r.opts.Deadline.IsZero() {
		return false
	}
	margin := r.opts.DeadlineMargin
	if margin == 0 {
		margin = 10 * time.Second
	}
	return time.Until(r.opts.Deadline) < margin
}
