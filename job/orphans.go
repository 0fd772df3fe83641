package job

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/capture"
	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/sinks"
)

// Orphans (on_orphan=delete, the default; restore; keep). Rows are applied without
// foreign-key checks, so a parent row deleted on one source while another source inserted
// (or re-pointed) a child row referencing it leaves that child without its parent on every
// db once the run has applied both. After a delta run has applied every table, each
// PostgreSQL db that received everything looks, for each foreign key between two tables
// of the sync, for child rows whose parent is gone:
//   - delete: it deletes them (as ON DELETE CASCADE would have), without capturing the
//     deletes (every db that took part does the same), and each such row is logged as a
//     conflict of type orphan with its full row.
//   - restore: it brings the parent back. Before anything is applied, each db saves, in a
//     temp table of its session, its version of the parent rows some source's pending
//     changes delete (saveParents); after the run, a parent that orphans reference on some
//     db is inserted again, from the first db (in the dbgroup's order) that saved it, on
//     every db lacking it (not captured either), and logged as an orphan conflict with the
//     parent's row. An orphan whose parent no db saved (its parent was deleted by an
//     earlier run) is deleted as under delete.
//
// A db that missed the run (down, failed as a receiver) is checked by the next run that
// reaches it. Targets with a customname for either table, and targets that are not
// PostgreSQL, are left alone.

// orphanLink is a foreign key between two tables of the sync.
type orphanLink struct {
	fk            catalog.ForeignKey
	child, parent *table
}

// orphanDBs are the dbs the orphan check runs on: PostgreSQL dbs receiving in this run.
func (r *runner) orphanDBs() []*member {
	var dbs []*member
	for _, m := range r.members {
		if m.receiving() && m.conn != nil && m.target == nil {
			dbs = append(dbs, m)
		}
	}
	return dbs
}

// orphanScope returns the dbs and the foreign keys an orphan step works on when on: none
// when the sync has fewer than two tables or no PostgreSQL db receives.
func (r *runner) orphanScope(ctx context.Context, on bool) ([]*member, []orphanLink, error) {
	if !on || len(r.tables) < 2 {
		return nil, nil, nil
	}
	dbs := r.orphanDBs()
	if len(dbs) == 0 {
		return nil, nil, nil
	}
	links, err := r.orphanLinks(ctx, dbs)
	return dbs, links, err
}

// orphanLinks reads (once per run, on the first of dbs) the foreign keys between two
// different tables of the sync.
func (r *runner) orphanLinks(ctx context.Context, dbs []*member) ([]orphanLink, error) {
	if r.linksRead {
		return r.links, nil
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
			return nil, fmt.Errorf("db %s: %w", dbs[0].name, err)
		}
	}
	for _, fk := range fks {
		child, parent := byName[fk.Child], byName[fk.Parent]
		if child == nil || parent == nil || child == parent {
			continue
		}
		r.links = append(r.links, orphanLink{fk: fk, child: child, parent: parent})
	}
	r.linksRead = true
	return r.links, nil
}

// savedParents is the temp table in which each db saved its version of a parent table's
// rows that pending changes delete (on_orphan=restore).
func savedParents(i int) string { return fmt.Sprintf("pg_temp.ibex_parents_%d", i) }

// saveParents (on_orphan=restore), before anything is applied: for each table that a
// foreign key of the sync references, the keys some live source's pending changes delete
// are read, and every db saves its rows of those keys in a temp table of its session.
func (r *runner) saveParents(ctx context.Context) error {
	dbs, links, err := r.orphanScope(ctx, r.sync.OnOrphan == control.OnOrphanRestore)
	if err != nil || len(links) == 0 {
		return err
	}
	r.saved = map[*table]string{}
	for _, l := range links {
		p := l.parent
		if _, done := r.saved[p]; done {
			continue
		}
		keys, err := r.pendingDeletes(ctx, p)
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			r.saved[p] = ""
			continue
		}
		name := savedParents(len(r.saved))
		r.saved[p] = name
		keyCols := catalog.QuoteCols("", p.keyCols)
		errs := r.each(dbs, func(m *member) error {
			if p.customOn(m) {
				return nil
			}
			if err := loadTempKeys(ctx, m.conn, "DROP TABLE IF EXISTS "+name, "ibex_pk", keyCols, p.ident, keys); err != nil {
				return err
			}
			_, err := m.conn.Exec(ctx, fmt.Sprintf(`CREATE TEMP TABLE %s AS SELECT %s FROM %s t JOIN pg_temp.ibex_pk k ON %s`,
				name, catalog.QuoteCols("t.", p.cols), p.ident, catalog.KeyJoin("k", "t", p.keyCols)))
			return err
		})
		for _, m := range dbs {
			if errs[m.idx] != nil {
				return fmt.Errorf("db %s: saving the rows of %s that pending changes delete (on_orphan=restore): %w", m.name, p.name, errs[m.idx])
			}
		}
		r.logger.DebugContext(ctx, "parent rows saved (on_orphan=restore)", slog.String("table", p.name), slog.Int("keys", len(keys)))
	}
	return nil
}

// pendingDeletes reads the keys of t that the pending changes of the live sources delete
// (COPY text, each once).
func (r *runner) pendingDeletes(ctx context.Context, t *table) ([]string, error) {
	seen := map[string]bool{}
	var keys []string
	for _, a := range r.alive() {
		if !a.isSource() {
			continue
		}
		sql := fmt.Sprintf(`COPY (SELECT DISTINCT %s FROM %s c WHERE c.%s = '%s') TO STDOUT`,
			catalog.QuoteCols("c.", t.keyCols), t.change, catalog.QuoteCols("", []string{capture.OpCol}), capture.OpDelete)
		lw := sinks.NewLineWriter(func(line []byte) error {
			if k := string(line); !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
			return nil
		})
		if _, err := a.conn.PgConn().CopyTo(ctx, lw, sql); err != nil {
			return nil, fmt.Errorf("db %s: reading the deletes pending for %s: %w", a.name, t.name, err)
		}
		if err := lw.Err(); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

// fixOrphans deletes, or restores the parents of, the orphan child rows (see above), and
// logs them.
func (r *runner) fixOrphans(ctx context.Context) error {
	dbs, links, err := r.orphanScope(ctx, r.sync.OnOrphan != control.OnOrphanKeep)
	if err != nil || len(links) == 0 {
		return err
	}
	strategy := "on_orphan=" + r.sync.OnOrphan
	var out []control.Conflict
	for _, l := range links {
		if r.sync.OnOrphan == control.OnOrphanRestore && r.saved[l.parent] != "" {
			restored, err := r.restoreParents(ctx, dbs, l)
			if err != nil {
				return err
			}
			out = append(out, restored...)
		}
		found := map[string]*control.Conflict{}
		var order []string
		for _, m := range dbs {
			if l.child.customOn(m) || l.parent.customOn(m) {
				continue
			}
			rows, err := r.deleteOrphansOn(ctx, m, l)
			if err != nil {
				return fmt.Errorf("db %s: deleting the rows of %s whose %s row is gone (%s): %w", m.name, l.child.name, l.parent.name, l.fk.Name, err)
			}
			for _, o := range rows {
				c := found[o.key]
				if c == nil {
					c = &control.Conflict{Sync: r.sync.Name, Table: l.child.name, Key: o.key, Type: conflict.TypeOrphan,
						Strategy: strategy, Resolution: "deleted", Row: o.row}
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
		msg := "orphan row deleted: its parent row is gone (" + strategy + ")"
		if c.Resolution == resolutionRestored {
			msg = "parent row restored: rows referencing it were left without it (" + strategy + ")"
		}
		r.logger.Warn(msg, slog.String("table", c.Table), slog.String("key", c.Key), slog.String("dbs", strings.Join(c.DBs, ",")))
		r.res.add(c.Table, Stats{Conflicts: 1})
	}
	r.res.addConflicts(out)
	return r.recordConflicts(ctx, out)
}

// resolutionRestored is the conflict log's resolution of a parent row brought back.
const resolutionRestored = "parent restored"

// orphan is one deleted child row: its key (col=value, ...) and its row (JSON).
type orphan struct{ key, row string }

// orphanCond is the condition on child rows c that reference no row of l's parent.
func orphanCond(l orphanLink) string {
	var notNull, match []string
	for i, c := range l.fk.ChildCols {
		notNull = append(notNull, "c."+catalog.QuoteCols("", []string{c})+" IS NOT NULL")
		match = append(match, "p."+catalog.QuoteCols("", []string{l.fk.ParentCols[i]})+" = c."+catalog.QuoteCols("", []string{c}))
	}
	return fmt.Sprintf(`%s AND NOT EXISTS (SELECT 1 FROM %s p WHERE %s)`, strings.Join(notNull, " AND "), l.parent.ident, strings.Join(match, " AND "))
}

// keyTextSQL is an SQL expression printing the key of a row of t (alias a) as keyText does.
func keyTextSQL(t *table, a string) string {
	var keys []string
	for _, k := range t.keyCols {
		keys = append(keys, fmt.Sprintf(`%s || '=' || coalesce(%s.%s::text, 'NULL')`, quoteLit(k), a, catalog.QuoteCols("", []string{k})))
	}
	return strings.Join(keys, " || ', ' || ")
}

// deleteOrphansOn deletes on m the rows of l's child whose parent row is gone.
func (r *runner) deleteOrphansOn(ctx context.Context, m *member, l orphanLink) ([]orphan, error) {
	sql := fmt.Sprintf(`DELETE FROM %s c WHERE %s RETURNING %s, row_to_json(c)::text`, l.child.ident, orphanCond(l), keyTextSQL(l.child, "c"))
	return r.orphanRows(ctx, m, func(tx pgx.Tx) (string, error) { return sql, nil })
}

// orphanRows runs, in a transaction on m, the statement sql returns (after what it does
// first in the transaction), which returns key text and row JSON, and collects them.
func (r *runner) orphanRows(ctx context.Context, m *member, sql func(tx pgx.Tx) (string, error)) ([]orphan, error) {
	tx, err := m.conn.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	stmt, err := sql(tx)
	if err != nil {
		return nil, err
	}
	rows, err := tx.Query(ctx, stmt)
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

// restoreParents (on_orphan=restore) brings back, on every db of dbs lacking it, each row of
// l's parent that orphans reference on some db and that some db saved before the run.
func (r *runner) restoreParents(ctx context.Context, dbs []*member, l orphanLink) ([]control.Conflict, error) {
	p, saved := l.parent, r.saved[l.parent]
	var use []*member
	for _, m := range dbs {
		if !l.child.customOn(m) && !p.customOn(m) {
			use = append(use, m)
		}
	}
	// The references that orphans hold, on every db.
	childCols := catalog.QuoteCols("c.", l.fk.ChildCols)
	refs := make([][]string, len(r.members))
	errs := r.each(use, func(m *member) error {
		lw := sinks.NewLineWriter(func(line []byte) error { refs[m.idx] = append(refs[m.idx], string(line)); return nil })
		if _, err := m.conn.PgConn().CopyTo(ctx, lw, fmt.Sprintf(`COPY (SELECT DISTINCT %s FROM %s c WHERE %s) TO STDOUT`, childCols, l.child.ident, orphanCond(l))); err != nil {
			return err
		}
		return lw.Err()
	})
	seen := map[string]bool{}
	var missing []string
	for _, m := range use {
		if errs[m.idx] != nil {
			return nil, fmt.Errorf("db %s: reading the rows of %s whose %s row is gone (%s): %w", m.name, l.child.name, p.name, l.fk.Name, errs[m.idx])
		}
		for _, ref := range refs[m.idx] {
			if !seen[ref] {
				seen[ref] = true
				missing = append(missing, ref)
			}
		}
	}
	if len(missing) == 0 {
		return nil, nil
	}
	// The saved rows they reference, from the first db (in the dbgroup's order) holding
	// each; keyed by their key columns.
	parentCols := catalog.QuoteCols("", l.fk.ParentCols)
	var rows []string
	have := map[string]bool{}
	for _, m := range use {
		var got []string
		if err := loadTempKeys(ctx, m.conn, "", "ibex_ref", parentCols, p.ident, missing); err != nil {
			return nil, fmt.Errorf("db %s: %w", m.name, err)
		}
		lw := sinks.NewLineWriter(func(line []byte) error { got = append(got, string(line)); return nil })
		if _, err := m.conn.PgConn().CopyTo(ctx, lw, fmt.Sprintf(`COPY (SELECT %s FROM %s s WHERE EXISTS (SELECT 1 FROM pg_temp.ibex_ref x WHERE %s)) TO STDOUT`,
			catalog.QuoteCols("s.", p.cols), saved, catalog.KeyJoin("x", "s", l.fk.ParentCols))); err != nil {
			return nil, fmt.Errorf("db %s: reading the saved rows of %s: %w", m.name, p.name, err)
		}
		if err := lw.Err(); err != nil {
			return nil, err
		}
		nk := len(p.keyCols)
		for _, line := range got {
			f := bytes.SplitN([]byte(line), []byte{'\t'}, nk+1)
			k := string(bytes.Join(f[:min(nk, len(f))], []byte{'\t'}))
			if !have[k] {
				have[k] = true
				rows = append(rows, line)
			}
		}
	}
	if len(rows) == 0 {
		return nil, nil
	}
	// Insert them where they are missing.
	cols := catalog.QuoteCols("", p.cols)
	found := map[string]*control.Conflict{}
	var order []string
	for _, m := range use {
		restored, err := r.orphanRows(ctx, m, func(tx pgx.Tx) (string, error) {
			if _, err := tx.Exec(ctx, fmt.Sprintf(`CREATE TEMP TABLE ibex_restore ON COMMIT DROP AS SELECT %s FROM %s LIMIT 0`, cols, p.ident)); err != nil {
				return "", err
			}
			if err := copyKeys(ctx, m.conn, "pg_temp.ibex_restore", cols, rows); err != nil {
				return "", err
			}
			return fmt.Sprintf(`INSERT INTO %s AS t (%s) SELECT %s FROM pg_temp.ibex_restore n WHERE NOT EXISTS (SELECT 1 FROM %s o WHERE %s) RETURNING %s, row_to_json(t)::text`,
				p.ident, cols, catalog.QuoteCols("n.", p.cols), p.ident, catalog.KeyJoin("o", "n", p.keyCols), keyTextSQL(p, "t")), nil
		})
		if err != nil {
			return nil, fmt.Errorf("db %s: restoring rows of %s that orphans of %s reference (%s): %w", m.name, p.name, l.child.name, l.fk.Name, err)
		}
		for _, o := range restored {
			c := found[o.key]
			if c == nil {
				c = &control.Conflict{Sync: r.sync.Name, Table: p.name, Key: o.key, Type: conflict.TypeOrphan,
					Strategy: "on_orphan=" + control.OnOrphanRestore, Resolution: resolutionRestored, Row: o.row}
				found[o.key] = c
				order = append(order, o.key)
			}
			c.DBs = append(c.DBs, m.name)
		}
	}
	out := make([]control.Conflict, 0, len(order))
	for _, k := range order {
		out = append(out, *found[k])
	}
	return out, nil
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
