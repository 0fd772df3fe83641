package job

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ibexrepl/ibex/internal/capture"
	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/sqlstate"
	"github.com/ibexrepl/ibex/sinks"
)

// ValidateResult says what Validate did.
type ValidateResult struct {
	Sync      string   `json:"sync"`
	Installed []string `json:"installed"` // db: table where capture was (re)installed or checked
	Removed   []string `json:"removed"`   // db: table where stale capture was removed
	Reset     []string `json:"reset"`     // sources whose change tables were recreated
	Migrated  []string `json:"migrated"`  // db: table whose change table was migrated to the current format
	Created   []string `json:"created"`   // db: table created (or completed) on a target that is not PostgreSQL
	// Missing says, for each target that is not PostgreSQL and lacks tables or columns
	// (ValidateOptions.MissingTargetsOK), what it lacks and the DDL that creates it.
	Missing []string `json:"missing,omitempty"`
}

// ValidateOptions are Validate's choices.
type ValidateOptions struct {
	// CreateTargets creates, on targets that are not PostgreSQL, the tables (and columns)
	// the sync writes that they lack, with their sink's type mapping.
	CreateTargets bool
	// MissingTargetsOK accepts targets that are not PostgreSQL and lack tables or columns
	// (reported in ValidateResult.Missing; runs leave them out until they have them):
	// adding such a db to a dbgroup comes before creating its tables.
	MissingTargetsOK bool
}

// Validate checks a sync's tables on all its dbs (same columns and types, keys present)
// and installs or repairs capture on its sources; it removes this sync's capture from
// tables no longer in its herd and from dbs that are no longer sources. Every db must be
// reachable. q is where the sync's definition is read (a transaction when the definition
// is not committed yet).
func Validate(ctx context.Context, store *control.Store, q control.Querier, syncName string, logger *slog.Logger) (*ValidateResult, error) {
	return ValidateWith(ctx, store, q, syncName, logger, ValidateOptions{})
}

// ValidateWith is Validate with options.
func ValidateWith(ctx context.Context, store *control.Store, q control.Querier, syncName string, logger *slog.Logger, opts ValidateOptions) (*ValidateResult, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	sync, err := control.GetSync(ctx, q, syncName)
	if err != nil {
		return nil, err
	}
	r := &session{store: &control.Store{Pool: store.Pool}, sync: sync, logger: logger, createTargets: opts.CreateTargets}
	defer r.closeAll()
	if err := r.load(ctx, q); err != nil && !(errors.Is(err, errNoTables) && r.hasSequences(ctx, q)) {
		return nil, err
	}
	ss, err := conflict.ParseAll(sync.ConflictStrategy, sync.ConflictByType, r.names, r.sourceNames)
	if err != nil {
		return nil, fmt.Errorf("sync %s: %w", syncName, err)
	}
	for _, fn := range ss.Functions() {
		if err := control.CheckConflictFunction(ctx, q, fn); err != nil {
			return nil, fmt.Errorf("sync %s: %w", syncName, err)
		}
	}
	r.connect(ctx)
	for _, m := range r.members {
		if m.dead != nil && !errors.Is(m.dead, errInactiveDB) {
			return nil, fmt.Errorf("sync %s: %w", syncName, m.dead)
		}
	}
	if err := r.checkSchemas(ctx, false); err != nil {
		return nil, err
	}
	if err := r.checkSequences(ctx, q); err != nil {
		return nil, err
	}
	// A target that is not PostgreSQL and lacks a table left the session: here that
	// refuses the change, with the DDL (or --create-targets) that fixes it.
	var missing []string
	for _, m := range r.members {
		var me *sinks.MissingError
		if opts.MissingTargetsOK && errors.As(m.dead, &me) {
			missing = append(missing, m.dead.Error())
			continue
		}
		if m.dead != nil && !errors.Is(m.dead, errInactiveDB) {
			return nil, fmt.Errorf("sync %s: %w", syncName, m.dead)
		}
	}
	res := &ValidateResult{Sync: syncName, Created: r.created, Missing: missing}
	// newSource: a source on which none of the sync's change tables existed (a db added
	// to the dbgroup, or whose settings now reach another database). Watermarks kept
	// under its name are snapshots of another database's transactions: forget them.
	newSource := false
	// Capture installed afresh by this call, per db: removed again when a later db
	// refuses, so that a refused add or validate leaves no db with half of it. (Each db
	// commits on its own: one transaction across dbs would wait on itself when two members
	// reach the same database.)
	for _, t := range r.tables {
		if err := capture.CheckCounters(t.desc, t.rel.Counters); err != nil {
			return nil, fmt.Errorf("counters=%s: %w", strings.Join(t.rel.Counters, ","), err)
		}
	}
	var undo []freshCapture
	if err := func() error {
		for _, m := range r.members {
			if !m.alive() || !m.pg() {
				continue
			}
			wanted := map[string]bool{}
			if m.isSource() && !r.fullcopy {
				var made []catalog.QualName
				if err := pgx.BeginFunc(ctx, m.conn, func(tx pgx.Tx) error {
					fresh := 0
					defer func() { newSource = newSource || (fresh > 0 && fresh == len(r.tables)) }()
					for _, t := range r.tables {
						qn := catalog.QualName{Schema: t.rel.Schema, Name: t.rel.Name}
						st, err := capture.Inspect(ctx, tx, syncName, t.desc.Schema, t.desc.Name)
						if err != nil {
							return err
						}
						if st.Exists() && st.Format() > capture.Format() {
							return fmt.Errorf("the change table of %s has capture format %d, newer than this ibex's (%d): use a newer ibex", t.name, st.Format(), capture.Format())
						}
						if st.Migratable(t.desc) {
							// An older format of the same key: migrated in place, its pending
							// change rows kept (DDL below does the rest).
							for _, s := range capture.MigrateDDL(syncName, t.desc, st.Format()) {
								if _, err := tx.Exec(ctx, s); err != nil {
									return fmt.Errorf("migrating the change table of %s: %w", t.name, privilegeHint(err, m, qn))
								}
							}
							res.Migrated = append(res.Migrated, m.name+": "+t.name)
						} else if !st.Matches(t.desc) {
							if st.Exists() {
								// Key columns changed: the old change table cannot be kept.
								for _, s := range capture.DropDDL(syncName, qn) {
									if _, err := tx.Exec(ctx, s); err != nil {
										return fmt.Errorf("resetting capture of %s: %w", t.name, privilegeHint(err, m, qn))
									}
								}
								res.Reset = append(res.Reset, m.name)
							} else {
								fresh++
								made = append(made, qn)
							}
						}
						for _, s := range capture.DDL(syncName, t.desc, capture.Options{Autokick: sync.Autokick, Counters: t.rel.Counters, Columns: t.rel.Detect == control.DetectColumns, MakeDelta: t.makeDelta(m), OldRow: keepsOld(sync)}) {
							if _, err := tx.Exec(ctx, s); err != nil {
								return fmt.Errorf("installing capture of %s: %w", t.name, privilegeHint(err, m, qn))
							}
						}
						wanted[t.ident] = true
						res.Installed = append(res.Installed, m.name+": "+t.name)
					}
					return nil
				}); err != nil {
					return fmt.Errorf("db %s: %w", m.name, err)
				}
				if len(made) > 0 {
					undo = append(undo, freshCapture{m: m, tables: made, all: len(made) == len(r.tables)})
				}
			}
			removed, err := removeStale(ctx, m, syncName, wanted)
			if err != nil {
				return fmt.Errorf("db %s: %w", m.name, err)
			}
			for _, t := range removed {
				res.Removed = append(res.Removed, m.name+": "+t)
			}
		}
		if len(res.Reset) > 0 || newSource {
			if err := control.ClearWatermarks(ctx, q, syncName); err != nil {
				return err
			}
		}
		return nil
	}(); err != nil {
		for _, u := range undo {
			u.remove(ctx, syncName, logger)
		}
		return nil, err
	}
	return res, nil
}

// freshCapture is capture a Validate call installed on a db where it did not exist.
type freshCapture struct {
	m      *member
	tables []catalog.QualName
	all    bool // the sync had no capture at all on this db before
}

// remove drops it again (best effort: a failure is logged).
func (u freshCapture) remove(ctx context.Context, syncName string, logger *slog.Logger) {
	if u.m.conn == nil || u.m.conn.IsClosed() {
		return
	}
	var stmts []string
	for _, t := range u.tables {
		stmts = append(stmts, capture.DropDDL(syncName, t)...)
	}
	if u.all {
		stmts = append(stmts, capture.DropSyncDDL(syncName)...)
	}
	for _, s := range stmts {
		if _, err := u.m.conn.Exec(context.WithoutCancel(ctx), s); err != nil {
			logger.Warn("removing the capture this refused change installed failed: run 'ibex validate' once the cause is fixed",
				slog.String("db", u.m.name), slog.String("error", err.Error()))
			return
		}
	}
}

// privilegeHint adds to an insufficient_privilege error (SQLSTATE 42501: "permission
// denied for ..." and "must be owner of ...") raised by capture DDL on m what ibex's role
// lacks there and the statement that gives it. t is the table the DDL was for.
func privilegeHint(err error, m *member, t catalog.QualName) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != sqlstate.InsufficientPrivilege {
		return err
	}
	role, dbname := roleAndDB(m)
	var fix string
	switch msg := pe.Message; {
	case strings.HasPrefix(msg, "permission denied for database"):
		fix = fmt.Sprintf("schema ibex is missing and role %s may not create it: GRANT CREATE ON DATABASE %s TO %s, or have a DBA run CREATE SCHEMA ibex AUTHORIZATION %s",
			role, catalog.SQLName(dbname), role, role)
	case strings.HasPrefix(msg, "permission denied for schema "+capture.Schema):
		fix = fmt.Sprintf("role %s needs USAGE and CREATE on schema ibex: GRANT USAGE, CREATE ON SCHEMA ibex TO %s, or ALTER SCHEMA ibex OWNER TO %s", role, role, role)
	case strings.HasPrefix(msg, "permission denied for schema"):
		fix = fmt.Sprintf("GRANT USAGE ON SCHEMA %s TO %s", catalog.SQLName(t.Schema), role)
	case t.Name != "":
		fix = ownerFix(role, t)
	default:
		fix = fmt.Sprintf("role %s needs more privileges", role)
	}
	return fmt.Errorf("%w: %s, on db %s (dbname %s); see the README's \"Privileges\"", err, fix, m.name, dbname)
}

// ownerFix says how to let role create and drop ibex's triggers on table t.
func ownerFix(role string, t catalog.QualName) string {
	return fmt.Sprintf("role %s must own table %s to create and drop ibex's triggers on it: as its owner or a superuser, run ALTER TABLE %s.%s OWNER TO %s",
		role, t, catalog.SQLName(t.Schema), catalog.SQLName(t.Name), role)
}

// roleAndDB are the role a member's session runs as and its database's real name.
func roleAndDB(m *member) (role, dbname string) {
	role, dbname = "ibex's role", m.name
	if m.conn != nil {
		cfg := m.conn.Config()
		role, dbname = catalog.SQLName(cfg.User), cfg.Database
	}
	return role, dbname
}

// removeStale drops this sync's capture from tables of db that are not in wanted. The
// clones of a partitioned table's triggers that PostgreSQL puts on its partitions
// (tgparentid <> 0) are not listed: they cannot be dropped on their own, and go with the
// parent's trigger (or when the partition is detached).
func removeStale(ctx context.Context, m *member, syncName string, wanted map[string]bool) ([]string, error) {
	conn := m.conn
	rows, err := conn.Query(ctx, `SELECT n.nspname, c.relname FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace WHERE g.tgname IN ($1, $2) AND g.tgparentid = 0 ORDER BY 1, 2`, capture.TriggerName(syncName), capture.KickTriggerName(syncName))
	if err != nil {
		return nil, fmt.Errorf("listing the capture triggers of sync %s: %w", syncName, err)
	}
	tabs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (catalog.QualName, error) {
		var q catalog.QualName
		err := r.Scan(&q.Schema, &q.Name)
		return q, err
	})
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, t := range tabs {
		ident := pgx.Identifier{t.Schema, t.Name}.Sanitize()
		if wanted[ident] || slices.Contains(removed, t.String()) {
			continue
		}
		for _, s := range capture.DropDDL(syncName, t) {
			if _, err := conn.Exec(ctx, s); err != nil {
				return removed, fmt.Errorf("removing capture of %s: %w", t, privilegeHint(err, m, t))
			}
		}
		removed = append(removed, t.String())
	}
	if len(wanted) == 0 {
		for _, s := range capture.DropSyncDDL(syncName) {
			if _, err := conn.Exec(ctx, s); err != nil && !isUndefinedSchema(err) {
				return removed, privilegeHint(err, m, catalog.QualName{})
			}
		}
	}
	return removed, nil
}

func isUndefinedSchema(err error) bool { return sqlstate.Is(err, sqlstate.InvalidSchemaName) }

// RemoveCapture removes every capture object of a sync from its dbs. Unreachable dbs are
// reported in the error unless force is set, in which case they are skipped.
func RemoveCapture(ctx context.Context, store *control.Store, syncName string, force bool, logger *slog.Logger) ([]string, error) {
	return removeCapture(ctx, store, syncName, force, logger, false)
}

// CheckRemoveCapture makes the checks RemoveCapture makes before it removes anything (every
// db reachable unless force, every captured table owned by ibex's role), and removes
// nothing: a command removing several syncs checks them all first.
func CheckRemoveCapture(ctx context.Context, store *control.Store, syncName string, force bool, logger *slog.Logger) error {
	_, err := removeCapture(ctx, store, syncName, force, logger, true)
	return err
}

func removeCapture(ctx context.Context, store *control.Store, syncName string, force bool, logger *slog.Logger, checkOnly bool) ([]string, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	sync, err := control.GetSync(ctx, store.Q(), syncName)
	if err != nil {
		return nil, err
	}
	r := &session{store: store, sync: sync, logger: logger}
	defer r.closeAll()
	if err := r.load(ctx, store.Q()); err != nil && !errors.Is(err, errNoTables) {
		return nil, err
	}
	r.connect(ctx)
	var removed, unreachable []string
	for _, m := range r.members {
		if m.dead != nil {
			unreachable = append(unreachable, m.dead.Error())
		}
	}
	if len(unreachable) > 0 && !force {
		return nil, fmt.Errorf("cannot remove the capture of sync %s: %s; fix it or use --force to leave its triggers there", syncName, strings.Join(unreachable, "; "))
	}
	// Tables whose triggers ibex's role cannot drop are refused before anything goes.
	var notOwned []string
	for _, m := range r.alive() {
		if !m.pg() {
			continue // no capture there
		}
		tabs, err := notOwnedCaptured(ctx, m.conn, syncName)
		if err != nil {
			return nil, fmt.Errorf("db %s: %w", m.name, err)
		}
		role, dbname := roleAndDB(m)
		for _, t := range tabs {
			notOwned = append(notOwned, fmt.Sprintf("on db %s (dbname %s), %s", m.name, dbname, ownerFix(role, t)))
		}
	}
	if len(notOwned) > 0 {
		return nil, fmt.Errorf("cannot remove the capture of sync %s, nothing was removed: %s; see the README's \"Privileges\"", syncName, strings.Join(notOwned, "; "))
	}
	if checkOnly {
		return nil, nil
	}
	for _, m := range r.alive() {
		if !m.pg() {
			continue
		}
		got, err := removeStale(ctx, m, syncName, map[string]bool{})
		if err != nil {
			return removed, fmt.Errorf("db %s: %w", m.name, err)
		}
		for _, t := range got {
			removed = append(removed, m.name+": "+t)
		}
	}
	return removed, nil
}

// notOwnedCaptured lists the tables carrying sync's triggers on conn's database that the
// session's role does not own (nor is a member of the owning role): DROP TRIGGER needs
// ownership, whatever was granted. Partitions carrying clones of a partitioned table's
// triggers are not listed: those go with the parent's trigger, whoever owns the partition.
func notOwnedCaptured(ctx context.Context, conn *pgx.Conn, syncName string) ([]catalog.QualName, error) {
	rows, err := conn.Query(ctx, `SELECT DISTINCT n.nspname, c.relname FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace WHERE g.tgname IN ($1, $2) AND g.tgparentid = 0 AND NOT pg_has_role(c.relowner, 'USAGE') ORDER BY 1, 2`,
		capture.TriggerName(syncName), capture.KickTriggerName(syncName))
	if err != nil {
		return nil, fmt.Errorf("listing the captured tables of sync %s that ibex's role does not own: %w", syncName, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (catalog.QualName, error) {
		var q catalog.QualName
		err := r.Scan(&q.Schema, &q.Name)
		return q, err
	})
}
