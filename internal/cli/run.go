package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ibexrepl/ibex/internal/capture"
	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/job"
)

func (a *app) installCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "install",
		Short: "Create the ibex control schema in the IBEX_DSN database (or upgrade it)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			store, err := a.open(cmd.Context(), false)
			if err != nil {
				return err
			}
			applied, err := store.Migrate(cmd.Context(), true)
			if err != nil {
				return err
			}
			if len(applied) == 0 {
				a.say("The ibex control schema is already installed (version %d)", control.SchemaVersion())
				return nil
			}
			a.say("Installed the ibex control schema (version %d)", control.SchemaVersion())
			return nil
		},
	}
}

func (a *app) upgradeCmd() *cobra.Command {
	var skipCapture bool
	cmd := &cobra.Command{
		Use:   "upgrade",
		Short: "Migrate the ibex control schema and every sync's capture to this binary's version",
		Long: `upgrade migrates the ibex control schema to this binary's version, then brings the
change tables of every sync to this binary's capture format on its sources, in place:
changes captured in the older format are kept and applied by the next run (the same as
'ibex validate SYNC' for each sync). A sync whose dbs cannot be reached is named, and
upgrade exits 1; run 'ibex validate SYNC' for it later.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			store, err := a.open(cmd.Context(), false)
			if err != nil {
				return err
			}
			applied, err := store.Migrate(cmd.Context(), false)
			if err != nil {
				return err
			}
			if len(applied) == 0 {
				a.say("The ibex control schema is up to date (version %d)", control.SchemaVersion())
			} else {
				a.say("Upgraded the ibex control schema to version %d (applied %v)", control.SchemaVersion(), applied)
			}
			if skipCapture {
				return nil
			}
			return a.upgradeCapture(cmd.Context(), store)
		},
	}
	cmd.Flags().BoolVar(&skipCapture, "control-only", false, "migrate the control schema only, not the change tables on the sources")
	return cmd
}

// upgradeCapture brings the change tables of every sync to this binary's capture format,
// in place (their pending changes kept), as 'ibex validate' does. Every sync is tried; the
// ones that fail are named.
func (a *app) upgradeCapture(ctx context.Context, store *control.Store) error {
	ss, err := control.Syncs(ctx, store.Q())
	if err != nil {
		return err
	}
	var failed []string
	migrated := 0
	for _, s := range ss {
		res, err := job.ValidateWith(ctx, store, store.Q(), s.Name, a.logger, job.ValidateOptions{MissingTargetsOK: true})
		if err != nil {
			failed = append(failed, fmt.Sprintf("sync %s: %v", s.Name, err))
			continue
		}
		if len(res.Migrated) > 0 {
			migrated += len(res.Migrated)
			a.say("Migrated %d change tables of sync %s to capture format %d, their pending changes kept", len(res.Migrated), s.Name, capture.Format())
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("capture not upgraded on every sync (run 'ibex validate SYNC' once its dbs are reachable):\n  %s", strings.Join(failed, "\n  "))
	}
	if migrated == 0 && len(ss) > 0 {
		a.say("Capture of every sync is at format %d", capture.Format())
	}
	return nil
}

func (a *app) validateCmd() *cobra.Command {
	var createTargets bool
	cmd := &cobra.Command{
		Use:   "validate SYNC|all ...",
		Short: "Check a sync's tables on all its dbs and install or repair its capture",
		Long: `validate checks a sync's tables on all its dbs (same columns and types on every
PostgreSQL db; on targets that are not PostgreSQL, every table and column the sync writes),
installs or repairs capture on its sources and migrates change tables of an older format.
With --create-targets, the tables and columns that targets that are not PostgreSQL lack
are created there, with the types of their sink's mapping (docs/sinks/).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			store, err := a.open(ctx, true)
			if err != nil {
				return err
			}
			names, err := a.syncNames(ctx, store, args)
			if err != nil {
				return err
			}
			for _, n := range names {
				res, err := job.ValidateWith(ctx, store, store.Q(), n, a.logger, job.ValidateOptions{CreateTargets: createTargets})
				if err != nil {
					return err
				}
				for _, c := range res.Created {
					a.say("Created %s", c)
				}
				a.say("Validated sync %s: capture on %d tables; removed stale capture from %d", n, len(res.Installed), len(res.Removed))
				if len(res.Migrated) > 0 {
					a.say("Migrated %d change tables of sync %s to capture format %d, their pending changes kept", len(res.Migrated), n, capture.Format())
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&createTargets, "create-targets", false, "create the tables and columns that targets which are not PostgreSQL lack")
	return cmd
}

func (a *app) syncNames(ctx context.Context, store *control.Store, args []string) ([]string, error) {
	if len(args) == 1 && args[0] == "all" {
		ss, err := control.Syncs(ctx, store.Q())
		if err != nil {
			return nil, err
		}
		var out []string
		for _, s := range ss {
			out = append(out, s.Name)
		}
		return out, nil
	}
	return args, nil
}

func (a *app) kickCmd() *cobra.Command {
	var timeout time.Duration
	var force bool
	cmd := &cobra.Command{
		Use:   "kick SYNC ...",
		Short: "Run syncs now, in this process, and print what they did",
		Long: `kick runs each sync once, waits for it and prints rows inserted and deleted, conflicts
and time. It exits 0 when every run was good, empty or already running elsewhere, and 1
when one failed.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			// Each run checks the control schema's version in its first round trip (with
			// reading its sync and taking its lock): not checked here on its own.
			store, err := a.open(ctx, false)
			if err != nil {
				return err
			}
			var failed []string
			var results []*job.Result
			for _, n := range args {
				opts := job.Options{Logger: a.logger, Force: force}
				if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 && !a.jsonOut {
					opts.Progress = func(table string, done, total int) {
						fmt.Fprintf(os.Stderr, "\r%s: %s batch %d/%d\033[K", n, table, done, total)
						if done == total {
							fmt.Fprint(os.Stderr, "\r\033[K")
						}
					}
				}
				res, err := job.Run(ctx, store, n, opts)
				if res == nil {
					return err
				}
				results = append(results, res)
				if !a.jsonOut {
					a.printKick(res)
				}
				if err != nil {
					failed = append(failed, n)
				}
			}
			if a.jsonOut {
				if err := a.printJSON(results); err != nil {
					return err
				}
			}
			if len(failed) > 0 {
				return &ExitError{Code: 1, Err: fmt.Errorf("sync %s failed: see 'ibex status %s'", strings.Join(failed, ", "), failed[0])}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&a.jsonOut, "json", false, "print the results as JSON")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (0: no limit)")
	cmd.Flags().BoolVar(&force, "force", false, "run even if the sync is inactive")
	return cmd
}

func (a *app) printKick(r *job.Result) {
	if r.AlreadyRunning {
		a.say("Kick %s: already running elsewhere; nothing to do", r.Sync)
		return
	}
	a.say("Kick %s: %s. Inserts %d, deletes %d, conflicts %d. Time %s",
		r.Sync, strings.ToUpper(r.State[:1])+r.State[1:], r.Inserts, r.Deletes, r.Conflicts, r.Duration.Round(time.Millisecond))
	for db, why := range r.Skipped {
		a.say("  skipped db %s: %s", db, why)
	}
	if r.Partial {
		a.say("  stopped before its deadline: the next run goes on")
	}
	if r.Error != "" && r.State == control.StateBad && len(r.Skipped) == 0 {
		a.say("  error: %s", r.Error)
	}
}

// ---- status

type syncStatus struct {
	Name     string         `json:"name"`
	State    string         `json:"state"`
	Status   control.Status `json:"status"`
	Herd     string         `json:"herd"`
	DBGroup  string         `json:"dbgroup"`
	DBs      []string       `json:"dbs"`
	Tables   []string       `json:"tables"`
	Conflict string         `json:"conflict_strategy"`
	// ConflictByType are the strategies set for some conflict types instead.
	ConflictByType map[string]string `json:"conflict_by_type,omitempty"`
	Schedule       string            `json:"schedule"`
	CompareEvery   string            `json:"compare_every,omitempty"`
	Autokick       bool              `json:"autokick"`
	Onetime        int               `json:"onetimecopy"`
	LastGood       *control.Run      `json:"last_good,omitempty"`
	LastBad        *control.Run      `json:"last_bad,omitempty"`
	LastRun        *control.Run      `json:"last_run,omitempty"`
	LastError      string            `json:"last_error,omitempty"`
	// CustomNames are the customnames that apply to the sync's tables ("table -> custom on
	// db D").
	CustomNames []string `json:"customnames,omitempty"`
	// CustomCols and RowFilters are the customcols and scoped row filters that apply to the
	// sync's tables ("table: SELECT ... (db D)"); MakeDelta lists its dbs and tables with
	// makedelta=on.
	CustomCols []string `json:"customcols,omitempty"`
	RowFilters []string `json:"rowfilters,omitempty"`
	MakeDelta  []string `json:"makedelta,omitempty"`
	// ConflictTypes counts the sync's logged conflicts by type.
	ConflictTypes map[string]int64 `json:"conflict_types"`
	// Lag is each source's pending changes (absent with --no-lag).
	Lag []job.SourceLag `json:"lag,omitempty"`
	// RowsPerSecond is the rows the last finished run wrote (inserted and deleted) per
	// second of its time.
	RowsPerSecond float64 `json:"rows_per_second"`
	// OnError is the sync's on_error; Parked counts the rows its receivers refused under
	// on_error=skip (ibex conflicts SYNC --errors lists them).
	OnError  string `json:"on_error"`
	OnOrphan string `json:"on_orphan"`
	// UniqueClashLoser is what happens to a unique clash's losing row (delete, park).
	UniqueClashLoser string `json:"unique_clash_loser"`
	Parked           int64  `json:"parked_rows"`
}

func (a *app) loadStatus(ctx context.Context, store *control.Store, s control.Sync) (*syncStatus, error) {
	q := store.Q()
	st := &syncStatus{Name: s.Name, Status: s.Status, Herd: s.Herd, DBGroup: s.DBGroup, Conflict: s.ConflictStrategy, ConflictByType: s.ConflictByType,
		Schedule: s.Schedule, CompareEvery: s.CompareEvery, Autokick: s.Autokick, Onetime: s.Onetimecopy, OnError: s.OnError, OnOrphan: s.OnOrphan,
		UniqueClashLoser: s.UniqueClashLoser}
	var err error
	if st.ConflictTypes, err = control.ConflictCounts(ctx, q, s.Name); err != nil {
		return nil, err
	}
	if st.Parked, err = control.ExceptionCount(ctx, q, s.Name); err != nil {
		return nil, err
	}
	if st.LastGood, err = control.LastRun(ctx, q, s.Name, control.StateGood, control.StateEmpty); err != nil {
		return nil, err
	}
	if st.LastBad, err = control.LastRun(ctx, q, s.Name, control.StateBad); err != nil {
		return nil, err
	}
	if st.LastRun, err = control.LastRun(ctx, q, s.Name, control.StateGood, control.StateEmpty, control.StateBad, control.StateRunning); err != nil {
		return nil, err
	}
	switch {
	case st.LastRun == nil:
		st.State = "No records found"
	case st.LastRun.State == control.StateRunning:
		st.State = "Running"
	case st.LastRun.State == control.StateBad:
		st.State = "Bad"
	default:
		st.State = "Good"
	}
	if st.LastBad != nil {
		st.LastError = st.LastBad.Error
	}
	if r := st.LastRun; r != nil && r.Ended != nil && r.Duration() > 0 {
		st.RowsPerSecond = float64(r.Inserts+r.Deletes) / r.Duration().Seconds()
	}
	if !a.noLag && s.Status == control.StatusActive {
		if st.Lag, err = job.Lag(ctx, store, s.Name, a.logger); err != nil {
			return nil, err
		}
	}
	if g, err := control.GetDBGroup(ctx, q, s.DBGroup); err == nil {
		for _, m := range g.Members {
			st.DBs = append(st.DBs, m.DB+":"+m.Role)
		}
	}
	if hs, err := control.Herds(ctx, q); err == nil {
		for _, h := range hs {
			if h.Name == s.Herd {
				st.Tables = h.Tables
			}
		}
	}
	cns, err := control.CustomNames(ctx, q)
	if err != nil {
		return nil, err
	}
	for _, c := range cns {
		if (c.Sync == "" || c.Sync == s.Name) && slices.Contains(st.Tables, c.Table) {
			where := "every target"
			if c.DB != "" {
				where = "db " + c.DB
			}
			st.CustomNames = append(st.CustomNames, fmt.Sprintf("%s -> %s on %s", c.Table, c.QualName(), where))
		}
	}
	for _, k := range []control.ScopedKind{control.CustomCols, control.RowFilters} {
		ss, err := control.ListScoped(ctx, q, k)
		if err != nil {
			return nil, err
		}
		for _, x := range ss {
			if (x.Sync != "" && x.Sync != s.Name) || !slices.Contains(st.Tables, x.Table) {
				continue
			}
			where := "every receiver"
			if x.DB != "" {
				where = "db " + x.DB
			}
			if k == control.CustomCols {
				st.CustomCols = append(st.CustomCols, fmt.Sprintf("%s: SELECT %s (%s)", x.Table, x.Text, where))
			} else {
				st.RowFilters = append(st.RowFilters, fmt.Sprintf("%s: where %s (%s)", x.Table, x.Text, where))
			}
		}
	}
	if g, err := control.GetDBGroup(ctx, q, s.DBGroup); err == nil {
		for _, m := range g.Members {
			if d, err := control.GetDB(ctx, q, m.DB); err == nil && d.MakeDelta {
				st.MakeDelta = append(st.MakeDelta, "db "+m.DB)
			}
		}
	}
	if rels, err := control.Relations(ctx, q); err == nil {
		for _, r := range rels {
			if r.MakeDelta && slices.Contains(st.Tables, r.QualName()) {
				st.MakeDelta = append(st.MakeDelta, "table "+r.QualName())
			}
		}
	}
	return st, nil
}

func (a *app) statusCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status [SYNC ...]",
		Short: "Show the state of every sync, or the details of some",
		Long: `Without arguments: one line per sync with Bucardo's columns (Name, State, Last good, Time
since, Last I/D/C = inserts/deletes/conflicts of the last good run, Last bad, Time since).
With sync names: the detail view of each.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			store, err := a.open(ctx, true)
			if err != nil {
				return err
			}
			syncs, err := control.Syncs(ctx, store.Q())
			if err != nil {
				return err
			}
			var sts []*syncStatus
			for _, n := range args {
				found := false
				for _, s := range syncs {
					if s.Name == n {
						found = true
					}
				}
				if !found {
					return fmt.Errorf("sync %q %w: see 'ibex list syncs'", n, control.ErrNotFound)
				}
			}
			for _, s := range syncs {
				if !want(args, s.Name) {
					continue
				}
				st, err := a.loadStatus(ctx, store, s)
				if err != nil {
					return err
				}
				sts = append(sts, st)
			}
			if a.jsonOut {
				if len(args) == 1 && len(sts) == 1 {
					return a.printJSON(sts[0])
				}
				return a.printJSON(sts)
			}
			if len(args) == 0 {
				a.statusAll(sts)
				return nil
			}
			for _, st := range sts {
				a.statusDetail(st)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON")
	cmd.Flags().BoolVar(&a.noLag, "no-lag", false, "do not connect to the sources to read their pending changes")
	return cmd
}

// pendingCell sums the pending changes of every source ("?" when one could not be read,
// "-" when not read).
func pendingCell(st *syncStatus, noLag bool) string {
	if noLag || st.Status != control.StatusActive {
		return "-"
	}
	var n int64
	for _, l := range st.Lag {
		if l.Error != "" {
			return "?"
		}
		n += l.Pending
	}
	return fmt.Sprint(n)
}

func when(t time.Time) string {
	t = t.Local()
	now := time.Now()
	if t.Year() == now.Year() && t.YearDay() == now.YearDay() {
		return t.Format("15:04:05")
	}
	return t.Format("Jan 02, 2006 15:04:05")
}

// pretty renders a duration as Bucardo's compressed pretty_time: 3d12h6m3s.
func pretty(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%.3fs", d.Seconds())
	}
	d = d.Round(time.Second)
	days := d / (24 * time.Hour)
	d -= days * 24 * time.Hour
	h := d / time.Hour
	d -= h * time.Hour
	m := d / time.Minute
	d -= m * time.Minute
	s := d / time.Second
	var b strings.Builder
	if days > 0 {
		fmt.Fprintf(&b, "%dd", days)
	}
	if h > 0 {
		fmt.Fprintf(&b, "%dh", h)
	}
	if m > 0 {
		fmt.Fprintf(&b, "%dm", m)
	}
	if s > 0 || b.Len() == 0 {
		fmt.Fprintf(&b, "%ds", s)
	}
	return b.String()
}

func (a *app) statusAll(sts []*syncStatus) {
	if len(sts) == 0 {
		a.say("No syncs: add one with 'ibex add sync NAME herd=... dbs=...'")
		return
	}
	var rows [][]string
	for _, st := range sts {
		row := []string{st.Name, st.State, "", "", "", "none", "", pendingCell(st, a.noLag)}
		if st.Status == control.StatusInactive {
			row[1] += " (inactive)"
		}
		if g := st.LastGood; g != nil && g.Ended != nil {
			row[2] = when(*g.Ended)
			row[3] = pretty(time.Since(*g.Ended))
			row[4] = fmt.Sprintf("%d/%d/%d", g.Inserts, g.Deletes, g.Conflicts)
		}
		if b := st.LastBad; b != nil && b.Ended != nil {
			row[5] = when(*b.Ended)
			row[6] = pretty(time.Since(*b.Ended))
		}
		rows = append(rows, row)
	}
	printTable(a.stdout, []string{"Name", "State", "Last good", "Time", "Last I/D/C", "Last bad", "Time", "Pending"}, rows)
}

func (a *app) statusDetail(st *syncStatus) {
	line := strings.Repeat("=", 70)
	a.say("%s", line)
	field := func(k, v string) { a.say("%-33s: %s", k, v) }
	if g := st.LastGood; g != nil && g.Ended != nil {
		field("Last good", fmt.Sprintf("%s (time to run: %s)", when(*g.Ended), pretty(g.Duration())))
		field("Rows inserted/deleted/conflicts", fmt.Sprintf("%d / %d / %d", g.Inserts, g.Deletes, g.Conflicts))
	} else {
		field("Last good", "none")
	}
	if b := st.LastBad; b != nil && b.Ended != nil {
		field("Last bad", fmt.Sprintf("%s (time until fail: %s)", when(*b.Ended), pretty(b.Duration())))
	} else {
		field("Last bad", "none")
	}
	if st.RowsPerSecond > 0 {
		field("Rows/second (last run)", fmt.Sprintf("%.0f", st.RowsPerSecond))
	}
	for _, l := range st.Lag {
		v := fmt.Sprintf("%d", l.Pending)
		switch {
		case l.Error != "":
			v = "unknown: " + l.Error
		case l.Oldest != nil:
			v += fmt.Sprintf(" (oldest %s ago)", pretty(time.Duration(l.OldestSeconds*float64(time.Second))))
		}
		field("Pending changes on "+l.DB, v)
	}
	field("Sync name", st.Name)
	field("Current state", st.State)
	field("Herd/dbs", st.Herd+" / "+st.DBGroup+" ("+strings.Join(st.DBs, " ")+")")
	field("Tables in sync", fmt.Sprintf("%d", len(st.Tables)))
	for _, c := range st.CustomNames {
		field("Customname", c)
	}
	for _, c := range st.CustomCols {
		field("Customcols", c)
	}
	for _, f := range st.RowFilters {
		field("Row filter", f)
	}
	if len(st.MakeDelta) > 0 {
		field("Makedelta", strings.Join(st.MakeDelta, ", "))
	}
	field("Status", strings.ToUpper(string(st.Status[:1]))+string(st.Status[1:]))
	strategy := st.Conflict
	var byType []string
	for _, typ := range conflict.Types {
		if v, ok := st.ConflictByType[typ]; ok {
			byType = append(byType, typ+": "+v)
		}
	}
	if len(byType) > 0 {
		strategy += " (" + strings.Join(byType, ", ") + ")"
	}
	field("Conflict strategy", strategy)
	if len(st.ConflictTypes) > 0 {
		var parts []string
		for _, typ := range append(slices.Clone(conflict.Types), conflict.TypeOrphan, "") {
			if n := st.ConflictTypes[typ]; n > 0 {
				if typ == "" {
					typ = "untyped (logged before 2.3)"
				}
				parts = append(parts, fmt.Sprintf("%s %d", typ, n))
			}
		}
		field("Conflicts logged, by type", strings.Join(parts, ", "))
	}
	onError := st.OnError
	if st.Parked > 0 {
		onError += fmt.Sprintf(" (%d rows parked: ibex conflicts %s --errors)", st.Parked, st.Name)
	}
	field("On error", onError)
	field("On orphan", st.OnOrphan)
	field("Unique clash loser", st.UniqueClashLoser)
	sched := st.Schedule
	if sched == "" {
		sched = "None (kick only)"
	}
	field("Schedule", sched)
	if st.CompareEvery != "" {
		field("Compare every", st.CompareEvery+" (by the scheduler)")
	}
	field("Autokick", map[bool]string{true: "Yes", false: "No"}[st.Autokick])
	field("Onetimecopy", map[int]string{0: "No", 1: "Yes (all targets)", 2: "Yes (empty targets)"}[st.Onetime])
	if st.LastError != "" {
		field("Last error", st.LastError)
	}
	a.say("%s", line)
}

// ---- conflicts

func (a *app) conflictsCmd() *cobra.Command {
	var limit int
	var errorsOnly bool
	cmd := &cobra.Command{
		Use:   "conflicts SYNC",
		Short: "Show a sync's conflict log: key, type, the dbs that changed it, the winner, the strategy",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			store, err := a.open(ctx, true)
			if err != nil {
				return err
			}
			if _, err := control.GetSync(ctx, store.Q(), args[0]); err != nil {
				if !errors.Is(err, control.ErrNotFound) {
					return err
				}
				// A removed sync keeps its log; say so only if it has none.
			}
			if errorsOnly {
				return a.printExceptions(ctx, store, args[0], limit)
			}
			cs, err := control.Conflicts(ctx, store.Q(), args[0], limit)
			if err != nil {
				return err
			}
			if a.jsonOut {
				if cs == nil {
					cs = []control.Conflict{}
				}
				return a.printJSON(cs)
			}
			if len(cs) == 0 {
				a.say("No conflicts recorded for sync %s", args[0])
				return nil
			}
			var rows [][]string
			for _, c := range cs {
				w := c.Winner
				if w == "" {
					w = "(none)"
				}
				typ := c.Type
				if typ == "" {
					typ = "-" // logged before types were
				}
				rows = append(rows, []string{fmt.Sprint(c.Run), when(c.At), c.Table, c.Key, typ, strings.Join(c.DBs, ","), w, c.Strategy, c.Resolution})
			}
			printTable(a.stdout, []string{"Run", "At", "Table", "Key", "Type", "DBs", "Winner", "Strategy", "Resolution"}, rows)
			return nil
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 100, "show at most this many, newest first")
	cmd.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON")
	cmd.Flags().BoolVar(&errorsOnly, "errors", false, "show the rows receivers refused under on_error=skip (parked) instead")
	return cmd
}

// printExceptions prints a sync's parked rows (conflicts --errors).
func (a *app) printExceptions(ctx context.Context, store *control.Store, sync string, limit int) error {
	es, err := control.Exceptions(ctx, store.Q(), sync, limit)
	if err != nil {
		return err
	}
	if a.jsonOut {
		if es == nil {
			es = []control.Exception{}
		}
		return a.printJSON(es)
	}
	if len(es) == 0 {
		a.say("No rows parked for sync %s", sync)
		return nil
	}
	var rows [][]string
	for _, e := range es {
		row := e.Row
		if row == "" {
			row = "(delete)"
		}
		rows = append(rows, []string{fmt.Sprint(e.Run), when(e.At), e.Table, e.DB, e.Key, row, e.Error})
	}
	printTable(a.stdout, []string{"Run", "At", "Table", "DB", "Key", "Row", "Error"}, rows)
	return nil
}
