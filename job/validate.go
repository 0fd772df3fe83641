package job

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/capture"
	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/control"
)

// ValidateResult says what Validate did.
type ValidateResult struct {
	Sync      string   `json:"sync"`
	Installed []string `json:"installed"` // db: table where capture was (re)installed or checked
	Removed   []string `json:"removed"`   // db: table where stale capture was removed
	Reset     []string `json:"reset"`     // sources whose change tables were recreated
}

// Validate checks a sync's tables on all its dbs (same columns and types, keys present)
// and installs or repairs capture on its sources; it removes this sync's capture from
// tables no longer in its herd and from dbs that are no longer sources. Every db must be
// reachable. q is where the sync's definition is read (a transaction when the definition
// is not committed yet).
func Validate(ctx context.Context, store *control.Store, q control.Querier, syncName string, logger *slog.Logger) (*ValidateResult, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	sync, err := control.GetSync(ctx, q, syncName)
	if err != nil {
		return nil, err
	}
	r := &runner{store: &control.Store{Pool: store.Pool}, sync: sync, logger: logger, res: &Result{Sync: syncName}, validating: true}
	defer r.closeAll()
	if err := r.loadFrom(ctx, q); err != nil {
		return nil, err
	}
	r.connect(ctx)
	for _, m := range r.members {
		if m.dead != nil && !errors.Is(m.dead, errInactiveDB) {
			return nil, fmt.Errorf("sync %s: %w", syncName, m.dead)
		}
	}
	if err := r.checkSchemas(ctx); err != nil {
		return nil, err
	}
	res := &ValidateResult{Sync: syncName}
	for _, m := range r.members {
		if !m.alive() {
			continue
		}
		wanted := map[string]bool{}
		if m.isSource() && !r.fullcopy {
			if err := pgx.BeginFunc(ctx, m.conn, func(tx pgx.Tx) error {
				for _, t := range r.tables {
					ok, err := capture.Installed(ctx, tx, syncName, t.desc)
					if err != nil {
						return err
					}
					if !ok {
						var exists bool
						if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, t.change).Scan(&exists); err != nil {
							return err
						}
						if exists {
							// Key columns changed: the old change table cannot be kept.
							for _, s := range capture.DropDDL(syncName, catalog.QualName{Schema: t.rel.Schema, Name: t.rel.Name}) {
								if _, err := tx.Exec(ctx, s); err != nil {
									return err
								}
							}
							res.Reset = append(res.Reset, m.name)
						}
					}
					for _, s := range capture.DDL(syncName, t.desc, sync.Autokick) {
						if _, err := tx.Exec(ctx, s); err != nil {
							return fmt.Errorf("installing capture of %s: %w", t.name, err)
						}
					}
					wanted[t.ident] = true
					res.Installed = append(res.Installed, m.name+": "+t.name)
				}
				return nil
			}); err != nil {
				return nil, fmt.Errorf("db %s: %w", m.name, privilegeHint(err))
			}
		}
		removed, err := removeStale(ctx, m.conn, syncName, wanted)
		if err != nil {
			return nil, fmt.Errorf("db %s: %w", m.name, privilegeHint(err))
		}
		for _, t := range removed {
			res.Removed = append(res.Removed, m.name+": "+t)
		}
	}
	if len(res.Reset) > 0 {
		if err := control.ClearWatermarks(ctx, q, syncName); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func privilegeHint(err error) error {
	if err != nil && strings.Contains(err.Error(), "permission denied") {
		return fmt.Errorf("%w (ibex needs to own the replicated tables and have CREATE on the database; see the README's 'Privileges')", err)
	}
	return err
}

// removeStale drops this sync's capture from tables of db that are not in wanted.
func removeStale(ctx context.Context, conn *pgx.Conn, syncName string, wanted map[string]bool) ([]string, error) {
	rows, err := conn.Query(ctx, `SELECT n.nspname, c.relname FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace WHERE g.tgname IN ($1, $2) ORDER BY 1, 2`, capture.TriggerName(syncName), capture.KickTriggerName(syncName))
	if err != nil {
		return nil, err
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
				return removed, err
			}
		}
		removed = append(removed, t.String())
	}
	if len(wanted) == 0 {
		for _, s := range capture.DropSyncDDL(syncName) {
			if _, err := conn.Exec(ctx, s); err != nil && !isUndefinedSchema(err) {
				return removed, err
			}
		}
	}
	return removed, nil
}

func isUndefinedSchema(err error) bool {
	return err != nil && strings.Contains(err.Error(), "does not exist")
}

// RemoveCapture removes every capture object of a sync from its dbs. Unreachable dbs are
// reported in the error unless force is set, in which case they are skipped.
func RemoveCapture(ctx context.Context, store *control.Store, syncName string, force bool, logger *slog.Logger) ([]string, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	sync, err := control.GetSync(ctx, store.Q(), syncName)
	if err != nil {
		return nil, err
	}
	r := &runner{store: store, sync: sync, logger: logger, res: &Result{Sync: syncName}, validating: true}
	defer r.closeAll()
	if err := r.loadFrom(ctx, store.Q()); err != nil && !errors.Is(err, errNoTables) {
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
	for _, m := range r.alive() {
		got, err := removeStale(ctx, m.conn, syncName, map[string]bool{})
		if err != nil {
			return removed, fmt.Errorf("db %s: %w", m.name, err)
		}
		for _, t := range got {
			removed = append(removed, m.name+": "+t)
		}
	}
	return removed, nil
}
