package job

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/sequence"
	"github.com/ibexrepl/ibex/sinks"
)

// syncSequences is a run's last step, after the tables: it reads the herd's sequences on
// every live source (one round trip each), takes for each sequence the state furthest
// ahead (last_value, then is_called), and has every live PostgreSQL db of the sync,
// sources and targets, raise the sequences it has behind that (sinks.SequenceSetter: a
// db never goes back, one already ahead keeps its value, one counting by k > 1 keeps its
// residue modulo k). Dbs that are not PostgreSQL have no sequences and are left out.
//
// Each db's raise is one transaction of conditional setvals, so the step is idempotent: a
// run killed during it leaves each db raised or not, and the next run finishes. A db that
// fails leaves the run (the run is bad and names it), as it would for a table; one whose
// sequence an open application transaction holds (sequence.ErrBusy) is only warned of: the
// next run sets it.
func (r *runner) syncSequences(ctx context.Context) error {
	seqs, err := r.herdSequences(ctx)
	if err != nil {
		return err
	}
	if len(seqs) == 0 {
		return nil
	}
	names := make([]catalog.QualName, len(seqs))
	for i, s := range seqs {
		names[i] = catalog.QualName{Schema: s.Schema, Name: s.Name}
	}
	srcs := r.sources()
	states := make([][]sequence.State, len(r.members))
	errs := r.each(srcs, func(m *member) error {
		var err error
		states[m.idx], err = sequence.Read(ctx, m.conn, names)
		return err
	})
	goals := make([]sinks.Sequence, len(names))
	for i, n := range names {
		goals[i] = sinks.Sequence{Schema: n.Schema, Name: n.Name}
	}
	have := make([]bool, len(names)) // some source gave the sequence a goal
	for _, m := range srcs {
		if err := errs[m.idx]; err != nil {
			r.drop(m, fmt.Errorf("db %s: reading sequences: %w", m.name, err))
			continue
		}
		for i, st := range states[m.idx] {
			if st.Increment <= 0 {
				r.logger.WarnContext(ctx, "sequence descends: ibex replicates ascending sequences only", slog.String("db", m.name), slog.String("sequence", st.Name.String()))
				continue
			}
			if !have[i] || sequence.Ahead(st.Last, st.Called, goals[i].Last, goals[i].Called) {
				goals[i].Last, goals[i].Called, have[i] = st.Last, st.Called, true
			}
		}
	}
	r.checkResidues(ctx, seqs, srcs, states)
	var want []sinks.Sequence
	for i, g := range goals {
		if have[i] {
			want = append(want, g)
		}
	}
	if len(want) == 0 {
		return nil
	}
	var receivers []*member
	for _, m := range r.alive() {
		if m.pg() {
			receivers = append(receivers, m)
		}
	}
	set := make([]int, len(r.members))
	errs = r.each(receivers, func(m *member) error {
		sk, err := r.openSink(m)
		if err != nil {
			return err
		}
		ss, ok := sk.(sinks.SequenceSetter)
		if !ok {
			return nil
		}
		set[m.idx], err = ss.SetSequences(ctx, want)
		return err
	})
	total := 0
	for _, m := range receivers {
		if err := errs[m.idx]; errors.Is(err, sequence.ErrBusy) {
			// Not the db's fault: the application holds the sequence; the next run sets it.
			r.logger.WarnContext(ctx, "sequences not set on this db this run", slog.String("db", m.name), slog.String("reason", err.Error()))
			continue
		} else if err != nil {
			r.drop(m, err) // the sink names the db
			continue
		}
		total += set[m.idx]
		if set[m.idx] > 0 {
			r.logger.DebugContext(ctx, "sequences raised", slog.String("db", m.name), slog.Int("set", set[m.idx]))
		}
	}
	r.res.Sequences += int64(total)
	r.logger.InfoContext(ctx, "sequences", slog.Int("sequences", len(want)), slog.Int("dbs", len(receivers)), slog.Int("set", total))
	return nil
}

// sequencesOnly says whether the sync's herd, which has no tables, has sequences: a run
// then only sets them.
func (r *runner) sequencesOnly(ctx context.Context) bool {
	seqs, err := r.herdSequences(ctx)
	return err == nil && len(seqs) > 0
}

// herdSeqs is the herd's sequences as a read found them, or why it could not.
type herdSeqs struct {
	seqs []control.Sequence
	err  error
}

// herdSequences returns the herd's sequences, as the run's load read them when it did.
func (r *runner) herdSequences(ctx context.Context) ([]control.Sequence, error) {
	if r.seqs != nil {
		return r.seqs.seqs, r.seqs.err
	}
	return control.HerdSequences(ctx, r.ctlQ(), r.sync.Herd)
}

// hasSequences says whether the sync's herd has sequences.
func (s *session) hasSequences(ctx context.Context, q control.Querier) bool {
	seqs, err := control.HerdSequences(ctx, q, s.sync.Herd)
	return err == nil && len(seqs) > 0
}

// checkSequences (validate) checks that every live PostgreSQL db of the sync has every
// sequence of the herd, ascending: the error names the db and the sequence.
func (s *session) checkSequences(ctx context.Context, q control.Querier) error {
	seqs, err := control.HerdSequences(ctx, q, s.sync.Herd)
	if err != nil || len(seqs) == 0 {
		return err
	}
	names := make([]catalog.QualName, len(seqs))
	for i, x := range seqs {
		names[i] = catalog.QualName{Schema: x.Schema, Name: x.Name}
	}
	var ms []*member
	for _, m := range s.alive() {
		if m.pg() {
			ms = append(ms, m)
		}
	}
	states := make([][]sequence.State, len(s.members))
	errs := s.each(ms, func(m *member) error {
		var err error
		states[m.idx], err = sequence.Read(ctx, m.conn, names)
		return err
	})
	for _, m := range ms {
		if err := errs[m.idx]; err != nil {
			return fmt.Errorf("sync %s: db %s: %w (create it there, or take it out of herd %s)", s.sync.Name, m.name, err, s.sync.Herd)
		}
		for _, st := range states[m.idx] {
			if st.Increment <= 0 {
				return fmt.Errorf("sync %s: db %s: sequence %s descends (INCREMENT BY %d): ibex replicates ascending sequences only", s.sync.Name, m.name, st.Name, st.Increment)
			}
		}
	}
	return nil
}

// checkResidues warns of sources that can hand out the same values of a sequence between
// two runs although the sequence is meant to be interleaved, or is set up to be: two
// sources counting by the same k > 1 with the same residue, or a source counting by 1 while
// interleave is on (a source added since). Runs keep residues; they cannot make them.
func (r *runner) checkResidues(ctx context.Context, seqs []control.Sequence, srcs []*member, states [][]sequence.State) {
	for i, s := range seqs {
		seen := map[[2]int64]string{} // {increment, residue} -> source
		for _, m := range srcs {
			if m.dead != nil || len(states[m.idx]) <= i {
				continue
			}
			st := states[m.idx][i]
			if st.Increment == 1 && s.Interleave {
				r.logger.WarnContext(ctx, "sequence is interleaved but a source counts by 1: run 'ibex update sequence "+s.QualName()+" interleave=on' again",
					slog.String("sequence", s.QualName()), slog.String("db", m.name))
				continue
			}
			if st.Increment <= 1 {
				continue
			}
			k := [2]int64{st.Increment, ((st.Last % st.Increment) + st.Increment) % st.Increment}
			if other, ok := seen[k]; ok {
				r.logger.WarnContext(ctx, "two sources hand out the same values of a sequence (same INCREMENT BY and residue): give each its own START, or run 'ibex update sequence "+s.QualName()+" interleave=on'",
					slog.String("sequence", s.QualName()), slog.String("db", m.name), slog.String("other", other), slog.Int64("increment", k[0]), slog.Int64("residue", k[1]))
				continue
			}
			seen[k] = m.name
		}
	}
}
