package capture_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/capture"
	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/pgtest"
)

// source is a test database with table public.t (id int primary key, v text) captured by
// sync s.
type source struct {
	t    *testing.T
	conn *pgx.Conn
	dsn  string
	desc *catalog.Table
	ct   string // the quoted change table
}

func newSource(t *testing.T) *source {
	t.Helper()
	db := pgtest.NewDB(t, "")
	s := &source{t: t, conn: pgtest.Conn(t, db.DSN), dsn: db.DSN, ct: capture.ChangeTable("s", "public", "t").Sanitize()}
	s.exec(`CREATE TABLE t (id int PRIMARY KEY, v text)`)
	s.desc = s.describe()
	s.install()
	return s
}

func (s *source) describe() *catalog.Table {
	s.t.Helper()
	d, err := catalog.Describe(context.Background(), s.conn, catalog.QualName{Schema: "public", Name: "t"})
	if err != nil {
		s.t.Fatal(err)
	}
	return d
}

// install runs DDL in one transaction.
func (s *source) install(before ...string) {
	s.t.Helper()
	s.tx(append(before, capture.DDL("s", s.desc, capture.Options{})...)...)
}

func (s *source) tx(stmts ...string) {
	s.t.Helper()
	if err := runTx(context.Background(), s.conn, stmts); err != nil {
		s.t.Fatal(err)
	}
}

// runTx runs stmts in one transaction on c; an error names its statement.
func runTx(ctx context.Context, c *pgx.Conn, stmts []string) error {
	return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
		for _, st := range stmts {
			if _, err := tx.Exec(ctx, st); err != nil {
				return fmt.Errorf("%s: %w", st, err)
			}
		}
		return nil
	})
}

func (s *source) exec(sql string, args ...any) int64 {
	s.t.Helper()
	tag, err := s.conn.Exec(context.Background(), sql, args...)
	if err != nil {
		s.t.Fatalf("%s: %v", sql, err)
	}
	return tag.RowsAffected()
}

func (s *source) int(sql string) int64 {
	s.t.Helper()
	var n int64
	if err := s.conn.QueryRow(context.Background(), sql).Scan(&n); err != nil {
		s.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func (s *source) snapshot() string {
	s.t.Helper()
	var snap string
	if err := s.conn.QueryRow(context.Background(), `SELECT pg_current_snapshot()::text`).Scan(&snap); err != nil {
		s.t.Fatal(err)
	}
	return snap
}

// copyOut runs a COPY TO STDOUT and returns its lines, sorted.
func (s *source) copyOut(sql string) []string {
	s.t.Helper()
	var buf bytes.Buffer
	if _, err := s.conn.PgConn().CopyTo(context.Background(), &buf, sql); err != nil {
		s.t.Fatalf("%s: %v", sql, err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if buf.Len() == 0 {
		lines = nil
	}
	slices.Sort(lines)
	return lines
}

// changeRows lists every change row, as text, in a stable order.
func (s *source) changeRows() []string {
	s.t.Helper()
	rows, err := s.conn.Query(context.Background(), `SELECT d::text FROM `+s.ct+` d ORDER BY d."$txid", d."$at", d.id`)
	if err != nil {
		s.t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

func (s *source) inspect() *capture.State {
	s.t.Helper()
	st, err := capture.Inspect(context.Background(), s.conn, "s", "public", "t")
	if err != nil {
		s.t.Fatal(err)
	}
	return st
}

// TestChangesSelect runs each statement on change rows of three transactions: A (ids 1-3),
// B (ids 4, 5, and 1 again), C (id 6, in progress when snapshot s3 is taken).
func TestChangesSelect(t *testing.T) {
	s := newSource(t)
	ctx := context.Background()
	s.exec(`INSERT INTO t SELECT g, 'a' FROM generate_series(1, 3) g`)
	s1 := s.snapshot()
	s.tx(`INSERT INTO t VALUES (4, 'b'), (5, 'b')`, `UPDATE t SET v = 'b' WHERE id = 1`)
	s2 := s.snapshot()
	other := pgtest.Conn(t, s.dsn)
	if _, err := other.Exec(ctx, `BEGIN; INSERT INTO t VALUES (6, 'c')`); err != nil {
		t.Fatal(err)
	}
	s3 := s.snapshot()
	if _, err := other.Exec(ctx, `COMMIT`); err != nil {
		t.Fatal(err)
	}
	s4 := s.snapshot()
	if n := s.int(`SELECT count(*) FROM ` + s.ct); n != 7 {
		t.Fatalf("%d change rows, want 7", n)
	}

	t.Run("CountPending", func(t *testing.T) {
		for _, c := range []struct {
			name string
			snap string
			wms  []string
			want int64
		}{
			{"no receivers", s4, nil, 0},
			{"a receiver without watermark", s3, []string{""}, 6},
			{"in-flight C left out, A applied", s3, []string{s1}, 3},
			{"one receiver without watermark", s3, []string{s1, ""}, 6},
			{"pending for one receiver is pending", s3, []string{s1, s2}, 3},
			{"C, in flight at s3, pending after it", s4, []string{s3}, 1},
			{"all applied", s4, []string{s4, s4}, 0},
		} {
			if got := s.int(capture.CountPending(s.ct, c.snap, c.wms)); got != c.want {
				t.Errorf("%s: %d, want %d", c.name, got, c.want)
			}
		}
	})

	t.Run("SnapshotAndCounts", func(t *testing.T) {
		var snap string
		var counts, truncs []int64
		if err := s.conn.QueryRow(ctx, capture.SnapshotAndCounts([]string{s.ct, s.ct}, []string{s1})).Scan(&snap, &counts, &truncs); err != nil {
			t.Fatal(err)
		}
		if snap == "" || !slices.Equal(counts, []int64{4, 4}) || !slices.Equal(truncs, []int64{0, 0}) {
			t.Errorf("snapshot %q, counts %v, truncates %v, want 4 and 4, 0 and 0", snap, counts, truncs)
		}
	})

	t.Run("KeyQuantiles", func(t *testing.T) {
		var n int64
		var bounds []string
		if err := s.conn.QueryRow(ctx, capture.KeyQuantiles(s.ct, "id", 2, s4, []string{""})).Scan(&n, &bounds); err != nil {
			t.Fatal(err)
		}
		// ids 1 1 2 3 4 5 6: the median is 3, the largest 6.
		if n != 7 || !slices.Equal(bounds, []string{"3", "6"}) {
			t.Errorf("%d rows, bounds %v; want 7, [3 6]", n, bounds)
		}
	})

	// keyRead runs KeyRead and returns key and flags, checking the time.
	keyRead := func(t *testing.T, sql string) []string {
		var out []string
		for _, line := range s.copyOut(sql) {
			f := strings.Split(line, "\t")
			at, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil || time.Since(time.UnixMicro(at)).Abs() > time.Hour {
				t.Errorf("line %q: time %v", line, err)
			}
			out = append(out, strings.Join(append(f[:1], f[2:]...), " "))
		}
		return out
	}
	t.Run("KeyRead", func(t *testing.T) {
		// Receiver 1 applied A, receiver 2 nothing: key 1, changed again by B, is needed
		// by both.
		got := keyRead(t, capture.KeyRead(s.ct, []string{"id"}, s4, []string{s1, ""}, "true", false, nil, false))
		// key, first change an insert, last a delete, then the flags.
		want := []string{"1 t f t t", "2 t f f t", "3 t f f t", "4 t f t t", "5 t f t t", "6 t f t t"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		// Only C is pending as of s4 for a receiver at s2; C is in flight at s3.
		got = keyRead(t, capture.KeyRead(s.ct, []string{"id"}, s3, []string{s2}, "true", false, nil, false))
		if len(got) != 0 {
			t.Errorf("at s3 after s2: %v, want nothing", got)
		}
	})
	t.Run("KeyRead key range", func(t *testing.T) {
		got := keyRead(t, capture.KeyRead(s.ct, []string{"id"}, s4, []string{s1}, `d."id" >= 2 AND d."id" < 5`, true, nil, false))
		if diff := cmp.Diff([]string{"4 t f t"}, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})

	// keyTable fills pg_temp.ibex_k with keys, in a transaction rolled back at the end.
	keyTable := func(t *testing.T, fn func(tx pgx.Tx)) {
		tx, err := s.conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(ctx) }()
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE ibex_k ON COMMIT DROP AS SELECT id FROM t LIMIT 0; INSERT INTO ibex_k VALUES (1), (2), (4), (6)`); err != nil {
			t.Fatal(err)
		}
		fn(tx)
	}
	t.Run("DropLateKeys", func(t *testing.T) {
		keyTable(t, func(pgx.Tx) {
			// C changed 6 after s2; B changed 1 and 4 after s1.
			if got := s.copyOut(capture.DropLateKeys("pg_temp.ibex_k", s.ct, []string{"id"}, s2)); !slices.Equal(got, []string{"6"}) {
				t.Errorf("late after s2: %v, want [6]", got)
			}
			if got := s.copyOut(capture.DropLateKeys("pg_temp.ibex_k", s.ct, []string{"id"}, s1)); !slices.Equal(got, []string{"1", "4"}) {
				t.Errorf("late after s1: %v, want [1 4]", got)
			}
			if n := s.int(`SELECT count(*) FROM pg_temp.ibex_k`); n != 1 {
				t.Errorf("%d keys left, want 1 (2)", n)
			}
		})
	})
	t.Run("CountLateChanges", func(t *testing.T) {
		keyTable(t, func(pgx.Tx) {
			for _, c := range []struct {
				snap string
				want int64
			}{{s1, 3}, {s2, 1}, {s3, 1}, {s4, 0}} {
				if got := s.int(capture.CountLateChanges("pg_temp.ibex_k", s.ct, []string{"id"}, c.snap)); got != c.want {
					t.Errorf("changes after %s: %d, want %d", c.snap, got, c.want)
				}
			}
		})
	})

	// inTx runs a deleting statement in a transaction rolled back at the end, and returns
	// the rows it deleted and the change rows left.
	inTx := func(t *testing.T, sql string) (deleted, left int64) {
		tx, err := s.conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(ctx) }()
		tag, err := tx.Exec(ctx, sql)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+s.ct).Scan(&left); err != nil {
			t.Fatal(err)
		}
		return tag.RowsAffected(), left
	}
	t.Run("Consume", func(t *testing.T) {
		// Rows of ids below 3 visible in s2: A's 1 and 2, B's 1.
		if d, l := inTx(t, capture.Consume(s.ct, `d."id" < 3`, s2)); d != 3 || l != 4 {
			t.Errorf("deleted %d, left %d; want 3, 4", d, l)
		}
		if d, l := inTx(t, capture.Consume(s.ct, "true", s3)); d != 6 || l != 1 {
			t.Errorf("deleted %d, left %d; want 6, 1", d, l)
		}
	})
	t.Run("Purge", func(t *testing.T) {
		// Applied by both receivers: visible in s1 and s3, A's rows.
		if d, l := inTx(t, capture.Purge(s.ct, []string{s3, s1})); d != 3 || l != 4 {
			t.Errorf("deleted %d, left %d; want 3, 4", d, l)
		}
		if d, l := inTx(t, capture.Purge(s.ct, []string{s4})); d != 7 || l != 0 {
			t.Errorf("deleted %d, left %d; want 7, 0", d, l)
		}
	})
}

// TestInstalledFormat: the state read of a change table: current, of an older format (it
// carries no version, or an older one), of a newer one, or with another key.
func TestInstalledFormat(t *testing.T) {
	s := newSource(t)
	st := s.inspect()
	if !st.Matches(s.desc) || !st.Exists() || st.Format() != capture.Format() || st.Migratable(s.desc) {
		t.Fatalf("fresh capture: matches %v, exists %v, format %d, migratable %v", st.Matches(s.desc), st.Exists(), st.Format(), st.Migratable(s.desc))
	}
	var comment string
	if err := s.conn.QueryRow(context.Background(), `SELECT obj_description($1::regclass, 'pg_class')`, s.ct).Scan(&comment); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf(`ibex change table (format %d) of sync s for table "public"."t"`, capture.Format()); comment != want {
		t.Errorf("comment %q, want %q", comment, want)
	}
	// Change tables made before versions were recorded are of format 1.
	s.exec(`COMMENT ON TABLE ` + s.ct + ` IS 'ibex change table of sync s for table "public"."t"'`)
	if st := s.inspect(); st.Matches(s.desc) || !st.Migratable(s.desc) || st.Format() != 1 {
		t.Errorf("unversioned comment: matches %v, migratable %v, format %d", st.Matches(s.desc), st.Migratable(s.desc), st.Format())
	}
	s.exec(`COMMENT ON TABLE ` + s.ct + ` IS NULL`)
	if st := s.inspect(); st.Matches(s.desc) || !st.Migratable(s.desc) || st.Format() != 1 {
		t.Errorf("no comment: matches %v, migratable %v, format %d", st.Matches(s.desc), st.Migratable(s.desc), st.Format())
	}
	// A newer ibex's format is not current, and not migrated.
	s.exec(`COMMENT ON TABLE ` + s.ct + ` IS 'ibex change table (format 7) of sync s for table "public"."t"'`)
	if st := s.inspect(); st.Matches(s.desc) || st.Migratable(s.desc) || st.Format() != 7 {
		t.Errorf("format 7: matches %v, migratable %v, format %d", st.Matches(s.desc), st.Migratable(s.desc), st.Format())
	}
	// Another key: neither current nor migratable.
	s.exec(`COMMENT ON TABLE ` + s.ct + ` IS NULL`)
	s.exec(`ALTER TABLE t DROP CONSTRAINT t_pkey, ADD PRIMARY KEY (id, v)`)
	d := s.describe()
	if st := s.inspect(); st.Matches(d) || st.Migratable(d) || !st.Exists() {
		t.Errorf("new key: matches %v, migratable %v, exists %v", st.Matches(d), st.Migratable(d), st.Exists())
	}
	// No capture at all.
	s.tx(capture.DropDDL("s", catalog.QualName{Schema: "public", Name: "t"})...)
	if st := s.inspect(); st.Matches(d) || st.Migratable(d) || st.Exists() || st.Format() != 0 {
		t.Errorf("dropped: matches %v, migratable %v, exists %v, format %d", st.Matches(d), st.Migratable(d), st.Exists(), st.Format())
	}
}

// TestFormatMigrationKeepsRows bumps the format with a migration that changes nothing:
// the change table installed before is outdated, and migrating it in place keeps its
// pending rows, row for row.
func TestFormatMigrationKeepsRows(t *testing.T) {
	s := newSource(t)
	s.exec(`INSERT INTO t SELECT g, 'a' FROM generate_series(1, 50) g`)
	s.exec(`UPDATE t SET v = 'b' WHERE id % 5 = 0`)
	s.exec(`DELETE FROM t WHERE id % 7 = 0`)
	before := s.changeRows()
	if len(before) != 50+10+7 {
		t.Fatalf("%d change rows, want 67", len(before))
	}
	v := capture.Format()

	capture.BumpFormatForTest(t)
	if capture.Format() != v+1 {
		t.Fatalf("format %d after the bump, want %d", capture.Format(), v+1)
	}
	st := s.inspect()
	if st.Matches(s.desc) || !st.Migratable(s.desc) || st.Format() != v {
		t.Fatalf("after the bump: matches %v, migratable %v, format %d", st.Matches(s.desc), st.Migratable(s.desc), st.Format())
	}
	// The run's check (QueueInstalled, in the describe batch) says so too.
	b := &pgx.Batch{}
	qs := capture.QueueInstalled(b, "s", []catalog.QualName{{Schema: "public", Name: "t"}})[0]
	if err := s.conn.SendBatch(context.Background(), b).Close(); err != nil || qs.Err != nil {
		t.Fatal(err, qs.Err)
	}
	if qs.Matches(s.desc) {
		t.Error("QueueInstalled: the old format matches")
	}
	if ok, err := capture.Installed(context.Background(), s.conn, "s", s.desc, nil); err != nil || ok {
		t.Errorf("Installed: %v, %v", ok, err)
	}

	// The install path: migrations, then DDL.
	s.install(capture.MigrateDDL("s", s.desc, st.Format())...)
	if st := s.inspect(); !st.Matches(s.desc) || st.Format() != v+1 {
		t.Errorf("migrated: matches %v, format %d", st.Matches(s.desc), st.Format())
	}
	if diff := cmp.Diff(before, s.changeRows()); diff != "" {
		t.Errorf("change rows (-before +after):\n%s", diff)
	}
	// Capture goes on.
	s.exec(`INSERT INTO t VALUES (100, 'c')`)
	if n := s.int(`SELECT count(*) FROM ` + s.ct); n != 68 {
		t.Errorf("%d change rows, want 68", n)
	}
}

func TestDDLColumns(t *testing.T) {
	d := &catalog.Table{Schema: "public", Name: "t", Columns: []catalog.Column{{Name: "id", Type: "integer"}, {Name: "v", Type: "text"}}, KeyCols: []string{"id"}}
	stmts := capture.DDL("s", d, capture.Options{})
	want := `CREATE TABLE IF NOT EXISTS "ibex"."s.public.t" ("$txid" xid8 NOT NULL DEFAULT pg_current_xact_id(), "$at" timestamptz NOT NULL DEFAULT clock_timestamp(), "$op" "char" NOT NULL DEFAULT 'r', "$origin" text DEFAULT nullif(current_setting('ibex.origin', true), ''), "id" integer)`
	if stmts[1] != want {
		t.Errorf("got  %s\nwant %s", stmts[1], want)
	}
}

// TestInstalledTriggers: capture is not installed while the TRUNCATE trigger is missing or
// disabled, or a partition's clone of the row trigger is disabled; DDL puts it right.
func TestInstalledTriggers(t *testing.T) {
	s := newSource(t)
	check := func(when string, want bool) {
		t.Helper()
		if st := s.inspect(); st.Matches(s.desc) != want {
			t.Errorf("%s: matches %v, want %v", when, st.Matches(s.desc), want)
		}
	}
	check("fresh", true)
	s.exec(`ALTER TABLE t DISABLE TRIGGER ibex_truncate_s`)
	check("TRUNCATE trigger disabled", false)
	s.install()
	check("reinstalled", true)
	s.exec(`DROP TRIGGER ibex_truncate_s ON t`)
	check("TRUNCATE trigger dropped", false)
	s.install()
	check("reinstalled", true)

	// A partitioned table: a clone disabled on one partition.
	s.exec(`DROP TABLE t; CREATE TABLE t (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE t_1 PARTITION OF t FOR VALUES FROM (0) TO (100); CREATE TABLE t_2 PARTITION OF t FOR VALUES FROM (100) TO (200)`)
	s.desc = s.describe()
	s.install()
	check("partitioned", true)
	s.exec(`ALTER TABLE t_2 DISABLE TRIGGER ibex_s`)
	check("a clone disabled", false)
	s.install()
	check("reinstalled on the parent", true)
	s.exec(`INSERT INTO t VALUES (150, 'x')`)
	if n := s.int(`SELECT count(*) FROM ` + s.ct + ` WHERE id = 150`); n != 1 {
		t.Errorf("%d change rows for a row written in the partition whose clone was disabled, want 1", n)
	}
}

// TestPurgeAll: a change table whose every row all receivers have is emptied by TRUNCATE
// (a new file: no dead rows left); one that still holds a row a receiver lacks, or that
// another session holds a lock on (a transaction that wrote to the captured table is
// open), keeps that row and loses only the applied ones, by DELETE, and the lock is not
// held after the statement; one larger than TruncateMaxBytes is purged by DELETE.
func TestPurgeAll(t *testing.T) {
	ctx := context.Background()
	s := newSource(t)
	file := func() int64 {
		return s.int(`SELECT pg_relation_filenode(` + catalog.QuoteLiteral(s.ct) + `::regclass)::int8`)
	}
	purge := func(sql string) {
		t.Helper()
		if _, err := s.conn.PgConn().Exec(ctx, sql).ReadAll(); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	rows := func() int64 { return s.int(`SELECT count(*) FROM ` + s.ct) }

	// Every row applied: TRUNCATE.
	s.exec(`INSERT INTO t SELECT g, 'a' FROM generate_series(1, 100) g`)
	wm := s.snapshot()
	before := file()
	purge(capture.PurgeAll(s.ct, []string{wm, wm}))
	if n, f := rows(), file(); n != 0 || f == before {
		t.Errorf("all applied: %d rows left, file %d (before %d); want 0 rows in a new file (TRUNCATE)", n, f, before)
	}

	// A row committed after the watermark: DELETE of the others.
	s.exec(`UPDATE t SET v = 'b' WHERE id <= 10`)
	wm = s.snapshot()
	s.exec(`UPDATE t SET v = 'late' WHERE id = 50`)
	before = file()
	purge(capture.PurgeAll(s.ct, []string{wm}))
	if n, f := rows(), file(); n != 1 || f != before {
		t.Errorf("a late row: %d rows left, file %d (before %d); want 1 row in the same file (DELETE)", n, f, before)
	}

	// Another transaction open on the captured table: NOWAIT fails, DELETE of the applied
	// rows, and its row is there once it commits.
	wm = s.snapshot()
	other := pgtest.Conn(t, s.dsn)
	if _, err := other.Exec(ctx, `BEGIN; UPDATE t SET v = 'open' WHERE id = 60`); err != nil {
		t.Fatal(err)
	}
	before = file()
	purge(capture.PurgeAll(s.ct, []string{wm}))
	if _, err := other.Exec(ctx, `COMMIT`); err != nil {
		t.Fatal(err)
	}
	if got := s.changeRows(); len(got) != 1 || !strings.HasSuffix(got[0], ",60)") || file() != before {
		t.Errorf("a writer open: rows %q, file %d (before %d); want only id 60's row, the same file", got, file(), before)
	}
	if n := s.int(`SELECT count(*) FROM pg_locks WHERE relation = ` + catalog.QuoteLiteral(s.ct) + `::regclass`); n != 0 {
		t.Errorf("%d locks held on the change table after the purge, want 0", n)
	}
	// Larger than TruncateMaxBytes: the check would hold the lock too long; DELETE.
	s.exec(`INSERT INTO ` + s.ct + ` (id, "$op") SELECT g, 'u' FROM generate_series(1, 400000) g`)
	if n := s.int(`SELECT pg_relation_size(` + catalog.QuoteLiteral(s.ct) + `::regclass)`); n <= capture.TruncateMaxBytes {
		t.Fatalf("the change table is %d bytes, want more than %d", n, capture.TruncateMaxBytes)
	}
	wm = s.snapshot()
	before = file()
	purge(capture.PurgeAll(s.ct, []string{wm}))
	if n, f := rows(), file(); n != 0 || f != before {
		t.Errorf("a large table: %d rows left, file %d (before %d); want 0 rows in the same file (DELETE)", n, f, before)
	}
	if got := capture.PurgeAll(s.ct, []string{wm, ""}); got != "" {
		t.Errorf("a receiver without a watermark: %q, want no statement", got)
	}
}

// TestInstallUnderWrites: installing capture again (ibex ddl, validate) while the
// application writes to the table: the install waits for the writer's transaction and the
// writer's change row is recorded, no deadlock. The install's statements on the change
// table took its ACCESS EXCLUSIVE lock before the trigger's on the table (ALTER TABLE ...
// ADD COLUMN IF NOT EXISTS locks even when the column is there), while a writer locks the
// table, then the change table (its trigger's insert): each waited for the other.
func TestInstallUnderWrites(t *testing.T) {
	s := newSource(t)
	installUnderWrites(t, s, capture.DDL("s", s.desc, capture.Options{}))
}

// TestMigrateUnderWrites is TestInstallUnderWrites for a format migration that alters the
// change table: the migration locks the table first, as the writers do, so that its
// ALTER of the change table does not wait behind a writer that then waits for it.
func TestMigrateUnderWrites(t *testing.T) {
	s := newSource(t)
	capture.BumpFormatWithSQLForTest(t, func(ct string) []string {
		// Its own default again: an ACCESS EXCLUSIVE lock on the change table, its
		// columns as DDL makes them.
		return []string{`ALTER TABLE ` + ct + ` ALTER COLUMN "$at" SET DEFAULT clock_timestamp()`}
	})
	st := s.inspect()
	if !st.Migratable(s.desc) {
		t.Fatal("not migratable after the bump")
	}
	installUnderWrites(t, s, append(capture.MigrateDDL("s", s.desc, st.Format()), capture.DDL("s", s.desc, capture.Options{})...))
	if st := s.inspect(); !st.Matches(s.desc) || st.Format() != capture.Format() {
		t.Errorf("migrated: matches %v, format %d", st.Matches(s.desc), st.Format())
	}
}

// installUnderWrites runs stmts in one transaction while a writer holds t, then lets the
// writer update a row and commit: the install must finish, the update be captured.
func installUnderWrites(t *testing.T, s *source, stmts []string) {
	ctx := context.Background()
	s.exec(`INSERT INTO t VALUES (1, 'a')`)
	writer := pgtest.Conn(t, s.dsn)
	if _, err := writer.Exec(ctx, `BEGIN; LOCK TABLE t IN ROW EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	installer := pgtest.Conn(t, s.dsn)
	done := make(chan error, 1)
	go func() { done <- runTx(ctx, installer, stmts) }()
	// The install is waiting for the writer's lock on t.
	for i := 0; ; i++ {
		if s.int(`SELECT count(*) FROM pg_locks WHERE NOT granted AND pid = `+strconv.Itoa(int(installer.PgConn().PID()))) > 0 {
			break
		}
		if i == 100 {
			t.Fatal("the install is not waiting for the writer")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := writer.Exec(ctx, `UPDATE t SET v = 'b' WHERE id = 1`); err != nil {
		t.Fatalf("the writer's update: %v", err)
	}
	if _, err := writer.Exec(ctx, `COMMIT`); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("install: %v", err)
	}
	if n := s.int(`SELECT count(*) FROM ` + s.ct + ` WHERE id = 1 AND "$op" = 'u'`); n != 1 {
		t.Errorf("%d change rows of the writer's update, want 1", n)
	}
}

// TestInstallUnderReads installs capture again (without autokick, whose trigger it drops
// if there is one) while an application transaction that read the table is open: the
// install must not wait for readers (it takes no lock that conflicts with a SELECT).
func TestInstallUnderReads(t *testing.T) {
	for _, autokick := range []bool{false, true} {
		t.Run(fmt.Sprintf("autokick=%v", autokick), func(t *testing.T) {
			ctx := context.Background()
			s := newSource(t)
			reader := pgtest.Conn(t, s.dsn)
			if _, err := reader.Exec(ctx, `BEGIN; SELECT count(*) FROM t`); err != nil {
				t.Fatal(err)
			}
			defer reader.Exec(ctx, `ROLLBACK`)
			stmts := append([]string{`SET LOCAL lock_timeout = '3s'`}, capture.DDL("s", s.desc, capture.Options{Autokick: autokick})...)
			if err := runTx(ctx, s.conn, stmts); err != nil {
				t.Fatalf("install beside a reader: %v", err)
			}
		})
	}
}
