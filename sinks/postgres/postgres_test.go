package postgres_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/postgres"
	"github.com/ibexrepl/ibex/sinks/sinktest"
)

func TestTargetConformance(t *testing.T) {
	t.Parallel()
	sinktest.Exercise(t, newHarness(t, false))
}

func TestSourceConformance(t *testing.T) {
	t.Parallel()
	sinktest.Exercise(t, newHarness(t, true))
}

// The conformance suite on tables partitioned by hash of their first key column, for a
// target and for a source.
func TestPartitionedConformance(t *testing.T) {
	t.Parallel()
	for _, source := range []bool{false, true} {
		t.Run(map[bool]string{false: "target", true: "source"}[source], func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, source)
			h.partitioned = true
			sinktest.Exercise(t, h)
		})
	}
}

// custom creates table public.name with ddl (its column list and constraints) and
// returns it as the sink takes it.
func custom(t *testing.T, h *harness, name, ddl string) *sinks.Table {
	t.Helper()
	h.exec(t, `CREATE TABLE public.`+qi(name)+` `+ddl)
	desc, err := catalog.Describe(t.Context(), h.app, catalog.QualName{Schema: "public", Name: name})
	if err != nil {
		t.Fatal(err)
	}
	tbl := &sinks.Table{Schema: "public", Name: name, Key: desc.KeyCols, Cols: slices.Clone(desc.KeyCols)}
	for _, c := range desc.Columns {
		if !slices.Contains(tbl.Key, c.Name) {
			tbl.Cols = append(tbl.Cols, c.Name)
		}
	}
	return h.describe(t, tbl)
}

func rowsOf(lines ...string) []string { return lines }

func reader(rows []string) *strings.Reader {
	return strings.NewReader(strings.Join(rows, "\n") + "\n")
}

func wantRows(t *testing.T, h *harness, tbl *sinks.Table, want ...string) {
	t.Helper()
	got := h.Rows(t, tbl)
	want = slices.Clone(want)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("rows of %s:\n%q\nexpected\n%q", tbl.Label(), got, want)
	}
}

// ok fails t on err.
func ok(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// must returns a function taking a call's value and error that fails t on the error.
func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		ok(t, err)
		return v
	}
}

// A key the source's application changed after the run's snapshot is skipped: returned by
// PrepareBatch, and its row (even when sent) does not overwrite the application's.
func TestSourceSkipsKeysChangedSinceSnapshot(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	h := newHarness(t, true)
	tbl := custom(t, h, "late", `(id int PRIMARY KEY, name text)`)
	h.Seed(t, tbl, rowsOf("1\tone", "2\ttwo", "3\tthree"))
	s := h.NewSink(t) // the run's snapshot
	h.exec(t, `UPDATE public.late SET name = 'app' WHERE id = 2`)

	ok(t, s.Begin(ctx))
	p := must[sinks.Prepared](t)(s.PrepareBatch(ctx, tbl, []string{"1", "2", "3", "4"}))
	if !slices.Equal(p.Skipped, []string{"2"}) {
		t.Fatalf("Skipped = %q, expected [2]", p.Skipped)
	}
	if n := must[int64](t)(s.WriteRows(ctx, tbl, reader(rowsOf("1\tONE", "2\tTWO", "4\tfour")))); n != 3 {
		t.Fatalf("WriteRows = %d, expected 3 (staged)", n)
	}
	c := must[sinks.Counts](t)(s.FinishBatch(ctx, tbl))
	// 1 replaced, 4 inserted, 3 deleted; 2 left alone.
	if c != (sinks.Counts{Written: 2, Deleted: 2}) {
		t.Fatalf("counts %+v", c)
	}
	ok(t, s.Commit(ctx))
	wantRows(t, h, tbl, "1\tONE", "2\tapp", "4\tfour")
}

// A key the application changes between PrepareBatch and FinishBatch is found by the
// check after the writes: the writes are rolled back to the savepoint and done again
// without it.
func TestSourceKeyChangedDuringBatch(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	h := newHarness(t, true)
	tbl := custom(t, h, "meanwhile", `(id int PRIMARY KEY, name text)`)
	h.Seed(t, tbl, rowsOf("1\tone", "2\ttwo", "3\tthree"))
	s := h.NewSink(t)
	ok(t, s.Begin(ctx))
	p := must[sinks.Prepared](t)(s.PrepareBatch(ctx, tbl, []string{"1", "2", "3"}))
	if len(p.Skipped) != 0 {
		t.Fatalf("Skipped = %q, expected none", p.Skipped)
	}
	must[int64](t)(s.WriteRows(ctx, tbl, reader(rowsOf("1\tONE", "2\tTWO", "3\tTHREE"))))
	h.exec(t, `UPDATE public.meanwhile SET name = 'app' WHERE id = 2`)
	c := must[sinks.Counts](t)(s.FinishBatch(ctx, tbl))
	if c != (sinks.Counts{Written: 2, Deleted: 2}) {
		t.Fatalf("counts %+v, expected 2 written, 2 deleted (key 2 left out)", c)
	}
	ok(t, s.Commit(ctx))
	wantRows(t, h, tbl, "1\tONE", "2\tapp", "3\tTHREE")
}

// Rows that swap the values of another unique column trip the upsert (23505): the source
// deletes the keys and inserts the rows instead.
func TestSourceUniqueSwap(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	h := newHarness(t, true)
	tbl := custom(t, h, "swap", `(id int PRIMARY KEY, code text UNIQUE)`)
	h.Seed(t, tbl, rowsOf("1\ta", "2\tb", "3\tc"))
	s := h.NewSink(t)
	ok(t, s.Begin(ctx))
	must[sinks.Prepared](t)(s.PrepareBatch(ctx, tbl, []string{"1", "2", "3"}))
	must[int64](t)(s.WriteRows(ctx, tbl, reader(rowsOf("1\tb", "2\ta"))))
	c := must[sinks.Counts](t)(s.FinishBatch(ctx, tbl))
	if c != (sinks.Counts{Written: 2, Deleted: 3}) {
		t.Fatalf("counts %+v", c)
	}
	ok(t, s.Commit(ctx))
	wantRows(t, h, tbl, "1\tb", "2\ta")
}

// Identity-always columns are written as sent (OVERRIDING SYSTEM VALUE; never updated).
func TestIdentityAlways(t *testing.T) {
	t.Parallel()
	for _, source := range []bool{false, true} {
		t.Run(map[bool]string{false: "target", true: "source"}[source], func(t *testing.T) {
			ctx := t.Context()
			h := newHarness(t, source)
			tbl := custom(t, h, "ident", `(id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text)`)
			h.exec(t, `INSERT INTO public.ident (name) VALUES ('one'), ('two')`)
			s := h.NewSink(t)
			ok(t, s.Begin(ctx))
			must[sinks.Prepared](t)(s.PrepareBatch(ctx, tbl, []string{"1", "2", "7"}))
			must[int64](t)(s.WriteRows(ctx, tbl, reader(rowsOf("2\tTWO", "7\tseven"))))
			c := must[sinks.Counts](t)(s.FinishBatch(ctx, tbl))
			if c != (sinks.Counts{Written: 2, Deleted: 2}) {
				t.Fatalf("counts %+v", c)
			}
			ok(t, s.Commit(ctx))
			wantRows(t, h, tbl, "2\tTWO", "7\tseven")
		})
	}
}

// dropTwo adds an ALWAYS trigger (it fires under session_replication_role = replica too)
// that drops the row of id 2.
func dropTwo(t *testing.T, h *harness, tbl *sinks.Table) {
	h.exec(t, `CREATE FUNCTION public.drop_two() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN IF NEW.id = 2 THEN RETURN NULL; END IF; RETURN NEW; END$$`)
	h.exec(t, `CREATE TRIGGER drop_two BEFORE INSERT OR UPDATE ON `+ident(tbl)+` FOR EACH ROW EXECUTE FUNCTION public.drop_two()`)
	h.exec(t, `ALTER TABLE `+ident(tbl)+` ENABLE ALWAYS TRIGGER drop_two`)
}

func wantRowCount(t *testing.T, err error, written, sent int64) {
	t.Helper()
	var rc *sinks.RowCountError
	if !errors.As(err, &rc) {
		t.Fatalf("FinishBatch: %v, expected a *sinks.RowCountError", err)
	}
	if rc.Written != written || rc.Sent != sent || rc.DB == "" {
		t.Fatalf("RowCountError %+v, expected %d written, %d sent", rc, written, sent)
	}
}

// A trigger dropping rows on a target shows in WriteRows' count (fewer than sent) and
// fails FinishBatch with a *sinks.RowCountError, for a batch and a whole-table copy.
func TestTargetTriggerDroppingRows(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	h := newHarness(t, false)
	tbl := custom(t, h, "dropping", `(id int PRIMARY KEY, name text)`)
	h.Seed(t, tbl, rowsOf("1\tone", "2\ttwo"))
	dropTwo(t, h, tbl)
	s := h.NewSink(t)
	ok(t, s.Begin(ctx))
	must[sinks.Prepared](t)(s.PrepareBatch(ctx, tbl, []string{"1", "2", "3"}))
	if n := must[int64](t)(s.WriteRows(ctx, tbl, reader(rowsOf("1\tONE", "2\tTWO", "3\tTHREE")))); n != 2 {
		t.Fatalf("WriteRows = %d, expected 2 of the 3 sent", n)
	}
	_, err := s.FinishBatch(ctx, tbl)
	wantRowCount(t, err, 2, 3)
	s.Rollback(ctx)
	wantRows(t, h, tbl, "1\tone", "2\ttwo")

	ok(t, s.Begin(ctx))
	must[bool](t)(s.ReplaceTable(ctx, tbl, false))
	if n := must[int64](t)(s.WriteRows(ctx, tbl, reader(rowsOf("1\tONE", "2\tTWO")))); n != 1 {
		t.Fatalf("WriteRows = %d, expected 1 of the 2 sent", n)
	}
	_, err = s.FinishBatch(ctx, tbl)
	wantRowCount(t, err, 1, 2)
	s.Rollback(ctx)
	wantRows(t, h, tbl, "1\tone", "2\ttwo")
}

// A trigger dropping rows on a source fails FinishBatch with a *sinks.RowCountError.
func TestSourceTriggerDroppingRows(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	h := newHarness(t, true)
	tbl := custom(t, h, "dropping", `(id int PRIMARY KEY, name text)`)
	h.Seed(t, tbl, rowsOf("1\tone", "2\ttwo"))
	dropTwo(t, h, tbl)
	s := h.NewSink(t)
	ok(t, s.Begin(ctx))
	must[sinks.Prepared](t)(s.PrepareBatch(ctx, tbl, []string{"1", "2", "3"}))
	if n := must[int64](t)(s.WriteRows(ctx, tbl, reader(rowsOf("1\tONE", "2\tTWO", "3\tTHREE")))); n != 3 {
		t.Fatalf("WriteRows = %d, expected 3 (staged)", n)
	}
	_, err := s.FinishBatch(ctx, tbl)
	wantRowCount(t, err, 2, 3)
	s.Rollback(ctx)
	wantRows(t, h, tbl, "1\tone", "2\ttwo")
}

// A source's table with a rule: the server refuses MERGE on it (feature_not_supported), and
// the batch is written by UPDATE and INSERT instead, with the same outcome and counts; the
// next batch goes straight to them.
func TestSourceTableWithRule(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	h := newHarness(t, true)
	tbl := custom(t, h, "ruled", `(id int PRIMARY KEY, name text)`)
	h.exec(t, `CREATE TABLE public.ruled_log (id int)`)
	h.exec(t, `CREATE RULE logged AS ON UPDATE TO public.ruled DO ALSO INSERT INTO public.ruled_log VALUES (NEW.id)`)
	h.Seed(t, tbl, rowsOf("1\tone", "2\ttwo"))
	s := h.NewSink(t)
	for i, batch := range [][]string{{"1\tONE", "3\tthree"}, {"2\tTWO", "4\tfour"}} {
		ok(t, s.Begin(ctx))
		keys := []string{batch[0][:1], batch[1][:1]}
		must[sinks.Prepared](t)(s.PrepareBatch(ctx, tbl, keys))
		must[int64](t)(s.WriteRows(ctx, tbl, reader(rowsOf(batch...))))
		if c := must[sinks.Counts](t)(s.FinishBatch(ctx, tbl)); c != (sinks.Counts{Written: 2, Deleted: 1}) {
			t.Fatalf("batch %d: counts %+v, expected 2 written, 1 replaced", i+1, c)
		}
		ok(t, s.Commit(ctx))
	}
	wantRows(t, h, tbl, "1\tONE", "2\tTWO", "3\tthree", "4\tfour")
}

// partitioned creates a table partitioned in two.
func partitioned(t *testing.T, h *harness) *sinks.Table {
	tbl := custom(t, h, "parted", `(id int PRIMARY KEY, name text) PARTITION BY RANGE (id)`)
	h.exec(t, `CREATE TABLE public.parted_1 PARTITION OF public.parted FOR VALUES FROM (0) TO (100)`)
	h.exec(t, `CREATE TABLE public.parted_2 PARTITION OF public.parted FOR VALUES FROM (100) TO (1000)`)
	if !tbl.Partitioned {
		t.Fatal("Partitioned is not set")
	}
	return tbl
}

// A partitioned parent on a target: batches, copies and truncates reach its partitions.
func TestTargetPartitioned(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	h := newHarness(t, false)
	tbl := partitioned(t, h)
	h.Seed(t, tbl, rowsOf("1\tone", "150\tbig", "5\tfive"))
	s := h.NewSink(t)
	ok(t, s.Begin(ctx))
	must[sinks.Prepared](t)(s.PrepareBatch(ctx, tbl, []string{"1", "150", "200"}))
	must[int64](t)(s.WriteRows(ctx, tbl, reader(rowsOf("1\tONE", "200\tnew"))))
	if c := must[sinks.Counts](t)(s.FinishBatch(ctx, tbl)); c != (sinks.Counts{Written: 2, Deleted: 2}) {
		t.Fatalf("counts %+v", c)
	}
	ok(t, s.Commit(ctx))
	wantRows(t, h, tbl, "1\tONE", "200\tnew", "5\tfive")

	ok(t, s.Begin(ctx))
	must[bool](t)(s.ReplaceTable(ctx, tbl, false))
	must[int64](t)(s.WriteRows(ctx, tbl, reader(rowsOf("7\tseven", "700\tbig"))))
	if c := must[sinks.Counts](t)(s.FinishBatch(ctx, tbl)); c != (sinks.Counts{Written: 2, Deleted: 3}) {
		t.Fatalf("counts %+v", c)
	}
	ok(t, s.Commit(ctx))
	wantRows(t, h, tbl, "7\tseven", "700\tbig")

	ok(t, s.Begin(ctx))
	ok(t, s.(*postgres.Sink).Truncate(ctx, []sinks.Truncation{{Table: tbl}}))
	ok(t, s.Commit(ctx))
	wantRows(t, h, tbl)
}

// A partitioned parent on a source: the upsert replaces rows in their partitions,
// inserts rows into the partition their key routes them to and deletes keys the winner no
// longer has. Keys the application changes through the clones of the capture trigger on
// the partitions are left out: one changed since the snapshot (PrepareBatch skips it) and
// one changed during the batch (found after the writes, which are done again without it).
// The counts tell replaced rows from inserted ones (an ordinary table's upsert reads that
// from xmax, which a partitioned parent cannot return: SQLSTATE 0A000).
func TestSourcePartitioned(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	h := newHarness(t, true)
	tbl := partitioned(t, h)
	h.Seed(t, tbl, rowsOf("1\tone", "2\ttwo", "150\tbig", "160\tbigger"))
	s := h.NewSink(t) // the run's snapshot
	h.exec(t, `UPDATE public.parted SET name = 'app' WHERE id = 2`)
	ok(t, s.Begin(ctx))
	p := must[sinks.Prepared](t)(s.PrepareBatch(ctx, tbl, []string{"1", "2", "3", "150", "160", "170"}))
	if !slices.Equal(p.Skipped, []string{"2"}) {
		t.Fatalf("Skipped = %q, expected [2]", p.Skipped)
	}
	must[int64](t)(s.WriteRows(ctx, tbl, reader(rowsOf("1\tONE", "3\tthree", "150\tBIG", "170\tnew"))))
	h.exec(t, `UPDATE public.parted SET name = 'app' WHERE id = 160`)
	// Replaced 1 and 150; inserted 3 and 170; 2 and 160 left alone.
	if c := must[sinks.Counts](t)(s.FinishBatch(ctx, tbl)); c != (sinks.Counts{Written: 4, Deleted: 2}) {
		t.Fatalf("counts %+v, expected 4 written, 2 replaced", c)
	}
	ok(t, s.Commit(ctx))
	wantRows(t, h, tbl, "1\tONE", "2\tapp", "3\tthree", "150\tBIG", "160\tapp", "170\tnew")
	var inFirst int
	if err := h.app.QueryRow(ctx, `SELECT count(*) FROM public.parted_1`).Scan(&inFirst); err != nil {
		t.Fatal(err)
	}
	if inFirst != 3 {
		t.Fatalf("partition parted_1 has %d rows, expected 3 (ids 1, 2, 3)", inFirst)
	}
}

// Partitioned parents whose columns are all key columns count as ordinary tables do: with
// plain key columns the upsert rewrites a row already there (key columns are set too: an
// equal 1.50 replaces 1.5); with an identity-always key it does nothing for it.
func TestSourcePartitionedKeyOnly(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, ddl string
		parts     []string
		seed      []string
		keys      []string
		rows      []string
		want      sinks.Counts
		after     []string
	}{
		{
			// 1|1 rewritten; 2|1 deleted; 2|2 inserted (the row moved partitions).
			name: "plain", ddl: `(id int, part int, PRIMARY KEY (id, part)) PARTITION BY LIST (part)`,
			parts: []string{`FOR VALUES IN (1)`, `FOR VALUES IN (2)`},
			seed:  rowsOf("1\t1", "2\t1"), keys: []string{"1\t1", "2\t1", "2\t2"}, rows: rowsOf("1\t1", "2\t2"),
			want: sinks.Counts{Written: 2, Deleted: 2}, after: []string{"1\t1", "2\t2"},
		},
		{
			// DO NOTHING: 1 stays as it is, 150 is deleted, 7 and 170 are inserted.
			name: "identity", ddl: `(id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY) PARTITION BY RANGE (id)`,
			parts: []string{`FOR VALUES FROM (0) TO (100)`, `FOR VALUES FROM (100) TO (1000)`},
			seed:  rowsOf("1", "150"), keys: []string{"1", "7", "150", "170"}, rows: rowsOf("1", "7", "170"),
			want: sinks.Counts{Written: 2, Deleted: 1}, after: []string{"1", "7", "170"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, parted := range []bool{false, true} {
				ctx := t.Context()
				h := newHarness(t, true)
				ddl := tc.ddl
				if !parted {
					ddl = ddl[:strings.Index(ddl, " PARTITION BY")]
				}
				tbl := custom(t, h, "keyonly", ddl)
				if tbl.Partitioned != parted {
					t.Fatalf("Partitioned = %v, expected %v", tbl.Partitioned, parted)
				}
				for i, bound := range tc.parts {
					if parted {
						h.exec(t, fmt.Sprintf(`CREATE TABLE public.keyonly_%d PARTITION OF public.keyonly %s`, i, bound))
					}
				}
				h.exec(t, `INSERT INTO public.keyonly OVERRIDING SYSTEM VALUE VALUES (`+strings.ReplaceAll(strings.Join(tc.seed, "), ("), "\t", ", ")+`)`)
				s := h.NewSink(t)
				ok(t, s.Begin(ctx))
				must[sinks.Prepared](t)(s.PrepareBatch(ctx, tbl, tc.keys))
				must[int64](t)(s.WriteRows(ctx, tbl, reader(tc.rows)))
				if c := must[sinks.Counts](t)(s.FinishBatch(ctx, tbl)); c != tc.want {
					t.Fatalf("partitioned %v: counts %+v, expected %+v", parted, c, tc.want)
				}
				ok(t, s.Commit(ctx))
				wantRows(t, h, tbl, tc.after...)
			}
		})
	}
}

// New refuses a source without a well-formed snapshot or change tables.
func TestNewSourceChecks(t *testing.T) {
	t.Parallel()
	if _, err := postgres.New(nil, "db", postgres.WithSource(postgres.Source{Snapshot: "1:2:'; DROP", ChangeTable: changeTable})); err == nil {
		t.Fatal("New accepted a malformed snapshot")
	}
	if _, err := postgres.New(nil, "db", postgres.WithSource(postgres.Source{Snapshot: "10:12:10,11"})); err == nil {
		t.Fatal("New accepted a source without ChangeTable")
	}
	if _, err := postgres.New(nil, "db", postgres.WithSource(postgres.Source{Snapshot: "10:12:10,11", ChangeTable: changeTable})); err != nil {
		t.Fatal(err)
	}
}
