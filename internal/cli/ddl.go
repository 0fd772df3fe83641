package cli

import (
	"errors"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ibexrepl/ibex/job"
)

func (a *app) ddlCmd() *cobra.Command {
	var command, file string
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "ddl SYNC (-c SQL | -f FILE)",
		Short: "Apply a schema change on every db of a sync at once, then refresh its capture",
		Long: `ddl applies SQL statements (ALTER TABLE ..., CREATE INDEX ...) on every PostgreSQL db of
SYNC, sources and targets, in one transaction per db, while holding the sync's run lock
(waiting up to --wait for a run under way to end). Every db runs the statements before any
commits: if one fails, all are rolled back and nothing is changed anywhere. Then capture is
refreshed as 'ibex validate SYNC --create-targets' does, which also adds new columns on
targets that are not PostgreSQL. Rows the statements change are changed on every db and
are not captured. Changes captured before are kept: a run reads the rows as they are, so
the next run applies them in the new shape. A statement that changes the key of a
replicated table is refused (remove the table, change it, add it again), as are those that
cannot run in a transaction (CREATE INDEX CONCURRENTLY: run those on each db yourself).`,
		Example: `  ibex ddl foobar -c 'ALTER TABLE pgbench_accounts ADD COLUMN note text'
  ibex ddl foobar -f migration.sql`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sql := command
			switch {
			case command != "" && file != "":
				return errors.New("give -c or -f, not both")
			case file != "":
				b, err := os.ReadFile(file)
				if err != nil {
					return err
				}
				sql = string(b)
			}
			if strings.TrimSpace(sql) == "" {
				return errors.New("no statements: give -c SQL or -f FILE")
			}
			ctx := cmd.Context()
			store, err := a.open(ctx, true)
			if err != nil {
				return err
			}
			res, err := job.ApplyDDL(ctx, store, args[0], sql, job.DDLOptions{Logger: a.logger, Wait: wait})
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(res)
			}
			a.say("Applied on %s (sync %s, one transaction each)", strings.Join(res.DBs, ", "), res.Sync)
			for _, c := range res.Validate.Created {
				a.say("Created %s", c)
			}
			a.say("Validated sync %s: capture on %d tables", res.Sync, len(res.Validate.Installed))
			return nil
		},
	}
	cmd.Flags().StringVarP(&command, "command", "c", "", "the SQL statements to apply")
	cmd.Flags().StringVarP(&file, "file", "f", "", "a file of SQL statements to apply")
	cmd.Flags().DurationVar(&wait, "wait", time.Minute, "how long to wait for a run of the sync under way to end")
	cmd.Flags().BoolVar(&a.jsonOut, "json", false, "print the result as JSON")
	return cmd
}
