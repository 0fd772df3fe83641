package job

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
)

// lineWriter splits a COPY TO stream into lines (without the newline) and hands each to fn.
// pgconn writes one CopyData message (one row) per Write, but lines split across writes
// are handled too.
type lineWriter struct {
	fn  func(line []byte) error
	buf []byte
	err error
}

func (w *lineWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n := len(p)
	if len(w.buf) > 0 {
		w.buf = append(w.buf, p...)
		p = w.buf
	}
	for {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			break
		}
		if err := w.fn(p[:i]); err != nil {
			w.err = err
			return 0, err
		}
		p = p[i+1:]
	}
	w.buf = append(w.buf[:0], p...)
	return n, nil
}

func newBufWriter(w io.Writer) *bufio.Writer { return bufio.NewWriterSize(w, 64<<10) }

// receiverPipe feeds one receiver's COPY FROM.
type receiverPipe struct {
	m    *member
	pw   *io.PipeWriter
	bw   *bufio.Writer
	rows int64
	err  error // the receiver's COPY failed: stop writing to it
}

// fanout runs sql (a COPY ... TO STDOUT) on the sender and writes each row to the
// receivers that route(key) selects (a bit per member index; route nil: every receiver),
// each through its own COPY ... FROM STDIN into t. It returns rows written per receiver
// (by member index), the receivers' errors, and the sender's error.
func (r *runner) fanout(ctx context.Context, sender *member, recvs []*member, sql string, t *table, nk int, route func(key string) uint64) ([]int64, []error, error) {
	pipes := make([]*receiverPipe, len(r.members))
	rows := make([]int64, len(r.members))
	rerrs := make([]error, len(r.members))
	var wg sync.WaitGroup
	copyIn := fmt.Sprintf(`COPY %s (%s) FROM STDIN`, t.ident, quoteCols("", t.cols))
	for _, m := range recvs {
		pr, pw := io.Pipe()
		p := &receiverPipe{m: m, pw: pw, bw: newBufWriter(pw)}
		pipes[m.idx] = p
		wg.Add(1)
		go func() {
			defer wg.Done()
			tag, err := m.conn.PgConn().CopyFrom(ctx, pr, copyIn)
			// Unblock the writer if the receiver stopped reading early.
			pr.CloseWithError(fmt.Errorf("receiver %s stopped", m.name))
			rerrs[m.idx] = err
			if err == nil {
				rows[m.idx] = tag.RowsAffected()
			}
		}()
	}
	write := func(p *receiverPipe, line []byte) {
		if p.err != nil {
			return
		}
		if _, err := p.bw.Write(line); err != nil {
			p.err = err
			return
		}
		if err := p.bw.WriteByte('\n'); err != nil {
			p.err = err
		}
	}
	lw := &lineWriter{fn: func(line []byte) error {
		if route == nil {
			for _, m := range recvs {
				write(pipes[m.idx], line)
			}
			return nil
		}
		// The key is the first nk tab-separated fields, exactly as the change rows print it.
		end, seen := 0, 0
		for end < len(line) {
			if line[end] == '\t' {
				seen++
				if seen == nk {
					break
				}
			}
			end++
		}
		to := route(string(line[:end]))
		if to == 0 {
			return nil
		}
		for _, m := range recvs {
			if to&bit(m.idx) != 0 {
				write(pipes[m.idx], line)
			}
		}
		return nil
	}}
	_, serr := sender.conn.PgConn().CopyTo(ctx, lw, sql)
	for _, m := range recvs {
		p := pipes[m.idx]
		if serr != nil {
			p.pw.CloseWithError(serr)
			continue
		}
		if p.err == nil {
			p.err = p.bw.Flush()
		}
		p.pw.CloseWithError(p.err)
	}
	wg.Wait()
	return rows, rerrs, serr
}
