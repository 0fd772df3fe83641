package cli

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/job"
)

// addCustomCols is 'ibex add customcols TABLE "SELECT a, b, upper(c) AS c" [db=DB]
// [sync=SYNC]' (Bucardo's verb): the receivers it applies to get TABLE's key and the
// columns of that select list, evaluated on the sending db's row; their other columns are
// left alone. The syncs it applies to are validated in the same transaction (the list
// must parse on the sources, its columns exist on the receivers), so one that cannot work
// is refused and nothing changes.
func (a *app) addCustomCols(ctx context.Context, store *control.Store, p kv) error {
	db, _ := p.take("db")
	sync, _ := p.take("sync")
	if rest := p.rest(); len(rest) > 0 {
		return usageErr("add customcols: unknown setting %q (use db= or sync=)", rest[0])
	}
	if len(p.words) != 2 {
		return usageErr(`add customcols: give the table and the select list: ibex add customcols TABLE "SELECT a, b, upper(c) AS c" [db=DB] [sync=SYNC]`)
	}
	tn, err := catalog.ParseName(p.words[0])
	if err != nil {
		return usageErr("add customcols: %v", err)
	}
	clause, err := control.NormalizeCustomCols(p.words[1])
	if err != nil {
		return usageErr("add customcols: %v", err)
	}
	s := &control.Scoped{Table: tn.String(), Text: clause, DB: db, Sync: sync}
	if err := a.putScoped(ctx, store, control.CustomCols, s); err != nil {
		return err
	}
	a.say("Added customcols %d: %s sends %q to %s", s.ID, s.Table, "SELECT "+s.Text, scopeText(*s, "every receiver"))
	return nil
}

// scopeRowFilter is 'ibex update table T ... where=COND db=DB and/or sync=SYNC': a row
// filter for the receivers it names (ibex.rowfilter), on top of the table's own where=;
// an empty condition removes it.
func (a *app) scopeRowFilter(ctx context.Context, store *control.Store, tables []string, where, db, sync string) error {
	where = strings.TrimSpace(where)
	for _, w := range tables {
		tn, err := catalog.ParseName(w)
		if err != nil {
			return err
		}
		s := &control.Scoped{Table: tn.String(), Text: where, DB: db, Sync: sync}
		if where == "" {
			err := store.InTx(ctx, func(q control.Querier) error {
				fs, err := control.ListScoped(ctx, q, control.RowFilters)
				if err != nil {
					return err
				}
				for _, f := range fs {
					if f.Table == s.Table && f.DB == db && f.Sync == sync {
						return control.RemoveScoped(ctx, q, control.RowFilters, f.ID)
					}
				}
				return fmt.Errorf("table %s has no row filter for %s: %w", s.Table, scopeText(*s, "every receiver"), control.ErrNotFound)
			})
			if err != nil {
				return err
			}
			a.say("Removed the row filter of %s for %s", s.Table, scopeText(*s, ""))
			continue
		}
		if err := a.putScoped(ctx, store, control.RowFilters, s); err != nil {
			return err
		}
		a.say("Updated table %s: rows sent to %s match %s (row filter %d)", s.Table, scopeText(*s, ""), s.Text, s.ID)
	}
	return nil
}

// putScoped records s, then validates every sync it applies to, in one transaction.
func (a *app) putScoped(ctx context.Context, store *control.Store, k control.ScopedKind, s *control.Scoped) error {
	return store.InTx(ctx, func(q control.Querier) error {
		if s.DB != "" {
			if _, err := control.GetDB(ctx, q, s.DB); err != nil {
				return err
			}
		}
		if s.Sync != "" {
			if _, err := control.GetSync(ctx, q, s.Sync); err != nil {
				return err
			}
		}
		var err error
		if s.ID, err = control.AddScoped(ctx, q, k, s); err != nil {
			return err
		}
		return a.revalidateTableSyncs(ctx, store, q, s.Table, s.Sync)
	})
}

// revalidateTableSyncs validates the syncs whose herd holds table (only sync, when not "").
func (a *app) revalidateTableSyncs(ctx context.Context, store *control.Store, q control.Querier, table, sync string) error {
	syncs, err := control.Syncs(ctx, q)
	if err != nil {
		return err
	}
	herds, err := control.Herds(ctx, q)
	if err != nil {
		return err
	}
	for _, s := range syncs {
		if sync != "" && s.Name != sync {
			continue
		}
		if !slices.ContainsFunc(herds, func(h control.Herd) bool { return h.Name == s.Herd && slices.Contains(h.Tables, table) }) {
			continue
		}
		if _, err := job.ValidateWith(ctx, store, q, s.Name, a.logger, job.ValidateOptions{MissingTargetsOK: true}); err != nil {
			return syncErr(s.Name, err)
		}
	}
	return nil
}

// removeScoped is 'ibex remove customcols ID ...' and 'ibex remove rowfilter ID ...'.
func (a *app) removeScoped(ctx context.Context, store *control.Store, k control.ScopedKind, ids []string) error {
	return store.InTx(ctx, func(q control.Querier) error {
		for _, s := range ids {
			id, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return usageErr("remove %s: give its id (see 'ibex list %s'), not %q", k.Name, k.Name, s)
			}
			if err := control.RemoveScoped(ctx, q, k, id); err != nil {
				return err
			}
			a.say("Removed %s %d", k.Name, id)
		}
		return nil
	})
}

// listScoped is 'ibex list customcols [TABLE ...]' and 'ibex list rowfilters [TABLE ...]'.
func listScoped(k control.ScopedKind, ss []control.Scoped, names []string) ([]string, [][]string, []control.Scoped) {
	anyOf := func(s string) string {
		if s == "" {
			return "(any)"
		}
		return s
	}
	var rows [][]string
	var out []control.Scoped
	for _, s := range ss {
		if want(names, s.Table) {
			out = append(out, s)
			text := s.Text
			if k == control.CustomCols {
				text = "SELECT " + text
			}
			rows = append(rows, []string{fmt.Sprint(s.ID), s.Table, text, anyOf(s.DB), anyOf(s.Sync)})
		}
	}
	what := "Where"
	if k == control.CustomCols {
		what = "Columns"
	}
	return []string{"ID", "Table", what, "DB", "Sync"}, rows, out
}

// scopeText says where s applies; all when everywhere.
func scopeText(s control.Scoped, all string) string {
	if sc := s.Scope(); sc != "" {
		return sc
	}
	if all == "" {
		return "every receiver"
	}
	return all
}
