package postgres

import (
	"context"
	"fmt"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/sequence"
	"github.com/ibexrepl/ibex/sinks"
)

var _ sinks.SequenceSetter = (*Sink)(nil)

// SetSequences raises each sequence of seqs that is behind the given state on this db
// (package sequence: Lift keeps the residue of a sequence that counts by more than one,
// Set locks and never lowers), in its own transaction, and returns how many it set. It
// must be called outside a unit.
func (s *Sink) SetSequences(ctx context.Context, seqs []sinks.Sequence) (int, error) {
	if s.tx {
		return 0, fmt.Errorf("db %s: sequences are set outside a unit's transaction", s.db)
	}
	names := make([]catalog.QualName, len(seqs))
	for i, q := range seqs {
		names[i] = catalog.QualName{Schema: q.Schema, Name: q.Name}
	}
	cur, err := sequence.Read(ctx, s.conn, names)
	if err != nil {
		return 0, fmt.Errorf("db %s: %w", s.db, err)
	}
	var rs []sequence.Raise
	for i, q := range seqs {
		last, called, ok, err := sequence.Lift(cur[i], q.Last, q.Called)
		if err != nil {
			return 0, fmt.Errorf("db %s: %w", s.db, err)
		}
		if ok {
			rs = append(rs, sequence.Raise{Name: names[i], Increment: cur[i].Increment, Last: last, Called: called})
		}
	}
	n, err := sequence.Set(ctx, s.conn, rs)
	if err != nil {
		return 0, fmt.Errorf("db %s: %w", s.db, err)
	}
	return n, nil
}
