package job

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/internal/control"
)

// Orphans (on_orphan=delete, the default). Rows are applied without foreign-key checks, so
// a parent row deleted on one source while another source inserted (or re-pointed) a child
// row referencing it leaves that child without its parent on every db once the run has
// applied both. After a delta run has applied every table, each PostgreSQL db that received
// everything deletes, for each foreign key between two tables of the sync, the child rows
// whose parent is gone (as ON DELETE CASCADE would have), without capturing the deletes
// (every db that took part does the same), and each such row is logged as a conflict of
// type orphan with its full row. A db that missed the run (down, failed as a receiver) is
// checked by the next run that reaches it. Targets with a customname for either table, and
// targets that are not PostgreSQL, are left alone.

// deleteOrphans deletes and logs the orphan child rows (see above).
func (r *runner) deleteOrphans(ctx context.Context) error {
	if r.sync.OnOrphan == control.OnOrphanKeep || len(r.tables) < 2 {
		return nil
	}
	var dbs []*member
	for _, m := range r.members {
		if m.receiving() && m.conn != nil && m.target == nil {
			dbs = append(dbs, m)
		}
	}
	if len(dbs) == 0 {
		return nil
	}
	byName := map[catalog.QualName]*table{}
	var names []catalog.QualName
	for _, t := range r.tables {
		qn := catalog.QualName{Schema: t.desc.Schema, Name: t.desc.Name}
		byName[qn] = t
		names = append(names, qn)
	}
	var fks []catalog.ForeignKey
	if fk := r.fksOf(dbs[0]); fk != nil && slices.Equal(fk.names, names) {
		fks = fk.fks // read with the tables' descriptions
	} else {
		var err error
		if fks, err = catalog.ForeignKeys(ctx, dbs[0].conn, names); err != nil {
			return fmt.Errorf("db %s: %w", dbs[0].name, err)
		}
	}
	var out []control.Conflict
	for _, fk := range fks {
		child, parent := byName[fk.Child], byName[fk.Parent]
		if child == nil || parent == nil || child == parent {
			continue
		}
		found := map[string]*control.Conflict{}
		var order []string
		for _, m := range dbs {
			if child.customOn(m) || parent.customOn(m) {
				continue
			}
			rows, err := r.deleteOrphansOn(ctx, m, child, parent, fk)
			if err != nil {
				return fmt.Errorf("db %s: deleting the rows of %s whose %s row is gone (%s): %w", m.name, child.name, parent.name, fk.Name, err)
			}
			for _, o := range rows {
				c := found[o.key]
				if c == nil {
					c = &control.Conflict{Sync: r.sync.Name, Table: child.name, Key: o.key, Type: conflict.TypeOrphan,
						Strategy: "on_orphan=" + control.OnOrphanDelete, Resolution: "deleted", Row: o.row}
					found[o.key] = c
					order = append(order, o.key)
				}
				c.DBs = append(c.DBs, m.name)
			}
		}
		for _, k := range order {
			out = append(out, *found[k])
		}
	}
	if len(out) == 0 {
		return nil
	}
	for _, c := range out {
		r.logger.Warn("orphan row deleted: its parent row is gone (on_orphan=delete)", slog.String("table", c.Table),
			slog.String("key", c.Key), slog.String("dbs", strings.Join(c.DBs, ",")))
		r.res.add(c.Table, Stats{Conflicts: 1})
	}
	r.res.addConflicts(out)
	return r.recordConflicts(ctx, out)
}

// orphan is one deleted child row: its key (col=value, ...) and its row (JSON).
type orphan struct{ key, row string }

// deleteOrphansOn deletes on m the rows of child whose parent row (by fk) is gone.
func (r *runner) deleteOrphansOn(ctx context.Context, m *member, child, parent *table, fk catalog.ForeignKey) ([]orphan, error) {
	var notNull, match, keys []string
	for i, c := range fk.ChildCols {
		notNull = append(notNull, "c."+catalog.QuoteCols("", []string{c})+" IS NOT NULL")
		match = append(match, "p."+catalog.QuoteCols("", []string{fk.ParentCols[i]})+" = c."+catalog.QuoteCols("", []string{c}))
	}
	for _, k := range child.keyCols {
		keys = append(keys, fmt.Sprintf(`%s || '=' || coalesce(c.%s::text, 'NULL')`, quoteLit(k), catalog.QuoteCols("", []string{k})))
	}
	sql := fmt.Sprintf(`DELETE FROM %s c WHERE %s AND NOT EXISTS (SELECT 1 FROM %s p WHERE %s) RETURNING %s, row_to_json(c)::text`,
		child.ident, strings.Join(notNull, " AND "), parent.ident, strings.Join(match, " AND "), strings.Join(keys, " || ', ' || "))
	tx, err := m.conn.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	rows, err := tx.Query(ctx, sql)
	if err != nil {
		return nil, err
	}
	var out []orphan
	for rows.Next() {
		var o orphan
		if err := rows.Scan(&o.key, &o.row); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, o)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, tx.Commit(ctx)
}

func quoteLit(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// customOn reports whether m writes t under a customname.
func (t *table) customOn(m *member) bool { return m.idx < len(t.custom) && t.custom[m.idx] != nil }

// fksOf is what checkSchemas read of the foreign keys on db m, or nil.
func (r *runner) fksOf(m *member) *fkeys {
	if m.idx < len(r.fks) {
		return r.fks[m.idx]
	}
	return nil
}
