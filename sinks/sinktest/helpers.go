package sinktest

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/sinks"
)

// basic is the suite's usual table: an integer key, text, bigint and bytes.
func basic(name string) Spec {
	return Spec{Schema: "public", Name: name, Key: 1, Columns: []Column{
		{"id", Int}, {"name", Text}, {"n", BigInt}, {"data", Bytes},
	}}
}

// row joins fields into a COPY text line.
func row(fields ...string) string { return strings.Join(fields, "\t") }

// stream is rows as WriteRows takes them.
func stream(rows []string) io.Reader {
	if len(rows) == 0 {
		return strings.NewReader("")
	}
	return strings.NewReader(strings.Join(rows, "\n") + "\n")
}

// apply runs one batch (PrepareBatch, WriteRows, FinishBatch) in the open unit, checks
// that no key was skipped and every row taken, and returns the counts.
func apply(t *testing.T, s sinks.Sink, tbl *sinks.Table, keys, rows []string) sinks.Counts {
	t.Helper()
	ctx := t.Context()
	p, err := s.PrepareBatch(ctx, tbl, keys)
	if err != nil {
		t.Fatalf("PrepareBatch(%s): %v", tbl.Label(), err)
	}
	if len(p.Skipped) != 0 {
		t.Fatalf("PrepareBatch(%s) skipped %q, expected none", tbl.Label(), p.Skipped)
	}
	n, err := s.WriteRows(ctx, tbl, stream(rows))
	if err != nil {
		t.Fatalf("WriteRows(%s): %v", tbl.Label(), err)
	}
	if n != int64(len(rows)) {
		t.Fatalf("WriteRows(%s) = %d, sent %d", tbl.Label(), n, len(rows))
	}
	c, err := s.FinishBatch(ctx, tbl)
	if err != nil {
		t.Fatalf("FinishBatch(%s): %v", tbl.Label(), err)
	}
	return c
}

// replace runs a whole-table copy of rows into tbl in the open unit (not ifEmpty) and
// returns the counts.
func replace(t *testing.T, s sinks.Sink, tbl *sinks.Table, rows []string) sinks.Counts {
	t.Helper()
	ctx := t.Context()
	skipped, err := s.ReplaceTable(ctx, tbl, false)
	if err != nil || skipped {
		t.Fatalf("ReplaceTable(%s, false) = %v, %v; expected false, nil", tbl.Label(), skipped, err)
	}
	n, err := s.WriteRows(ctx, tbl, stream(rows))
	if err != nil {
		t.Fatalf("WriteRows(%s): %v", tbl.Label(), err)
	}
	if n != int64(len(rows)) {
		t.Fatalf("WriteRows(%s) = %d, sent %d", tbl.Label(), n, len(rows))
	}
	c, err := s.FinishBatch(ctx, tbl)
	if err != nil {
		t.Fatalf("FinishBatch(%s): %v", tbl.Label(), err)
	}
	return c
}

// begin opens a fresh sink's unit.
func begin(t *testing.T, h Harness) sinks.Sink {
	t.Helper()
	s := h.NewSink(t)
	if err := s.Begin(t.Context()); err != nil {
		t.Fatalf("Begin: %v", err)
	}
	return s
}

func commit(t *testing.T, s sinks.Sink) {
	t.Helper()
	if err := s.Commit(t.Context()); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

func wantCounts(t *testing.T, what string, got, want sinks.Counts) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: counts %+v, expected %+v", what, got, want)
	}
}

// wantRows checks that tbl holds exactly want (in any order).
func wantRows(t *testing.T, h Harness, tbl *sinks.Table, want []string) {
	t.Helper()
	got := h.Rows(t, tbl)
	want = slices.Clone(want)
	slices.Sort(want)
	if slices.Equal(got, want) {
		return
	}
	var b strings.Builder
	for _, l := range want {
		if !slices.Contains(got, l) {
			fmt.Fprintf(&b, "\n  missing: %s", clip(l))
		}
	}
	for _, l := range got {
		if !slices.Contains(want, l) {
			fmt.Fprintf(&b, "\n  extra:   %s", clip(l))
		}
	}
	t.Fatalf("table %s: %d rows, expected %d:%s", tbl.Label(), len(got), len(want), b.String())
}

// clip shortens a (possibly huge) line for a message.
func clip(s string) string {
	if len(s) > 200 {
		return fmt.Sprintf("%q... (%d bytes)", s[:200], len(s))
	}
	return fmt.Sprintf("%q", s)
}

// wantNoTx checks that err is sinks.ErrNoTransaction.
func wantNoTx(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, sinks.ErrNoTransaction) {
		t.Fatalf("%s outside a transaction: %v, expected sinks.ErrNoTransaction", what, err)
	}
}
