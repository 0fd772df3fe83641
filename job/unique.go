package job

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/ibexrepl/ibex/internal/capture"
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
// holds them apart).
//
// A row may also clash with a row a receiver already holds under another key that is not
// in the batch: a row of the same backlog pending in another batch (a large backlog), or
// one the receiver has for another reason. Each PostgreSQL receiver is therefore asked,
// for the batch's winning rows, which of its rows of other keys hold equal values in a
// unique index (one indexed join per index); each such row competes with the incoming row
// as a clash: its change is its pending change on the source that has it pending (the
// latest), else the receiver's, at time zero (it loses to any change under latest). If it
// loses, its key is added to the batch and deleted everywhere (its pending change, in a
// later batch, then finds nothing to send); if the incoming row loses, it is deleted
// everywhere as above. When the held key's pending change is on the incoming row's own
// source (it deleted the held row, or changed its values, and wrote the incoming one),
// there is no clash: that source's version of the held key comes along in the batch. Not
// for tables with counters (a key pulled into the batch would add its deltas twice).

// uniqueRow is one winner's row as the clash check reads it.
type uniqueRow struct {
	key    string   // COPY text of the key
	winner int      // member index
	vals   []string // per unique index, its values (COPY text fields); "" when one is NULL
	row    string   // JSON
}

// uniqueClashes finds and resolves the clashes among the winners of keys (see above); it
// returns the conflicts to log, and adds the rows it parks (unique_clash_loser=park) to
// parked, by the index of the member they came from.
func (r *runner) uniqueClashes(ctx context.Context, t *table, keys map[string]*keyState, parked [][]control.Exception) ([]control.Conflict, error) {
	if len(t.desc.Uniques) == 0 {
		return nil, nil
	}
	send := map[int][]string{}
	for k, ks := range keys {
		if ks.winner >= 0 && !ks.built && ks.recv != 0 {
			send[ks.winner] = append(send[ks.winner], k)
		}
	}
	if len(send) == 0 {
		return nil, nil
	}
	var winners []*member
	for idx := range send {
		winners = append(winners, r.members[idx])
	}
	rows := make([][]uniqueRow, len(r.members))
	errs := r.each(winners, func(w *member) error {
		if _, err := r.shipKeys(ctx, w, t, send[w.idx], !w.tx, false); err != nil {
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
			if win == "" {
				// skip, abort: the row is applied nowhere and stays on its source.
				ks.winner, ks.recv = -1, 0
				out = append(out, r.clashSkipped(t, ur.key, ur.row, dbs, st))
				continue
			}
			out = append(out, r.loses(t, ur.key, ks, ur.winner, ur.row, win, dbs, st, parked))
		}
		if win == "" {
			// The winners' rows of the clash stay where they are too.
			for _, ur := range rs {
				if ks := keys[ur.key]; ks != nil && !done[ur.key] {
					done[ur.key] = true
					ks.winner, ks.recv = -1, 0
					out = append(out, r.clashSkipped(t, ur.key, ur.row, dbs, st))
				}
			}
		}
	}
	held, err := r.heldClashes(ctx, t, keys, rows, done, st, parked)
	return append(out, held...), err
}

// clashSkipped is the conflict logged for the row of key k of a clash that skip or abort
// leaves where it is.
func (r *runner) clashSkipped(t *table, k, row string, dbs []string, st conflict.Strategy) control.Conflict {
	return control.Conflict{Sync: r.sync.Name, Table: t.name, Key: keyText(t, k), Type: conflict.TypeUniqueClash,
		DBs: dbs, Strategy: st.String(), Resolution: "skipped", Row: row}
}

// loses applies the loss of a clash to the row of key k from db (member idx w): parked or
// deleted everywhere, its own source too; it returns the conflict to log.
func (r *runner) loses(t *table, k string, ks *keyState, w int, row, win string, dbs []string, st conflict.Strategy, parked [][]control.Exception) control.Conflict {
	db := r.members[w].name
	c := control.Conflict{Sync: r.sync.Name, Table: t.name, Key: keyText(t, k), Type: conflict.TypeUniqueClash,
		DBs: dbs, Winner: win, Strategy: st.String(), Resolution: "deleted", Row: row}
	if r.sync.UniqueClashLoser == control.UniqueLoserPark {
		c.Resolution = "parked"
		parked[w] = append(parked[w], control.Exception{Sync: r.sync.Name, Table: t.name, DB: db, Key: c.Key, Row: row,
			Error: fmt.Sprintf("unique_clash: its values in a unique index equal those of db %s's row (%s): parked, deleted everywhere", win, st.String())})
	}
	ks.dropRow, ks.recv = true, 0
	for _, m := range r.members {
		if m.alive() && r.receives(m) {
			ks.recv |= bit(m.idx)
		}
	}
	return c
}

// heldRow is a row a receiver holds under a key not in the batch, whose values in unique
// index idx equal those of an incoming row.
type heldRow struct {
	key  string // COPY text of its key
	idx  int
	vals string // the index's values, as uniqueRow.vals
	row  string // JSON
	db   int    // the receiver holding it
}

// heldClashes resolves the clashes of the batch's winning rows (rows, by winner) with rows
// receivers hold under keys not in the batch (see above); done are the keys already
// resolved by a clash. It returns the conflicts to log.
func (r *runner) heldClashes(ctx context.Context, t *table, keys map[string]*keyState, rows [][]uniqueRow, done map[string]bool, st conflict.Strategy, parked [][]control.Exception) ([]control.Conflict, error) {
	if len(t.rel.Counters) > 0 {
		// A key pulled into the batch would carry its counters' deltas twice.
		return nil, nil
	}
	// The incoming values, per index: values -> the incoming row.
	incoming := make([]map[string]uniqueRow, len(t.desc.Uniques))
	for i := range incoming {
		incoming[i] = map[string]uniqueRow{}
	}
	for _, rs := range rows {
		for _, ur := range rs {
			if done[ur.key] || keys[ur.key] == nil || keys[ur.key].recv == 0 {
				continue
			}
			for i, v := range ur.vals {
				if v != "" {
					incoming[i][v] = ur
				}
			}
		}
	}
	var recvs []*member
	for _, m := range r.alive() {
		if m.conn != nil && m.target == nil && r.receives(m) && !t.customOn(m) {
			recvs = append(recvs, m)
		}
	}
	var all []string
	for k := range keys {
		all = append(all, k)
	}
	slices.Sort(all)
	held := make([][]heldRow, len(r.members))
	errs := r.each(recvs, func(m *member) error {
		var err error
		held[m.idx], err = r.readHeld(ctx, m, t, all, incoming)
		return err
	})
	for _, m := range recvs {
		if errs[m.idx] != nil {
			return nil, fmt.Errorf("db %s: reading the rows of %s whose unique values equal incoming ones: %w", m.name, t.name, errs[m.idx])
		}
	}
	// One competitor per held key: the source with it pending (latest change), else the
	// first receiver holding it, at time zero.
	var heldKeys []string
	byKey := map[string]heldRow{}
	for _, m := range recvs {
		for _, h := range held[m.idx] {
			if _, ok := byKey[h.key]; !ok {
				heldKeys = append(heldKeys, h.key)
				byKey[h.key] = h
			}
		}
	}
	if len(heldKeys) == 0 {
		return nil, nil
	}
	slices.Sort(heldKeys)
	pending, err := r.pendingAt(ctx, t, heldKeys)
	if err != nil {
		return nil, err
	}
	var out []control.Conflict
	for _, hk := range heldKeys {
		h := byKey[hk]
		in, ok := incoming[h.idx][h.vals]
		if !ok || done[in.key] || done[hk] || keys[in.key] == nil {
			continue
		}
		ks := keys[in.key]
		var inAt int64
		inDB := r.members[in.winner].name
		for _, ch := range ks.changes {
			if ch.DB == inDB {
				inAt = ch.At
			}
		}
		hc := conflict.Change{DB: r.members[h.db].name}
		if p, ok := pending[hk]; ok {
			hc = p
		}
		done[in.key], done[hk] = true, true
		if hc.DB == inDB {
			// The incoming row's source changed the held key too (deleted it, or changed
			// its values): that change comes along in this batch, as it is there now (its
			// own batch resolves the key again later).
			w := r.memberByName(hc.DB)
			hs := &keyState{winner: w.idx, changes: []conflict.Change{hc}}
			for _, m := range r.members {
				if m.alive() && r.receives(m) && m != w {
					hs.recv |= bit(m.idx)
				}
			}
			keys[hk] = hs
			continue
		}
		changes := []conflict.Change{{DB: inDB, At: inAt}, hc}
		win := st.Decide(changes).Winner
		dbs := []string{inDB, hc.DB}
		slices.Sort(dbs)
		switch win {
		case "":
			// skip, abort: the incoming row is applied nowhere, the held one stays.
			ks.winner, ks.recv = -1, 0
			out = append(out, r.clashSkipped(t, in.key, in.row, dbs, st))
		case inDB:
			// The held row goes, everywhere: its key joins the batch.
			hs := &keyState{winner: r.memberByName(hc.DB).idx, changes: []conflict.Change{hc}}
			keys[hk] = hs
			out = append(out, r.loses(t, hk, hs, hs.winner, h.row, win, dbs, st, parked))
		default:
			out = append(out, r.loses(t, in.key, ks, in.winner, in.row, win, dbs, st, parked))
		}
	}
	return out, nil
}

// readHeld asks receiver m, on its read session, which of its rows of t under keys not in
// keys hold, in some unique index, values of incoming (per index: values -> row).
func (r *runner) readHeld(ctx context.Context, m *member, t *table, keys []string, incoming []map[string]uniqueRow) ([]heldRow, error) {
	if _, err := r.shipKeys(ctx, m, t, keys, false, false); err != nil {
		return nil, err
	}
	rc := m.wconn
	var out []heldRow
	nk := len(t.keyCols)
	for i, u := range t.desc.Uniques {
		if len(incoming[i]) == 0 {
			continue
		}
		cols := catalog.QuoteCols("", u)
		if err := loadTempKeys(ctx, rc, "", "ibex_u", cols, t.ident, slices.Sorted(maps.Keys(incoming[i]))); err != nil {
			return nil, err
		}
		sql := fmt.Sprintf(`COPY (SELECT %s, %s, row_to_json(t)::text FROM pg_temp.ibex_u u JOIN %s t ON %s WHERE NOT EXISTS (SELECT 1 FROM %s w WHERE %s)) TO STDOUT`,
			catalog.QuoteCols("t.", t.keyCols), catalog.QuoteCols("t.", u), t.ident, catalog.KeyJoin("u", "t", u), m.wkeys, catalog.KeyJoin("w", "t", t.keyCols))
		lw := sinks.NewLineWriter(func(line []byte) error {
			f := bytes.Split(line, []byte{'\t'})
			if len(f) != nk+len(u)+1 {
				return fmt.Errorf("unexpected row with %d fields", len(f))
			}
			h := heldRow{key: string(bytes.Join(f[:nk], []byte{'\t'})), idx: i, vals: string(bytes.Join(f[nk:nk+len(u)], []byte{'\t'})), db: m.idx}
			if row, err := conflict.DecodeCopyLine(string(f[nk+len(u)])); err == nil && len(row) == 1 {
				h.row = row[0].Text
			}
			out = append(out, h)
			return nil
		})
		if _, err := rc.PgConn().CopyTo(ctx, lw, sql); err != nil {
			return nil, err
		}
		if err := lw.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// pendingAt returns, for those of keys (of t) that some live source has pending changes of,
// the latest such change: its source and time.
func (r *runner) pendingAt(ctx context.Context, t *table, keys []string) (map[string]conflict.Change, error) {
	out := map[string]conflict.Change{}
	for _, a := range r.alive() {
		if !a.isSource() {
			continue
		}
		rc, err := r.readConn(ctx, a)
		if err != nil {
			return nil, fmt.Errorf("db %s: %w", a.name, err)
		}
		keyCols := catalog.QuoteCols("", t.keyCols)
		if err := loadTempKeys(ctx, rc, "", "ibex_hk", keyCols, t.ident, keys); err != nil {
			return nil, fmt.Errorf("db %s: %w", a.name, err)
		}
		nk := len(t.keyCols)
		sql := fmt.Sprintf(`COPY (SELECT %s, (extract(epoch FROM max(c.%s)) * 1000000)::bigint FROM pg_temp.ibex_hk w JOIN %s c ON %s GROUP BY %s) TO STDOUT`,
			catalog.QuoteCols("w.", t.keyCols), catalog.QuoteCols("", []string{capture.AtCol}), t.change, catalog.KeyJoin("w", "c", t.keyCols), catalog.QuoteCols("w.", t.keyCols))
		lw := sinks.NewLineWriter(func(line []byte) error {
			f := bytes.Split(line, []byte{'\t'})
			if len(f) != nk+1 {
				return fmt.Errorf("unexpected row with %d fields", len(f))
			}
			at, err := strconv.ParseInt(string(f[nk]), 10, 64)
			if err != nil {
				return err
			}
			k := string(bytes.Join(f[:nk], []byte{'\t'}))
			if p, ok := out[k]; !ok || at > p.At {
				out[k] = conflict.Change{DB: a.name, At: at}
			}
			return nil
		})
		if _, err := rc.PgConn().CopyTo(ctx, lw, sql); err != nil {
			return nil, fmt.Errorf("db %s: reading pending changes of %s: %w", a.name, t.name, err)
		}
		if err := lw.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// readUniques reads, on the session shipKeys readied, the unique index values and the row
// of each key it shipped.
func (r *runner) readUniques(ctx context.Context, w *member, t *table) ([]uniqueRow, error) {
	rc := w.wconn
	sel := []string{catalog.QuoteCols("t.", t.keyCols)}
	nf := 0
	for _, u := range t.desc.Uniques {
		sel = append(sel, catalog.QuoteCols("t.", u))
		nf += len(u)
	}
	sel = append(sel, "row_to_json(t)::text")
	sql := fmt.Sprintf(`COPY (SELECT %s FROM %s w JOIN %s t ON %s) TO STDOUT`, strings.Join(sel, ", "), w.wkeys, t.filtered(), catalog.KeyJoin("w", "t", t.keyCols))
	nk := len(t.keyCols)
	var out []uniqueRow
	lw := sinks.NewLineWriter(func(line []byte) error {
		f := bytes.Split(line, []byte{'\t'})
		if len(f) != nk+nf+1 {
			return fmt.Errorf("unexpected row with %d fields", len(f))
		}
		ur := uniqueRow{key: string(bytes.Join(f[:nk], []byte{'\t'})), winner: w.idx}
		if row, err := conflict.DecodeCopyLine(string(f[nk+nf])); err == nil && len(row) == 1 {
			ur.row = row[0].Text
		}
		at := nk
		for _, u := range t.desc.Uniques {
			vs := f[at : at+len(u)]
			at += len(u)
			if slices.ContainsFunc(vs, func(v []byte) bool { return string(v) == nullText }) {
				ur.vals = append(ur.vals, "")
			} else {
				ur.vals = append(ur.vals, string(bytes.Join(vs, []byte{'\t'})))
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
