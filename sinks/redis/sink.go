// Package redis is the sink that writes a receiver that is a Redis server (type=redis):
// one hash per row, under the key <prefix><schema>.<table>:<key>, whose fields are the
// row's columns (a NULL column is an absent field). docs/sinks/redis.md documents the
// layout, the values, the transaction model and the limits.
//
// Redis has no transaction that spans round trips, so a unit's writes are queued in
// memory and sent at Commit as one MULTI/EXEC on the unit's own connection: Rollback
// sends nothing, and a reader sees the whole unit or none of it. Only a whole-table copy
// past a threshold (defaultCopyRows rows or defaultCopyBytes bytes) is written in
// chunks before Commit, so that a copy of a big table holds bounded memory.
package redis

import (
	"context"
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

	tx *unit // the open unit; nil outside one
}

var (
	_ sinks.Sink      = (*Sink)(nil)
	_ sinks.Checker   = (*Sink)(nil)
	_ sinks.Closer    = (*Sink)(nil)
	_ sinks.Truncater = (*Sink)(nil)
)

// unit is an open unit: its connection and its queued writes.
type unit struct {
	conn   *goredis.Conn
	ops    []op
	tables map[string]*tstate // by table base
	cur    *batch
	sets   []string // temporary copy sets to remove when the unit ends
}

// op is a queued write.
type op struct {
	base    string   // the table's key base
	del     []string // DEL these keys (when key is "")
	key     string   // HSET key args (after DEL key, with replace)
	args    []any
	replace bool
}

// tstate is what the unit's queued writes do to a table, as the unit sees it.
type tstate struct {
	// cleared is set when queued writes delete every key the table had before the unit
	// (a whole-table copy or a truncate).
	cleared bool
	// present is, for the keys queued writes touch, whether the key exists after them.
	present map[string]bool
}

func (u *unit) table(base string) *tstate {
	ts := u.tables[base]
	if ts == nil {
		ts = &tstate{present: map[string]bool{}}
		u.tables[base] = ts
	}
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

// Commit sends the unit's queued writes as one MULTI/EXEC (a no-op without a unit).
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
	pipe := u.conn.TxPipeline()
	n := 0
	for i := range u.ops {
		o := &u.ops[i]
		switch {
		case o.key == "":
			pipe.Del(ctx, o.del...)
		case o.replace:
			pipe.Del(ctx, o.key)
			pipe.HSet(ctx, o.key, o.args...)
		default:
			pipe.HSet(ctx, o.key, o.args...)
		}
		u.ops[i] = op{} // the pipeline holds the values now
		n++
	}
	u.ops = nil
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("db %s: committing (MULTI/EXEC of %d writes): %w", s.db, n, err)
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

// end closes a unit's connection and removes its temporary sets.
func (s *Sink) end(u *unit) {
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
