package cli

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/ibexrepl/ibex/internal/compare"
	"github.com/ibexrepl/ibex/job"
)

// compareFlags are the options compare and repair share.
type compareFlags struct {
	blockRows int
	limit     int
	wait      time.Duration
	report    string
}

func (f *compareFlags) add(cmd *cobra.Command) {
	cmd.Flags().IntVar(&f.blockRows, "block-rows", compare.DefaultBlockRows, "average rows per block of the first pass")
	cmd.Flags().IntVar(&f.limit, "limit", job.DefaultCompareLimit, "list at most this many differences per table (all are counted)")
	cmd.Flags().DurationVar(&f.wait, "wait", time.Minute, "how long to wait for a run of the sync under way to end")
	cmd.Flags().StringVar(&f.report, "report", "", "also write the comparison as a standalone HTML page to this file")
}

func (f *compareFlags) options(a *app, tables []string) job.CompareOptions {
	return job.CompareOptions{Logger: a.logger, Tables: tables, BlockRows: f.blockRows, Limit: f.limit, Wait: f.wait}
}

// writeReport writes the HTML page when asked for.
func (f *compareFlags) writeReport(r *compare.Report) error {
	if f.report == "" || r == nil {
		return nil
	}
	out, err := os.Create(f.report)
	if err != nil {
		return err
	}
	if err := r.WriteHTML(out); err != nil {
		_ = out.Close()
		return fmt.Errorf("writing %s: %w", f.report, err)
	}
	return out.Close()
}

// cannot is an error that kept a comparison from being made: exit 2.
func cannot(err error) error { return &ExitError{Code: 2, Err: err} }

func (a *app) compareCmd() *cobra.Command {
	var f compareFlags
	cmd := &cobra.Command{
		Use:   "compare SYNC [TABLE ...]",
		Short: "Compare a sync's tables on all its dbs and list the rows that differ",
		Long: `compare reads every table of SYNC (or the tables named) on every db of the sync and
reports the rows that differ, by key: missing (absent on some dbs), extra (present on a
minority), different (not the same everywhere). Each PostgreSQL db is read in one
REPEATABLE READ snapshot with ACCESS SHARE locks only, all dbs in parallel, taken while no
run of the sync is writing. Rows are digested in blocks by a hash of their key; only the
blocks that differ are read again row by row, so memory does not grow with the table.

A row that differs because a source has captured changes of it still pending is "in
flight": the next run settles it; it is listed but is not a divergence. Targets that are
not PostgreSQL (MariaDB, SQLite, Redis) are compared through their sink.

Exit status: 0 the dbs hold the same rows (in flight aside), 1 some rows differ, 2 the
comparison could not be made (a db down, an unknown sync or table).`,
		Example: `  ibex compare foobar
  ibex compare foobar pgbench_accounts --json
  ibex compare foobar --report compare.html`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			store, err := a.open(ctx, true)
			if err != nil {
				return cannot(err)
			}
			r, err := job.Compare(ctx, store, args[0], f.options(a, args[1:]))
			if err != nil {
				return cannot(err)
			}
			if err := f.writeReport(r); err != nil {
				return cannot(err)
			}
			if a.jsonOut {
				if err := a.printJSON(r); err != nil {
					return err
				}
			} else if err := r.WriteText(a.stdout); err != nil {
				return err
			}
			if n := r.Diverged(); n > 0 {
				return &ExitError{Code: 1, Err: fmt.Errorf("sync %s: %d rows differ (see 'ibex repair %s --help')", r.Sync, n, r.Sync)}
			}
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&a.jsonOut, "json", false, "print the report as JSON")
	return cmd
}

func (a *app) repairCmd() *cobra.Command {
	var f compareFlags
	var o job.RepairOptions
	cmd := &cobra.Command{
		Use:   "repair SYNC [TABLE ...] (--source-of-truth DB | --union)",
		Short: "Make a sync's dbs hold the same rows again: from one db, or the union of all",
		Long: `repair compares as 'ibex compare' does, holding the sync's run lock from start to end (a
repair and a run never overlap), then writes on every db the rows it should hold:

  --source-of-truth DB   every other db gets DB's rows: rows DB has are inserted or
                         updated, rows it lacks are deleted
  --union                every row present on some db arrives everywhere (nothing is
                         deleted); a key in several versions is decided by the sync's
                         conflict strategy (skip and abort leave it alone)
  --insert-only          only insert missing rows
  --upsert-only          insert and update, never delete
  --dry-run              print what would be written and change nothing

Rows in flight (captured changes still pending) are left to the next run. Rows are
written as runs write them (session_replication_role = replica: capture does not take
them again; on a source, a key its application changed since the comparison's snapshot
is left alone), one transaction per db, and the repair is recorded in the run history.

Exit status: 0 done (or nothing to do), 1 some db could not be repaired, 2 bad usage or
the comparison could not be made.`,
		Example: `  ibex repair foobar --source-of-truth t1 --dry-run
  ibex repair foobar pgbench_accounts --union`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			store, err := a.open(ctx, true)
			if err != nil {
				return cannot(err)
			}
			o.CompareOptions = f.options(a, args[1:])
			res, err := job.Repair(ctx, store, args[0], o)
			if res == nil {
				return cannot(err)
			}
			if rerr := f.writeReport(res.Compare); rerr != nil && err == nil {
				err = rerr
			}
			if a.jsonOut {
				if jerr := a.printJSON(res); jerr != nil {
					return jerr
				}
			} else {
				a.printRepair(res)
			}
			if err != nil {
				return &ExitError{Code: 1, Err: err}
			}
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&o.SourceOfTruth, "source-of-truth", "", "the db whose rows every other db gets")
	cmd.Flags().BoolVar(&o.Union, "union", false, "bring every row present anywhere everywhere")
	cmd.Flags().BoolVar(&o.DryRun, "dry-run", false, "print what would be written and change nothing")
	cmd.Flags().BoolVar(&o.InsertOnly, "insert-only", false, "only insert missing rows")
	cmd.Flags().BoolVar(&o.UpsertOnly, "upsert-only", false, "insert and update, never delete")
	cmd.Flags().BoolVar(&a.jsonOut, "json", false, "print the result as JSON")
	return cmd
}

func (a *app) printRepair(r *job.RepairResult) {
	verb := "Repaired"
	if r.DryRun {
		verb = "Would repair (dry run, nothing changed)"
	}
	a.say("%s sync %s: %d rows differed, %d in flight left to the next run", verb, r.Sync, r.Compare.Diverged(), r.InFlight)
	for _, act := range r.Actions {
		from := ""
		if act.From != "" {
			from = " from " + act.From
		}
		a.say("  %s %s %s on %s%s", act.Action, act.Table, act.Key, act.DB, from)
	}
	for _, db := range r.Compare.DBs {
		if c := r.DBs[db]; c != nil && c.Inserted+c.Updated+c.Deleted+c.Skipped > 0 {
			line := fmt.Sprintf("  db %s: %d inserted, %d updated, %d deleted", db, c.Inserted, c.Updated, c.Deleted)
			if c.Skipped > 0 {
				line += fmt.Sprintf(", %d left alone (changed since)", c.Skipped)
			}
			a.say("%s", line)
		}
	}
	if r.Unresolved > 0 {
		a.say("  %d keys left alone: the conflict strategy decides no winner", r.Unresolved)
	}
	if r.RunID != 0 {
		a.say("  recorded as run %d", r.RunID)
	}
}
