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

// addCustomName is 'ibex add customname TABLE NEWNAME [db=DB] [sync=SYNC]': targets write
// TABLE's rows into NEWNAME. The syncs it applies to are validated in the same
// transaction (the table must exist on those targets, with the same columns), so a
// customname that cannot work is refused and nothing changes.
func (a *app) addCustomName(ctx context.Context, store *control.Store, p kv) error {
	db, _ := p.take("db")
	sync, _ := p.take("sync")
	if rest := p.rest(); len(rest) > 0 {
		return usageErr("add customname: unknown setting %q (use db= or sync=)", rest[0])
	}
	if len(p.words) != 2 {
		return usageErr("add customname: give the table and its name on the targets: ibex add customname TABLE NEWNAME [db=DB] [sync=SYNC]")
	}
	tn, err := catalog.ParseName(p.words[0])
	if err != nil {
		return usageErr("add customname: %v", err)
	}
	nn, err := catalog.ParseName(p.words[1])
	if err != nil {
		return usageErr("add customname: %v", err)
	}
	c := &control.CustomName{Table: tn.String(), Schema: nn.Schema, Name: nn.Name, DB: db, Sync: sync}
	err = store.InTx(ctx, func(q control.Querier) error {
		if db != "" {
			if _, err := control.GetDB(ctx, q, db); err != nil {
				return err
			}
		}
		if sync != "" {
			if _, err := control.GetSync(ctx, q, sync); err != nil {
				return err
			}
		}
		if c.ID, err = control.AddCustomName(ctx, q, c); err != nil {
			return err
		}
		return a.revalidateCustomName(ctx, store, q, c)
	})
	if err != nil {
		return err
	}
	where := "every target"
	if db != "" {
		where = "db " + db
	}
	in := "every sync"
	if sync != "" {
		in = "sync " + sync
	}
	a.say("Added customname %d: %s is written as %s on %s (%s)", c.ID, c.Table, c.QualName(), where, in)
	return nil
}

// revalidateCustomName validates the syncs a customname applies to: those whose herd
// holds its table (only its sync, when it names one).
func (a *app) revalidateCustomName(ctx context.Context, store *control.Store, q control.Querier, c *control.CustomName) error {
	syncs, err := control.Syncs(ctx, q)
	if err != nil {
		return err
	}
	herds, err := control.Herds(ctx, q)
	if err != nil {
		return err
	}
	for _, s := range syncs {
		if c.Sync != "" && s.Name != c.Sync {
			continue
		}
		holds := slices.ContainsFunc(herds, func(h control.Herd) bool { return h.Name == s.Herd && slices.Contains(h.Tables, c.Table) })
		if !holds {
			continue
		}
		if _, err := job.ValidateWith(ctx, store, q, s.Name, a.logger, job.ValidateOptions{MissingTargetsOK: true}); err != nil {
			return syncErr(s.Name, err)
		}
	}
	return nil
}

// removeCustomNames is 'ibex remove customname ID ...'.
func (a *app) removeCustomNames(ctx context.Context, store *control.Store, ids []string) error {
	return store.InTx(ctx, func(q control.Querier) error {
		for _, s := range ids {
			id, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return usageErr("remove customname: give its id (see 'ibex list customnames'), not %q", s)
			}
			if err := control.RemoveCustomName(ctx, q, id); err != nil {
				return err
			}
			a.say("Removed customname %d", id)
		}
		return nil
	})
}

// listCustomNames is 'ibex list customnames [TABLE ...]'.
func listCustomNames(cs []control.CustomName, names []string) ([]string, [][]string, []control.CustomName) {
	any := func(s string) string {
		if s == "" {
			return "(any)"
		}
		return s
	}
	var rows [][]string
	var out []control.CustomName
	for _, c := range cs {
		if want(names, c.Table) {
			out = append(out, c)
			rows = append(rows, []string{fmt.Sprint(c.ID), c.Table, c.QualName(), any(c.DB), any(c.Sync)})
		}
	}
	return []string{"ID", "Table", "Written as", "DB", "Sync"}, rows, out
}

// customScope says where a customname applies, for listings: "" everywhere.
func customScope(c control.CustomName) string {
	var w []string
	if c.DB != "" {
		w = append(w, "db "+c.DB)
	}
	if c.Sync != "" {
		w = append(w, "sync "+c.Sync)
	}
	if len(w) == 0 {
		return ""
	}
	return " (" + strings.Join(w, ", ") + ")"
}
