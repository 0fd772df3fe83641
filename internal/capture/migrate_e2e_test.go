package capture_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/capture"
	"github.com/ibexrepl/ibex/internal/cli"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/job"
)

// TestFormatMigrationThroughValidate: a sync's capture installed at the current format
// holds pending changes; ibex's format is bumped (a migration that changes nothing). A run
// refuses until 'ibex validate' migrates the change table in place; the pending changes
// are all still there, row for row, and the next run applies them on the target.
func TestFormatMigrationThroughValidate(t *testing.T) {
	ctx := context.Background()
	_, conns, store := migrationSetup(t)
	run := func() (*job.Result, error) {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		return job.Run(ctx, store, "s", job.Options{})
	}
	src := conns["src"]
	ct := capture.ChangeTable("s", "public", "item").Sanitize()
	changeRows := func() []string {
		t.Helper()
		rows, err := src.Query(ctx, `SELECT d::text FROM `+ct+` d ORDER BY d."$txid", d."$at", d.id`)
		if err != nil {
			t.Fatal(err)
		}
		out, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	items := func(name string) []string {
		t.Helper()
		rows, err := conns[name].Query(ctx, `SELECT (x.id, x.v)::text FROM item x ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		out, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	// Pending changes at the current format.
	if _, err := src.Exec(ctx, `INSERT INTO item VALUES (11, 'new'); UPDATE item SET v = 'changed' WHERE id <= 3; DELETE FROM item WHERE id = 10`); err != nil {
		t.Fatal(err)
	}
	before := changeRows()
	if len(before) != 5 {
		t.Fatalf("%d change rows, want 5", len(before))
	}

	capture.BumpFormatForTest(t)
	// The run refuses, and leaves the changes alone.
	if _, err := run(); err == nil || !strings.Contains(err.Error(), "capture of table public.item is missing or outdated on db src: run 'ibex validate s'") {
		t.Fatalf("run after the bump: %v", err)
	}
	if diff := cmp.Diff(before, changeRows()); diff != "" {
		t.Fatalf("change rows after the refused run (-before +after):\n%s", diff)
	}

	// validate migrates in place: the rows stay.
	res, err := job.Validate(ctx, store, store.Q(), "s", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Migrated, []string{"src: public.item"}) || len(res.Reset) != 0 {
		t.Errorf("validate: migrated %v, reset %v", res.Migrated, res.Reset)
	}
	if diff := cmp.Diff(before, changeRows()); diff != "" {
		t.Fatalf("change rows after the migration (-before +after):\n%s", diff)
	}
	st, err := capture.Inspect(ctx, src, "s", "public", "item")
	if err != nil {
		t.Fatal(err)
	}
	if st.Format() != capture.Format() {
		t.Errorf("format %d after validate, want %d", st.Format(), capture.Format())
	}

	// The run applies them.
	r, err := run()
	if r == nil || err != nil || r.State != control.StateGood {
		t.Fatalf("run after validate: %+v, error %v", r, err)
	}
	if diff := cmp.Diff(items("src"), items("dst")); diff != "" {
		t.Errorf("item on dst (-src +dst):\n%s", diff)
	}
	if n := len(changeRows()); n != 0 {
		t.Errorf("%d change rows left after the run", n)
	}
	// A second validate has nothing to migrate.
	if res, err := job.Validate(ctx, store, store.Q(), "s", nil); err != nil || len(res.Migrated) != 0 {
		t.Errorf("second validate: migrated %v, error %v", res.Migrated, err)
	}
}

// TestFormat1UpgradeThenTruncate: a source whose capture an older ibex installed (format
// 1: no "$op" column, no TRUNCATE trigger) holds pending changes. A run refuses until
// 'ibex upgrade' (which validates every sync) migrates the change table in place; the pending format 1 rows are then
// applied on the target row for row, and a TRUNCATE on the source, captured from then on,
// reaches the target.
func TestFormat1UpgradeThenTruncate(t *testing.T) {
	ctx := context.Background()
	ibex, conns, store := migrationSetup(t)
	src, dst := conns["src"], conns["dst"]
	ct := capture.ChangeTable("s", "public", "item").Sanitize()
	// What format 1 was: the same change table without "$op", its trigger function, no
	// TRUNCATE trigger, the comment without a version.
	if _, err := src.Exec(ctx, `DROP TRIGGER ibex_truncate_s ON item; DROP FUNCTION ibex."truncate.s"();
ALTER TABLE `+ct+` DROP COLUMN "$op";
COMMENT ON TABLE `+ct+` IS 'ibex change table of sync s for table "public"."item"';
CREATE OR REPLACE FUNCTION `+ct+`() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
  IF current_setting('ibex.applying', true) = 'on' THEN RETURN NULL; END IF;
  IF TG_OP = 'INSERT' THEN INSERT INTO `+ct+` (id) VALUES (NEW.id);
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO `+ct+` (id) VALUES (OLD.id);
    IF (OLD.id::text,NULL) IS DISTINCT FROM (NEW.id::text,NULL) THEN INSERT INTO `+ct+` (id) VALUES (NEW.id); END IF;
  ELSE INSERT INTO `+ct+` (id) VALUES (OLD.id);
  END IF;
  RETURN NULL;
END$f$`); err != nil {
		t.Fatal(err)
	}
	st, err := capture.Inspect(ctx, src, "s", "public", "item")
	if err != nil || st.Format() != 1 {
		t.Fatalf("format %d (%v), want 1", st.Format(), err)
	}
	// Pending changes in format 1.
	if _, err := src.Exec(ctx, `INSERT INTO item VALUES (11, 'new'); UPDATE item SET v = 'changed' WHERE id <= 3; DELETE FROM item WHERE id = 10`); err != nil {
		t.Fatal(err)
	}
	items := func(c *pgx.Conn) []string {
		t.Helper()
		rows, err := c.Query(ctx, `SELECT (x.id, x.v)::text FROM item x ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		out, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	run := func() *job.Result {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		res, err := job.Run(ctx, store, "s", job.Options{})
		if res == nil || err != nil || res.State != control.StateGood {
			t.Fatalf("run: %+v, error %v", res, err)
		}
		return res
	}
	if _, err := job.Run(ctx, store, "s", job.Options{}); err == nil || !strings.Contains(err.Error(), "run 'ibex validate s'") {
		t.Fatalf("run before the upgrade: %v", err)
	}
	if out := ibex("upgrade"); !strings.Contains(out, fmt.Sprintf("Migrated 1 change tables of sync s to capture format %d, their pending changes kept", capture.Format())) {
		t.Errorf("validate did not report the migration:\n%s", out)
	}
	var op string
	if err := src.QueryRow(ctx, `SELECT string_agg(DISTINCT "$op"::text, ',') FROM `+ct).Scan(&op); err != nil || op != capture.OpRow {
		t.Errorf("the migrated rows' $op: %q (%v), want %q", op, err, capture.OpRow)
	}
	// Changes captured from now on say what they were.
	if _, err := src.Exec(ctx, `INSERT INTO item VALUES (12, 'i'); UPDATE item SET v = 'u' WHERE id = 4; UPDATE item SET id = 13 WHERE id = 5; DELETE FROM item WHERE id = 6`); err != nil {
		t.Fatal(err)
	}
	if err := src.QueryRow(ctx, `SELECT string_agg(id || ':' || "$op"::text, ',' ORDER BY "$at", id) FROM `+ct+` WHERE "$op" <> 'r'`).Scan(&op); err != nil || op != "12:i,4:u,5:d,13:i,6:d" {
		t.Errorf("the new change rows: %q (%v)", op, err)
	}
	run()
	if diff := cmp.Diff(items(src), items(dst)); diff != "" {
		t.Errorf("item on dst after the upgrade (-src +dst):\n%s", diff)
	}
	if _, err := src.Exec(ctx, `TRUNCATE item; INSERT INTO item VALUES (42, 'after')`); err != nil {
		t.Fatal(err)
	}
	if res := run(); res.Truncates != 1 {
		t.Errorf("truncates %d, want 1: %s", res.Truncates, res.Summary())
	}
	if diff := cmp.Diff([]string{"(42,after)"}, items(dst)); diff != "" {
		t.Errorf("item on dst after the TRUNCATE (-want +got):\n%s", diff)
	}
}

// migrationSetup makes a control database and two dbs, src and dst, each with table item
// (ids 1 to 10), and sync s from src to dst; it returns ibex (a command that must
// succeed), connections to the dbs, and the control store.
func migrationSetup(t *testing.T) (func(args ...string) string, map[string]*pgx.Conn, *control.Store) {
	ctx := context.Background()
	ctl := pgtest.NewDB(t, "")
	ibex := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if code := cli.Main(append([]string{"--dsn", ctl.DSN}, args...), &out, &errb); code != 0 {
			t.Fatalf("ibex %q: exit %d\n%s%s", args, code, out.String(), errb.String())
		}
		return out.String()
	}
	ibex("install")
	conns := map[string]*pgx.Conn{}
	for _, name := range []string{"src", "dst"} {
		db := pgtest.NewDB(t, "")
		conns[name] = pgtest.Conn(t, db.DSN)
		if _, err := conns[name].Exec(ctx, `CREATE TABLE item (id int PRIMARY KEY, v text); INSERT INTO item SELECT g, 'init' FROM generate_series(1, 10) g`); err != nil {
			t.Fatal(err)
		}
		ibex("add", "db", name, "dbname="+db.Name, "host="+db.Conn["host"], "port="+db.Conn["port"], "user="+db.Conn["user"])
	}
	ibex("add", "table", "public.item", "db=src", "herd=h")
	ibex("add", "dbgroup", "g", "src:source", "dst:target")
	ibex("add", "sync", "s", "herd=h", "dbs=g", "autokick=false")
	store, err := control.Open(ctx, ctl.DSN, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	return ibex, conns, store
}
