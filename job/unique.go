package job

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/sinks"
)

// Unique clashes (conflict type unique_clash). Two sources may each write a row of a
// different key with the same values in another unique index of the table (two users
// signing up with one e-mail address on two dbs): applying both everywhere would violate the
// index. On a table with such indexes, when a batch has winners on several sources, each
// of them first reports, for the keys it wins, the values of those indexes (on its read
// session, as it will send the rows); rows of different keys from different sources with
// equal values clash. The strategy for unique_clash (the sync's by default) picks the
// source whose row stays; the other rows are deleted everywhere, their own source too,
// and logged with their full row (JSON). skip and abort leave every row of the clash
// where it is (applied nowhere), logged. Rows of one source never clash (its own index
// holds them apart). Only rows of the same batch are compared: a clash between batches of
// a large backlog fails the receiver as any refused row does (on_error), and is resolved
// by a later run, when both rows are pending in one batch.

// uniqueRow is one winner's row as the clash check reads it.
type uniqueRow struct {
	key    string   // COPY text of the key
	winner int      // member index
	vals   []string // per unique index, its values as text; "" when one is NULL
	row    string   // JSON
}

// uniqueClashes finds and resolves the clashes among the winners of keys (see above); it
// returns the conflicts to log.
func (r *runner) uniqueClashes(ctx context.Context, t *table, keys map[string]*keyState) ([]control.Conflict, error) {
	if len(t.desc.Uniques) == 0 {
		return nil, nil
	}
	send := map[int][]string{}
	for k, ks := range keys {
		if ks.winner >= 0 && !ks.built && ks.recv != 0 {
			send[ks.winner] = append(send[ks.winner], k)
		}
	}
	if len(send) < 2 {
		return nil, nil
	}
	var winners []*member
	for idx := range send {
		winners = append(winners, r.members[idx])
	}
	rows := make([][]uniqueRow, len(r.members))
	errs := r.each(winners, func(w *member) error {
		if err := r.shipKeys(ctx, w, t, send[w.idx], !w.tx); err != nil {
			return err
		}
		var err error
		rows[w.idx], err = r.readUniques(ctx, w, t)
		return err
	})
	for _, w := range winners {
		if errs[w.idx] != nil {
			return nil, fmt.Errorf("db %s: reading the unique values of %s: %w", w.name, t.name, errs[w.idx])
		}
	}
	// Group by index and values; a group with rows of several winners clashes.
	type group struct{ rows []uniqueRow }
	groups := map[string]*group{}
	var order []string
	for _, w := range winners {
		for _, ur := range rows[w.idx] {
			for i, v := range ur.vals {
				if v == "" {
					continue
				}
				g := fmt.Sprintf("%d\x00%s", i, v)
				if groups[g] == nil {
					groups[g] = &group{}
					order = append(order, g)
				}
				groups[g].rows = append(groups[g].rows, ur)
			}
		}
	}
	slices.Sort(order)
	st := r.strategies.For(conflict.TypeUniqueClash)
	var out []control.Conflict
	done := map[string]bool{} // keys already deleted or left out by a clash
	for _, g := range order {
		rs := groups[g].rows
		var changes []conflict.Change
		for _, ur := range rs {
			if done[ur.key] || keys[ur.key] == nil {
				continue
			}
			db := r.members[ur.winner].name
			if slices.ContainsFunc(changes, func(c conflict.Change) bool { return c.DB == db }) {
				continue
			}
			ks := keys[ur.key]
			var at int64
			for _, ch := range ks.changes {
				if ch.DB == db {
					at = ch.At
				}
			}
			changes = append(changes, conflict.Change{DB: db, At: at})
		}
		if len(changes) < 2 {
			continue
		}
		win := st.Decide(changes).Winner
		var dbs []string
		for _, c := range changes {
			dbs = append(dbs, c.DB)
		}
		slices.Sort(dbs)
		for _, ur := range rs {
			db := r.members[ur.winner].name
			if done[ur.key] || keys[ur.key] == nil || db == win {
				continue
			}
			ks := keys[ur.key]
			done[ur.key] = true
			c := control.Conflict{Sync: r.sync.Name, Table: t.name, Key: keyText(t, ur.key), Type: conflict.TypeUniqueClash,
				DBs: dbs, Winner: win, Strategy: st.String(), Resolution: "deleted", Row: ur.row}
			if win == "" {
				// skip, abort: the row is applied nowhere and stays on its source.
				c.Resolution = "skipped"
				ks.winner, ks.recv = -1, 0
				out = append(out, c)
				continue
			}
			// Deleted everywhere, on its own source too: no db sends it.
			ks.dropRow, ks.recv = true, 0
			for _, m := range r.members {
				if m.alive() && r.receives(m) {
					ks.recv |= bit(m.idx)
				}
			}
			out = append(out, c)
		}
		if win == "" {
			// The winners' rows of the clash stay where they are too.
			for _, ur := range rs {
				if ks := keys[ur.key]; ks != nil && !done[ur.key] {
					done[ur.key] = true
					ks.winner, ks.recv = -1, 0
					out = append(out, control.Conflict{Sync: r.sync.Name, Table: t.name, Key: keyText(t, ur.key), Type: conflict.TypeUniqueClash,
						DBs: dbs, Strategy: st.String(), Resolution: "skipped", Row: ur.row})
				}
			}
		}
	}
	return out, nil
}

// readUniques reads, on the session shipKeys readied, the unique index values and the row
// of each key it shipped.
func (r *runner) readUniques(ctx context.Context, w *member, t *table) ([]uniqueRow, error) {
	rc := w.wconn
	sel := []string{catalog.QuoteCols("t.", t.keyCols)}
	for _, u := range t.desc.Uniques {
		var nulls []string
		for _, c := range u {
			nulls = append(nulls, "t."+catalog.QuoteCols("", []string{c})+" IS NULL")
		}
		sel = append(sel, fmt.Sprintf(`CASE WHEN %s THEN NULL ELSE ROW(%s)::text END`, strings.Join(nulls, " OR "), catalog.QuoteCols("t.", u)))
	}
	sel = append(sel, "row_to_json(t)::text")
	sql := fmt.Sprintf(`COPY (SELECT %s FROM %s w JOIN %s t ON %s) TO STDOUT`, strings.Join(sel, ", "), w.wkeys, t.filtered(), catalog.KeyJoin("w", "t", t.keyCols))
	nk, nu := len(t.keyCols), len(t.desc.Uniques)
	var out []uniqueRow
	lw := sinks.NewLineWriter(func(line []byte) error {
		f := bytes.Split(line, []byte{'\t'})
		if len(f) != nk+nu+1 {
			return fmt.Errorf("unexpected row with %d fields", len(f))
		}
		ur := uniqueRow{key: string(bytes.Join(f[:nk], []byte{'\t'})), winner: w.idx}
		if row, err := conflict.DecodeCopyLine(string(f[nk+nu])); err == nil && len(row) == 1 {
			ur.row = row[0].Text
		}
		for _, v := range f[nk : nk+nu] {
			if string(v) == nullText {
				ur.vals = append(ur.vals, "")
			} else {
				ur.vals = append(ur.vals, string(v))
			}
		}
		out = append(out, ur)
		return nil
	})
	if _, err := rc.PgConn().CopyTo(ctx, lw, sql); err != nil {
		return nil, err
	}
	return out, lw.Err()
}
