package job

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/control"
)

// Customcols and scoped row filters are evaluated by the sender: its read of a batch (or
// of a copy) returns the table's columns, then, for each distinct customcols select list
// of the receivers, that list's columns, and for each distinct scoped filter a boolean,
// each computed in a LATERAL subquery over the row (laterals). Each receiver then gets its
// view of the row (view): the key and its customcols columns, or the table's columns; and
// no row at all when its filter is false, so that it deletes the key (a row that stops
// matching leaves it, one that starts matching arrives in full).

// ErrCustomCols is wrapped by the errors of customcols that cannot work.
var ErrCustomCols = control.ErrCustomCols

// view is what one receiver gets of a sender's row when the row carries extra fields:
// the fields proj, in that order, when field flag (if >= 0) is true.
type view struct {
	proj []int
	flag int
}

// apply returns the receiver's line for line, or nil when the row is not for it.
func (v *view) apply(line []byte) []byte {
	fields := strings.Split(string(line), "\t")
	if v.flag >= 0 && (v.flag >= len(fields) || fields[v.flag] != "t") {
		return nil
	}
	out := make([]byte, 0, len(line))
	for i, p := range v.proj {
		if i > 0 {
			out = append(out, '\t')
		}
		if p < len(fields) {
			out = append(out, fields[p]...)
		}
	}
	return out
}

// extra is one LATERAL subquery of a table's read: a customcols list or a filter.
type extra struct {
	text   string // the select list, or the condition
	filter bool
	alias  string
	outs   []string // the list's column names (a filter: one boolean)
	at     int      // the index of its first field in the read row
}

// loadScoped gives each table, on each target, the customcols and the scoped row filter
// that apply there (the most specific of each). Customcols are for PostgreSQL targets,
// and not on a table with counters; a filter naming a source db is refused, one for a
// sync applies to its targets.
func (s *session) loadScoped(ccs, rfs []control.Scoped) error {
	for _, t := range s.tables {
		t.cc = make([]*control.Scoped, len(s.members))
		t.rf = make([]*control.Scoped, len(s.members))
		for _, m := range s.members {
			if c := control.PickScoped(ccs, t.name, m.name, s.sync.Name); c != nil {
				switch {
				case m.isSource():
					return fmt.Errorf("%w: customcols %d (%s) applies to db %s, a source of sync %s: customcols are for targets; remove it with 'ibex remove customcols %d'",
						ErrCustomCols, c.ID, t.name, m.name, s.sync.Name, c.ID)
				case !m.pg():
					return fmt.Errorf("%w: customcols %d (%s) applies to db %s, a %s target: customcols are for PostgreSQL targets; remove it with 'ibex remove customcols %d'",
						ErrCustomCols, c.ID, t.name, m.name, m.db.Type, c.ID)
				case len(t.rel.Counters) > 0:
					return fmt.Errorf("%w: customcols %d: table %s has counter columns (counters=): the two do not go together", ErrCustomCols, c.ID, t.name)
				}
				t.cc[m.idx] = c
			}
			// A scoped filter is for targets: a source that deleted the rows others send
			// would no longer hold what its own application sees replicated everywhere
			// else (the table's where= filters what every sender sends instead).
			if f := control.PickScoped(rfs, t.name, m.name, s.sync.Name); f != nil && m.isSource() && f.DB == m.name {
				return fmt.Errorf("row filter %d (%s, where %s) applies to db %s, a source of sync %s: a filter for one db is for targets (the table's own where= filters what every db sends); remove it with 'ibex remove rowfilter %d'",
					f.ID, t.name, f.Text, m.name, s.sync.Name, f.ID)
			} else if f != nil && !m.isSource() {
				t.rf[m.idx] = f
			}
		}
	}
	return nil
}

// customReceiver reports whether db m gets customcols of t (its columns differ from the
// source's: no drift check, its columns are checked against the list instead).
func (t *table) customReceiver(m *member) bool { return t.cc != nil && t.cc[m.idx] != nil }

// planExtras, once the tables are described, makes the LATERAL subqueries of each table's
// read and each receiver's view, checking every customcols list and scoped filter on every
// live PostgreSQL source (they must parse there, read known columns) and the customcols
// columns on their receivers (descs: each db's description of the tables). Nothing is
// read but the catalogs.
func (s *session) planExtras(ctx context.Context, descs [][]*catalog.Table) error {
	var srcs []*member
	for _, m := range s.alive() {
		if m.isSource() && m.pg() {
			srcs = append(srcs, m)
		}
	}
	for ti, t := range s.tables {
		t.extras, t.views = nil, nil
		byText := map[string]*extra{}
		at := len(t.cols)
		add := func(text string, filter bool) *extra {
			k := strconv.FormatBool(filter) + "\x00" + text
			if e := byText[k]; e != nil {
				return e
			}
			e := &extra{text: text, filter: filter, alias: "x" + strconv.Itoa(len(t.extras))}
			byText[k] = e
			t.extras = append(t.extras, e)
			return e
		}
		for _, m := range s.members {
			if c := t.cc[m.idx]; c != nil {
				add(c.Text, false)
			}
			if f := t.rf[m.idx]; f != nil {
				add(f.Text, true)
			}
		}
		if len(t.extras) == 0 {
			continue
		}
		for _, e := range t.extras {
			if e.filter {
				e.outs, e.at = []string{"f"}, at
				at++
				for _, m := range srcs {
					if _, err := m.conn.Exec(ctx, fmt.Sprintf(`SELECT %s.* FROM %s t%s LIMIT 0`, e.alias, t.ident, e.lateral(t))); err != nil {
						return fmt.Errorf("table %s: row filter where=%s: db %s: %w", t.name, e.text, m.name, err)
					}
				}
				continue
			}
			for _, m := range srcs {
				rows, err := m.conn.Query(ctx, fmt.Sprintf(`SELECT %s.* FROM %s t%s LIMIT 0`, e.alias, t.ident, e.lateral(t)))
				if err != nil {
					return fmt.Errorf("%w: table %s: SELECT %s: db %s: %w", ErrCustomCols, t.name, e.text, m.name, err)
				}
				var outs []string
				for _, fd := range rows.FieldDescriptions() {
					outs = append(outs, fd.Name)
				}
				rows.Close()
				if err := rows.Err(); err != nil {
					return fmt.Errorf("%w: table %s: SELECT %s: db %s: %w", ErrCustomCols, t.name, e.text, m.name, err)
				}
				for i, o := range outs {
					if slices.Contains(outs[:i], o) {
						return fmt.Errorf("%w: table %s: SELECT %s: column %q is named twice", ErrCustomCols, t.name, e.text, o)
					}
				}
				e.outs = outs
			}
			e.at = at
			at += len(e.outs)
		}
		t.views = make([]*view, len(s.members))
		for _, m := range s.members {
			v := &view{flag: -1}
			if f := t.rf[m.idx]; f != nil {
				v.flag = byText["true\x00"+f.Text].at
			}
			c := t.cc[m.idx]
			if c == nil {
				for i := range t.cols {
					v.proj = append(v.proj, i)
				}
				t.views[m.idx] = v
				continue
			}
			e := byText["false\x00"+c.Text]
			for i := range t.keyCols {
				v.proj = append(v.proj, i)
			}
			cols := slices.Clone(t.keyCols)
			for i, o := range e.outs {
				if slices.Contains(t.keyCols, o) {
					continue // the key is sent as it is
				}
				v.proj = append(v.proj, e.at+i)
				cols = append(cols, o)
			}
			if m.alive() && descs[m.idx] != nil {
				have := map[string]bool{}
				for _, col := range descs[m.idx][ti].Columns {
					have[col.Name] = true
				}
				for _, col := range cols {
					if !have[col] {
						return fmt.Errorf("%w: customcols %d of %s: table %s on db %s has no column %q", ErrCustomCols, c.ID, t.name, t.on(m), m.name, col)
					}
				}
			}
			if st := t.sinkTables[m.idx]; st != nil {
				st.Cols, st.Partial = cols, true
			}
			t.views[m.idx] = v
		}
	}
	return nil
}

// lateral is the LATERAL subquery computing e over the row of alias t, its columns
// unqualified or qualified by the table's name.
func (e *extra) lateral(t *table) string {
	row := fmt.Sprintf(`(SELECT t.*) AS %s`, pgx.Identifier{t.rel.Name}.Sanitize())
	if e.filter {
		return fmt.Sprintf(` CROSS JOIN LATERAL (SELECT coalesce((%s), false) AS f FROM %s) %s`, e.text, row, e.alias)
	}
	return fmt.Sprintf(` CROSS JOIN LATERAL (SELECT %s FROM %s) %s`, e.text, row, e.alias)
}

// extraCols is what the read of t selects after its columns (", x0.*, ..."), and laterals
// the subqueries computing them over alias t; both "" when t has no extra.
func (t *table) extraCols() string {
	var b strings.Builder
	for _, e := range t.extras {
		b.WriteString(", " + e.alias + ".*")
	}
	return b.String()
}

func (t *table) laterals() string {
	var b strings.Builder
	for _, e := range t.extras {
		b.WriteString(e.lateral(t))
	}
	return b.String()
}

// viewOf is receiver m's view of t's rows; nil when rows go as they are read.
func (t *table) viewOf(m *member) *view {
	if t.views == nil {
		return nil
	}
	return t.views[m.idx]
}
