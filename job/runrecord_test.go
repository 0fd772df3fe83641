package job_test

import (
	"context"
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/job"
)

// TestRunRecorded: a run is recorded in the round trip that reads its definition. A run
// that applies rows, one whose reading of the definition fails (a control table missing),
// and one whose herd turns out empty are all recorded, with their state and error, and
// none is left running.
func TestRunRecorded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ctl, src, _, ibex := srcDst(t, `CREATE TABLE item (id int PRIMARY KEY, v text)`)
	srcDstSync(ibex, "public.item")
	store := openStore(t, ctl.DSN)
	recorded := func(res *job.Result) (state, errText string) {
		t.Helper()
		if res == nil || res.RunID == 0 {
			t.Fatalf("no run id: %+v", res)
		}
		if err := store.Pool.QueryRow(ctx, `SELECT state, coalesce(error, '') FROM ibex.run WHERE id = $1`, res.RunID).Scan(&state, &errText); err != nil {
			t.Fatalf("run %d: %v", res.RunID, err)
		}
		return state, errText
	}

	pgtest.Exec(t, src.DSN, `INSERT INTO item VALUES (1, 'a')`)
	res, err := job.Run(ctx, store, "s", job.Options{})
	if err != nil || res.Inserts != 1 {
		t.Fatalf("run: %+v, %v", res, err)
	}
	if state, e := recorded(res); state != control.StateGood || e != "" {
		t.Errorf("a good run is recorded %q %q", state, e)
	}

	// The definition's batch fails: the run is recorded apart, with the error.
	pgtest.Exec(t, ctl.DSN, `ALTER TABLE ibex.herdseq RENAME TO herdseq_gone`)
	res, err = job.Run(ctx, store, "s", job.Options{})
	if err == nil || !strings.Contains(err.Error(), `relation "ibex.herdseq" does not exist`) {
		t.Fatalf("a run without ibex.herdseq: %v", err)
	}
	if state, e := recorded(res); state != control.StateBad || !strings.Contains(e, `relation "ibex.herdseq" does not exist`) {
		t.Errorf("a run whose definition could not be read is recorded %q %q", state, e)
	}
	pgtest.Exec(t, ctl.DSN, `ALTER TABLE ibex.herdseq_gone RENAME TO herdseq`)

	// An empty herd is found once the batch is read: the run is recorded by the batch.
	pgtest.Exec(t, ctl.DSN, `DELETE FROM ibex.herdmap`)
	res, err = job.Run(ctx, store, "s", job.Options{})
	if err == nil || !strings.Contains(err.Error(), "herd h of sync s is empty") {
		t.Fatalf("a run of an empty herd: %v", err)
	}
	if state, e := recorded(res); state != control.StateBad || !strings.Contains(e, "herd h of sync s is empty") {
		t.Errorf("a run of an empty herd is recorded %q %q", state, e)
	}
	var running int
	if err := store.Pool.QueryRow(ctx, `SELECT count(*) FROM ibex.run WHERE sync = 's' AND state = 'running'`).Scan(&running); err != nil || running != 0 {
		t.Errorf("%d runs left running (%v)", running, err)
	}
}
