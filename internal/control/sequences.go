package control

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Sequence is a replicated sequence (Bucardo's goat of reltype sequence). It belongs to
// herds as tables do: every run of a sync whose herd holds it brings it up to the highest
// value any source has, on every PostgreSQL db of the sync.
type Sequence struct {
	ID     int64
	Schema string
	Name   string
	DB     string // where it was found when added
	// Interleave records that the sources of its syncs were given interleaved increments
	// ('ibex update sequence NAME interleave=on').
	Interleave bool
	Herds      []string
}

// QualName is schema.sequence as users type it.
func (s *Sequence) QualName() string { return s.Schema + "." + s.Name }

const sequenceCols = `s.id, s.schemaname, s.seqname, coalesce(s.db, ''), s.interleave,
       coalesce((SELECT array_agg(m.herd ORDER BY m.herd) FROM ibex.herdseq m WHERE m.sequence = s.id), '{}')`

func scanSequence(r pgx.CollectableRow) (Sequence, error) {
	var x Sequence
	err := r.Scan(&x.ID, &x.Schema, &x.Name, &x.DB, &x.Interleave, &x.Herds)
	return x, err
}

// Sequences lists sequences with their herds, by schema and name.
func Sequences(ctx context.Context, q Querier) ([]Sequence, error) {
	rows, err := q.Query(ctx, `SELECT `+sequenceCols+` FROM ibex.sequence s ORDER BY s.schemaname, s.seqname`)
	if err != nil {
		return nil, fmt.Errorf("listing sequences: %w", err)
	}
	return pgx.CollectRows(rows, scanSequence)
}

// HerdSequences lists the sequences of a herd, by schema and name.
func HerdSequences(ctx context.Context, q Querier, herd string) ([]Sequence, error) {
	rows, err := q.Query(ctx, herdSequencesSQL, herd)
	if err != nil {
		return nil, fmt.Errorf("listing the sequences of herd %s: %w", herd, err)
	}
	return pgx.CollectRows(rows, scanSequence)
}

// QueueHerdSequences queues HerdSequences in b: *out and *err are set when b's results
// are read.
func QueueHerdSequences(b *pgx.Batch, herd string, out *[]Sequence, err *error) {
	b.Queue(herdSequencesSQL, herd).Query(func(rows pgx.Rows) error {
		*out, *err = pgx.CollectRows(rows, scanSequence)
		if *err != nil {
			*err = fmt.Errorf("listing the sequences of herd %s: %w", herd, *err)
		}
		return nil
	})
}

const herdSequencesSQL = `SELECT ` + sequenceCols + ` FROM ibex.sequence s
WHERE EXISTS (SELECT 1 FROM ibex.herdseq m WHERE m.sequence = s.id AND m.herd = $1) ORDER BY s.schemaname, s.seqname`

// GetSequence returns one sequence.
func GetSequence(ctx context.Context, q Querier, schema, name string) (*Sequence, error) {
	rows, err := q.Query(ctx, `SELECT `+sequenceCols+` FROM ibex.sequence s WHERE s.schemaname = $1 AND s.seqname = $2`, schema, name)
	if err != nil {
		return nil, err
	}
	x, err := pgx.CollectExactlyOneRow(rows, scanSequence)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound("sequence", schema+"."+name)
	}
	return &x, err
}

// PutSequence inserts or updates a sequence by schema and name (its db and interleave;
// herds are set apart); returns its id.
func PutSequence(ctx context.Context, q Querier, s *Sequence) (int64, error) {
	var db any
	if s.DB != "" {
		db = s.DB
	}
	var id int64
	err := q.QueryRow(ctx, `
INSERT INTO ibex.sequence (schemaname, seqname, db, interleave) VALUES ($1, $2, $3, $4)
ON CONFLICT (schemaname, seqname) DO UPDATE SET db = excluded.db, interleave = excluded.interleave
RETURNING id`, s.Schema, s.Name, db, s.Interleave).Scan(&id)
	return id, translate(err, "sequence", s.QualName())
}

// AddSequenceToHerd adds a sequence to a herd (no-op if present).
func AddSequenceToHerd(ctx context.Context, q Querier, herd string, seqID int64) error {
	_, err := q.Exec(ctx, `INSERT INTO ibex.herdseq (herd, sequence) VALUES ($1, $2) ON CONFLICT DO NOTHING`, herd, seqID)
	return translate(err, "herd", herd)
}

// SetSequenceHerds makes herds the herds of a sequence (each must exist).
func SetSequenceHerds(ctx context.Context, q Querier, seqID int64, herds []string) error {
	if _, err := q.Exec(ctx, `DELETE FROM ibex.herdseq WHERE sequence = $1`, seqID); err != nil {
		return err
	}
	for _, h := range herds {
		if err := AddSequenceToHerd(ctx, q, h, seqID); err != nil {
			return err
		}
	}
	return nil
}

// SetSequenceInterleave records whether a sequence's sources have interleaved increments.
func SetSequenceInterleave(ctx context.Context, q Querier, seqID int64, on bool) error {
	_, err := q.Exec(ctx, `UPDATE ibex.sequence SET interleave = $2 WHERE id = $1`, seqID, on)
	return err
}

// RemoveSequence deletes a sequence. Unlike a table it has no capture, so a sync using it
// does not hold it: its runs stop setting it.
func RemoveSequence(ctx context.Context, q Querier, schema, name string) error {
	tag, err := q.Exec(ctx, `DELETE FROM ibex.sequence WHERE schemaname = $1 AND seqname = $2`, schema, name)
	if err == nil && tag.RowsAffected() == 0 {
		return notFound("sequence", schema+"."+name)
	}
	return err
}

// SequenceSyncs lists, by name, the syncs whose herd holds the sequence.
func SequenceSyncs(ctx context.Context, q Querier, seqID int64) ([]Sync, error) {
	rows, err := q.Query(ctx, `SELECT id, `+syncCols+` FROM ibex.sync
WHERE herd IN (SELECT herd FROM ibex.herdseq WHERE sequence = $1) ORDER BY name`, seqID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanSync)
}
