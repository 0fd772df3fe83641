package sqlite_test

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/sinks"
)

var item = &sinks.Table{Schema: "public", Name: "item", Key: []string{"id"}, Cols: []string{"id", "v", "note", "d"},
	Columns: []catalog.Column{{Name: "id", Type: "integer", NotNull: true}, {Name: "v", Type: "integer"}, {Name: "note", Type: "text"}, {Name: "d", Type: "double precision"}}}

// skipDDL is the file's item table (CHECKs, a NOT NULL the source does not have), seeded
// with rows 1 to 5, as variant says.
func skipDDL(variant string) string {
	key := "id INTEGER PRIMARY KEY"
	if variant == "nokey" {
		key = "id INTEGER NOT NULL" // no constraint on the key: keys are deleted first
	}
	ddl := `CREATE TABLE item (` + key + `, v INTEGER, note TEXT NOT NULL, d REAL,
		CONSTRAINT small_v CHECK (v < 1000), CONSTRAINT short_note CHECK (length(note) <= 5));
	INSERT INTO item VALUES (1, 1, 'a', 1.5), (2, 2, 'b', 2.5), (3, 3, 'c', 3.5), (4, 4, 'd', 4.5), (5, 5, 'e', 5.5);
	CREATE TABLE log (id INTEGER);`
	if variant == "trigger" {
		ddl += `
	CREATE TRIGGER no_beast BEFORE INSERT ON item WHEN NEW.v = 666 BEGIN SELECT RAISE(ABORT, 'no beast'); END;
	CREATE TRIGGER logged AFTER INSERT ON item BEGIN INSERT INTO log VALUES (NEW.id); SELECT RAISE(FAIL, 'no 777') WHERE NEW.v = 777; END;
	CREATE TRIGGER keep_4 BEFORE DELETE ON item WHEN OLD.id = 4 BEGIN SELECT RAISE(ABORT, 'keep 4'); END;`
	}
	return ddl
}

// Under on_error=skip, the rows the file refuses are left out and reported, with the
// key, the row and the error, and every other row of the batch is written: CHECKs, NULL
// in a NOT NULL column, a value the sink refuses (NaN), a trigger's RAISE(ABORT) and
// RAISE(FAIL) (whose earlier writes are undone too), a delete a trigger refuses (its row
// kept). A refused key keeps its row. The same for a table with a primary key (rows
// written in place or inserted), without one (keys deleted first), and with triggers.
func TestSkipRejected(t *testing.T) {
	for _, variant := range []string{"key", "nokey", "trigger"} {
		t.Run(variant, func(t *testing.T) {
			s, app := sinkOn(t, skipDDL(variant))
			s.SkipRejected()
			keys := []string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10"}
			rows := []string{
				"1\t5000\tbig\t1.5",   // CHECK small_v
				"2\t20\tb2\t2.5",      // fine
				"3\t3\ttoolong\t3.5",  // CHECK short_note
				"5\t5\te\t5.5",        // unchanged
				"6\t6\tf\t6.5",        // new
				"7\t7\tg\tNaN",        // NaN: the sink refuses it
				"8\t8\t\\N\t8.5",      // NULL in a NOT NULL column
				"9\t666\tbeast\t9.5",  // RAISE(ABORT)
				"10\t777\tfail\t10.5", // RAISE(FAIL), after logging
			}
			c, err := batchOf(t, s, item, keys, strings.Join(rows, "\n")+"\n")
			if err != nil {
				t.Fatal(err)
			}
			want := map[string][]string{
				"1": {rows[0], "CHECK constraint failed: small_v"},
				"3": {rows[2], "CHECK constraint failed: short_note"},
				"7": {rows[5], `column d (double precision): value "NaN" refused`},
				"8": {rows[6], "NOT NULL constraint failed: item.note"},
			}
			wantRows := []string{"1|1|a|1.5", "2|20|b2|2.5", "3|3|c|3.5", "5|5|e|5.5", "6|6|f|6.5"}
			wantCounts := sinks.Counts{Written: 5, Deleted: 3} // 2, 5, 6, 9, 10 written; 2, 4, 5 deleted
			wantLog := []string{"10", "6", "9"}
			if variant == "trigger" {
				want["9"] = []string{rows[7], "no beast"}
				want["10"] = []string{rows[8], "no 777"}
				want["4"] = []string{"", "keep 4"}
				wantRows = append(wantRows, "4|4|d|4.5")
				wantCounts = sinks.Counts{Written: 3, Deleted: 2}
				wantLog = []string{"6"}
			} else {
				wantRows = append(wantRows, "9|666|beast|9.5", "10|777|fail|10.5")
				wantLog = nil
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
			if got := dump(t, app, "item"); !slices.Equal(got, wantRows) {
				t.Errorf("rows %q\nwant %q", got, wantRows)
			}
			if got := dump(t, app, "log"); !slices.Equal(got, wantLog) {
				t.Errorf("log %q, want %q (a refused row's trigger writes undone)", got, wantLog)
			}
		})
	}
}

// Under on_error=skip, a batch no row of which is refused writes what it writes under
// on_error=stop and rejects nothing; among 2000 rows the 3 refused are found and the
// others written, in a unit whose earlier batch stays whole. A row a trigger drops
// (RAISE(IGNORE)) is not a refusal: the batch fails on the row count.
func TestSkipManyRows(t *testing.T) {
	s, app := sinkOn(t, skipDDL("key"))
	s.SkipRejected()
	ctx := t.Context()
	if err := s.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	apply := func(keys, rows []string) sinks.Counts {
		t.Helper()
		if _, err := s.PrepareBatch(ctx, item, keys); err != nil {
			t.Fatal(err)
		}
		if _, err := s.WriteRows(ctx, item, strings.NewReader(strings.Join(rows, "\n")+"\n")); err != nil {
			t.Fatal(err)
		}
		c, err := s.FinishBatch(ctx, item)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	var keys, rows []string
	for i := 1; i <= 1000; i++ {
		keys = append(keys, fmt.Sprint(i))
		if i != 4 {
			rows = append(rows, fmt.Sprintf("%d\t%d\tr%d\t%d.5", i, i%1000, i%100, i))
		}
	}
	if c := apply(keys, rows); c != (sinks.Counts{Written: 999, Deleted: 5}) || len(s.Rejected()) != 0 {
		t.Errorf("a batch without refusals: counts %+v, rejected %+v", c, s.Rejected())
	}
	keys, rows = nil, nil
	for i := 1001; i <= 3000; i++ {
		v, note := i%1000, "n"
		switch i {
		case 1234, 2500:
			v = 5000
		case 2999:
			note = "much too long"
		}
		keys = append(keys, fmt.Sprint(i))
		rows = append(rows, fmt.Sprintf("%d\t%d\t%s\t%d.5", i, v, note, i))
	}
	c := apply(keys, rows)
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
	if got := len(dump(t, app, "item")); got != 999+1997 {
		t.Errorf("%d rows, want %d", got, 999+1997)
	}

	if _, err := app.Exec(`CREATE TRIGGER drop_13 BEFORE INSERT ON item WHEN NEW.v = 13 BEGIN SELECT RAISE(IGNORE); END`); err != nil {
		t.Fatal(err)
	}
	_, err := batchOf(t, s, item, []string{"4000", "4001"}, "4000\t13\tx\t1\n4001\t5000\tx\t1\n")
	if err == nil || !strings.Contains(err.Error(), "0 rows written, 1 read (a trigger or rule on db lite dropped rows?): rolled back (1 other rows refused)") {
		t.Errorf("a row dropped by a trigger: %v, want a row count error", err)
	}
}

// TestSkipBench compares a batch of 100,000 rows none of which is refused under
// on_error=stop and under on_error=skip (into an empty table, then replacing every row),
// best of 5 interleaved rounds. IBEX_BENCH=1 runs it.
func TestSkipBench(t *testing.T) {
	if os.Getenv("IBEX_BENCH") != "1" {
		t.Skip("IBEX_BENCH=1 runs it")
	}
	const n = 100_000
	filler := strings.Repeat("x", 84)
	keys := make([]string, n)
	var rows [2]strings.Builder // then with another abalance
	for i := 1; i <= n; i++ {
		keys[i-1] = fmt.Sprint(i)
		fmt.Fprintf(&rows[0], "%d\t%d\t0\t%s\n", i, i%10+1, filler)
		fmt.Fprintf(&rows[1], "%d\t%d\t1\t%s\n", i, i%10+1, filler)
	}
	tbl := &sinks.Table{Schema: "public", Name: "acc", Key: []string{"aid"}, Cols: []string{"aid", "bid", "abalance", "filler"},
		Columns: []catalog.Column{{Name: "aid", Type: "integer", NotNull: true}, {Name: "bid", Type: "integer"}, {Name: "abalance", Type: "integer"}, {Name: "filler", Type: "character(84)"}}}
	best := make([]time.Duration, 4) // stop empty, stop again, skip empty, skip again
	keep := func(i int, d time.Duration) {
		if best[i] == 0 || d < best[i] {
			best[i] = d
		}
	}
	for range 5 {
		for mode, skip := range []bool{false, true} {
			s, _ := sinkOn(t, `CREATE TABLE acc (aid INTEGER NOT NULL PRIMARY KEY, bid INTEGER, abalance INTEGER, filler TEXT)`)
			if skip {
				s.SkipRejected()
			}
			for pass := range 2 {
				start := time.Now()
				if c, err := batchOf(t, s, tbl, keys, rows[pass].String()); err != nil || c.Written != n {
					t.Fatalf("counts %+v, %v", c, err)
				}
				keep(2*mode+pass, time.Since(start))
			}
		}
	}
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	t.Logf("%d rows, best of 5: into an empty table: on_error=stop %v, skip %v (%.2fx); replacing them: stop %v, skip %v (%.2fx)",
		n, ms(best[0]), ms(best[2]), float64(best[2])/float64(best[0]), ms(best[1]), ms(best[3]), float64(best[3])/float64(best[1]))
}
