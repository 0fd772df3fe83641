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
