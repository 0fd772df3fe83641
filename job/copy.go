package job

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/ibexrepl/ibex/internal/control"
)

// runFullcopy replaces every fullcopy db's tables with the source's, table by table.
func (r *runner) runFullcopy(ctx context.Context) error {
	var src *member
	var dsts []*member
	for _, m := range r.members {
		switch {
		case m.role == control.RoleSource:
			src = m
		case m.role == control.RoleFullcopy && m.alive():
			dsts = append(dsts, m)
		}
	}
	if !src.alive() {
		return fmt.Errorf("the source db %s of fullcopy sync %s is unreachable: %v", src.name, r.sync.Name, src.dead)
	}
	return r.copyTables(ctx, src, dsts, false)
}

// runOnetimecopy copies every table from the first source to the target dbs (mode 2:
// only into targets whose table is empty), then lets the run go on with deltas.
func (r *runner) runOnetimecopy(ctx context.Context) error {
	var src *member
	var dsts []*member
	for _, m := range r.members {
		if m.role == control.RoleSource && src == nil {
			src = m
		}
		if m.role == control.RoleTarget && m.alive() {
			dsts = append(dsts, m)
		}
	}
	if !src.alive() {
		return fmt.Errorf("onetimecopy: the first source db %s of sync %s is unreachable: %v", src.name, r.sync.Name, src.dead)
	}
	if err := r.copyTables(ctx, src, dsts, r.sync.Onetimecopy == 2); err != nil {
		return err
	}
	if err := control.SetOnetimecopy(ctx, r.store.Q(), r.sync.Name, 0); err != nil {
		return fmt.Errorf("clearing onetimecopy of sync %s: %w", r.sync.Name, err)
	}
	r.logger.InfoContext(ctx, "onetimecopy done", slog.String("from", src.name))
	return nil
}

// copyTables copies whole tables from src to dsts, each table in one transaction per
// destination, read from one repeatable-read snapshot of the source.
func (r *runner) copyTables(ctx context.Context, src *member, dsts []*member, onlyEmpty bool) error {
	if _, err := src.conn.Exec(ctx, `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`); err != nil {
		return fmt.Errorf("db %s: %w", src.name, err)
	}
	defer func() { _, _ = src.conn.Exec(context.WithoutCancel(ctx), `COMMIT`) }()
	for _, t := range r.tables {
		var recvs []*member
		var st Stats
		for _, m := range dsts {
			if !m.alive() {
				continue
			}
			if err := r.begin(ctx, m); err != nil {
				r.drop(m, fmt.Errorf("db %s: %w", m.name, err))
				continue
			}
			if onlyEmpty {
				var has bool
				if err := m.conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+t.ident+`)`).Scan(&has); err != nil {
					r.rollback(m)
					r.drop(m, fmt.Errorf("db %s: %w", m.name, err))
					continue
				}
				if has {
					r.rollback(m)
					continue
				}
			}
			tag, err := m.conn.Exec(ctx, `DELETE FROM `+t.ident)
			if err != nil {
				r.rollback(m)
				r.drop(m, fmt.Errorf("db %s: emptying %s: %w", m.name, t.name, err))
				continue
			}
			st.Deletes += tag.RowsAffected()
			recvs = append(recvs, m)
		}
		if len(recvs) == 0 {
			continue
		}
		sql := fmt.Sprintf(`COPY (SELECT %s FROM ONLY %s) TO STDOUT`, quoteCols("", t.cols), t.ident)
		n, rerrs, serrs := r.fanout(ctx, t, 0, []sender{{m: src, conn: src.conn, sql: sql}}, recvs)
		if serrs != nil {
			r.rollbackAll()
			return fmt.Errorf("db %s: reading %s: %w", src.name, t.name, serrs[src.idx])
		}
		for _, m := range recvs {
			if rerrs[m.idx] != nil {
				r.rollback(m)
				r.drop(m, fmt.Errorf("db %s: copying %s: %w", m.name, t.name, rerrs[m.idx]))
				continue
			}
			if err := r.commit(ctx, m); err != nil {
				r.drop(m, fmt.Errorf("db %s: committing %s: %w", m.name, t.name, err))
				continue
			}
			st.Inserts += n[m.idx]
		}
		r.res.add(t.name, st)
		r.logger.InfoContext(ctx, "table copied", slog.String("table", t.name), slog.String("from", src.name), slog.Int("to", len(recvs)), slog.Int64("rows", st.Inserts))
	}
	return nil
}
