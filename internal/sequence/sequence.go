// Package sequence holds every statement ibex runs on the sequences of user databases:
// finding them (all, patterns), reading their state, raising them (never lowering one),
// and interleaving their increments across the sources of a sync.
//
// A sequence's state is (last_value, is_called): with is_called false, nextval returns
// last_value itself; with is_called true, the value after it. States are ordered by
// last_value, then is_called (a called v is ahead of an uncalled v). ibex replicates
// ascending sequences only (INCREMENT BY > 0).
//
// Raising a sequence must not race with the application's nextval: a setval computed from
// a read that a nextval overtook would move the sequence back and hand out a value twice.
// So a raise runs in a transaction that first takes the sequence's lock with a no-op ALTER
// SEQUENCE (ShareRowExclusiveLock, which blocks nextval until commit), then sets the value
// only where the sequence is still behind (a conditional setval). The lock is held for
// milliseconds and waited for at most half the server's deadlock_timeout (500 ms by
// default): an application transaction that called nextval and is still open holds the
// lock against us, and should it then wait for a sequence we hold, our wait times out
// before its deadlock check runs, so that ibex, never the application, gives up. A
// sequence not locked in time is ErrBusy: the next run sets it. The ALTER needs the role to
// own the sequence (the role that owns the replicated tables owns their serial and
// identity sequences).
package sequence

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/sqlstate"
)

// lockTimeoutSQL bounds, in the transaction, the wait for a sequence's lock: half the
// deadlock_timeout, at most 500 ms (see the package doc).
const lockTimeoutSQL = `SELECT set_config('lock_timeout', greatest(1, least(500, (SELECT setting::int FROM pg_settings WHERE name = 'deadlock_timeout') / 2))::text, true)`

// Errors callers branch on.
var (
	// ErrNoSequence is a sequence that does not exist (or is not a sequence).
	ErrNoSequence = errors.New("no such sequence")
	// ErrBusy is a sequence whose lock an open transaction (one that called nextval)
	// held for longer than ibex waits.
	ErrBusy = errors.New("busy: a transaction that called nextval on it is still open")
)

// busy wraps err with ErrBusy when it is a lock timeout.
func busy(err error, name catalog.QualName) error {
	if sqlstate.Is(err, sqlstate.LockNotAvailable) {
		return fmt.Errorf("sequence %s: %w", name, ErrBusy)
	}
	return err
}

// State is a sequence's state on one db.
type State struct {
	Name catalog.QualName
	// Last and Called are last_value and is_called.
	Last   int64
	Called bool
	// Increment, Min and Max are its INCREMENT BY, MINVALUE and MAXVALUE.
	Increment, Min, Max int64
}

// Ahead reports whether state (aLast, aCalled) is ahead of (bLast, bCalled): a called value
// is ahead of the same value uncalled.
func Ahead(aLast int64, aCalled bool, bLast int64, bCalled bool) bool {
	return aLast > bLast || (aLast == bLast && aCalled && !bCalled)
}

// Ident is the quoted, schema-qualified name.
func Ident(n catalog.QualName) string { return pgx.Identifier{n.Schema, n.Name}.Sanitize() }

// Querier is what reading needs from a connection.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// List returns every sequence outside the system schemas and ibex's own, by schema and
// name.
func List(ctx context.Context, q catalog.Querier) ([]catalog.QualName, error) {
	rows, err := q.Query(ctx, `
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'ibex') AND n.nspname NOT LIKE 'pg\_%'
ORDER BY n.nspname COLLATE "C", c.relname COLLATE "C"`)
	if err != nil {
		return nil, fmt.Errorf("listing sequences: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (catalog.QualName, error) {
		var q catalog.QualName
		err := r.Scan(&q.Schema, &q.Name)
		return q, err
	})
}

// Resolve expands a user's sequence argument as catalog.Resolve does tables: "all", a
// pattern (catalog.Pick), "schema.seq" or a bare "seq" (schema public); f narrows all and
// patterns.
func Resolve(ctx context.Context, q catalog.Querier, arg string, f catalog.Filter) ([]catalog.QualName, error) {
	if !catalog.IsPattern(arg) {
		qn, err := catalog.ParseName(arg)
		if err != nil {
			return nil, err
		}
		return []catalog.QualName{qn}, nil
	}
	all, err := List(ctx, q)
	if err != nil {
		return nil, err
	}
	return catalog.Pick(all, arg, "sequence", f)
}

// readSQL reads one sequence's state; its one parameter is the quoted name as text.
const readSQL = `SELECT s.last_value, s.is_called, p.seqincrement, p.seqmin, p.seqmax FROM %s s, pg_sequence p WHERE p.seqrelid = $1::regclass`

// missingSQL lists which of the quoted names ($1) are not sequences.
const missingSQL = `SELECT n FROM unnest($1::text[]) WITH ORDINALITY AS x (n, i)
WHERE to_regclass(n) IS NULL OR (SELECT relkind FROM pg_class WHERE oid = to_regclass(n)) <> 'S' ORDER BY i LIMIT 1`

// Read reads the states of names on one db, in one batch. A name that is not a sequence
// there is an error wrapping ErrNoSequence that names it (found by a second query once the
// batch failed: in a transaction, that one fails too, so check first outside it).
func Read(ctx context.Context, q Querier, names []catalog.QualName) ([]State, error) {
	if len(names) == 0 {
		return nil, nil
	}
	out := make([]State, len(names))
	b := &pgx.Batch{}
	for i, n := range names {
		id := Ident(n)
		st := &out[i]
		st.Name = n
		b.Queue(fmt.Sprintf(readSQL, id), id).QueryRow(func(row pgx.Row) error {
			if err := row.Scan(&st.Last, &st.Called, &st.Increment, &st.Min, &st.Max); err != nil {
				return fmt.Errorf("reading sequence %s: %w", n, err)
			}
			return nil
		})
	}
	if err := q.SendBatch(ctx, b).Close(); err != nil {
		if miss := missing(ctx, q, names); miss != nil {
			return nil, miss
		}
		return nil, fmt.Errorf("reading sequences: %w", err)
	}
	return out, nil
}

// missing returns an error wrapping ErrNoSequence for the first of names that is not a
// sequence, else nil.
func missing(ctx context.Context, q Querier, names []catalog.QualName) error {
	idents := make([]string, len(names))
	for i, n := range names {
		idents[i] = Ident(n)
	}
	var first string
	if err := q.QueryRow(ctx, missingSQL, idents).Scan(&first); err != nil {
		return nil
	}
	for i, id := range idents {
		if id == first {
			return fmt.Errorf("sequence %s: %w", names[i], ErrNoSequence)
		}
	}
	return nil
}

// Lift returns the state cur should be raised to so that it is at or ahead of the goal
// (goalLast, goalCalled), and false when it is there already (or descends: ibex leaves
// descending sequences alone). A sequence that counts by 1 takes the goal itself,
// is_called included. One that counts by k > 1 (its db hands out one residue modulo k:
// the multi-master scheme of distinct INCREMENT BY and START per source, which interleave
// sets up) keeps its residue: it takes the first value at or above the goal that has its
// residue, uncalled so that nextval returns it (or the goal itself, as called as the goal,
// when the goal has its residue). A goal out of cur's range is an error.
func Lift(cur State, goalLast int64, goalCalled bool) (last int64, called bool, ok bool, err error) {
	if cur.Increment <= 0 || !Ahead(goalLast, goalCalled, cur.Last, cur.Called) {
		return 0, false, false, nil
	}
	k := cur.Increment
	last, called = goalLast, goalCalled
	if k > 1 {
		gap := mod(mod(cur.Last, k)-mod(goalLast, k), k)
		if goalLast > math.MaxInt64-gap {
			return 0, false, false, fmt.Errorf("sequence %s: the next value with its residue above %d is out of range", cur.Name, goalLast)
		}
		last += gap
		called = gap == 0 && goalCalled
	}
	if last > cur.Max {
		return 0, false, false, fmt.Errorf("sequence %s: cannot raise it to %d, above its MAXVALUE %d: raise its MAXVALUE", cur.Name, last, cur.Max)
	}
	return last, called, true, nil
}

func mod(a, k int64) int64 { return ((a % k) + k) % k }

// Raise is a sequence to raise on one db: Increment is its INCREMENT BY as read (the
// no-op ALTER that takes its lock sets it again).
type Raise struct {
	Name      catalog.QualName
	Increment int64
	Last      int64
	Called    bool
}

// setSQL sets a sequence, only where it is behind the new state (so never back); it
// returns a row when it set it.
const setSQL = `SELECT setval($1::regclass, $2, $3) FROM %s WHERE (last_value, is_called) < ($2, $3)`

// Set raises the sequences of rs on one db, in one transaction that holds their locks
// (see the package doc), and returns how many it set: one already at or past its new
// state (the application moved it meanwhile) is left as it is. Nothing is set when it
// fails.
func Set(ctx context.Context, conn *pgx.Conn, rs []Raise) (int, error) {
	if len(rs) == 0 {
		return 0, nil
	}
	set := 0
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue(lockTimeoutSQL)
		for _, r := range rs {
			id := Ident(r.Name)
			b.Queue(fmt.Sprintf(`ALTER SEQUENCE %s INCREMENT BY %d`, id, r.Increment))
			b.Queue(fmt.Sprintf(setSQL, id), id, r.Last, r.Called)
		}
		br := tx.SendBatch(ctx, b)
		defer br.Close()
		if _, err := br.Exec(); err != nil {
			return err
		}
		for _, r := range rs {
			if _, err := br.Exec(); err != nil {
				if err := busy(err, r.Name); errors.Is(err, ErrBusy) {
					return err
				}
				return fmt.Errorf("locking sequence %s (ALTER SEQUENCE, which needs its owner): %w", r.Name, err)
			}
			rows, err := br.Query()
			if err != nil {
				return fmt.Errorf("setting sequence %s to %d: %w", r.Name, r.Last, err)
			}
			n := 0
			for rows.Next() {
				n++
			}
			if err := rows.Err(); err != nil {
				return fmt.Errorf("setting sequence %s to %d: %w", r.Name, r.Last, err)
			}
			set += n
		}
		return br.Close()
	})
	if err != nil {
		return 0, err
	}
	return set, nil
}

// Member is a db taking part in Interleave.
type Member struct {
	DB   string
	Conn *pgx.Conn
}

// Start is where Interleave made one source's sequence start.
type Start struct {
	DB        string
	Start     int64
	Increment int64
}

// Interleave gives the sequence name on the n sources interleaved values: on source i
// (1-based, in the order given) INCREMENT BY n and RESTART WITH the first value above
// every db's last_value (sources and others) that is ≡ i mod n, so that the sources never
// hand out the same value and no sequence moves back. Every source's sequence is locked
// (see the package doc) before any is read, and all are changed before any commits. With
// one failure nothing is changed (unless a commit itself fails half way: the error says
// which dbs committed).
func Interleave(ctx context.Context, name catalog.QualName, sources, others []Member) ([]Start, error) {
	n := int64(len(sources))
	if n == 0 {
		return nil, fmt.Errorf("sequence %s: no source to interleave", name)
	}
	id := Ident(name)
	txs := make([]pgx.Tx, len(sources))
	defer func() {
		for _, tx := range txs {
			if tx != nil {
				_ = tx.Rollback(context.WithoutCancel(ctx))
			}
		}
	}()
	var top int64 = math.MinInt64
	states := make([]State, len(sources))
	for i, m := range sources {
		st, err := Read(ctx, m.Conn, []catalog.QualName{name})
		if err != nil {
			return nil, fmt.Errorf("db %s: %w", m.DB, err)
		}
		tx, err := m.Conn.Begin(ctx)
		if err != nil {
			return nil, fmt.Errorf("db %s: %w", m.DB, err)
		}
		txs[i] = tx
		if st[0].Increment <= 0 {
			return nil, fmt.Errorf("db %s: sequence %s descends (INCREMENT BY %d): ibex interleaves ascending sequences only", m.DB, name, st[0].Increment)
		}
		if _, err := tx.Exec(ctx, lockTimeoutSQL); err != nil {
			return nil, fmt.Errorf("db %s: %w", m.DB, err)
		}
		if _, err := tx.Exec(ctx, fmt.Sprintf(`ALTER SEQUENCE %s INCREMENT BY %d`, id, st[0].Increment)); err != nil {
			if err := busy(err, name); errors.Is(err, ErrBusy) {
				return nil, fmt.Errorf("db %s: %w: try again once it has ended", m.DB, err)
			}
			return nil, fmt.Errorf("db %s: locking sequence %s (ALTER SEQUENCE, which needs its owner): %w", m.DB, name, err)
		}
		// Read again under the lock: no nextval moves it now.
		if st, err = Read(ctx, tx, []catalog.QualName{name}); err != nil {
			return nil, fmt.Errorf("db %s: %w", m.DB, err)
		}
		states[i] = st[0]
		top = max(top, st[0].Last)
	}
	for _, m := range others {
		st, err := Read(ctx, m.Conn, []catalog.QualName{name})
		if err != nil {
			return nil, fmt.Errorf("db %s: %w", m.DB, err)
		}
		top = max(top, st[0].Last)
	}
	starts := make([]Start, len(sources))
	for i, m := range sources {
		st := states[i]
		residue := int64(i+1) % n
		if top > math.MaxInt64-n {
			return nil, fmt.Errorf("db %s: sequence %s: no value above %d is left", m.DB, name, top)
		}
		v := top + 1 + mod(residue-(top+1), n)
		if v > st.Max {
			return nil, fmt.Errorf("db %s: sequence %s: it would restart at %d, above its MAXVALUE %d: raise its MAXVALUE", m.DB, name, v, st.Max)
		}
		if _, err := txs[i].Exec(ctx, fmt.Sprintf(`ALTER SEQUENCE %s INCREMENT BY %d START WITH %d RESTART WITH %d`, id, n, v, v)); err != nil {
			return nil, fmt.Errorf("db %s: sequence %s: %w", m.DB, name, err)
		}
		starts[i] = Start{DB: m.DB, Start: v, Increment: n}
	}
	var committed []string
	for i, m := range sources {
		err := txs[i].Commit(ctx)
		txs[i] = nil
		if err != nil {
			if len(committed) > 0 {
				return nil, fmt.Errorf("db %s: committing sequence %s: %w (dbs %s committed theirs: run the command again)", m.DB, name, err, strings.Join(committed, ", "))
			}
			return nil, fmt.Errorf("db %s: committing sequence %s: %w", m.DB, name, err)
		}
		committed = append(committed, m.DB)
	}
	return starts, nil
}

// SetIncrement sets a sequence's INCREMENT BY on one db (its value stays).
func SetIncrement(ctx context.Context, conn *pgx.Conn, name catalog.QualName, inc int64) error {
	_, err := conn.Exec(ctx, fmt.Sprintf(`ALTER SEQUENCE %s INCREMENT BY %d`, Ident(name), inc))
	if err != nil {
		return fmt.Errorf("sequence %s: %w", name, err)
	}
	return nil
}
