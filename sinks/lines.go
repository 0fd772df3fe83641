package sinks

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"

	"github.com/ibexrepl/ibex/internal/conflict"
)

// The line plumbing every sink and the run share: a row or a key is one line of COPY text.

// LinesReader reads lines (keys or rows in COPY text), each followed by a newline, without
// joining them first.
func LinesReader(lines []string) io.Reader { return &linesReader{lines: lines} }

type linesReader struct {
	lines []string
	off   int // bytes of lines[0] already read
}

func (k *linesReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) && len(k.lines) > 0 {
		line := k.lines[0]
		if k.off < len(line) {
			c := copy(p[n:], line[k.off:])
			n += c
			k.off += c
			continue
		}
		p[n] = '\n'
		n++
		k.lines, k.off = k.lines[1:], 0
	}
	if n == 0 && len(k.lines) == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// FrameWriter hands a stream written to it (a COPY TO) to parse in whole frames: parse
// takes every whole frame at the start of p and returns what is left, the start of a frame
// split across writes, which is kept and put before the next Write. The first error of
// parse ends the stream and is kept (Err).
type FrameWriter struct {
	parse func(p []byte) (rest []byte, err error)
	buf   []byte
	err   error
}

// NewFrameWriter returns a FrameWriter handing the stream to parse.
func NewFrameWriter(parse func(p []byte) (rest []byte, err error)) *FrameWriter {
	return &FrameWriter{parse: parse}
}

// Err is the error parse returned, if any.
func (w *FrameWriter) Err() error { return w.err }

func (w *FrameWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n := len(p)
	if len(w.buf) > 0 {
		w.buf = append(w.buf, p...)
		p = w.buf
	}
	rest, err := w.parse(p)
	if err != nil {
		w.err = err
		return 0, err
	}
	w.buf = append(w.buf[:0], rest...)
	return n, nil
}

// LineWriter splits a stream written to it (a COPY TO) into lines, without the newline,
// and hands each to fn; fn must not keep the slice. pgconn writes one CopyData message
// (one row) per Write, but lines split across writes are handled too. The first error of
// fn ends the stream and is kept (Err).
type LineWriter struct{ *FrameWriter }

// NewLineWriter returns a LineWriter handing each line to fn.
func NewLineWriter(fn func(line []byte) error) *LineWriter {
	return &LineWriter{NewFrameWriter(func(p []byte) ([]byte, error) {
		for {
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				return p, nil
			}
			if err := fn(p[:i]); err != nil {
				return nil, err
			}
			p = p[i+1:]
		}
	})}
}

// LineReader reads the lines of a stream (the rows WriteRows takes), of any length; a
// last line without its newline counts too.
type LineReader struct {
	r   *bufio.Reader
	buf []byte
}

// NewLineReader returns a LineReader on r.
func NewLineReader(r io.Reader) *LineReader {
	return &LineReader{r: bufio.NewReaderSize(r, 256<<10)}
}

// Next returns the next line without its newline, or io.EOF after the last.
func (l *LineReader) Next() (string, error) {
	b, err := l.NextBytes()
	return string(b), err
}

// NextBytes is Next without a copy: the line is valid until the next call.
func (l *LineReader) NextBytes() ([]byte, error) {
	l.buf = l.buf[:0]
	if cap(l.buf) > 4<<20 {
		l.buf = nil // a huge row passed: let its buffer go
	}
	for {
		part, err := l.r.ReadSlice('\n')
		switch {
		case err == nil:
			if len(l.buf) == 0 {
				return part[:len(part)-1], nil
			}
			l.buf = append(l.buf, part[:len(part)-1]...)
			return l.buf, nil
		case errors.Is(err, bufio.ErrBufferFull):
			l.buf = append(l.buf, part...)
		case err == io.EOF:
			l.buf = append(l.buf, part...)
			if len(l.buf) == 0 {
				return nil, io.EOF
			}
			return l.buf, nil
		default:
			return nil, err
		}
	}
}

// EachLine calls fn with every line of r (see LineReader).
func EachLine(r io.Reader, fn func(line string) error) error {
	lr := NewLineReader(r)
	for {
		line, err := lr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(line); err != nil {
			return err
		}
	}
}

// DecodeLine is conflict.DecodeCopyLine, appending the fields to dst (a slice to reuse
// from line to line): a line without a backslash or a carriage return (no escape, no
// NULL), the common case, is split at its tabs without another allocation.
func DecodeLine(dst []conflict.Field, line string) ([]conflict.Field, error) {
	if strings.IndexByte(line, '\\') >= 0 || strings.IndexByte(line, '\r') >= 0 || strings.IndexByte(line, '\n') >= 0 {
		f, err := conflict.DecodeCopyLine(line)
		return append(dst, f...), err
	}
	for {
		i := strings.IndexByte(line, '\t')
		if i < 0 {
			return append(dst, conflict.Field{Text: line}), nil
		}
		dst = append(dst, conflict.Field{Text: line[:i]})
		line = line[i+1:]
	}
}

// SplitTabs appends to dst the tab-separated fields of line (slices of it): a COPY text
// line's fields, still escaped.
func SplitTabs(dst [][]byte, line []byte) [][]byte {
	for {
		i := bytes.IndexByte(line, '\t')
		if i < 0 {
			return append(dst, line)
		}
		dst = append(dst, line[:i])
		line = line[i+1:]
	}
}
