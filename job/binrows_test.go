package job

import (
	"encoding/binary"
	"slices"
	"testing"

	"github.com/ibexrepl/ibex/internal/conflict"
)

// TestTupleWriter checks that a binary COPY stream is cut into its tuples whatever the
// sizes of the writes.
func TestTupleWriter(t *testing.T) {
	stream := []byte(copyBinarySignature)
	stream = binary.BigEndian.AppendUint32(stream, 0)
	stream = binary.BigEndian.AppendUint32(stream, 2) // a header extension of 2 bytes
	stream = append(stream, 'x', 'y')
	tuple := func(fields ...[]byte) {
		stream = binary.BigEndian.AppendUint16(stream, uint16(len(fields)))
		for _, f := range fields {
			if f == nil {
				stream = binary.BigEndian.AppendUint32(stream, 0xffffffff)
				continue
			}
			stream = binary.BigEndian.AppendUint32(stream, uint32(len(f)))
			stream = append(stream, f...)
		}
	}
	tuple([]byte{0, 0, 0, 7}, []byte{1}, nil)
	tuple([]byte{}, []byte("abc"))
	stream = binary.BigEndian.AppendUint16(stream, 0xffff)
	want := [][]string{{"\x00\x00\x00\x07", "\x01", "<nil>"}, {"", "abc"}}
	for size := 1; size <= len(stream); size++ {
		var got [][]string
		w := newTupleWriter(func(f [][]byte) error {
			var row []string
			for _, v := range f {
				if v == nil {
					row = append(row, "<nil>")
				} else {
					row = append(row, string(v))
				}
			}
			got = append(got, row)
			return nil
		})
		for i := 0; i < len(stream); i += size {
			if _, err := w.Write(stream[i:min(i+size, len(stream))]); err != nil {
				t.Fatalf("writes of %d: %v", size, err)
			}
		}
		if err := w.Err(); err != nil {
			t.Fatalf("writes of %d: %v", size, err)
		}
		if !slices.EqualFunc(got, want, slices.Equal) {
			t.Fatalf("writes of %d: %q, want %q", size, got, want)
		}
	}
	w := newTupleWriter(func([][]byte) error { return nil })
	if _, err := w.Write(stream[:len(stream)-2]); err != nil || w.Err() == nil {
		t.Errorf("a stream without its end: %v, %v", err, w.Err())
	}
	if _, err := newTupleWriter(nil).Write([]byte("PGCOPY\nxxxxxxxxxxxxxxxxxx")); err == nil {
		t.Error("a stream with another signature is taken")
	}
}

// TestBinaryValues checks the binary keys and booleans of a key read.
func TestBinaryValues(t *testing.T) {
	for _, c := range []struct {
		b []byte
		n int64
	}{{[]byte{0xff, 0xfe}, -2}, {[]byte{0, 0, 1, 0}, 256}, {[]byte{0x80, 0, 0, 0, 0, 0, 0, 0}, -1 << 63}} {
		if n, ok := binaryInt(c.b); !ok || n != c.n {
			t.Errorf("binaryInt(%x) = %d, %v", c.b, n, ok)
		}
	}
	if _, ok := binaryInt([]byte{1, 2, 3}); ok {
		t.Error("binaryInt of 3 bytes")
	}
	u := []byte{0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11}
	if s, ok := appendUUID(nil, u); !ok || string(s) != "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11" {
		t.Errorf("appendUUID = %s, %v", s, ok)
	}
	if v, ok := binaryBool([]byte{1}); !ok || !v {
		t.Error("binaryBool(1)")
	}
}

// TestAddBinary feeds the grouper change rows as capture.KeyReadRows sends them (the
// key and the time as stored, the operation's byte, one boolean per receiver) and checks
// the kinds, times and need-flags it makes of them; a row of another shape is an error.
func TestAddBinary(t *testing.T) {
	recvs := []*member{{idx: 1}, {idx: 2}}
	row := func(key int64, at int64, op byte, need1, need2 bool) [][]byte {
		k := binary.BigEndian.AppendUint64(nil, uint64(key))
		ts := binary.BigEndian.AppendUint64(nil, uint64(at-pgEpochMicros))
		b := func(v bool) []byte {
			if v {
				return []byte{1}
			}
			return []byte{0}
		}
		return [][]byte{k, ts, {op}, b(need1), b(need2)}
	}
	{
		p := &keyPart{}
		g := newGrouper(p, 0, true)
		for _, f := range [][][]byte{
			row(1, 10, 'i', true, false), row(1, 20, 'u', false, false), // an insert
			row(2, 5, 'u', false, false), row(2, 7, 'd', false, true), // a delete
			row(3, 5, 'd', false, false), row(3, 9, 'i', false, false), // an update
			row(4, 3, 'r', true, true), // a format 1 row change: an update
		} {
			if err := g.addBinary(f, recvs); err != nil {
				t.Fatal(err)
			}
		}
		g.finish()
		want := []struct {
			at   int64
			kind conflict.Kind
			need uint64
		}{{20, conflict.KindInsert, bit(1)}, {7, conflict.KindDelete, bit(2)}, {9, conflict.KindUpdate, 0}, {3, conflict.KindUpdate, bit(1) | bit(2)}}
		if !slices.Equal(p.keys, []string{"1", "2", "3", "4"}) {
			t.Fatalf("keys %v", p.keys)
		}
		for i, w := range want {
			if p.at[i] != w.at || p.kind[i] != w.kind || p.need[i] != w.need {
				t.Errorf("key %s: at %d kind %v need %b, want %d %v %b", p.keys[i], p.at[i], p.kind[i], p.need[i], w.at, w.kind, w.need)
			}
		}
	}
	g := newGrouper(&keyPart{}, 0, true)
	bad := row(1, 10, 'i', true, true)
	if err := g.addBinary(bad[:4], recvs); err == nil || err.Error() != "unexpected change row with 4 fields" {
		t.Errorf("a row without a flag: %v", err)
	}
	bad[2] = []byte("ii")
	if err := g.addBinary(bad, recvs); err == nil || err.Error() != "unexpected change kind 6969" {
		t.Errorf("a two-byte kind: %v", err)
	}
}
