package job

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/capture"
	"github.com/ibexrepl/ibex/internal/catalog"
)

// watermarks are the watermarks of source a's live receivers, in member order, as the
// change-row statements of package capture take them: the snapshot of a up to which each
// has applied a's changes, "" for one without.
func (r *runner) watermarks(a *member) []string {
	var wms []string
	for _, m := range r.members {
		if m == a || !m.alive() {
			continue
		}
		wms = append(wms, r.wm[[2]string{a.name, m.name}])
	}
	return wms
}

// changeAlias prefixes the change table's columns in the bucket conditions passed to
// package capture's statements.
const changeAlias = capture.Alias + "."

func (r *runner) bucketCond(t *table, alias string, b, nb int) string {
	return r.bucketsCond(t, alias, b, b, nb)
}

// bucketsCond selects buckets lo to hi of nb.
func (r *runner) bucketsCond(t *table, alias string, lo, hi, nb int) string {
	if nb <= 1 || (lo == 0 && hi == nb-1) {
		return "true"
	}
	if t.bounds != nil {
		// Key ranges: bucket b holds keys in [bounds[b-1], bounds[b]).
		k := alias + pgx.Identifier{t.keyCols[0]}.Sanitize()
		var conds []string
		if lo > 0 {
			conds = append(conds, k+" >= "+t.bounds[lo-1])
		}
		if hi < nb-1 {
			conds = append(conds, k+" < "+t.bounds[hi])
		}
		return strings.Join(conds, " AND ")
	}
	h := fmt.Sprintf(`(hashtextextended(ROW(%s)::text, 0) & 9223372036854775807) %% %d`, catalog.QuoteCols(alias, t.keyCols), nb)
	if lo == hi {
		return fmt.Sprintf(`%s = %d`, h, lo)
	}
	return fmt.Sprintf(`%s BETWEEN %d AND %d`, h, lo, hi)
}

// buckets decides how many batches a table's backlog needs.
func (r *runner) buckets(ctx context.Context, t *table) (int, error) {
	nb, _, err := r.plan(ctx, t, false)
	return nb, err
}

// plan is buckets; with oneScan, a backlog of a few key-range batches is read in one scan
// and cut by the run (readSplit), whose keys it returns.
func (r *runner) plan(ctx context.Context, t *table, oneScan bool) (int, *splitKeys, error) {
	batch := r.batchSize()
	total, counted := r.pendingN[t]
	if !counted {
		for _, a := range r.alive() {
			if !a.isSource() {
				continue
			}
			var n int64
			if err := a.conn.QueryRow(ctx, capture.CountPending(t.change, a.snap, r.watermarks(a))).Scan(&n); err != nil {
				r.drop(a, fmt.Errorf("db %s: counting changes of %s: %w", a.name, t.name, err))
				continue
			}
			r.noteChanges(t, a, n)
			total += n
		}
	}
	nb := int((total + int64(batch) - 1) / int64(batch))
	if nb < 1 {
		nb = 1
	}
	t.bounds = nil
	split := "one batch"
	if nb > 1 {
		split = "hash buckets"
	}
	var keys *splitKeys
	if kind := rangeKind(t); nb > 1 && kind != noRanges {
		ok := false
		if oneScan {
			var n int
			if n, keys, ok = r.readSplit(ctx, t, nb, batch, kind); ok {
				nb, split = n, "key ranges, one scan"
			}
		}
		if !ok {
			bounds, err := r.keyRanges(ctx, t, nb, kind)
			if err != nil {
				return 0, nil, err
			}
			if bounds != nil {
				t.bounds, nb, split = bounds, len(bounds)+1, "key ranges"
			}
		}
	}
	t.nb, t.committed, t.consumed = nb, 0, 0
	if total > 0 {
		r.logger.Debug("backlog", slog.String("table", t.name), slog.Int64("changes", total), slog.Int("batches", nb), slog.String("split", split))
	}
	return nb, keys, nil
}

// keyKind tells how a key's values sort, for key-range batches.
type keyKind int

const (
	noRanges   keyKind = iota // hash buckets
	integerKey                // sorts as int64
	uuidKey                   // sorts as its canonical text (PostgreSQL compares the bytes)
)

// rangeKind reports whether t's batches can be ranges of its key: one column whose values
// print one way and sort in Go as PostgreSQL sorts them, without a collation (integers,
// uuid). Rows in a key range sit together in the key index (and, when keys grow with time
// as serials and version 7 uuids do, in the table), where a hash bucket touches every page.
func rangeKind(t *table) keyKind {
	if len(t.keyCols) != 1 {
		return noRanges
	}
	for _, c := range t.desc.Columns {
		if c.Name == t.keyCols[0] {
			switch c.Type {
			case "smallint", "integer", "bigint":
				return integerKey
			case "uuid":
				return uuidKey
			}
		}
	}
	return noRanges
}

// keyRanges splits the pending changes of t into about nb ranges of its key, of about equal
// numbers of change rows: each source gives its own quantiles, weighted by its number of
// changes. It returns the nb-1 (or fewer) bounds as SQL literals, or nil when there is
// nothing to split.
func (r *runner) keyRanges(ctx context.Context, t *table, nb int, kind keyKind) ([]string, error) {
	srcs := r.sources()
	counts := make([]int64, len(r.members))
	qs := make([][]*string, len(r.members))
	sqls := make([]string, len(r.members))
	for _, a := range srcs {
		sqls[a.idx] = capture.KeyQuantiles(t.change, t.keyCols[0], quantilePoints(nb), a.snap, r.watermarks(a))
	}
	errs := r.each(srcs, func(a *member) error {
		return a.conn.QueryRow(ctx, sqls[a.idx]).Scan(&counts[a.idx], &qs[a.idx])
	})
	var points []keyPoint
	var total float64
	for _, a := range srcs {
		if err := errs[a.idx]; err != nil {
			r.drop(a, fmt.Errorf("db %s: splitting the changes of %s: %w", a.name, t.name, err))
			continue
		}
		if counts[a.idx] == 0 {
			continue
		}
		w := float64(counts[a.idx]) / float64(quantilePoints(nb))
		for _, q := range qs[a.idx] {
			if q == nil {
				continue
			}
			p := keyPoint{v: *q, w: w}
			if kind == integerKey {
				n, err := strconv.ParseInt(p.v, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("db %s: a key of %s: %w", a.name, t.name, err)
				}
				p.n = n
			}
			points = append(points, p)
		}
		total += float64(counts[a.idx])
	}
	return splitPoints(points, total, nb, kind), nil
}

// quantilePoints is how many keys keyRanges samples from each source to cut nb ranges:
// four per range, so that the ranges of several sources' keys, merged, stay within about a
// quarter of a range of equal (one point per range gave up to twice the batch budget when
// the sources changed disjoint ranges), at most 1024.
func quantilePoints(nb int) int { return min(4*nb, 1024) }

// keyPoint is a quantile of one source's pending keys, weighing that source's share of
// the changes.
type keyPoint struct {
	v string // as PostgreSQL prints it
	n int64  // integerKey: the value
	w float64
}

// splitPoints merges the sources' quantiles into at most nb-1 bounds (SQL literals, in
// increasing order, without repeats) that cut total changes into about nb equal ranges.
func splitPoints(points []keyPoint, total float64, nb int, kind keyKind) []string {
	if len(points) == 0 {
		return nil
	}
	order := func(a, b keyPoint) int {
		if kind == integerKey {
			return cmp.Compare(a.n, b.n)
		}
		return strings.Compare(a.v, b.v)
	}
	slices.SortFunc(points, order)
	var bounds []string
	var last *keyPoint
	var acc float64
	next := 1
	for _, p := range points {
		acc += p.w
		for next < nb && acc >= float64(next)*total/float64(nb) {
			next++
			if last == nil || order(*last, p) < 0 {
				last = &p
				if kind == integerKey {
					bounds = append(bounds, p.v)
				} else {
					bounds = append(bounds, "'"+p.v+"'::uuid")
				}
			}
		}
	}
	return bounds
}

// countPending takes the sources' snapshots and counts each table's pending changes as of
// them: one query per source, all sources at once. A source that fails is left for the
// full path to report (which takes the snapshots that are missing and counts again).
func (r *runner) countPending(ctx context.Context) (total int64, err error) {
	counts := make([][]int64, len(r.members))
	truncs := make([][]int64, len(r.members))
	snaps := make([]string, len(r.members))
	countSQL := make([]string, len(r.members))
	changes := make([]string, len(r.tables))
	for i, t := range r.tables {
		changes[i] = t.change
	}
	for _, a := range r.sources() {
		countSQL[a.idx] = capture.SnapshotAndCounts(changes, r.watermarks(a))
	}
	errs := r.each(r.sources(), func(a *member) error {
		err := a.conn.QueryRow(ctx, countSQL[a.idx]).Scan(&snaps[a.idx], &counts[a.idx], &truncs[a.idx])
		if err == nil && !snapRe.MatchString(snaps[a.idx]) {
			err = fmt.Errorf("db %s: unexpected snapshot %q", a.name, snaps[a.idx])
		}
		if err == nil {
			a.snap = snaps[a.idx]
		}
		return err
	})
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	r.pendingN, r.truncN = map[*table]int64{}, map[*table]int64{}
	for _, a := range r.sources() {
		for j, t := range r.tables {
			r.noteChanges(t, a, counts[a.idx][j])
			// pendingN sizes the batches: row changes only.
			r.pendingN[t] += counts[a.idx][j] - truncs[a.idx][j]
			r.truncN[t] += truncs[a.idx][j]
			total += counts[a.idx][j]
		}
	}
	return total, nil
}

// changesPending is how many changes of t source a had pending when counted (0: not
// counted).
func (r *runner) changesPending(t *table, a *member) int64 {
	if c := r.changesOf[t]; c != nil {
		return c[a.idx]
	}
	return 0
}

// noteChanges records that source a had n changes of t pending (see runner.changesOf).
func (r *runner) noteChanges(t *table, a *member, n int64) {
	if r.changesOf == nil {
		r.changesOf = map[*table][]int64{}
	}
	if r.changesOf[t] == nil {
		r.changesOf[t] = make([]int64, len(r.members))
	}
	r.changesOf[t][a.idx] = n
}

// batchSize is the run's batch budget: changed keys per batch and per unit.
func (r *runner) batchSize() int {
	if r.opts.BatchSize > 0 {
		return r.opts.BatchSize
	}
	if r.sync.BatchSize > 0 {
		return r.sync.BatchSize
	}
	return DefaultBatchSize
}
