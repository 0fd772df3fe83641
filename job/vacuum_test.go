package job_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/capture"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/ibextest"
	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/job"
)

// TestVacuumAfterLargeBacklog: a run that removed 12,000 change rows of each of two
// tables from a source empties their change tables there by TRUNCATE (nothing else is
// left in them) and vacuums them, in one statement (after a DELETE, the dead rows' pages
// are freed: the tables are empty again), and a run of a few changes does not. Every scan
// of a change table steps over its dead rows until they are vacuumed: after a backlog of
// 1,000,000 rows, one-row runs took 236-475 ms until autovacuum came by, 80-101 ms after
// a VACUUM. Databases of its own, not the farm's: another test's open
// transaction in the same database would keep VACUUM from removing the rows.
func TestVacuumAfterLargeBacklog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ctl, src, dst, ibex := srcDst(t, `CREATE TABLE item (id int PRIMARY KEY, v text); INSERT INTO item SELECT g, 'init' FROM generate_series(1, 12000) g;
		CREATE TABLE "Other item" (id bigint PRIMARY KEY, v text); INSERT INTO "Other item" SELECT g, 'init' FROM generate_series(1, 12000) g;
		CREATE TABLE few (id int PRIMARY KEY, v text); INSERT INTO few SELECT g, 'init' FROM generate_series(1, 10) g`)
	srcDstSync(ibex, "public.item", `public."Other item"`, "public.few")
	pgtest.Exec(t, src.DSN, `UPDATE item SET v = 'new' WHERE id <= 12000; UPDATE "Other item" SET v = 'new'; UPDATE few SET v = 'new'`)

	c, err := pgx.Connect(ctx, src.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	size := func() int64 {
		t.Helper()
		var n int64
		if err := c.QueryRow(ctx, `SELECT pg_relation_size($1::regclass) + pg_relation_size($2::regclass)`,
			capture.ChangeTable("s", "public", "item").Sanitize(), capture.ChangeTable("s", "public", "Other item").Sanitize()).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := size(); n == 0 {
		t.Fatal("the change tables are empty before the run")
	}
	// Nothing else is left in them after the run: they are emptied by TRUNCATE (a new file
	// each), not by a DELETE of every row (capture.PurgeAll).
	files := func() string {
		t.Helper()
		var f string
		if err := c.QueryRow(ctx, `SELECT pg_relation_filenode($1::regclass) || ' ' || pg_relation_filenode($2::regclass)`,
			capture.ChangeTable("s", "public", "item").Sanitize(), capture.ChangeTable("s", "public", "Other item").Sanitize()).Scan(&f); err != nil {
			t.Fatal(err)
		}
		return f
	}
	filesBefore := files()
	store := openStore(t, ctl.DSN)
	run := func(want string, batch int) (*job.Result, *logCounter) {
		t.Helper()
		lc := &logCounter{msgs: map[string]int{}}
		res, err := job.Run(ctx, store, "s", job.Options{Logger: slog.New(lc), BatchSize: batch})
		if err != nil || res.State != want {
			t.Fatalf("run: %v, state %v; want %s", err, res, want)
		}
		return res, lc
	}
	// Batches of 5,000 keys: three per table, whose committed batches are left to the
	// TRUNCATE at the end instead of being consumed ahead of the last one.
	res, lc := run(control.StateGood, 5000)
	if n := lc.msgs["consumed ahead"]; n != 0 {
		t.Errorf("%d consumes ahead, want none (left to the TRUNCATE)", n)
	}
	if got, want := countsOf(res), (counts{I: 24010, D: 24010}); got != want {
		t.Errorf("I/D/C %+v, want %+v", got, want)
	}
	if n := size(); n != 0 {
		t.Errorf("the change tables hold %d bytes after a run that removed their 12,000 rows each, want 0 (vacuumed)", n)
	}
	if f := files(); strings.Fields(f)[0] == strings.Fields(filesBefore)[0] || strings.Fields(f)[1] == strings.Fields(filesBefore)[1] {
		t.Errorf("change tables' files %s after the run, %s before: want both new (TRUNCATE)", f, filesBefore)
	}
	if n := lc.msgs["vacuumed"]; n != 1 {
		t.Errorf("%d VACUUM statements, want 1 (both tables in one)", n)
	}
	pgtest.Exec(t, src.DSN, `UPDATE item SET v = 'few' WHERE id <= 10`)
	if _, lc = run(control.StateGood, 0); lc.msgs["vacuumed"] != 0 {
		t.Errorf("a run of 10 changes vacuumed %d times, want none", lc.msgs["vacuumed"])
	}
	dsns := map[string]string{"src": src.DSN, "dst": dst.DSN}
	ibextest.SameEverywhere(t, "item", "id", dsns)
	ibextest.SameEverywhere(t, `"Other item"`, "id", dsns)
	ibextest.SameEverywhere(t, "few", "id", dsns)
	// The table of few changes, purged by DELETE after the two TRUNCATEs: none left.
	var left int64
	if err := c.QueryRow(ctx, `SELECT count(*) FROM `+capture.ChangeTable("s", "public", "few").Sanitize()).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d change rows of few left, want 0", left)
	}
}
