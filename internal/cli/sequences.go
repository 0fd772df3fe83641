package cli

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/config"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/dbconn"
	"github.com/ibexrepl/ibex/internal/sequence"
)

// The sequence commands: add sequence, update sequence (db=, herd=, interleave=), remove
// sequence, list sequences. A sequence is in herds as a table is; runs raise it on every
// PostgreSQL db of the syncs of its herds (job/sequences.go).

func noSequence(n catalog.QualName, d *control.DB, dbname string) error {
	return fmt.Errorf("sequence %s does not exist in db %s (dbname %s): check the name or say db=", n, d.Name, dbname)
}

func (a *app) addSequences(ctx context.Context, store *control.Store, p kv) error {
	dbName, _ := p.take("db")
	herd, hasHerd := p.take("herd", "relgroup")
	if rest := p.rest(); len(rest) > 0 {
		return usageErr("add sequence: unknown setting %q (use db= or herd=)", rest[0])
	}
	if len(p.words) == 0 {
		return usageErr("add sequence: name the sequences (or all, or a pattern such as public.*)")
	}
	if hasHerd && herd == "" {
		return usageErr("herd= needs a name")
	}
	d, conn, err := a.connectReadDB(ctx, store, dbName)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var names []catalog.QualName
	fromPattern := map[catalog.QualName]bool{}
	for _, w := range p.words {
		ns, err := sequence.Resolve(ctx, conn, w, a.filter)
		if err != nil {
			return err
		}
		pattern := len(ns) != 1 || catalog.IsPattern(w)
		for _, n := range ns {
			if !slices.Contains(names, n) {
				names = append(names, n)
				fromPattern[n] = pattern
			}
		}
	}
	states, err := sequence.Read(ctx, conn, names)
	if errors.Is(err, sequence.ErrNoSequence) {
		for _, n := range names {
			if _, err := sequence.Read(ctx, conn, []catalog.QualName{n}); errors.Is(err, sequence.ErrNoSequence) {
				return noSequence(n, d, conn.Config().Database)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("db %s: %w", d.Name, err)
	}
	var added, known []*control.Sequence
	var skipped []string
	err = store.InTx(ctx, func(q control.Querier) error {
		if hasHerd {
			if err := control.EnsureHerd(ctx, q, herd); err != nil {
				return err
			}
		}
		for _, st := range states {
			n := st.Name
			if st.Increment <= 0 {
				if fromPattern[n] {
					skipped = append(skipped, n.String())
					continue
				}
				return descendingMsg(n, d.Name, st.Increment)
			}
			if cur, err := control.GetSequence(ctx, q, n.Schema, n.Name); err == nil {
				arg := tableArg(n.Schema, n.Name)
				if !fromPattern[n] {
					return fmt.Errorf("sequence %s %w: use 'ibex update sequence %s herd=...' to put it in a herd", n, control.ErrExists, arg)
				}
				known = append(known, cur)
				continue
			} else if !errors.Is(err, control.ErrNotFound) {
				return err
			}
			s := &control.Sequence{Schema: n.Schema, Name: n.Name, DB: d.Name}
			id, err := control.PutSequence(ctx, q, s)
			if err != nil {
				return err
			}
			if hasHerd {
				if err := control.AddSequenceToHerd(ctx, q, herd, id); err != nil {
					return err
				}
			}
			added = append(added, s)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, s := range added {
		a.say("Added sequence %s", s.QualName())
	}
	var prior []addedBefore
	for _, s := range known {
		prior = append(prior, addedBefore{s.Schema, s.Name, s.DB, s.Herds})
	}
	a.sayAddRest("sequence", prior, skipped, "it descends (ibex replicates ascending sequences only)", hasHerd, herd)
	return nil
}

func descendingMsg(n catalog.QualName, db string, inc int64) error {
	return fmt.Errorf("sequence %s in db %s descends (INCREMENT BY %d): ibex replicates ascending sequences only", n, db, inc)
}

func (a *app) updateSequences(ctx context.Context, store *control.Store, p kv) error {
	dbName, hasDB := p.take("db")
	herd, hasHerd := p.take("herd", "relgroup")
	il, hasIL := p.take("interleave")
	if rest := p.rest(); len(rest) > 0 {
		return usageErr("update sequence: unknown setting %q (use db=, herd= or interleave=on|off)", rest[0])
	}
	if !hasDB && !hasHerd && !hasIL {
		return usageErr("update sequence: say what to change: db=, herd= or interleave=on|off")
	}
	if hasHerd && herd == "" {
		return usageErr("herd= needs a name")
	}
	var on bool
	if hasIL {
		var err error
		if on, err = parseBool("update sequence", "interleave", il); err != nil {
			return err
		}
	}
	var seqs []*control.Sequence
	err := store.InTx(ctx, func(q control.Querier) error {
		for _, w := range p.words {
			n, err := catalog.ParseName(w)
			if err != nil {
				return err
			}
			s, err := control.GetSequence(ctx, q, n.Schema, n.Name)
			if err != nil {
				return err
			}
			if hasDB {
				d, err := control.GetDB(ctx, q, dbName)
				if err != nil {
					return err
				}
				if err := needPostgres(d, "reading its sequences"); err != nil {
					return err
				}
				conn, err := dbconn.Connect(ctx, d.Name, d.Conn, d.Pass)
				if err != nil {
					return err
				}
				st, err := sequence.Read(ctx, conn, []catalog.QualName{n})
				dbname := conn.Config().Database
				_ = conn.Close(ctx)
				if errors.Is(err, sequence.ErrNoSequence) {
					return noSequence(n, d, dbname)
				} else if err != nil {
					return fmt.Errorf("db %s: %w", d.Name, err)
				}
				if st[0].Increment <= 0 {
					return descendingMsg(n, d.Name, st[0].Increment)
				}
				s.DB = d.Name
			}
			if _, err := control.PutSequence(ctx, q, s); err != nil {
				return err
			}
			if hasHerd {
				if err := control.EnsureHerd(ctx, q, herd); err != nil {
					return err
				}
				if err := control.AddSequenceToHerd(ctx, q, herd, s.ID); err != nil {
					return err
				}
			}
			seqs = append(seqs, s)
		}
		if !hasIL {
			return nil
		}
		// The dbs are changed once the transaction has the sequences' new herds; when one
		// fails, the control database keeps nothing of the command.
		for _, s := range seqs {
			if err := a.interleave(ctx, q, s, on); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, s := range seqs {
		a.say("Updated sequence %s", s.QualName())
	}
	return nil
}

// interleave sets (on) or undoes (off) interleaved increments for s on the sources of the
// syncs of its herds (package sequence: Interleave), then records it.
func (a *app) interleave(ctx context.Context, q control.Querier, s *control.Sequence, on bool) error {
	syncs, err := control.SequenceSyncs(ctx, q, s.ID)
	if err != nil {
		return err
	}
	if len(syncs) == 0 {
		return fmt.Errorf("sequence %s is in no sync's herd: interleave sets its increments on the sources of the syncs of its herds; put it in a herd with 'ibex update sequence %s herd=...' first", s.QualName(), tableArg(s.Schema, s.Name))
	}
	// The sources of every such sync, in sync name then dbgroup order; the other
	// PostgreSQL dbs of those syncs are read so that no sequence goes back.
	var sources, others []string
	dbs := map[string]*control.DB{}
	for _, sy := range syncs {
		g, err := control.GetDBGroup(ctx, q, sy.DBGroup)
		if err != nil {
			return err
		}
		for _, m := range g.Members {
			if _, seen := dbs[m.DB]; !seen {
				d, err := control.GetDB(ctx, q, m.DB)
				if err != nil {
					return err
				}
				dbs[m.DB] = d
			}
			if !dbs[m.DB].Type.Postgres() {
				continue
			}
			if m.Role == control.RoleSource {
				if !slices.Contains(sources, m.DB) {
					sources = append(sources, m.DB)
				}
			} else if !slices.Contains(others, m.DB) {
				others = append(others, m.DB)
			}
		}
	}
	others = slices.DeleteFunc(others, func(n string) bool { return slices.Contains(sources, n) })
	open := func(names []string) ([]sequence.Member, error) {
		var out []sequence.Member
		for _, n := range names {
			d := dbs[n]
			if d.Status == control.StatusInactive {
				return nil, fmt.Errorf("db %s is inactive: interleave needs every db of the syncs of sequence %s (activate it with 'ibex update db %s status=active')", n, s.QualName(), n)
			}
			c, err := dbconn.Connect(ctx, d.Name, d.Conn, d.Pass)
			if err != nil {
				return nil, err
			}
			out = append(out, sequence.Member{DB: n, Conn: c})
		}
		return out, nil
	}
	var conns []sequence.Member
	defer func() {
		for _, m := range conns {
			_ = m.Conn.Close(context.WithoutCancel(ctx))
		}
	}()
	src, err := open(sources)
	conns = append(conns, src...)
	if err != nil {
		return err
	}
	oth, err := open(others)
	conns = append(conns, oth...)
	if err != nil {
		return err
	}
	n := catalog.QualName{Schema: s.Schema, Name: s.Name}
	if on {
		starts, err := sequence.Interleave(ctx, n, src, oth)
		if err != nil {
			return err
		}
		for _, st := range starts {
			a.say("Sequence %s on db %s: INCREMENT BY %d, next value %d", s.QualName(), st.DB, st.Increment, st.Start)
		}
	} else {
		for _, m := range src {
			if err := sequence.SetIncrement(ctx, m.Conn, n, 1); err != nil {
				return fmt.Errorf("db %s: %w", m.DB, err)
			}
			a.say("Sequence %s on db %s: INCREMENT BY 1", s.QualName(), m.DB)
		}
	}
	s.Interleave = on
	return control.SetSequenceInterleave(ctx, q, s.ID, on)
}

// listSequences is 'ibex list sequences [NAME ...]'.
func listSequences(ctx context.Context, q control.Querier, names []string) ([]string, [][]string, any, error) {
	seqs, err := control.Sequences(ctx, q)
	if err != nil {
		return nil, nil, nil, err
	}
	out := []control.Sequence{}
	var rows [][]string
	for _, s := range seqs {
		if !want(names, s.QualName()) && !want(names, s.Name) {
			continue
		}
		out = append(out, s)
		rows = append(rows, []string{s.QualName(), s.DB, strings.Join(s.Herds, ", "), yesNo(s.Interleave)})
	}
	return []string{"Sequence", "DB", "Herds", "Interleave"}, rows, out, nil
}

// sayInterleave tells, after apply, of the sequences whose interleave the file changed: a
// file records it, and only 'ibex update sequence' changes the dbs.
func (a *app) sayInterleave(cur, want *config.File) {
	for _, n := range slices.Sorted(maps.Keys(want.Sequences)) {
		if w := want.Sequences[n].Interleave; w != cur.Sequences[n].Interleave {
			v := map[bool]string{true: "on", false: "off"}[w]
			a.say("Sequence %s: interleave=%s is recorded; run 'ibex update sequence %s interleave=%s' to set the increments on its sources", n, v, n, v)
		}
	}
}
