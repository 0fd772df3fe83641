package job

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/capture"
	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/dbconn"
	"github.com/ibexrepl/ibex/sinks"
)

// checkSchemas describes every table on every reachable db and refuses to go on when
// they disagree (schema drift) or when capture is missing on a source.
func (s *session) checkSchemas(ctx context.Context, checkCapture bool) error {
	alive := s.alive()
	if len(alive) == 0 {
		return errors.New("no db of the sync is reachable")
	}
	descs := make([][]*catalog.Table, len(s.members))
	var pgs []*member
	for _, m := range alive {
		if m.pg() {
			pgs = append(pgs, m)
		}
	}
	// A run that may delete orphans (orphans.go) reads the foreign keys between the tables
	// in the same round trip.
	var fkNames []catalog.QualName
	if s.runID != 0 && s.sync.OnOrphan != control.OnOrphanKeep && len(s.tables) >= 2 {
		for _, t := range s.tables {
			fkNames = append(fkNames, catalog.QualName{Schema: t.rel.Schema, Name: t.rel.Name})
		}
	}
	s.fks = make([]*fkeys, len(s.members))
	errs := s.each(pgs, func(m *member) error {
		// Every table's description and capture state in one round trip.
		b := &pgx.Batch{}
		ds := make([]*catalog.Table, len(s.tables))
		derrs := make([]error, len(s.tables))
		names, rels := make([]catalog.QualName, len(s.tables)), make([]catalog.QualName, len(s.tables))
		for i, t := range s.tables {
			names[i], rels[i] = t.on(m), catalog.QualName{Schema: t.rel.Schema, Name: t.rel.Name}
		}
		catalog.QueueDescribeAll(b, names, ds, derrs)
		states := make([]*capture.State, len(s.tables))
		if checkCapture && m.isSource() && !s.fullcopy {
			states = capture.QueueInstalled(b, s.sync.Name, rels)
		}
		if s.compressWAL&bit(m.idx) != 0 {
			b.Queue(dbconn.WALCompressionSQL(dbconn.ServerMajor(m.conn.PgConn())))
		}
		var fk *fkeys
		if fkNames != nil {
			fk = &fkeys{names: fkNames}
			catalog.QueueForeignKeys(b, fkNames, &fk.fks, &fk.err)
		}
		tb := time.Now()
		if err := m.conn.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("db %s: describing the tables: %w", m.name, err)
		}
		s.logger.DebugContext(ctx, "described", slog.String("db", m.name), slog.Int("statements", b.Len()), slog.Duration("took", time.Since(tb)))
		if fk != nil && fk.err == nil {
			s.fks[m.idx] = fk
		}
		for i, t := range s.tables {
			if errors.Is(derrs[i], catalog.ErrNoTable) && t.custom[m.idx] != nil {
				return fmt.Errorf("table %s, the customname of %s on db %s, does not exist there: create it (with the same columns) and run 'ibex validate %s'", t.on(m), t.name, m.name, s.sync.Name)
			} else if errors.Is(derrs[i], catalog.ErrNoTable) {
				return fmt.Errorf("table %s does not exist on db %s: create it there (with the same columns) and run 'ibex validate %s'", t.name, m.name, s.sync.Name)
			} else if derrs[i] != nil {
				return fmt.Errorf("db %s: %w", m.name, derrs[i])
			}
			if st := states[i]; st != nil {
				if st.Err != nil {
					return fmt.Errorf("db %s: %w", m.name, st.Err)
				}
				if !st.Matches(ds[i]) || !st.Counts(t.rel.Counters) || !st.Detects(t.rel.Detect == control.DetectColumns) || !st.MakesDelta(t.makeDelta(m)) || !st.KeepsOld(keepsOld(s.sync)) {
					return fmt.Errorf("capture of table %s is missing or outdated on db %s: run 'ibex validate %s'", t.name, m.name, s.sync.Name)
				}
			}
		}
		descs[m.idx] = ds
		return nil
	})
	for _, m := range pgs {
		if err := errs[m.idx]; err != nil {
			if m.conn.IsClosed() {
				s.drop(m, err)
				continue
			}
			return err
		}
	}
	if err := s.checkFilters(ctx); err != nil {
		return err
	}
	// The reference is a source when one is live: a target with customcols has other
	// columns (checked against its list instead, by planExtras).
	var ref *member
	for _, m := range s.alive() {
		if m.pg() && (ref == nil || (m.isSource() && !ref.isSource())) {
			ref = m
		}
	}
	for _, m := range s.alive() {
		if !m.pg() || m == ref {
			continue
		}
		for i, t := range s.tables {
			if t.customReceiver(m) {
				continue
			}
			if d := catalog.Compare(descs[ref.idx][i], descs[m.idx][i], ref.name, m.name); d != "" {
				return fmt.Errorf("schema drift: %s; make the tables agree, then run the sync again", d)
			}
		}
	}
	if ref == nil {
		return errors.New("no db of the sync is reachable")
	}
	for i, t := range s.tables {
		d := descs[ref.idx][i]
		t.desc = d
		partitioned := make([]bool, len(s.members))
		for _, m := range s.alive() {
			if m.pg() {
				partitioned[m.idx] = descs[m.idx][i].Partitioned
			}
		}
		if !s.fullcopy && strings.Join(d.KeyCols, ",") != strings.Join(t.rel.KeyCols, ",") && len(d.KeyCols) > 0 {
			return fmt.Errorf("the key of table %s changed (ibex has %s, db %s has %s): run 'ibex update table %s db=%s' and 'ibex validate %s'",
				t.name, strings.Join(t.rel.KeyCols, ","), ref.name, strings.Join(d.KeyCols, ","), t.name, ref.name, s.sync.Name)
		}
		for _, k := range t.rel.KeyCols {
			if capture.Reserved(k) {
				return fmt.Errorf("table %s has a key column named %q, a name ibex's change tables use for themselves: rename the column", t.name, k)
			}
		}
		t.keyCols = t.rel.KeyCols
		t.cols = slices.Clone(t.keyCols)
		for _, c := range d.Columns {
			if !slices.Contains(t.keyCols, c.Name) {
				t.cols = append(t.cols, c.Name)
			}
		}
		t.sinkTables = make([]*sinks.Table, len(s.members))
		for _, m := range s.alive() {
			on := t.on(m)
			// A PostgreSQL target with makedelta writes in place: a row coming back around
			// a cycle of syncs unchanged is then not captured again (see capture.Options).
			t.sinkTables[m.idx] = &sinks.Table{Schema: on.Schema, Name: on.Name, Key: t.keyCols, Cols: t.cols,
				Columns: d.Columns, Partitioned: partitioned[m.idx], InPlace: m.pg() && !m.isSource() && t.makeDelta(m)}
		}
	}
	if err := s.planExtras(ctx, descs); err != nil {
		return err
	}
	return s.checkTargets(ctx)
}

// checkTargets asks every live db that is not PostgreSQL whether it has the tables and
// columns the sync writes; with s.createTargets, it creates what is missing first. A db that lacks
// some, or does not answer, leaves the run (the others are served): the reason, with the
// DDL that would create what is missing, is what status shows for it.
func (s *session) checkTargets(ctx context.Context) error {
	var tgts []*member
	for _, m := range s.alive() {
		if !m.pg() {
			tgts = append(tgts, m)
		}
	}
	created := make([][]string, len(s.members))
	errs := s.each(tgts, func(m *member) error {
		for _, t := range s.tables {
			st := t.sinkTables[m.idx]
			err := m.target.CheckTable(ctx, st)
			var me *sinks.MissingError
			if s.createTargets && errors.As(err, &me) {
				if err := m.target.CreateTable(ctx, st); err != nil {
					return fmt.Errorf("db %s: creating table %s: %w", m.name, t.name, err)
				}
				created[m.idx] = append(created[m.idx], m.name+": "+t.name)
				err = m.target.CheckTable(ctx, st)
			}
			if errors.As(err, &me) {
				me.Sync = s.sync.Name
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	for _, m := range tgts {
		s.created = append(s.created, created[m.idx]...)
	}
	for _, m := range tgts {
		if err := errs[m.idx]; err != nil {
			s.drop(m, err)
		}
	}
	return nil
}

// checkFilters runs each row filter (where=) on every live source, reading no row: a
// filter that does not parse or names an unknown column is refused with the db's error.
func (s *session) checkFilters(ctx context.Context) error {
	for _, m := range s.alive() {
		if !m.isSource() || !m.pg() {
			continue
		}
		for _, t := range s.tables {
			if t.rel.Where == "" {
				continue
			}
			if _, err := m.conn.Exec(ctx, fmt.Sprintf(`SELECT 1 FROM %s%s LIMIT 0`, t.ident, t.whereClause())); err != nil {
				return fmt.Errorf("table %s: where=%s: db %s: %w", t.name, t.rel.Where, m.name, err)
			}
		}
	}
	return nil
}
