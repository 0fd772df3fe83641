package redis

import (
	"encoding/binary"
	"strings"
)

// A unit holds its rows until Commit. Each row is kept packed, in one string cut from a
// large arena block, rather than as a key plus a []any of boxed field/value pairs: one
// allocation per block instead of several per row, and no pointers per field for the GC
// to walk. Commit unpacks a chunk of rows at a time into command arguments.
//
// A packed row is its key, then one entry per column in t.Cols order, each as a uvarint
// (0 for NULL, else the value's length + 1) followed by the value's bytes:
//
//	uvarint(len(key)) key  { uvarint(0) | uvarint(len(v)+1) v }...

const arenaBlock = 1 << 20 // bytes per arena block (a longer row gets a block of its own)

// arena hands out immutable strings cut from large blocks. The strings of a block stay
// valid when later ones are added: a strings.Builder never rewrites bytes it has written,
// and one that outgrows its block is replaced by a new builder, not grown.
type arena struct {
	b     strings.Builder
	start int // where the row being packed starts in b
}

// begin starts a row that will take about n bytes.
func (a *arena) begin(n int) {
	if a.b.Cap()-a.b.Len() < n {
		a.b = strings.Builder{}
		a.b.Grow(max(n, arenaBlock))
	}
	a.start = a.b.Len()
}

// end returns the row packed since begin.
func (a *arena) end() string { return a.b.String()[a.start:] }

func (a *arena) uvarint(v uint64) {
	var buf [binary.MaxVarintLen64]byte
	a.b.Write(buf[:binary.PutUvarint(buf[:], v)])
}

// str appends a length-prefixed value.
func (a *arena) str(s string) {
	a.uvarint(uint64(len(s)) + 1)
	a.b.WriteString(s)
}

func (a *arena) bytes(s []byte) {
	a.uvarint(uint64(len(s)) + 1)
	a.b.Write(s)
}

func (a *arena) null() { a.b.WriteByte(0) }

// uvarintAt decodes the uvarint at s[i:] and returns it and the index past it.
func uvarintAt(s string, i int) (uint64, int) {
	var v uint64
	for shift := 0; ; shift += 7 {
		c := s[i]
		i++
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v, i
		}
	}
}

// rowKey returns a packed row's key and the index of its first column's entry.
func rowKey(row string) (string, int) {
	n, i := uvarintAt(row, 0)
	return row[i : i+int(n)], i + int(n)
}

// hsetArgs appends to args the HSET command of a packed row: "hset", the key, then the
// non-NULL columns' name/value pairs (cols: the table's column names, boxed once). The
// values are substrings of the row: nothing is copied.
func hsetArgs(args []any, row string, cols []any) []any {
	key, i := rowKey(row)
	args = append(args, "hset", key)
	for c := 0; i < len(row); c++ {
		var n uint64
		n, i = uvarintAt(row, i)
		if n == 0 {
			continue // NULL: an absent field
		}
		end := i + int(n) - 1
		args = append(args, cols[c], row[i:end])
		i = end
	}
	return args
}

// hdelArgs appends to args the HDEL command of a packed row's NULL columns: "hdel", the
// key, their names. It returns nil when the row has no NULL column.
func hdelArgs(args []any, row string, cols []any) []any {
	key, i := rowKey(row)
	start := len(args)
	for c := 0; i < len(row); c++ {
		var n uint64
		n, i = uvarintAt(row, i)
		if n > 0 {
			i += int(n) - 1
			continue
		}
		if len(args) == start {
			args = append(args, "hdel", key)
		}
		args = append(args, cols[c])
	}
	if len(args) == start {
		return nil
	}
	return args
}
