package redis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ibexrepl/ibex/sinks"
)

// batch is the batch or whole-table copy in progress.
type batch struct {
	l       *layout
	skipped bool // ReplaceTable(ifEmpty) left the table alone
	copy    bool
	sent    int64 // rows taken
	deleted int64

	// del are the batch's keys (PrepareBatch), deleted at FinishBatch unless a row came.
	del []string
	// fast: the batch's keys are tracked in bits, not in the table's present map.
	fast *fastKeys

	// exists counts the batch's keys that exist on the server (EXISTS, on a connection of
	// the pool while the rows come); FinishBatch waits for it. Nil: none asked.
	exists chan existsResult

	// A copy held for Commit (not chunked).
	copied  map[string]struct{} // keys the copy wrote
	opStart int                 // where the copy's ops start in the unit's queue
	bytes   int64               // bytes of the copy's ops

	// A chunked copy.
	chunked     bool
	set         string   // the temporary set of the keys it wrote
	pending     []string // packed rows
	pendBytes   int64
	overwritten int64 // keys that existed when a chunk replaced them
}

type existsResult struct {
	n   int64
	err error
}

// current returns the batch of t in progress.
func (s *Sink) current(t *sinks.Table) (*batch, error) {
	b := s.tx.cur
	if b == nil || !t.Same(b.l.t) {
		return nil, sinks.ErrNoBatch
	}
	return b, nil
}

// PrepareBatch takes the keys of the batch (FinishBatch deletes those no row came for)
// and counts those that exist (as the unit sees them: its queued writes first, the
// server for the others). The
// server's count runs on another connection while the rows come (the unit's writes are
// not executed before its EXEC, so it sees the keys as they were before the unit);
// FinishBatch takes it.
func (s *Sink) PrepareBatch(ctx context.Context, t *sinks.Table, keys []string) (sinks.Prepared, error) {
	if err := s.inTx(); err != nil {
		return sinks.Prepared{}, err
	}
	u := s.tx
	u.cur = nil
	l, err := newLayout(s.prefix, t)
	if err != nil {
		return sinks.Prepared{}, fmt.Errorf("db %s: %w", s.db, err)
	}
	ts := u.settled(l.base)
	ts.batches++
	b := &batch{l: l}
	if len(ts.present) == 0 && !ts.cleared {
		if f := l.fastKeysOf(keys); f != nil {
			// Nothing of the table in the unit yet: no key is known, each is asked.
			f.batch, ts.fast, b.fast, b.del = ts.batches, f, f, f.keys
			s.startExists(ctx, b, f.keys)
			u.cur = b
			u.ops = slices.Grow(u.ops, len(f.keys)+len(f.keys)/keysPerCommand+1)
			return sinks.Prepared{}, nil
		}
	}
	if len(ts.present) == 0 {
		ts.present = make(map[string]keyState, len(keys))
	}
	// ask lists the keys whose existence the server tells: while every key so far is
	// one, it is del itself (all is set).
	del := make([]string, 0, len(keys))
	var ask []string
	all := true
	for _, k := range keys {
		rk, err := l.key(k)
		if err != nil {
			return sinks.Prepared{}, fmt.Errorf("db %s: %w", s.db, err)
		}
		st, known := ts.present[rk]
		switch {
		case known && st.batch == ts.batches:
			continue // twice in keys
		case known || ts.cleared:
			if st.exists {
				b.deleted++
			}
			if all {
				ask, all = slices.Clone(del), false
			}
		case !all:
			ask = append(ask, rk)
		}
		ts.present[rk] = keyState{batch: ts.batches}
		del = append(del, rk)
	}
	if all {
		ask = del
	}
	s.startExists(ctx, b, ask)
	b.del = del
	u.cur = b
	// Room for the batch's rows and DELs in the queue, at once.
	u.ops = slices.Grow(u.ops, len(del)+len(del)/keysPerCommand+1)
	return sinks.Prepared{}, nil
}

// startExists starts counting, on a connection of the pool, the keys of ask that exist on
// the server; FinishBatch takes the count.
func (s *Sink) startExists(ctx context.Context, b *batch, ask []string) {
	if len(ask) == 0 {
		return
	}
	b.exists = make(chan existsResult, 1)
	go func() {
		n, err := s.countExisting(ctx, s.client, ask)
		b.exists <- existsResult{n, err}
	}()
}

// queueDeletes queues, at the end of a batch, the DEL of its keys no row came for: a key
// that got a row was replaced in place (its HSET, and an HDEL of the columns now NULL).
func (u *unit) queueDeletes(b *batch) {
	ts := u.table(b.l.base)
	var del []string
	if f := b.fast; f != nil && ts.fast == f {
		for _, rk := range b.del {
			if !f.rowCame(rk) {
				del = append(del, rk)
			}
		}
	} else {
		ts.settle()
		for _, rk := range b.del {
			if st := ts.present[rk]; !st.exists || st.batch != ts.batches {
				del = append(del, rk)
			}
		}
	}
	b.del = nil
	for len(del) > 0 {
		m := min(len(del), keysPerCommand)
		u.ops = append(u.ops, op{l: b.l, del: del[:m:m]})
		del = del[m:]
	}
}

// countExisting counts the keys that exist on the server (pipelined multi-key EXISTS).
func (s *Sink) countExisting(ctx context.Context, c goredis.Cmdable, keys []string) (int64, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	pipe := c.Pipeline()
	var cmds []*goredis.IntCmd
	for len(keys) > 0 {
		m := min(len(keys), keysPerCommand)
		cmds = append(cmds, pipe.Exists(ctx, keys[:m]...))
		keys = keys[m:]
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, err
	}
	var n int64
	for _, c := range cmds {
		n += c.Val()
	}
	return n, nil
}

// WriteRows takes the rows of the batch (or copy) in progress: each is packed and
// queued, to become an HSET of its non-NULL columns.
func (s *Sink) WriteRows(ctx context.Context, t *sinks.Table, r io.Reader) (int64, error) {
	if err := s.inTx(); err != nil {
		return 0, err
	}
	b, err := s.current(t)
	if err != nil {
		return 0, s.errf(t, "writing rows of", err)
	}
	if b.skipped {
		return 0, s.errf(t, "writing rows of", errors.New("the whole-table copy was skipped (ifEmpty)"))
	}
	u := s.tx
	ts := u.table(b.l.base)
	var n int64
	err = sinks.EachLine(r, func(line string) error {
		row, size, err := b.l.packRow(&u.rows, line)
		if err != nil {
			return err
		}
		n++
		b.sent++
		if b.copy {
			return s.copyRow(ctx, b, row, size)
		}
		if u.queued += size; u.queued > s.maxUnit {
			return fmt.Errorf("%w: the unit holds more than %d MiB of rows (Redis applies a unit in one MULTI/EXEC, held in memory until then): lower the sync's batch_size, or turn single_transaction off", ErrUnitTooLarge, s.maxUnit>>20)
		}
		u.ops = append(u.ops, op{l: b.l, row: row, nulls: !b.copy})
		if f := b.fast; f == nil || ts.fast != f || !f.gotRow(b.l.fields[0].Text) {
			ts.settle() // a row of a key not in the fast batch: the map from here on
			key, _ := rowKey(row)
			ts.present[key] = keyState{exists: true, batch: ts.batches}
		}
		u.stream(ctx, false)
		return nil
	})
	if err != nil {
		return n, s.errf(t, fmt.Sprintf("writing row %d of", n+1), err)
	}
	return n, nil
}

// FinishBatch completes the batch (or copy) and returns its counts. Written is the rows
// taken (queued); Deleted the keys that existed.
func (s *Sink) FinishBatch(ctx context.Context, t *sinks.Table) (sinks.Counts, error) {
	if err := s.inTx(); err != nil {
		return sinks.Counts{}, err
	}
	b, err := s.current(t)
	if err != nil {
		return sinks.Counts{}, s.errf(t, "finishing the batch of", err)
	}
	s.tx.cur = nil
	if b.skipped {
		return sinks.Counts{}, nil
	}
	if b.exists != nil {
		r := <-b.exists
		b.exists = nil
		if r.err != nil {
			return sinks.Counts{}, s.errf(t, "counting the existing keys of a batch of", r.err)
		}
		b.deleted += r.n
	}
	if b.copy {
		if err := s.finishCopy(ctx, b); err != nil {
			return sinks.Counts{}, s.errf(t, "finishing the whole-table copy of", err)
		}
	} else {
		s.tx.queueDeletes(b)
		s.tx.stream(ctx, false)
	}
	return sinks.Counts{Written: b.sent, Deleted: b.deleted}, nil
}

// scanKeys calls fn with each page of the keys of a table on the server.
func scanKeys(ctx context.Context, c goredis.Cmdable, base string, fn func([]string) error) error {
	pattern := tablePattern(base)
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, pattern, keysPerCommand).Result()
		if err != nil {
			return fmt.Errorf("SCAN MATCH %s: %w", pattern, err)
		}
		if len(keys) > 0 {
			if err := fn(keys); err != nil {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}
