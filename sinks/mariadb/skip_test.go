package mariadb_test

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/mariadb"
)

// skipTable is the table the on_error=skip tests write: the target has a CHECK, a
// VARCHAR(5) and a NOT NULL column where the source has none of them.
func skipTable(keyType string) *sinks.Table {
	return &sinks.Table{Schema: "public", Name: "item", Key: []string{"id"}, Cols: []string{"id", "v", "note", "d"},
		Columns: []catalog.Column{{Name: "id", Type: keyType, NotNull: true}, {Name: "v", Type: "integer"}, {Name: "note", Type: "text"}, {Name: "d", Type: "double precision"}}}
}

// skipSetup creates the table on the target as variant says and seeds it with rows 1 to 5.
func skipSetup(t *testing.T, d *testDB, tbl *sinks.Table, variant string) {
	t.Helper()
	key := "INT"
	if variant == "textkey" {
		key = "VARCHAR(255)"
	}
	ddl := []string{fmt.Sprintf("CREATE TABLE %s (id %s NOT NULL PRIMARY KEY, v INT, note VARCHAR(5) NOT NULL, d DOUBLE, CONSTRAINT small_v CHECK (v < 1000)) ENGINE=InnoDB", d.ident(tbl), key)}
	switch variant {
	case "unique":
		// Another unique index: the sink deletes a batch's keys first in every mode.
		ddl = append(ddl, "ALTER TABLE "+d.ident(tbl)+" ADD UNIQUE (d)")
	case "trigger":
		ddl = append(ddl, "CREATE TRIGGER no_beast BEFORE INSERT ON "+d.ident(tbl)+
			" FOR EACH ROW BEGIN IF NEW.v = 666 THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'no beast'; END IF; END")
	}
	for _, q := range ddl {
		if _, err := d.app.ExecContext(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	harness{d}.Seed(t, tbl, []string{"1\t1\ta\t1.5", "2\t2\tb\t2.5", "3\t3\tc\t3.5", "4\t4\td\t4.5", "5\t5\te\t5.5"})
}

// Under on_error=skip, the rows the target refuses are left out and reported, with the
// key, the row and the error, and every other row of the batch is applied: a CHECK, a
// value too long for its VARCHAR(5), NULL in a NOT NULL column, a value the converter
// refuses (NaN), a trigger's SIGNAL; a key without a row is deleted, and a refused key
// keeps its row. The same for a table whose key is an integer, a text, with another unique
// index, and with a trigger.
func TestSkipRejected(t *testing.T) {
	for _, variant := range []string{"intkey", "textkey", "unique", "trigger"} {
		t.Run(variant, func(t *testing.T) {
			d := newTestDB(t)
			keyType := "integer"
			if variant == "textkey" {
				keyType = "text"
			}
			tbl := skipTable(keyType)
			skipSetup(t, d, tbl, variant)
			s := d.open(t)
			s.SkipRejected()
			ctx := t.Context()
			if err := s.Begin(ctx); err != nil {
				t.Fatal(err)
			}
			keys := []string{"1", "2", "3", "4", "5", "6", "7", "8", "9"}
			rows := []string{
				"1\t5000\tbig\t1.5",  // CHECK
				"2\t20\tb2\t2.5",     // fine
				"3\t3\ttoolong\t3.5", // too long for VARCHAR(5)
				"5\t5\te\t5.5",       // unchanged
				"6\t6\tf\t6.5",       // new
				"7\t7\tg\tNaN",       // NaN: the converter refuses it
				"8\t8\t\\N\t8.5",     // NULL in a NOT NULL column
				"9\t666\tbeast\t9.5", // the trigger's SIGNAL
			}
			c := applyBatch(t, s, tbl, keys, rows)
			if err := s.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			want := map[string][]string{
				"1": {"1\t5000\tbig\t1.5", "CONSTRAINT `small_v` failed"},
				"3": {"3\t3\ttoolong\t3.5", "Data too long for column 'note'"},
				"7": {"7\t7\tg\tNaN", `column d (double precision): value "NaN" cannot be written`},
				"8": {"8\t8\t\\N\t8.5", "Column 'note' cannot be null"},
			}
			wantRows := []string{"1\t1\ta\t1.5", "2\t20\tb2\t2.5", "3\t3\tc\t3.5", "5\t5\te\t5.5", "6\t6\tf\t6.5"}
			wantCounts := sinks.Counts{Written: 4, Deleted: 3} // 2, 5, 6, 9 written; 2, 4, 5 deleted
			if variant == "trigger" {
				want["9"] = []string{"9\t666\tbeast\t9.5", "no beast"}
				wantCounts.Written--
			} else {
				wantRows = append(wantRows, "9\t666\tbeast\t9.5")
			}
			slices.Sort(wantRows)
			if c != wantCounts {
				t.Errorf("counts %+v, want %+v", c, wantCounts)
			}
			got := map[string]sinks.Rejected{}
			for _, r := range s.Rejected() {
				got[r.Key] = r
			}
			for key, w := range want {
				r, ok := got[key]
				switch {
				case !ok:
					t.Errorf("key %s not rejected", key)
				case r.Row != w[0] || !strings.Contains(r.Error, w[1]):
					t.Errorf("key %s rejected as %q: %s\nwant %q: ...%s...", key, r.Row, r.Error, w[0], w[1])
				}
			}
			if len(got) != len(want) {
				t.Errorf("rejected %+v, want keys %v", s.Rejected(), want)
			}
			if rows := readRows(t, d, tbl); !slices.Equal(rows, wantRows) {
				t.Errorf("rows %q\nwant %q", rows, wantRows)
			}
		})
	}
}

// Under on_error=skip, a batch no row of which is refused writes what it writes under
// on_error=stop, and rejects nothing; among 2000 rows, the 3 refused are found (the
// others written), in a unit whose earlier batch stays whole.
func TestSkipManyRows(t *testing.T) {
	d := newTestDB(t)
	tbl := skipTable("integer")
	skipSetup(t, d, tbl, "intkey")
	s := d.open(t)
	s.SkipRejected()
	ctx := t.Context()
	if err := s.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	var keys, rows []string
	for i := 1; i <= 1000; i++ {
		keys = append(keys, fmt.Sprint(i))
		if i != 4 {
			rows = append(rows, fmt.Sprintf("%d\t%d\tr%d\t%d.5", i, i%1000, i%1000, i))
		}
	}
	if c := applyBatch(t, s, tbl, keys, rows); c != (sinks.Counts{Written: 999, Deleted: 5}) || len(s.Rejected()) != 0 {
		t.Errorf("a batch without refusals: counts %+v, rejected %+v", c, s.Rejected())
	}
	keys, rows = nil, nil
	for i := 1001; i <= 3000; i++ {
		v := i % 1000
		switch i {
		case 1234, 2500:
			v = 5000 // CHECK
		}
		note := "n"
		if i == 2999 {
			note = "much too long"
		}
		keys = append(keys, fmt.Sprint(i))
		rows = append(rows, fmt.Sprintf("%d\t%d\t%s\t%d.5", i, v, note, i))
	}
	c := applyBatch(t, s, tbl, keys, rows)
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if c != (sinks.Counts{Written: 1997}) {
		t.Errorf("counts %+v, want 1997 written", c)
	}
	var rejected []string
	for _, r := range s.Rejected() {
		rejected = append(rejected, r.Key)
	}
	slices.Sort(rejected)
	if !slices.Equal(rejected, []string{"1234", "2500", "2999"}) {
		t.Errorf("rejected %q, want 1234, 2500, 2999", rejected)
	}
	if got := len(readRows(t, d, tbl)); got != 999+1997 {
		t.Errorf("%d rows, want %d", got, 999+1997)
	}
}

// Under on_error=stop (the default) the same refusals fail the batch, the strict
// sql_mode refusing a value too long rather than clipping it, whether the batch loads with
// REPLACE or deletes its keys first (plain LOAD DATA LOCAL only warns).
func TestStopRefuses(t *testing.T) {
	for _, variant := range []string{"intkey", "unique"} {
		t.Run(variant, func(t *testing.T) {
			d := newTestDB(t)
			tbl := skipTable("integer")
			skipSetup(t, d, tbl, variant)
			for _, row := range []string{"1\t5000\tbig\t1.5", "3\t3\ttoolong\t3.5", "8\t8\t\\N\t8.5"} {
				s := d.open(t)
				ctx := t.Context()
				if err := s.Begin(ctx); err != nil {
					t.Fatal(err)
				}
				if _, err := s.PrepareBatch(ctx, tbl, []string{rowKeyOf(row)}); err != nil {
					t.Fatal(err)
				}
				_, err := s.WriteRows(ctx, tbl, strings.NewReader(row+"\n"))
				if err == nil {
					_, err = s.FinishBatch(ctx, tbl)
				}
				if err == nil {
					t.Errorf("row %q written under on_error=stop", row)
				}
				s.Rollback(ctx)
			}
			if got, want := readRows(t, d, tbl), []string{"1\t1\ta\t1.5", "2\t2\tb\t2.5", "3\t3\tc\t3.5", "4\t4\td\t4.5", "5\t5\te\t5.5"}; !slices.Equal(got, want) {
				t.Errorf("rows %q, want them unchanged", got)
			}
		})
	}
}

func rowKeyOf(row string) string { k, _, _ := strings.Cut(row, "\t"); return k }

var _ sinks.RowSkipper = (*mariadb.Sink)(nil)

// TestSkipBench compares a batch of 100,000 rows none of which is refused under
// on_error=stop and under on_error=skip (into an empty table, then replacing every row),
// best of 5 interleaved rounds. IBEX_BENCH=1 runs it.
func TestSkipBench(t *testing.T) {
	if os.Getenv("IBEX_BENCH") != "1" {
		t.Skip("IBEX_BENCH=1 runs it")
	}
	const n = 100_000
	ctx := t.Context()
	d := newTestDB(t)
	filler := strings.Repeat("x", 84)
	keys := make([]string, n)
	rows := [2][]string{make([]string, n), make([]string, n)} // then with another abalance
	for i := 1; i <= n; i++ {
		keys[i-1] = fmt.Sprint(i)
		rows[0][i-1] = fmt.Sprintf("%d\t%d\t0\t%s", i, i%10+1, filler)
		rows[1][i-1] = fmt.Sprintf("%d\t%d\t1\t%s", i, i%10+1, filler)
	}
	tbl := func(name string) *sinks.Table {
		return &sinks.Table{Schema: "public", Name: name, Key: []string{"aid"}, Cols: []string{"aid", "bid", "abalance", "filler"},
			Columns: []catalog.Column{{Name: "aid", Type: "integer", NotNull: true}, {Name: "bid", Type: "integer"}, {Name: "abalance", Type: "integer"}, {Name: "filler", Type: "character(84)"}}}
	}
	run := func(s *mariadb.Sink, tb *sinks.Table, rows []string) time.Duration {
		start := time.Now()
		if err := s.Begin(ctx); err != nil {
			t.Fatal(err)
		}
		if c := applyBatch(t, s, tb, keys, rows); c.Written != n {
			t.Fatalf("wrote %d", c.Written)
		}
		if err := s.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	best := make([]time.Duration, 4) // stop empty, stop again, skip empty, skip again
	keep := func(i int, d time.Duration) {
		if best[i] == 0 || d < best[i] {
			best[i] = d
		}
	}
	for round := range 5 {
		for mode, skip := range []bool{false, true} {
			s := d.open(t)
			if skip {
				s.SkipRejected()
			}
			tb := tbl(fmt.Sprintf("b%d_%d", round, mode))
			create(t, s, tb)
			keep(2*mode, run(s, tb, rows[0]))
			keep(2*mode+1, run(s, tb, rows[1]))
		}
	}
	t.Logf("%d rows, best of 5: into an empty table: on_error=stop %v, skip %v (%.2fx); replacing them: stop %v, skip %v (%.2fx)",
		n, ms(best[0]), ms(best[2]), float64(best[2])/float64(best[0]), ms(best[1]), ms(best[3]), float64(best[3])/float64(best[1]))
}

// Under on_error=skip a lost connection is no refusal: the batch fails (nothing parked),
// the unit is lost, and the sink goes on with a new connection at the next Begin.
func TestSkipConnectionLost(t *testing.T) {
	d := newTestDB(t)
	tbl := skipTable("integer")
	skipSetup(t, d, tbl, "intkey")
	s := d.open(t)
	s.SkipRejected()
	ctx := t.Context()
	if err := s.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PrepareBatch(ctx, tbl, []string{"1", "6"}); err != nil {
		t.Fatal(err)
	}
	killer := d.root(t)
	var id int64
	// The seeding connection of the app is idle: the sink's is the one in a transaction.
	if err := killer.QueryRowContext(ctx, "SELECT PROCESSLIST_ID FROM performance_schema.threads WHERE PROCESSLIST_DB = ? AND PROCESSLIST_ID IN (SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX)", d.name).Scan(&id); err != nil {
		// performance_schema off: the newest connection to the database is the sink's.
		if err := killer.QueryRowContext(ctx, "SELECT MAX(ID) FROM information_schema.PROCESSLIST WHERE DB = ?", d.name).Scan(&id); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := killer.ExecContext(ctx, fmt.Sprintf("KILL CONNECTION %d", id)); err != nil {
		t.Fatal(err)
	}
	_, err := s.WriteRows(ctx, tbl, strings.NewReader("1\t5000\tbig\t1.5\n6\t6\tf\t6.5\n"))
	if err == nil {
		_, err = s.FinishBatch(ctx, tbl)
	}
	if err == nil || len(s.Rejected()) != 0 {
		t.Fatalf("a batch on a killed connection: %v, rejected %+v; want an error and nothing parked", err, s.Rejected())
	}
	s.Rollback(ctx)
	if err := s.Begin(ctx); err != nil {
		t.Fatalf("Begin after the connection was lost: %v", err)
	}
	if c := applyBatch(t, s, tbl, []string{"1", "6"}, []string{"1\t5000\tbig\t1.5", "6\t6\tf\t6.5"}); c != (sinks.Counts{Written: 1, Deleted: 0}) || len(s.Rejected()) != 1 {
		t.Fatalf("counts %+v, rejected %+v", c, s.Rejected())
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := readRows(t, d, tbl), []string{"1\t1\ta\t1.5", "2\t2\tb\t2.5", "3\t3\tc\t3.5", "4\t4\td\t4.5", "5\t5\te\t5.5", "6\t6\tf\t6.5"}; !slices.Equal(got, want) {
		t.Errorf("rows %q, want %q", got, want)
	}
}
