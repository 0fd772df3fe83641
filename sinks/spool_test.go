package sinks

import (
	"io"
	"strings"
	"testing"
)

// A Spool gives back any range of its rows, of any size, and starts empty after Reset.
func TestSpool(t *testing.T) {
	var s Spool
	defer s.Close()
	if r, err := s.Reader(0, 0); err != nil {
		t.Fatal(err)
	} else if b, _ := io.ReadAll(r); len(b) != 0 {
		t.Fatalf("empty spool read %q", b)
	}
	big := strings.Repeat("x", 600<<10) // past the write buffer
	rows := []string{"1\ta", "", big, "4\t\\N"}
	for _, r := range rows {
		if err := s.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	if s.Len() != 4 {
		t.Fatalf("Len %d", s.Len())
	}
	r, err := s.Reader(1, 4)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(r); string(b) != "\n"+big+"\n4\t\\N\n" {
		t.Errorf("rows 1 to 3: %d bytes", len(b))
	}
	for i, want := range rows {
		if got, err := s.Line(i); err != nil || got != want {
			t.Errorf("Line(%d) = %.20q, %v", i, got, err)
		}
	}
	var seen []int
	if err := s.Each(2, 4, func(i int, _ string) error { seen = append(seen, i); return nil }); err != nil || len(seen) != 2 || seen[0] != 2 {
		t.Errorf("Each(2, 4): %v, %v", seen, err)
	}
	if _, err := s.Reader(3, 5); err == nil {
		t.Error("Reader past the end: no error")
	}
	if err := s.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := s.Add("again"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Line(0); err != nil || got != "again" || s.Len() != 1 {
		t.Errorf("after Reset: %q, %v, Len %d", got, err, s.Len())
	}
}
