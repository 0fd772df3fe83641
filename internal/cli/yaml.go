package cli

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ibexrepl/ibex/internal/config"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/dbconn"
	"github.com/ibexrepl/ibex/job"
)

func (a *app) exportCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "export [-o FILE]",
		Short: "Write the whole configuration (dbs, tables, herds, dbgroups, syncs) as YAML",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			store, err := a.open(ctx, true)
			if err != nil {
				return err
			}
			f, err := config.Export(ctx, store.Q())
			if err != nil {
				return err
			}
			b, err := config.Marshal(f)
			if err != nil {
				return err
			}
			if out == "" || out == "-" {
				_, err = a.stdout.Write(b)
				return err
			}
			return os.WriteFile(out, b, 0o644)
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "write to FILE instead of standard output")
	return cmd
}

func (a *app) applyCmd() *cobra.Command {
	var file string
	var dryRun, force bool
	cmd := &cobra.Command{
		Use:   "apply -f FILE [--dry-run]",
		Short: "Make the control database match a YAML configuration",
		Long: `apply reads FILE (or - for standard input) strictly: an unknown key or a wrong type is
refused with its line. It then adds, updates and removes objects so that the control
database matches the file, in one transaction, and installs or removes capture for the
syncs it changes. Applying the same file twice changes nothing. --dry-run only prints
what would change.

As 'ibex add db' and 'ibex update db' do, apply first tests the connection of every db it
adds or changes (inactive dbs excepted): when one fails, nothing is changed. It then
re-validates the syncs that use those dbs, installing capture on new or moved sources.
--force skips both: the settings are saved untested (run 'ibex validate SYNC' later).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if file == "" {
				return usageErr("apply: give the file with -f FILE")
			}
			r := os.Stdin
			if file != "-" {
				fh, err := os.Open(file)
				if err != nil {
					return usageErr("apply: %v", err)
				}
				defer fh.Close()
				r = fh
			}
			want, err := config.Parse(file, r)
			if err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			store, err := a.open(ctx, true)
			if err != nil {
				return err
			}
			cur, err := config.Export(ctx, store.Q())
			if err != nil {
				return err
			}
			changes := config.Diff(cur, want)
			if len(changes) == 0 {
				a.say("No changes: the control database already matches %s", file)
				return nil
			}
			if dryRun {
				for _, c := range changes {
					a.say("would %s", c)
				}
				return nil
			}
			if !force {
				// Before anything changes: capture removal below already reaches dbs.
				if err := testDBs(ctx, want, changes, file); err != nil {
					return err
				}
			}
			// Capture of removed syncs goes first (it reads their definitions).
			for _, c := range changes {
				if c.Op == "remove" && c.Kind == "sync" {
					if _, err := job.RemoveCapture(ctx, store, c.Name, false, a.logger); err != nil {
						return err
					}
				}
			}
			err = store.InTx(ctx, func(q control.Querier) error {
				if err := config.Apply(ctx, q, cur, want, changes); err != nil {
					return err
				}
				for _, n := range syncsToValidate(want, changes, !force) {
					res, err := job.ValidateWith(ctx, store, q, n, a.logger, job.ValidateOptions{MissingTargetsOK: true})
					if err != nil {
						return syncErr(n, err)
					}
					a.sayMissing(res)
				}
				return nil
			})
			if err != nil {
				return err
			}
			for _, c := range changes {
				a.say("%s", c)
			}
			a.sayInterleave(cur, want)
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "the YAML file (- for standard input)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would change, change nothing")
	cmd.Flags().BoolVar(&force, "force", false, "do not test the connections of added or changed dbs, nor re-validate the syncs using them")
	return cmd
}

// testDBs connects to every db that changes adds or updates, unless it is inactive, each
// attempt bounded by its connect_timeout (dbconn's default when unset). It returns one
// error naming every db that could not be reached.
func testDBs(ctx context.Context, want *config.File, changes []config.Change, file string) error {
	var failed []string
	for _, c := range changes {
		if c.Kind != "db" || c.Op == "remove" {
			continue
		}
		d := want.DBs[c.Name]
		if d["status"] == string(control.StatusInactive) {
			continue
		}
		conn := map[string]string{}
		for k, v := range d {
			if k != "pass" && k != "status" && k != "type" {
				conn[k] = v
			}
		}
		if t := control.DBType(d["type"]); !t.Postgres() {
			if err := pingTarget(ctx, &control.DB{Name: c.Name, Type: t, Conn: conn, Pass: d["pass"]}); err != nil {
				if ctx.Err() != nil {
					return err
				}
				failed = append(failed, err.Error())
			}
			continue
		}
		pc, err := dbconn.Connect(ctx, c.Name, conn, d["pass"])
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			failed = append(failed, err.Error())
			continue
		}
		_ = pc.Close(ctx)
	}
	if len(failed) > 0 {
		return fmt.Errorf("apply %s: nothing changed: %s; fix the settings in the file, or add --force to apply them untested", file, strings.Join(failed, "; "))
	}
	return nil
}

// syncErr names the sync in err, unless err already starts with it (job.Validate's often
// do): "sync s: sync s: ..." says it twice.
func syncErr(name string, err error) error {
	if strings.HasPrefix(err.Error(), "sync "+name+": ") {
		return err
	}
	return fmt.Errorf("sync %s: %w", name, err)
}

// syncsToValidate lists, in order, the syncs of want whose capture apply may have changed:
// those added or updated, those whose herd, dbgroup or tables changed and, with dbs,
// those using a db that was added or changed (its connection may now reach another
// database, which needs capture).
func syncsToValidate(want *config.File, changes []config.Change, dbs bool) []string {
	changed := map[string]bool{}
	for _, c := range changes {
		changed[c.Kind+" "+c.Name] = true
		changed[c.Op+" "+c.Kind+" "+c.Name] = true
	}
	var out []string
	for _, n := range slices.Sorted(maps.Keys(want.Syncs)) {
		s := want.Syncs[n]
		use := changed["sync "+n] || changed["herd "+s.Herd] || changed["dbgroup "+s.DBs]
		for _, t := range want.Herds[s.Herd] {
			use = use || changed["table "+t]
		}
		for _, m := range want.DBGroups[s.DBs] {
			db, _, _ := strings.Cut(m, ":")
			use = use || (dbs && (changed["update db "+db] || changed["add db "+db]))
		}
		if use {
			out = append(out, n)
		}
	}
	return out
}
