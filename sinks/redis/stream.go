package redis

import (
	"context"

	goredis "github.com/redis/go-redis/v9"
)

// A unit's writes go into the server's MULTI while the unit is written, so that Commit
// has only the rest and EXEC to send: a streamer takes chunks of the unit's queued ops
// (unit.stream) and sends them on the unit's connection from a goroutine of its own, each
// chunk in one round trip, while the rows keep coming. The server queues them without
// executing anything before EXEC: a reader sees none of them until then. The ops stay in
// the unit's queue (a chunked copy may have to rewrite it: unit.unstream).

// streamer sends ops into a MULTI on conn. Only its goroutine uses conn until close.
type streamer struct {
	conn    *goredis.Conn
	ch      chan streamJob
	done    chan struct{}
	started bool  // MULTI sent (the goroutine's; read after done)
	n       int   // ops sent (likewise)
	args    []any // the goroutine's arguments of a chunk, reused
	err     error // the first error (likewise); later chunks are not sent
	closed  bool
}

type streamJob struct {
	ctx context.Context
	ops []op
}

func newStreamer(conn *goredis.Conn) *streamer {
	st := &streamer{conn: conn, ch: make(chan streamJob, 4), done: make(chan struct{})}
	go st.run()
	return st
}

func (st *streamer) run() {
	defer close(st.done)
	for j := range st.ch {
		if st.err == nil {
			st.err = st.send(j.ctx, j.ops)
		}
	}
}

// send queues ops in the MULTI (sending MULTI first), commitChunk commands a round trip.
func (st *streamer) send(ctx context.Context, ops []op) error {
	pipe := st.conn.Pipeline()
	if !st.started {
		pipe.Do(ctx, "multi")
		st.started = true
	}
	// The chunk's command arguments, end to end in one slice (go-redis keeps each
	// command's until the round trip; an append that moves the slice leaves those as
	// they are), sized for a round trip's commands at once and kept for the next chunk.
	need := 0
	for i := range ops[:min(len(ops), commitChunk)] {
		if o := &ops[i]; o.row == "" {
			need += 1 + len(o.del)
		} else {
			need += 4 + 2*len(o.l.cols) // del or hdel, hset, key, name and value pairs
		}
	}
	if cap(st.args) < need {
		st.args = make([]any, 0, need)
	}
	args := st.args[:0]
	defer func() { clear(st.args[:cap(st.args)]) }() // let the values go
	for i := range ops {
		o := &ops[i]
		start := len(args)
		if o.row == "" {
			args = append(args, "del")
			for _, k := range o.del {
				args = append(args, k)
			}
		} else {
			if o.replace {
				k, _ := rowKey(o.row)
				args = append(args, "del", k)
				pipe.Do(ctx, args[start:len(args):len(args)]...)
				start = len(args)
			}
			args = hsetArgs(args, o.row, o.l.cols)
			if o.nulls {
				// Replaced in place: the columns now NULL lose their fields.
				at := len(args)
				if a := hdelArgs(args, o.row, o.l.cols); a != nil {
					pipe.Do(ctx, args[start:at:at]...)
					start, args = at, a
				}
			}
		}
		pipe.Do(ctx, args[start:len(args):len(args)]...)
		st.n++
		if pipe.Len() >= commitChunk {
			if _, err := pipe.Exec(ctx); err != nil {
				return err
			}
			args = args[:0] // the commands sent are done with their arguments
		}
	}
	_, err := pipe.Exec(ctx)
	return err
}

// close waits for the chunks handed over to be sent and returns the ops sent and the
// first error.
func (st *streamer) close() (int, error) {
	if !st.closed {
		st.closed = true
		close(st.ch)
	}
	<-st.done
	return st.n, st.err
}

// stream hands the unit's ops not yet sent to its streamer: when streamChunk of them are
// waiting, or with all, any.
func (u *unit) stream(ctx context.Context, all bool) {
	waiting := len(u.ops) - u.sent
	if waiting == 0 || (!all && waiting < streamChunk) {
		return
	}
	if u.st == nil {
		u.st = newStreamer(u.conn)
	}
	u.st.ch <- streamJob{ctx: ctx, ops: u.ops[u.sent:len(u.ops):len(u.ops)]}
	u.sent = len(u.ops)
}

// unstream discards what the server's MULTI holds, so that the unit's queue can be
// rewritten: its ops are all sent again (at the latest at Commit).
func (u *unit) unstream(ctx context.Context) error {
	st := u.st
	if st == nil {
		return nil
	}
	u.st, u.sent = nil, 0
	if _, err := st.close(); err != nil {
		return err
	}
	if st.started {
		return u.conn.Do(ctx, "discard").Err()
	}
	return nil
}
