package job

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/sinks"
)

func newBufWriter(w io.Writer) *bufio.Writer { return bufio.NewWriterSize(w, 64<<10) }

// receiverPipe feeds one receiver's COPY FROM; several senders write whole lines to it.
type receiverPipe struct {
	mu    sync.Mutex
	pw    *io.PipeWriter
	bw    *bufio.Writer
	err   error // the receiver's COPY failed: stop writing to it
	lines int64 // rows written to it
	view  *view // what it gets of each row (customcols, scoped filters); nil: the row
}

func (p *receiverPipe) writeLine(line []byte) {
	if p.view != nil {
		if line = p.view.apply(line); line == nil {
			return // its filter leaves the row out: the receiver deletes the key
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return
	}
	if _, err := p.bw.Write(line); err != nil {
		p.err = err
		return
	}
	if err := p.bw.WriteByte('\n'); err != nil {
		p.err = err
		return
	}
	p.lines++
}

// sender is one COPY ... TO STDOUT whose rows go to receivers.
type sender struct {
	m    *member
	conn *pgx.Conn
	sql  string
	// pre, when not nil, is sql started ahead on conn (see prefetch.go): its stream is
	// read instead of running sql.
	pre *prefetch
	// route gives the receivers of a row's key (bit per member index), and whether the
	// row is a version to build the receivers' row from instead (collected, see build.go);
	// nil: every row goes to every receiver.
	route func(key []byte) (to uint64, collect bool)
}

// routedLine is a row built from several versions and its receivers.
type routedLine struct {
	line []byte
	to   uint64
}

// buildFunc builds rows from the versions senders sent of them (key -> sender idx ->
// line).
type buildFunc func(versions map[string]map[int][]byte) ([]routedLine, error)

// fanoutResult is what a fanout did, by member index.
type fanoutResult struct {
	sent       []int64       // rows sent to each receiver
	written    []int64       // rows each receiver's COPY wrote
	recvErrs   []error       // each receiver's COPY error
	senderErrs map[int]error // nil when every sender succeeded
	buildErr   error         // building a row from its versions failed
}

// check returns receiver m's error: its COPY's, or a rowCountError when it wrote another
// number of rows than it was sent (from names the single sender, or is empty).
func (f *fanoutResult) check(m *member, from string) error {
	if err := f.recvErrs[m.idx]; err != nil {
		return err
	}
	if f.written[m.idx] != f.sent[m.idx] {
		return &sinks.RowCountError{DB: m.name, From: from, Written: f.written[m.idx], Sent: f.sent[m.idx]}
	}
	return nil
}

// fanout runs every sender's COPY at once and writes each row to the receivers its route
// selects, each receiver through a single COPY ... FROM STDIN into t.
// Rows that senders route for collection are kept until every sender is done, then given
// to build, whose rows go to their receivers like any other.
func (r *runner) fanout(ctx context.Context, t *table, nk int, senders []sender, recvs []*member, build ...buildFunc) *fanoutResult {
	pipes := make([]*receiverPipe, len(r.members))
	rows := make([]int64, len(r.members))
	rerrs := make([]error, len(r.members))
	var rwg sync.WaitGroup
	for _, m := range recvs {
		pr, pw := io.Pipe()
		pipes[m.idx] = &receiverPipe{pw: pw, bw: newBufWriter(pw), view: t.viewOf(m)}
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			n, err := m.sink.WriteRows(ctx, t.sinkTables[m.idx], pr)
			// Unblock the senders if the receiver stopped reading early.
			pr.CloseWithError(fmt.Errorf("receiver %s stopped", m.name))
			rerrs[m.idx] = err
			if err == nil {
				rows[m.idx] = n
			}
		}()
	}
	var smu sync.Mutex
	serrs := map[int]error{}
	var collected map[string]map[int][]byte // guarded by smu
	var swg sync.WaitGroup
	for _, s := range senders {
		swg.Add(1)
		go func() {
			defer swg.Done()
			lw := sinks.NewLineWriter(func(line []byte) error {
				if s.route == nil {
					for _, m := range recvs {
						pipes[m.idx].writeLine(line)
					}
					return nil
				}
				// The key is the first nk tab-separated fields, as the change rows print it.
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
				to, collect := s.route(line[:end])
				if to == 0 {
					return nil
				}
				if collect {
					key := string(line[:end])
					smu.Lock()
					defer smu.Unlock()
					if collected == nil {
						collected = map[string]map[int][]byte{}
					}
					if collected[key] == nil {
						collected[key] = map[int][]byte{}
					}
					collected[key][s.m.idx] = bytes.Clone(line)
					return nil
				}
				for _, m := range recvs {
					if to&bit(m.idx) != 0 {
						pipes[m.idx].writeLine(line)
					}
				}
				return nil
			})
			var err error
			if s.pre != nil {
				err = s.pre.writeTo(lw)
			} else {
				_, err = s.conn.PgConn().CopyTo(ctx, lw, s.sql)
			}
			if err != nil {
				smu.Lock()
				serrs[s.m.idx] = err
				smu.Unlock()
			}
		}()
	}
	swg.Wait()
	var serr error
	for _, e := range serrs {
		serr = e
	}
	var berr error
	if serr == nil && len(collected) > 0 && len(build) > 0 {
		var lines []routedLine
		if lines, berr = build[0](collected); berr == nil {
			for _, l := range lines {
				for _, m := range recvs {
					if l.to&bit(m.idx) != 0 {
						pipes[m.idx].writeLine(l.line)
					}
				}
			}
		} else {
			serr = berr // the receivers' COPY stops: the batch is rolled back
		}
	}
	for _, m := range recvs {
		p := pipes[m.idx]
		p.mu.Lock()
		if serr != nil {
			p.pw.CloseWithError(serr)
		} else {
			if p.err == nil {
				p.err = p.bw.Flush()
			}
			p.pw.CloseWithError(p.err)
		}
		p.mu.Unlock()
	}
	rwg.Wait()
	if len(serrs) == 0 {
		serrs = nil
	}
	sent := make([]int64, len(r.members))
	for _, m := range recvs {
		sent[m.idx] = pipes[m.idx].lines
	}
	return &fanoutResult{sent: sent, written: rows, recvErrs: rerrs, senderErrs: serrs, buildErr: berr}
}
