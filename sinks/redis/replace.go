package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ibexrepl/ibex/sinks"
)

// errStop ends a scan early.
var errStop = errors.New("stop")

// ReplaceTable starts a whole-table copy of t. The copy's rows are queued for Commit as
// DEL+HSET of their keys, and FinishBatch queues the DEL of every other key the table has;
// a copy past the thresholds goes chunked (see goChunked). With ifEmpty, a table that
// holds a key (as the unit sees it) is skipped.
func (s *Sink) ReplaceTable(ctx context.Context, t *sinks.Table, ifEmpty bool) (bool, error) {
	if err := s.inTx(); err != nil {
		return false, err
	}
	u := s.tx
	u.cur = nil
	l, err := newLayout(s.prefix, t)
	if err != nil {
		return false, fmt.Errorf("db %s: %w", s.db, err)
	}
	if ifEmpty {
		empty, err := s.unitEmpty(ctx, l.base)
		if err != nil {
			return false, s.errf(t, "checking whether it is empty:", err)
		}
		if !empty {
			u.cur = &batch{l: l, skipped: true}
			return true, nil
		}
	}
	u.cur = &batch{l: l, copy: true, copied: map[string]struct{}{}, opStart: len(u.ops)}
	return false, nil
}

// unitEmpty tells whether a table has no key, as the unit sees it.
func (s *Sink) unitEmpty(ctx context.Context, base string) (bool, error) {
	ts := s.tx.settled(base)
	for _, v := range ts.present {
		if v.exists {
			return false, nil
		}
	}
	if ts.cleared {
		return true, nil
	}
	empty := true
	err := scanKeys(ctx, s.client, base, func(keys []string) error {
		for _, k := range keys {
			if v, ok := ts.present[k]; !ok || v.exists {
				empty = false
				return errStop
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return false, err
	}
	return empty, nil
}

// Truncate empties each table in the unit, one after the other (a target has no changes
// of its own to keep).
func (s *Sink) Truncate(ctx context.Context, ts []sinks.Truncation) error {
	return sinks.EachTruncated(ts, func(t *sinks.Table) error { return s.truncateTable(ctx, t) })
}

// truncateTable deletes every key of t in the unit: a whole-table copy of no rows.
func (s *Sink) truncateTable(ctx context.Context, t *sinks.Table) error {
	if err := s.inTx(); err != nil {
		return err
	}
	if _, err := s.ReplaceTable(ctx, t, false); err != nil {
		return err
	}
	_, err := s.FinishBatch(ctx, t)
	return err
}

// copyRow takes a row of a copy.
func (s *Sink) copyRow(ctx context.Context, b *batch, row string, size int64) error {
	u := s.tx
	if b.chunked {
		b.pending = append(b.pending, row)
		b.pendBytes += size
		if len(b.pending) >= s.chunkRows || b.pendBytes >= chunkBytes {
			return s.flushChunk(ctx, b)
		}
		return nil
	}
	u.ops = append(u.ops, op{l: b.l, row: row, replace: true})
	key, _ := rowKey(row)
	b.copied[key] = struct{}{}
	b.bytes += size
	if len(b.copied) > s.copyRows || b.bytes > s.copyBytes {
		return s.goChunked(ctx, b)
	}
	return nil
}

// goChunked turns a copy held for Commit into a chunked one: the copy's rows are written
// now, in MULTI/EXEC chunks (DEL+HSET of each row's key, and SADD of the keys to a
// temporary set), and from then on each chunk as it fills; FinishBatch then deletes the
// table's keys that are not in the set. The unit's earlier queued writes of the table
// are dropped: the copy replaces them.
func (s *Sink) goChunked(ctx context.Context, b *batch) error {
	u := s.tx
	var random [12]byte
	_, _ = rand.Read(random[:])
	b.set = copySetKey(s.prefix, b.l.t, hex.EncodeToString(random[:]))
	u.sets = append(u.sets, b.set)
	s.log.Info("redis sink: whole-table copy past the threshold: written in chunks before the commit",
		"db", s.db, "table", b.l.t.Label(), "rows", len(b.copied), "bytes", b.bytes, "set", b.set)
	// The unit's queued writes are rewritten below: the ones sent to the server's MULTI
	// already are discarded there and sent again at Commit.
	if err := u.unstream(ctx); err != nil {
		return err
	}
	for _, o := range u.ops[b.opStart:] {
		b.pending = append(b.pending, o.row)
	}
	kept := u.ops[:0]
	for _, o := range u.ops[:b.opStart] {
		if o.l.base != b.l.base {
			kept = append(kept, o)
		}
	}
	clear(u.ops[len(kept):])
	u.ops = kept
	b.opStart = len(kept)
	u.tables[b.l.base] = &tstate{present: map[string]keyState{}} // the server is the truth now
	b.chunked, b.copied, b.bytes = true, nil, 0
	for len(b.pending) > 0 {
		n := min(len(b.pending), s.chunkRows)
		rest := b.pending[n:]
		b.pending = b.pending[:n]
		if err := s.flushChunk(ctx, b); err != nil {
			return err
		}
		b.pending = rest
	}
	b.pending, b.pendBytes = nil, 0
	return nil
}

// flushChunk writes the pending rows of a chunked copy in one MULTI/EXEC.
func (s *Sink) flushChunk(ctx context.Context, b *batch) error {
	if len(b.pending) == 0 {
		return nil
	}
	pipe := s.client.TxPipeline()
	dels := make([]*goredis.IntCmd, len(b.pending))
	members := make([]any, len(b.pending))
	for i, row := range b.pending {
		key, _ := rowKey(row)
		dels[i] = pipe.Del(ctx, key)
		pipe.Do(ctx, hsetArgs(nil, row, b.l.cols)...)
		members[i] = key
	}
	pipe.SAdd(ctx, b.set, members...)
	pipe.Expire(ctx, b.set, copySetTTL)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("writing a chunk of %d rows: %w", len(b.pending), err)
	}
	for _, d := range dels {
		b.overwritten += d.Val()
	}
	clear(b.pending)
	b.pending, b.pendBytes = b.pending[:0], 0
	return nil
}

// finishCopy completes a copy: the table's keys that the copy did not write are deleted
// (queued, or at once when chunked), and the keys that existed are counted.
func (s *Sink) finishCopy(ctx context.Context, b *batch) error {
	if !b.chunked {
		done, err := s.finishQueuedCopy(ctx, b)
		if err != nil || done {
			return err
		}
		if err := s.goChunked(ctx, b); err != nil {
			return err
		}
	}
	if err := s.flushChunk(ctx, b); err != nil {
		return err
	}
	c := s.client
	var stale int64
	err := scanKeys(ctx, c, b.l.base, func(keys []string) error {
		in, err := c.SMIsMember(ctx, b.set, toAny(keys)...).Result()
		if err != nil {
			return err
		}
		var del []string
		for i, ok := range in {
			if !ok {
				del = append(del, keys[i])
			}
		}
		if len(del) == 0 {
			return nil
		}
		n, err := c.Del(ctx, del...).Result()
		stale += n
		return err
	})
	if err != nil {
		return fmt.Errorf("deleting the keys the copy did not write: %w", err)
	}
	b.deleted = b.overwritten + stale
	if err := c.Del(ctx, b.set).Err(); err != nil {
		return fmt.Errorf("removing the copy's set %s: %w", b.set, err)
	}
	s.log.Info("redis sink: chunked whole-table copy done", "db", s.db, "table", b.l.t.Label(), "rows", b.sent, "deleted", b.deleted)
	return nil
}

// finishQueuedCopy queues the deletion of the table's keys the copy did not write and
// counts the keys the table had; done is false when there are too many of them to hold
// (the copy must go chunked).
func (s *Sink) finishQueuedCopy(ctx context.Context, b *batch) (done bool, err error) {
	u := s.tx
	ts := u.settled(b.l.base)
	var existed int64
	var stale []string
	take := func(k string) {
		existed++
		if _, ok := b.copied[k]; !ok {
			stale = append(stale, k)
		}
	}
	for k, v := range ts.present {
		if v.exists {
			take(k)
		}
	}
	if !ts.cleared {
		seen := map[string]struct{}{}
		err := scanKeys(ctx, s.client, b.l.base, func(keys []string) error {
			for _, k := range keys {
				if _, ok := ts.present[k]; ok {
					continue // the unit's writes decide
				}
				if _, dup := seen[k]; dup {
					continue // SCAN may return a key twice
				}
				seen[k] = struct{}{}
				take(k)
			}
			if len(seen)+len(b.copied) > s.copyRows {
				return errStop
			}
			return nil
		})
		if errors.Is(err, errStop) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
	for len(stale) > 0 {
		m := min(len(stale), keysPerCommand)
		u.ops = append(u.ops, op{l: b.l, del: stale[:m:m]})
		stale = stale[m:]
	}
	present := make(map[string]keyState, len(b.copied))
	for k := range b.copied {
		present[k] = keyState{exists: true}
	}
	u.tables[b.l.base] = &tstate{cleared: true, present: present, batches: ts.batches}
	b.deleted = existed
	return true, nil
}

func toAny(keys []string) []any {
	out := make([]any, len(keys))
	for i, k := range keys {
		out[i] = k
	}
	return out
}
