package mariadb

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/go-sql-driver/mysql"

	"github.com/ibexrepl/ibex/sinks"
)

// rowReader reads COPY text rows (one a line, the last newline optional) from src and
// serves them in LOAD DATA's format, one converted row at a time: memory holds one row.
// A row that cannot be converted ends the stream at the row before (so that the driver
// keeps the connection) and is reported by err.
type rowReader struct {
	src  *sinks.LineReader
	conv *converter
	keys *keySet // records each row's key; nil: none
	chunks
	rows int64 // rows converted
	err  error // the conversion error that ended the stream
	// spool keeps each line read (on_error=skip: the rows are written again when the
	// load fails); nil: none.
	spool *sinks.Spool
}

func newRowReader(src io.Reader, conv *converter, keys *keySet) *rowReader {
	return &rowReader{src: sinks.NewLineReader(src), conv: conv, keys: keys}
}

// outChunk is how much converted output a Read gathers before it returns.
const outChunk = 1 << 20

func (r *rowReader) Read(p []byte) (int, error) { return r.read(p, r.next) }

// chunks is the output of a reader that converts lines into LOAD DATA text, about
// outChunk bytes at a time.
type chunks struct {
	out  []byte
	off  int
	done bool // no line is left to convert
}

// read copies converted bytes into p; when out is used up, it calls next (which converts
// one line into out, or sets done) until out holds outChunk bytes or done.
func (c *chunks) read(p []byte, next func()) (int, error) {
	if c.off == len(c.out) {
		c.out, c.off = c.out[:0], 0
		if cap(c.out) > 4*outChunk {
			c.out = nil // a huge row passed: let its buffer go
		}
		for !c.done && len(c.out) < outChunk {
			next()
		}
		if len(c.out) == 0 {
			return 0, io.EOF
		}
	}
	n := copy(p, c.out[c.off:])
	c.off += n
	return n, nil
}

// next converts one line into r.out, or sets done.
func (r *rowReader) next() {
	line, err := r.src.Next()
	if err == io.EOF {
		r.done = true
		return
	}
	if err != nil {
		r.err, r.done = fmt.Errorf("reading rows: %w", err), true
		return
	}
	if r.spool != nil {
		if err := r.spool.Add(line); err != nil {
			r.err, r.done = err, true
			return
		}
	}
	if r.keys != nil {
		if err := r.keys.take(line); err != nil {
			r.err, r.done = fmt.Errorf("row %d: %w", r.rows+1, err), true
			return
		}
	}
	out, err := r.conv.appendRow(r.out, line)
	if err != nil {
		r.err, r.done = fmt.Errorf("row %d: %w", r.rows+1, err), true
		return
	}
	r.out = out
	r.rows++
}

// load runs LOAD DATA LOCAL INFILE of the rows of src into table into (quoted),
// columns conv.cols, and returns the rows taken and the rows affected. Without keys, a
// row whose key is there already is skipped (LOAD DATA LOCAL goes on as with IGNORE):
// the caller compares affected with taken. With keys, the load is REPLACE: a row whose
// key (or another unique index) is there deletes that row first, and affected counts
// the rows deleted too; keys records each row's key. When no row was skipped, any warning
// (a value clipped or refused) is an error.
func (s *Sink) load(ctx context.Context, into string, conv *converter, keys *keySet, src io.Reader) (taken, affected int64, err error) {
	return s.loadFrom(ctx, into, newRowReader(src, conv, keys), keys != nil)
}

// loadFrom is load of the rows rr serves, REPLACE with replace.
func (s *Sink) loadFrom(ctx context.Context, into string, rr *rowReader, replace bool) (taken, affected int64, err error) {
	conv := rr.conv
	s.loads++
	name := fmt.Sprintf("ibex-%p-%d", s, s.loads)
	mysql.RegisterReaderHandler(name, func() io.Reader { return rr })
	defer mysql.DeregisterReaderHandler(name)
	how := ""
	if replace {
		how = "REPLACE "
	}
	q := fmt.Sprintf("LOAD DATA LOCAL INFILE %s %sINTO TABLE %s CHARACTER SET binary "+
		"FIELDS TERMINATED BY '\\t' ENCLOSED BY '' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' STARTING BY '' %s",
		literal("Reader::"+name), how, into, conv.targets())
	res, err := s.conn.ExecContext(ctx, q)
	if err != nil {
		s.drop(err)
	}
	if rr.err != nil {
		return rr.rows, 0, rr.err
	}
	if err != nil {
		return rr.rows, 0, err
	}
	affected, err = res.RowsAffected()
	if err != nil {
		return rr.rows, 0, err
	}
	if affected < rr.rows {
		// Rows skipped (a duplicate key: LOAD DATA LOCAL goes on as with IGNORE).
		return rr.rows, affected, nil
	}
	if err := s.warnings(ctx); err != nil {
		return rr.rows, affected, err
	}
	return rr.rows, affected, nil
}

// warnings returns the last statement's warnings (and notes) as an error, nil if none.
func (s *Sink) warnings(ctx context.Context) error {
	rows, err := s.conn.QueryContext(ctx, `SHOW WARNINGS LIMIT 5`)
	if err != nil {
		return err
	}
	defer rows.Close()
	var msgs []string
	for rows.Next() {
		var level, msg string
		var code int
		if err := rows.Scan(&level, &code, &msg); err != nil {
			return err
		}
		msgs = append(msgs, fmt.Sprintf("%s %d: %s", level, code, msg))
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(msgs) > 0 {
		return &warnedError{msg: strings.Join(msgs, "; ")}
	}
	return nil
}

// warnedError is LOAD DATA's warnings: a value clipped or refused, a row skipped.
type warnedError struct{ msg string }

func (e *warnedError) Error() string {
	return "the rows were refused (LOAD DATA warned: " + e.msg + ")"
}
