package sinktest

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/sinks"
)

// Exercise runs the conformance suite on the sinks h makes. Every subtest works on
// tables of its own.
func Exercise(t *testing.T, h Harness) {
	t.Run("ReplaceAndDeleteKeys", func(t *testing.T) { replaceAndDeleteKeys(t, h) })
	t.Run("ReplaceTable", func(t *testing.T) { replaceTable(t, h) })
	t.Run("Rollback", func(t *testing.T) { rollback(t, h) })
	t.Run("Idempotent", func(t *testing.T) { idempotent(t, h) })
	t.Run("Values", func(t *testing.T) { values(t, h) })
	t.Run("LargeValues", func(t *testing.T) { largeValues(t, h) })
	t.Run("HostileNames", func(t *testing.T) { hostileNames(t, h) })
	t.Run("SeveralTables", func(t *testing.T) { severalTables(t, h) })
	t.Run("NoTransaction", func(t *testing.T) { noTransaction(t, h) })
	t.Run("Truncate", func(t *testing.T) { truncate(t, h) })
}

// seed5 is rows 1 to 5 of a basic table.
var seed5 = []string{
	row("1", "one", "10", `\\x01`),
	row("2", "two", "20", `\\x02`),
	row("3", "three", "30", `\\x03`),
	row("4", "four", "40", `\\x04`),
	row("5", "five", "50", `\\x05`),
}

// replaceAndDeleteKeys: a batch's keys that bring a row are replaced (or inserted), the
// others deleted; rows of other keys stay.
func replaceAndDeleteKeys(t *testing.T, h Harness) {
	tbl := h.CreateTable(t, basic("replace_keys"))
	h.Seed(t, tbl, seed5)
	s := begin(t, h)
	c := apply(t, s, tbl, []string{"2", "3", "4", "9"}, []string{
		row("2", "TWO", "22", `\\x0202`),
		row("4", `\N`, "44", `\N`),
		row("9", "nine", "90", `\\x09`),
	})
	// 2 and 4 replaced, 3 deleted (no row came), 9 inserted (it had no row).
	wantCounts(t, "batch", c, sinks.Counts{Written: 3, Deleted: 3})
	commit(t, s)
	wantRows(t, h, tbl, []string{
		seed5[0],
		row("2", "TWO", "22", `\\x0202`),
		row("4", `\N`, "44", `\N`),
		seed5[4],
		row("9", "nine", "90", `\\x09`),
	})

	// Keys only, no rows: every key is deleted; a key without a row counts nothing.
	s = begin(t, h)
	c = apply(t, s, tbl, []string{"1", "5", "77"}, nil)
	wantCounts(t, "delete-only batch", c, sinks.Counts{Written: 0, Deleted: 2})
	commit(t, s)
	wantRows(t, h, tbl, []string{
		row("2", "TWO", "22", `\\x0202`),
		row("4", `\N`, "44", `\N`),
		row("9", "nine", "90", `\\x09`),
	})

	// An empty batch changes nothing.
	s = begin(t, h)
	c = apply(t, s, tbl, nil, nil)
	wantCounts(t, "empty batch", c, sinks.Counts{})
	commit(t, s)
	wantRows(t, h, tbl, []string{
		row("2", "TWO", "22", `\\x0202`),
		row("4", `\N`, "44", `\N`),
		row("9", "nine", "90", `\\x09`),
	})
}

// replaceTable: a whole-table copy replaces every row; with ifEmpty, a table holding rows
// is skipped and left as it is, and an empty one is copied.
func replaceTable(t *testing.T, h Harness) {
	ctx := t.Context()
	tbl := h.CreateTable(t, basic("replace_table"))
	h.Seed(t, tbl, seed5[:3])
	fresh := []string{
		row("10", "ten", "100", `\\x10`),
		row("11", `\N`, `\N`, `\N`),
		row("12", "twelve", "120", `\\x`),
		row("2", "new two", "2", `\\x22`),
	}
	s := begin(t, h)
	wantCounts(t, "whole-table copy", replace(t, s, tbl, fresh), sinks.Counts{Written: 4, Deleted: 3})
	commit(t, s)
	wantRows(t, h, tbl, fresh)

	s = begin(t, h)
	skipped, err := s.ReplaceTable(ctx, tbl, true)
	if err != nil || !skipped {
		t.Fatalf("ReplaceTable(ifEmpty) of a table holding rows = %v, %v; expected true, nil", skipped, err)
	}
	commit(t, s)
	wantRows(t, h, tbl, fresh)

	// Copying no rows empties the table.
	s = begin(t, h)
	wantCounts(t, "copy of no rows", replace(t, s, tbl, nil), sinks.Counts{Written: 0, Deleted: 4})
	commit(t, s)
	wantRows(t, h, tbl, nil)

	s = begin(t, h)
	skipped, err = s.ReplaceTable(ctx, tbl, true)
	if err != nil || skipped {
		t.Fatalf("ReplaceTable(ifEmpty) of an empty table = %v, %v; expected false, nil", skipped, err)
	}
	if n, err := s.WriteRows(ctx, tbl, stream(seed5)); err != nil || n != 5 {
		t.Fatalf("WriteRows = %d, %v; expected 5, nil", n, err)
	}
	c, err := s.FinishBatch(ctx, tbl)
	if err != nil {
		t.Fatalf("FinishBatch: %v", err)
	}
	wantCounts(t, "copy into an empty table", c, sinks.Counts{Written: 5})
	commit(t, s)
	wantRows(t, h, tbl, seed5)
}

// rollback: a rolled-back unit leaves the rows exactly as they were, and the sink takes
// a new unit afterwards.
func rollback(t *testing.T, h Harness) {
	ctx := t.Context()
	tbl := h.CreateTable(t, basic("rollback"))
	h.Seed(t, tbl, seed5)
	s := begin(t, h)
	apply(t, s, tbl, []string{"1", "2", "8"}, []string{row("1", "x", "1", `\N`), row("8", "y", "8", `\N`)})
	replace(t, s, tbl, []string{row("100", "z", "0", `\N`)})
	apply(t, s, tbl, []string{"100"}, nil)
	s.Rollback(ctx)
	wantRows(t, h, tbl, seed5)
	_, err := s.PrepareBatch(ctx, tbl, []string{"1"})
	wantNoTx(t, "PrepareBatch after Rollback", err)

	if err := s.Begin(ctx); err != nil {
		t.Fatalf("Begin after Rollback: %v", err)
	}
	c := apply(t, s, tbl, []string{"1", "2", "8"}, []string{row("1", "x", "1", `\N`), row("8", "y", "8", `\N`)})
	wantCounts(t, "batch after a rollback", c, sinks.Counts{Written: 2, Deleted: 2})
	commit(t, s)
	wantRows(t, h, tbl, []string{row("1", "x", "1", `\N`), seed5[2], seed5[3], seed5[4], row("8", "y", "8", `\N`)})
}

// idempotent: the same batch applied again (in a later unit, as after a run killed
// before its watermark update, or twice in one unit) leaves the same rows as once.
func idempotent(t *testing.T, h Harness) {
	tbl := h.CreateTable(t, basic("idempotent"))
	h.Seed(t, tbl, seed5[:3])
	keys := []string{"2", "3", "4"}
	rows := []string{row("2", "TWO", "2", `\\xff`), row("4", "FOUR", "4", `\N`)}
	want := []string{seed5[0], rows[0], rows[1]}

	s := begin(t, h)
	wantCounts(t, "first", apply(t, s, tbl, keys, rows), sinks.Counts{Written: 2, Deleted: 2})
	commit(t, s)
	wantRows(t, h, tbl, want)

	s = begin(t, h)
	// Now 2 and 4 are there (replaced), 3 is gone.
	wantCounts(t, "again", apply(t, s, tbl, keys, rows), sinks.Counts{Written: 2, Deleted: 2})
	commit(t, s)
	wantRows(t, h, tbl, want)

	s = begin(t, h)
	wantCounts(t, "twice in one unit (1)", apply(t, s, tbl, keys, rows), sinks.Counts{Written: 2, Deleted: 2})
	wantCounts(t, "twice in one unit (2)", apply(t, s, tbl, keys, rows), sinks.Counts{Written: 2, Deleted: 2})
	commit(t, s)
	wantRows(t, h, tbl, want)

	s = begin(t, h)
	wantCounts(t, "whole-table copy", replace(t, s, tbl, want), sinks.Counts{Written: 3, Deleted: 3})
	wantCounts(t, "whole-table copy again", replace(t, s, tbl, want), sinks.Counts{Written: 3, Deleted: 3})
	commit(t, s)
	wantRows(t, h, tbl, want)
}

// awkward are values COPY text must carry unchanged: NULLs, empty values, unicode,
// quotes, escaped control characters and backslashes, extreme integers.
var awkward = []string{
	row("1", `\N`, `\N`, `\N`),
	row("2", "", "0", `\\x`),
	row("3", "héllo wörld ✓ 日本語 😀 ñ ß", "-9223372036854775808", `\\x00ff10`),
	row("4", `it's "quoted" ; DROP TABLE x; --`, "9223372036854775807", `\\xdeadbeef`),
	row("5", `tab\there\nnewline\rcr\\backslash \\N is text`, "42", `\\x5c0a09`),
	row("6", `ctl\b\f\v end`, "-1", `\\x00`),
	row("7", "  padded  ", "7", `\\x20`),
	row("8", `\\.`, "8", `\\x2e`),
}

// values: awkward values written by a batch, replaced by another, and by a whole-table
// copy, come back as they were sent.
func values(t *testing.T, h Harness) {
	tbl := h.CreateTable(t, basic("awkward_values"))
	h.Seed(t, tbl, []string{row("1", "seeded", "1", `\\x01`), row("4", "seeded", "4", `\\x04`)})
	var keys []string
	for i := range awkward {
		keys = append(keys, strings.SplitN(awkward[i], "\t", 2)[0])
	}
	s := begin(t, h)
	wantCounts(t, "batch", apply(t, s, tbl, keys, awkward), sinks.Counts{Written: int64(len(awkward)), Deleted: 2})
	commit(t, s)
	wantRows(t, h, tbl, awkward)

	// Values swap: NULLs become values and values NULLs.
	swapped := []string{row("1", strings.Split(awkward[3], "\t")[1], "1", `\\x01`), row("4", `\N`, `\N`, `\N`)}
	s = begin(t, h)
	wantCounts(t, "swap", apply(t, s, tbl, []string{"1", "4"}, swapped), sinks.Counts{Written: 2, Deleted: 2})
	commit(t, s)
	want := append([]string{swapped[0], awkward[1], awkward[2], swapped[1]}, awkward[4:]...)
	wantRows(t, h, tbl, want)

	s = begin(t, h)
	wantCounts(t, "whole-table copy", replace(t, s, tbl, awkward), sinks.Counts{Written: int64(len(awkward)), Deleted: int64(len(awkward))})
	commit(t, s)
	wantRows(t, h, tbl, awkward)
}

// largeValues: values of several MB, by a batch and by a whole-table copy.
func largeValues(t *testing.T, h Harness) {
	tbl := h.CreateTable(t, basic("large_values"))
	h.Seed(t, tbl, seed5[:2])
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte(i*7 + i>>11)
	}
	const unit = `ibex ✓ \t tab \\ slash ` // 25 bytes
	text := strings.Repeat(unit, (5<<20)/len(unit))
	cut := len(unit) * ((1 << 20) / len(unit)) // a whole number of units: no escape cut
	rows := []string{
		row("1", text, "1", `\N`),
		row("2", "small", "2", `\\x`+hex.EncodeToString(big)),
		row("3", text[:cut], "3", `\\x`+hex.EncodeToString(big[:1<<20])),
	}
	s := begin(t, h)
	wantCounts(t, "batch", apply(t, s, tbl, []string{"1", "2", "3"}, rows), sinks.Counts{Written: 3, Deleted: 2})
	commit(t, s)
	wantRows(t, h, tbl, rows)

	s = begin(t, h)
	wantCounts(t, "whole-table copy", replace(t, s, tbl, rows[1:]), sinks.Counts{Written: 2, Deleted: 3})
	commit(t, s)
	wantRows(t, h, tbl, rows[1:])
}

// hostileNames: names that need quoting everywhere (quotes, dots, spaces, unicode, mixed
// case, SQL keywords), and a two-column key whose text field holds awkward values.
func hostileNames(t *testing.T, h Harness) {
	tbl := h.CreateTable(t, Spec{Schema: `Hostile "Sch.ema" ü`, Name: `Ta"b.le 'select' ÜÑ`, Key: 2, Columns: []Column{
		{`Id "x".y`, Int}, {`select`, Text}, {`Mixed Case`, Text}, {`naïve'col`, BigInt}, {`from`, Bytes},
	}})
	h.Seed(t, tbl, []string{
		row("1", `a'b "c"`, "one", "1", `\\x01`),
		row("1", "ü ñ", "two", "2", `\N`),
		row("2", `x\\y`, "three", "3", `\\x03`),
		row("2", `t\tab`, "four", "4", `\\x04`),
	})
	keys := []string{row("1", `a'b "c"`), row("1", "ü ñ"), row("2", `t\tab`), row("3", `new key; --`)}
	rows := []string{
		row("1", `a'b "c"`, "ONE", "11", `\N`),
		row("2", `t\tab`, `FOUR\n`, "44", `\\x4444`),
		row("3", `new key; --`, "five", "5", `\\x05`),
	}
	s := begin(t, h)
	wantCounts(t, "batch", apply(t, s, tbl, keys, rows), sinks.Counts{Written: 3, Deleted: 3})
	commit(t, s)
	wantRows(t, h, tbl, append([]string{row("2", `x\\y`, "three", "3", `\\x03`)}, rows...))

	s = begin(t, h)
	wantCounts(t, "whole-table copy", replace(t, s, tbl, rows[:2]), sinks.Counts{Written: 2, Deleted: 4})
	commit(t, s)
	wantRows(t, h, tbl, rows[:2])

	if tr, ok := h.NewSink(t).(sinks.Truncater); ok {
		if err := tr.(sinks.Sink).Begin(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := tr.Truncate(t.Context(), []sinks.Truncation{{Table: tbl}}); err != nil {
			t.Fatalf("Truncate: %v", err)
		}
		commit(t, tr.(sinks.Sink))
		wantRows(t, h, tbl, nil)
	}
}

// severalTables: batches and copies of several tables in one unit are rolled back
// together, or committed together.
func severalTables(t *testing.T, h Harness) {
	a := h.CreateTable(t, basic("several_a"))
	b := h.CreateTable(t, basic("several_b"))
	h.Seed(t, a, seed5[:2])
	h.Seed(t, b, seed5[:3])
	rowsA1 := []string{row("1", "A1", "1", `\N`)}
	rowsA2 := []string{row("2", "A2", "2", `\N`), row("6", "A6", "6", `\N`)}
	rowsB := []string{row("7", "B7", "7", `\\x07`)}
	unit := func(s sinks.Sink) {
		wantCounts(t, "a, batch 1", apply(t, s, a, []string{"1"}, rowsA1), sinks.Counts{Written: 1, Deleted: 1})
		wantCounts(t, "b, copy", replace(t, s, b, rowsB), sinks.Counts{Written: 1, Deleted: 3})
		wantCounts(t, "a, batch 2", apply(t, s, a, []string{"2", "6"}, rowsA2), sinks.Counts{Written: 2, Deleted: 1})
	}
	s := begin(t, h)
	unit(s)
	s.Rollback(t.Context())
	wantRows(t, h, a, seed5[:2])
	wantRows(t, h, b, seed5[:3])

	s = begin(t, h)
	unit(s)
	commit(t, s)
	wantRows(t, h, a, append(rowsA1, rowsA2...))
	wantRows(t, h, b, rowsB)
}

// noTransaction: batch methods outside a unit return sinks.ErrNoTransaction; Commit and
// Rollback without one do nothing.
func noTransaction(t *testing.T, h Harness) {
	ctx := t.Context()
	tbl := h.CreateTable(t, basic("no_transaction"))
	h.Seed(t, tbl, seed5[:1])
	s := h.NewSink(t)
	check := func(when string) {
		t.Helper()
		_, err := s.PrepareBatch(ctx, tbl, []string{"1"})
		wantNoTx(t, "PrepareBatch "+when, err)
		_, err = s.WriteRows(ctx, tbl, stream(seed5[:1]))
		wantNoTx(t, "WriteRows "+when, err)
		_, err = s.FinishBatch(ctx, tbl)
		wantNoTx(t, "FinishBatch "+when, err)
		_, err = s.ReplaceTable(ctx, tbl, false)
		wantNoTx(t, "ReplaceTable "+when, err)
		if tr, ok := s.(sinks.Truncater); ok {
			wantNoTx(t, "Truncate "+when, tr.Truncate(ctx, []sinks.Truncation{{Table: tbl}}))
		}
	}
	check("before Begin")
	if err := s.Commit(ctx); err != nil {
		t.Fatalf("Commit without a transaction: %v", err)
	}
	s.Rollback(ctx)
	if err := s.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Begin(ctx); err != nil {
		t.Fatalf("Begin with a transaction open: %v", err)
	}
	commit(t, s)
	check("after Commit")
	wantRows(t, h, tbl, seed5[:1])
}

// truncate: a sink that is a sinks.Truncater empties a table in the unit.
func truncate(t *testing.T, h Harness) {
	if _, ok := h.NewSink(t).(sinks.Truncater); !ok {
		t.Skip("the sink is not a sinks.Truncater")
	}
	ctx := t.Context()
	tbl := h.CreateTable(t, basic("truncate"))
	h.Seed(t, tbl, seed5)
	s := begin(t, h)
	if err := s.(sinks.Truncater).Truncate(ctx, []sinks.Truncation{{Table: tbl}}); err != nil {
		t.Fatalf("Truncate: %v", err)
	}
	s.Rollback(ctx)
	wantRows(t, h, tbl, seed5)

	s = begin(t, h)
	if err := s.(sinks.Truncater).Truncate(ctx, []sinks.Truncation{{Table: tbl}}); err != nil {
		t.Fatalf("Truncate: %v", err)
	}
	// A batch after it in the same unit.
	wantCounts(t, "batch after truncate", apply(t, s, tbl, []string{"1", "9"}, []string{row("9", "nine", "9", `\N`)}), sinks.Counts{Written: 1})
	commit(t, s)
	wantRows(t, h, tbl, []string{row("9", "nine", "9", `\N`)})

	// Several tables in one call (tables referencing each other are emptied together).
	other := h.CreateTable(t, basic("truncate_other"))
	h.Seed(t, other, seed5[:2])
	s = begin(t, h)
	if err := s.(sinks.Truncater).Truncate(ctx, []sinks.Truncation{{Table: tbl}, {Table: other}}); err != nil {
		t.Fatalf("Truncate of two tables: %v", err)
	}
	commit(t, s)
	wantRows(t, h, tbl, nil)
	wantRows(t, h, other, nil)
}
