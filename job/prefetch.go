package job

import (
	"context"
	"io"
	"sync"

	"github.com/jackc/pgx/v5"
)

// A sender whose rows need no keys shipped first (a full key range, readPlan.full) starts
// its COPY ... TO STDOUT while the receivers ready the batch (phase 2 of batch), so that
// the source reads rows while the receivers delete keys or make their temp tables. The
// rows wait in a bounded buffer (prefetchBytes), with the source's session waiting
// beyond it, until the batch's stream takes them.

// prefetchBytes bounds the rows a prefetch holds before its reader takes them.
const prefetchBytes = 4 << 20

// prefetchChunk is the size of the chunks the rows are held in.
const prefetchChunk = 64 << 10

// prefetch is a COPY ... TO STDOUT running ahead of its reader.
type prefetch struct {
	ch    chan []byte   // chunks of the stream, closed when the COPY ended
	stop  chan struct{} // closed when the reader gives up: the rest is dropped
	once  sync.Once
	done  chan struct{} // closed when the COPY ended; err is set then
	err   error
	chunk []byte // the chunk being filled (the COPY's goroutine)
	// free holds chunks the reader is done with, for the COPY's goroutine to fill again:
	// the stream reuses a few chunks instead of allocating (and faulting in) new ones.
	free chan []byte
	made int // chunks allocated, the others were reused (the COPY's goroutine)
}

// startPrefetch starts sql (a COPY ... TO STDOUT) on conn, which nothing else may use
// until the prefetch is taken (writeTo) or dropped (discard).
func startPrefetch(ctx context.Context, conn *pgx.Conn, sql string) *prefetch {
	n := prefetchBytes / prefetchChunk
	p := &prefetch{ch: make(chan []byte, n), stop: make(chan struct{}), done: make(chan struct{}), free: make(chan []byte, n)}
	go func() {
		defer close(p.done)
		_, err := conn.PgConn().CopyTo(ctx, p, sql)
		if err == nil && len(p.chunk) > 0 {
			p.send()
		}
		close(p.ch)
		p.err = err
	}()
	return p
}

// Write takes a piece of the stream (one CopyData message), copied: pgconn reuses it. A
// chunk is sent when the next piece would not fit in it, so that it never grows.
func (p *prefetch) Write(b []byte) (int, error) {
	if len(p.chunk) > 0 && len(p.chunk)+len(b) > cap(p.chunk) {
		p.send()
	}
	if p.chunk == nil {
		p.chunk = p.newChunk(len(b))
	}
	p.chunk = append(p.chunk, b...)
	return len(b), nil
}

// newChunk is an empty chunk that holds at least n bytes: a free one when there is one.
func (p *prefetch) newChunk(n int) []byte {
	select {
	case c := <-p.free:
		if cap(c) >= n {
			return c[:0]
		}
	default:
	}
	p.made++
	return make([]byte, 0, max(prefetchChunk, n))
}

// send hands the chunk to the reader, or drops it once the reader gave up.
func (p *prefetch) send() {
	select {
	case p.ch <- p.chunk:
	case <-p.stop:
	}
	p.chunk = nil
}

// writeTo writes the whole stream to w and returns the COPY's error. After an error of
// w the rest of the stream is read and dropped (the session stays usable) and w's error
// is returned when the COPY's is nil.
func (p *prefetch) writeTo(w io.Writer) error {
	var werr error
	for c := range p.ch {
		if werr == nil {
			_, werr = w.Write(c)
		}
		// w does not keep c (io.Writer): it can be filled again.
		select {
		case p.free <- c:
		default:
		}
	}
	<-p.done
	if p.err != nil {
		return p.err
	}
	return werr
}

// discard drops what the prefetch reads and waits for its COPY to end, unless writeTo
// took it already: the session is then free again.
func (p *prefetch) discard() {
	p.once.Do(func() { close(p.stop) })
	for range p.ch {
	}
	<-p.done
}
