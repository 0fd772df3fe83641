// Package redis is the sink that writes a receiver that is a Redis server (type=redis):
// one hash per row, under the key <prefix><schema>.<table>:<key>, whose fields are the
// row's columns (a NULL column is an absent field). docs/sinks/redis.md documents the
// layout, the values, the transaction model and the limits.
//
// Redis has no transaction that spans round trips, so a unit's writes are one MULTI/EXEC
// on the unit's own connection: they are queued in memory and sent into the server's
// MULTI as they come, streamChunk at a time (the server only queues them), and Commit
// sends the rest and EXEC; Rollback closes the connection, which discards the MULTI. A
// reader sees the whole unit or none of it. Only a whole-table copy
// past a threshold (defaultCopyRows rows or defaultCopyBytes bytes) is written in
// chunks before Commit, so that a copy of a big table holds bounded memory.
package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ibexrepl/ibex/sinks"
)

// Thresholds of a whole-table copy: past either, the copy goes chunked.
const (
	defaultCopyRows  = 100_000  // rows (and stale keys) of one copy held for Commit
	defaultCopyBytes = 64 << 20 // bytes of one copy held for Commit
	defaultChunkRows = 1000     // rows per MULTI/EXEC of a chunked copy
	chunkBytes       = 8 << 20  // bytes per MULTI/EXEC of a chunked copy
	keysPerCommand   = 1000     // keys per DEL, EXISTS, SMISMEMBER
	commitChunk      = 10_000   // commands per round trip of a Commit's MULTI (a round trip each: not too few)
	streamChunk      = 2000     // queued writes sent to the server's MULTI at a time while a unit is written
	copySetTTL       = 24 * time.Hour
)

// Sink writes one Redis database. Its methods are called from one goroutine at a time.
type Sink struct {
	db      string
	log     *slog.Logger
	client  *goredis.Client
	prefix  string
	timeout time.Duration

	copyRows  int
	copyBytes int64
	chunkRows int
	// maxUnit bounds the bytes of rows a unit queues (defaultMaxUnit): a unit is held in
	// memory until its MULTI/EXEC.
	maxUnit int64

	tx *unit // the open unit; nil outside one
}

var (
	_ sinks.Sink      = (*Sink)(nil)
	_ sinks.Checker   = (*Sink)(nil)
	_ sinks.Closer    = (*Sink)(nil)
	_ sinks.Truncater = (*Sink)(nil)
)

// defaultMaxUnit bounds the rows a unit queues: 1 GiB (a run's unit is batch_size keys,
// 50,000 by default, unless the sync asks for single_transaction).
const defaultMaxUnit = 1 << 30

// ErrUnitTooLarge is a unit whose rows would not fit the sink's memory bound.
var ErrUnitTooLarge = errors.New("unit too large for Redis")

// unit is an open unit: its connection and its queued writes.
type unit struct {
	conn   *goredis.Conn
	ops    []op
	rows   arena              // the packed rows of ops
	tables map[string]*tstate // by table base
	cur    *batch
	sets   []string // temporary copy sets to remove when the unit ends
	queued int64    // bytes of the rows queued
	// st sends ops[:sent] to the server's MULTI on conn while the unit is written (stream.go).
	st   *streamer
	sent int
}

// op is a queued write: a DEL of keys, or the HSET of a packed row (queue.go).
type op struct {
	l       *layout  // the table's layout: its key base, its column names boxed
	del     []string // DEL these keys (when row is "")
	row     string   // HSET this row (after a DEL of its key, with replace)
	replace bool
	// nulls: the row replaces its key's hash in place, so an HDEL of its NULL columns
	// follows the HSET (a batch's rows; a copy's keys are deleted first).
	nulls bool
}

// tstate is what the unit's queued writes do to a table, as the unit sees it.
type tstate struct {
	// cleared is set when queued writes delete every key the table had before the unit
	// (a whole-table copy or a truncate).
	cleared bool
	// present is, for the keys queued writes touch, whether the key exists after them.
	present map[string]keyState
	// batches counts the table's batches in the unit: keyState.batch tells a key
	// PrepareBatch saw already in this batch (one map access per key).
	batches uint32
	// fast is the keys of a batch not in present yet (fastkeys.go); settle puts them
	// there before anything else reads present.
	fast *fastKeys
}

// keyState is a key's state after the unit's queued writes.
type keyState struct {
	exists bool
	batch  uint32 // the batch (tstate.batches) that last queued a write of the key
}

// table returns what the unit's writes do to a table (its fast batch's keys, if any, are
// not in present: see settled).
func (u *unit) table(base string) *tstate {
	ts := u.tables[base]
	if ts == nil {
		ts = &tstate{present: map[string]keyState{}}
		u.tables[base] = ts
	}
	return ts
}

// settled is table with every key in present.
func (u *unit) settled(base string) *tstate {
	ts := u.table(base)
	ts.settle()
	return ts
}

// Begin opens a unit on a connection of its own (a no-op when one is open).
func (s *Sink) Begin(ctx context.Context) error {
	if s.tx != nil {
		return nil
	}
	conn := s.client.Conn()
	if err := conn.Ping(ctx).Err(); err != nil {
		_ = conn.Close()
		return fmt.Errorf("db %s: beginning a unit: %w", s.db, err)
	}
	s.tx = &unit{conn: conn, tables: map[string]*tstate{}}
	return nil
}

// Commit sends what the unit's queue holds that the server's MULTI does not yet, then
// EXEC (a no-op without a unit).
func (s *Sink) Commit(ctx context.Context) error {
	u := s.tx
	if u == nil {
		return nil
	}
	s.tx = nil
	defer s.end(u)
	if len(u.ops) == 0 {
		return nil
	}
	u.stream(ctx, true)
	n, err := u.st.close()
	if err == nil {
		err = exec(ctx, u.conn)
	}
	u.ops = nil
	if err != nil {
		return fmt.Errorf("db %s: committing (MULTI/EXEC of %d writes): %w", s.db, n, err)
	}
	return nil
}

// exec sends EXEC on c and returns the first error of the transaction's commands.
func exec(ctx context.Context, c *goredis.Conn) error {
	res, err := c.Do(ctx, "exec").Slice()
	if err != nil {
		return err
	}
	for _, r := range res {
		if e, ok := r.(error); ok {
			return e // a command failed at EXEC (Redis does not roll the others back)
		}
	}
	return nil
}

// Rollback drops the unit's queued writes: nothing of the unit is sent (but a chunked
// whole-table copy has written its chunks already).
func (s *Sink) Rollback(ctx context.Context) {
	u := s.tx
	if u == nil {
		return
	}
	s.tx = nil
	if u.cur != nil && u.cur.chunked {
		s.log.Warn("redis sink: rolled back a chunked whole-table copy: the table holds a mix of old and new rows until the next copy",
			"db", s.db, "table", u.cur.l.t.Label())
	}
	s.end(u)
}

// end closes a unit's connection (which discards a MULTI not executed) and removes its
// temporary sets.
func (s *Sink) end(u *unit) {
	if u.st != nil {
		_, _ = u.st.close()
	}
	_ = u.conn.Close()
	if len(u.sets) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		defer cancel()
		if err := s.client.Del(ctx, u.sets...).Err(); err != nil {
			s.log.Warn("redis sink: removing temporary copy sets (they expire in 24 h)", "db", s.db, "sets", u.sets, "err", err)
		}
	}
}

// Close rolls back an open unit and closes the connections.
func (s *Sink) Close() error {
	s.Rollback(context.Background())
	return s.client.Close()
}

// CheckTable passes: Redis has no schema, a table is a key pattern.
func (s *Sink) CheckTable(ctx context.Context, t *sinks.Table) error { return nil }

// CreateTable does nothing: Redis has no schema.
func (s *Sink) CreateTable(ctx context.Context, t *sinks.Table) error { return nil }

// inTx checks that a unit is open.
func (s *Sink) inTx() error {
	if s.tx == nil {
		return sinks.ErrNoTransaction
	}
	return nil
}

func (s *Sink) errf(t *sinks.Table, what string, err error) error {
	return sinks.TableErr(s.db, t, what, err)
}
