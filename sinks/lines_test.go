package sinks

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/internal/conflict"
)

// lwCollect returns a LineWriter that appends a copy of every line it is handed to *lines
// (the slice fn gets may point into the writer's buffer: fn must not keep it).
func lwCollect(lines *[]string) *LineWriter {
	return NewLineWriter(func(line []byte) error {
		*lines = append(*lines, string(line))
		return nil
	})
}

// lwWrite writes each chunk to w, failing the test unless every Write takes it whole.
func lwWrite(t *testing.T, w *LineWriter, chunks ...string) {
	t.Helper()
	for _, c := range chunks {
		n, err := w.Write([]byte(c))
		if err != nil || n != len(c) {
			t.Fatalf("Write(%q) = %d, %v; want %d, nil", c, n, err, len(c))
		}
	}
}

func TestLineWriterSplitAcrossWrites(t *testing.T) {
	var lines []string
	w := lwCollect(&lines)
	lwWrite(t, w, "ab", "c", "\nd", "e\n", "f", "\n")
	if want := []string{"abc", "de", "f"}; !slices.Equal(lines, want) {
		t.Errorf("lines %q, want %q", lines, want)
	}
	if len(w.buf) != 0 {
		t.Errorf("buf %q after a stream that ends with a newline, want empty", w.buf)
	}
}

func TestLineWriterSeveralLinesInOneWrite(t *testing.T) {
	var lines []string
	w := lwCollect(&lines)
	lwWrite(t, w, "1\tone\n2\ttwo\n3\tthree\n")
	if want := []string{"1\tone", "2\ttwo", "3\tthree"}; !slices.Equal(lines, want) {
		t.Errorf("lines %q, want %q", lines, want)
	}
	// The end of a line held over from a write, then more lines in the next.
	lines = nil
	lwWrite(t, w, "4\tfo", "ur\n5\tfive\n6\tsix\n7")
	if want := []string{"4\tfour", "5\tfive", "6\tsix"}; !slices.Equal(lines, want) {
		t.Errorf("lines %q, want %q", lines, want)
	}
	if string(w.buf) != "7" {
		t.Errorf("buf %q, want %q", w.buf, "7")
	}
}

func TestLineWriterFinalPartialLineKept(t *testing.T) {
	var lines []string
	w := lwCollect(&lines)
	lwWrite(t, w, "a\nbc")
	if want := []string{"a"}; !slices.Equal(lines, want) {
		t.Errorf("lines %q, want %q", lines, want)
	}
	if string(w.buf) != "bc" {
		t.Errorf("buf %q, want %q: the line without its newline waits in buf", w.buf, "bc")
	}
	// A partial line is never handed to fn, however long it waits.
	lwWrite(t, w, "d", "e")
	if len(lines) != 1 || string(w.buf) != "bcde" {
		t.Errorf("lines %q, buf %q; want [a] and bcde", lines, w.buf)
	}
	lwWrite(t, w, "\n")
	if want := []string{"a", "bcde"}; !slices.Equal(lines, want) {
		t.Errorf("lines %q, want %q", lines, want)
	}
	if len(w.buf) != 0 {
		t.Errorf("buf %q, want empty", w.buf)
	}
}

func TestLineWriterErrorStops(t *testing.T) {
	boom := errors.New("boom")
	var lines []string
	w := NewLineWriter(func(line []byte) error {
		lines = append(lines, string(line))
		if string(line) == "b" {
			return boom
		}
		return nil
	})
	n, err := w.Write([]byte("a\nb\nc\n"))
	if !errors.Is(err, boom) || n != 0 {
		t.Fatalf("Write = %d, %v; want 0 and fn's error", n, err)
	}
	if want := []string{"a", "b"}; !slices.Equal(lines, want) {
		t.Errorf("fn got %q, want %q: no line after the one that failed", lines, want)
	}
	// Every later write returns the error at once, without calling fn.
	for _, p := range []string{"d\n", "", "e"} {
		n, err := w.Write([]byte(p))
		if !errors.Is(err, boom) || n != 0 {
			t.Errorf("Write(%q) after the error = %d, %v; want 0 and fn's error", p, n, err)
		}
	}
	if len(lines) != 2 {
		t.Errorf("fn called again after its error: %q", lines)
	}
}

func TestLineWriterErrorOnHeldOverLine(t *testing.T) {
	// The line that fails is the one completed from the buffer.
	boom := errors.New("boom")
	calls := 0
	w := NewLineWriter(func([]byte) error { calls++; return boom })
	lwWrite(t, w, "partial")
	if n, err := w.Write([]byte(" line\nnext\n")); !errors.Is(err, boom) || n != 0 {
		t.Fatalf("Write = %d, %v; want 0 and fn's error", n, err)
	}
	if calls != 1 {
		t.Errorf("fn called %d times, want 1", calls)
	}
}

func TestLineWriterEmptyLines(t *testing.T) {
	var lines []string
	w := lwCollect(&lines)
	lwWrite(t, w, "\n", "\n\n", "a\n\nb\n", "", "\n")
	if want := []string{"", "", "", "a", "", "b", ""}; !slices.Equal(lines, want) {
		t.Errorf("lines %q, want %q", lines, want)
	}
	// An empty write changes nothing.
	lwWrite(t, w, "", "x", "")
	if len(lines) != 7 || string(w.buf) != "x" {
		t.Errorf("lines %q, buf %q after empty writes", lines, w.buf)
	}
}

func TestLineWriterMegabyteLines(t *testing.T) {
	const mb = 1 << 20
	line := func(c byte) string { return strings.Repeat(string(c), mb) }
	a, b, c := line('a'), line('b'), line('c')
	stream := a + "\n" + b + "\n" + c + "\n"
	// Whole, in chunks smaller than a line (some not dividing it), and a byte short of
	// each line then the rest.
	for _, size := range []int{len(stream), mb + 1, mb - 1, 64 << 10, 4093} {
		var lines []string
		w := lwCollect(&lines)
		var chunks []string
		for s := stream; len(s) > 0; {
			k := min(size, len(s))
			chunks = append(chunks, s[:k])
			s = s[k:]
		}
		lwWrite(t, w, chunks...)
		if len(lines) != 3 || lines[0] != a || lines[1] != b || lines[2] != c {
			lens := make([]int, len(lines))
			for i, l := range lines {
				lens[i] = len(l)
			}
			t.Errorf("chunks of %d: %d lines of lengths %v, want 3 lines of %d bytes a, b, c", size, len(lines), lens, mb)
		}
		if len(w.buf) != 0 {
			t.Errorf("chunks of %d: %d bytes left in buf", size, len(w.buf))
		}
	}
}

func TestLineWriterAnyChunking(t *testing.T) {
	// However a stream is cut into writes, fn sees the same lines.
	stream := "1\ta\n22\tbb\n\n333\t\\N\n4444\tdddd\ntail"
	want := strings.Split(stream, "\n")
	want = want[:len(want)-1] // the tail has no newline yet
	for size := 1; size <= len(stream); size++ {
		var lines []string
		w := lwCollect(&lines)
		for i := 0; i < len(stream); i += size {
			lwWrite(t, w, stream[i:min(i+size, len(stream))])
		}
		if !slices.Equal(lines, want) {
			t.Errorf("chunks of %d: lines %q, want %q", size, lines, want)
		}
		if !bytes.Equal(w.buf, []byte("tail")) {
			t.Errorf("chunks of %d: buf %q, want tail", size, w.buf)
		}
	}
}

// TestLineReader: lines of any length, a last line without its newline, empty lines.
func TestLineReader(t *testing.T) {
	long := strings.Repeat("x", 600<<10) // longer than the reader's buffer
	var got []string
	if err := EachLine(strings.NewReader("a\n\n"+long+"\nlast"), func(l string) error { got = append(got, l); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "", long, "last"}; !slices.Equal(got, want) {
		t.Errorf("got %d lines %q..., want %d", len(got), got[:2], len(want))
	}
	got = nil
	if err := EachLine(strings.NewReader("a\nb\n"), func(l string) error { got = append(got, l); return nil }); err != nil || !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("got %q, %v", got, err)
	}
	boom := errors.New("boom")
	if err := EachLine(strings.NewReader("a\nb\n"), func(string) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("EachLine = %v, want boom", err)
	}
}

// DecodeLine decodes as conflict.DecodeCopyLine does, on the fast path (no backslash) and
// the other, appending to what it is given.
func TestDecodeLine(t *testing.T) {
	for _, line := range []string{"", "a", "1\t2\t\tx y", "\t", `a\tb\tc`, `\N` + "\t1", `x\\y` + "\t" + `\n`, "bad\rline", `end\`, `\.`} {
		want, werr := conflict.DecodeCopyLine(line)
		dst := []conflict.Field{{Text: "kept"}}
		got, err := DecodeLine(dst, line)
		if (err != nil) != (werr != nil) {
			t.Errorf("%q: error %v, want %v", line, err, werr)
			continue
		}
		if werr != nil {
			continue
		}
		if len(got) != len(want)+1 || got[0].Text != "kept" || !slices.Equal(got[1:], want) {
			t.Errorf("%q: %+v, want kept then %+v", line, got, want)
		}
	}
}
