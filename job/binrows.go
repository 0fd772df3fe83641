package job

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/ibexrepl/ibex/sinks"
)

// A key read of change rows (capture.KeyReadRows) comes in COPY's binary format: the
// server sends the change time and the key as they are stored, without printing them (its
// text output of the time as microseconds went through numeric arithmetic, which cost
// about as much as the rest of the scan).

// copyBinarySignature opens a binary COPY stream (then 4 bytes of flags and the length
// of a header extension).
const copyBinarySignature = "PGCOPY\n\xff\r\n\x00"

// pgEpochMicros is PostgreSQL's epoch (2000-01-01 UTC), from which a binary timestamptz
// counts microseconds, in microseconds since the Unix epoch.
const pgEpochMicros = 946684800 * 1000000

// tupleWriter is an io.Writer taking a binary COPY stream: it calls fn with each tuple's
// fields (nil for a NULL; slices of its buffer, valid during the call).
type tupleWriter struct {
	*sinks.FrameWriter
	fn     func(fields [][]byte) error
	header bool // the header was read
	done   bool // the trailer was read
	fields [][]byte
}

func newTupleWriter(fn func(fields [][]byte) error) *tupleWriter {
	w := &tupleWriter{fn: fn}
	w.FrameWriter = sinks.NewFrameWriter(w.parse)
	return w
}

// Err is fn's error or the stream's, if any; a stream that ended without its trailer is
// one.
func (w *tupleWriter) Err() error {
	if err := w.FrameWriter.Err(); err != nil || w.done {
		return err
	}
	return errors.New("binary COPY stream without its end")
}

// parse takes every whole tuple of p and returns what is left.
func (w *tupleWriter) parse(p []byte) ([]byte, error) {
	if !w.header {
		if len(p) < len(copyBinarySignature)+8 {
			return p, nil
		}
		if string(p[:len(copyBinarySignature)]) != copyBinarySignature {
			return nil, errors.New("not a binary COPY stream")
		}
		ext := binary.BigEndian.Uint32(p[len(copyBinarySignature)+4:])
		end := len(copyBinarySignature) + 8 + int(ext)
		if len(p) < end {
			return p, nil
		}
		p, w.header = p[end:], true
	}
	for len(p) >= 2 && !w.done {
		nf := int16(binary.BigEndian.Uint16(p))
		if nf == -1 {
			w.done, p = true, p[2:]
			break
		}
		if nf < 0 {
			return nil, fmt.Errorf("binary COPY tuple of %d fields", nf)
		}
		at := 2
		w.fields = w.fields[:0]
		whole := true
		for range nf {
			if len(p) < at+4 {
				whole = false
				break
			}
			l := int32(binary.BigEndian.Uint32(p[at:]))
			at += 4
			if l < 0 {
				w.fields = append(w.fields, nil)
				continue
			}
			if len(p) < at+int(l) {
				whole = false
				break
			}
			w.fields = append(w.fields, p[at:at+int(l):at+int(l)])
			at += int(l)
		}
		if !whole {
			break
		}
		if err := w.fn(w.fields); err != nil {
			return nil, err
		}
		p = p[at:]
	}
	return p, nil
}

// binaryInt is a binary smallint, integer or bigint.
func binaryInt(b []byte) (int64, bool) {
	switch len(b) {
	case 2:
		return int64(int16(binary.BigEndian.Uint16(b))), true
	case 4:
		return int64(int32(binary.BigEndian.Uint32(b))), true
	case 8:
		return int64(binary.BigEndian.Uint64(b)), true
	}
	return 0, false
}

// binaryBool is a binary boolean.
func binaryBool(b []byte) (v, ok bool) {
	if len(b) != 1 {
		return false, false
	}
	return b[0] != 0, true
}

// appendUUID appends a binary uuid as PostgreSQL prints it (lower-case hex, 8-4-4-4-12).
func appendUUID(dst, b []byte) ([]byte, bool) {
	if len(b) != 16 {
		return dst, false
	}
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:36], b[10:16])
	return append(dst, s[:]...), true
}
