package sinks

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
)

// Spool keeps the rows of a batch (COPY text lines) in a temporary file, for a sink that
// may have to write them again one by one after its bulk write failed (on_error=skip):
// memory holds one offset per row, whatever the rows' size. The file is created on the
// first Add and removed by Close. The zero Spool is ready to use; it is not safe for
// concurrent use.
type Spool struct {
	f    *os.File
	name string // the file's name while it is still in the directory (see create)
	w    *bufio.Writer
	offs []int64 // where each row starts
	size int64   // bytes written
}

// Add appends a row (without its newline).
func (s *Spool) Add(line string) error {
	if s.f == nil {
		if err := s.create(); err != nil {
			return err
		}
	}
	s.offs = append(s.offs, s.size)
	if _, err := s.w.WriteString(line); err != nil {
		return s.err(err)
	}
	if err := s.w.WriteByte('\n'); err != nil {
		return s.err(err)
	}
	s.size += int64(len(line)) + 1
	return nil
}

func (s *Spool) create() error {
	f, err := os.CreateTemp("", "ibex-spool-*")
	if err != nil {
		return s.err(err)
	}
	s.f, s.w = f, bufio.NewWriterSize(f, 256<<10)
	// Unlinked at once where the system allows it: nothing is left behind by a killed run.
	if os.Remove(f.Name()) != nil {
		s.name = f.Name()
	}
	return nil
}

func (s *Spool) err(err error) error { return fmt.Errorf("spooling the rows: %w", err) }

// Len is the number of rows added.
func (s *Spool) Len() int { return len(s.offs) }

// Reader returns the rows lo to hi-1, each followed by a newline.
func (s *Spool) Reader(lo, hi int) (io.Reader, error) {
	if lo < 0 || hi > len(s.offs) || lo > hi {
		return nil, fmt.Errorf("spool: rows %d to %d of %d", lo, hi, len(s.offs))
	}
	if lo == hi {
		return eofReader{}, nil
	}
	if err := s.w.Flush(); err != nil {
		return nil, s.err(err)
	}
	end := s.size
	if hi < len(s.offs) {
		end = s.offs[hi]
	}
	return io.NewSectionReader(s.f, s.offs[lo], end-s.offs[lo]), nil
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// Each calls fn with every row lo to hi-1 and its number, until fn fails.
func (s *Spool) Each(lo, hi int, fn func(i int, line string) error) error {
	r, err := s.Reader(lo, hi)
	if err != nil {
		return err
	}
	lines := NewLineReader(r)
	for i := lo; i < hi; i++ {
		line, err := lines.Next()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("spool: row %d missing", i)
		}
		if err != nil {
			return s.err(err)
		}
		if err := fn(i, line); err != nil {
			return err
		}
	}
	return nil
}

// Line returns row i.
func (s *Spool) Line(i int) (string, error) {
	var out string
	err := s.Each(i, i+1, func(_ int, line string) error { out = line; return nil })
	return out, err
}

// Reset forgets the rows; the file is kept for the next ones.
func (s *Spool) Reset() error {
	s.offs, s.size = s.offs[:0], 0
	if s.f == nil {
		return nil
	}
	s.w.Reset(s.f)
	if err := s.f.Truncate(0); err != nil {
		return s.err(err)
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return s.err(err)
	}
	return nil
}

// Close removes the file.
func (s *Spool) Close() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	if s.name != "" {
		_ = os.Remove(s.name)
	}
	s.f, s.w, s.offs, s.size, s.name = nil, nil, nil, 0, ""
	return err
}
