package conflict

import (
	"errors"
	"fmt"
	"maps"
	"slices"
)

// Decision is what a strategy decides for one conflicting row: the version of the
// row every db ends up with.
//
// It is a struct, not an interface: a decision is data that the job logs, reports
// and passes between stages, and every kind of decision is the same few parts (a base
// version, columns taken from other versions, computed column values), so new kinds
// (issue 2.4: per-column winners, merges, counters) are new fields with zero values
// that mean "not used", and today's code keeps compiling and behaving the same.
//
// The zero Decision decides no winner: the row is not applied (Skip, Abort).
// A Decision with a Winner and nothing else is a whole-row decision: the winner's
// version of the row, unchanged. Columns and Values make a built row: the winner's
// version with some columns taken from other dbs' versions or set to computed values.
type Decision struct {
	// Winner is the db whose version of the row is the base of the result, and the
	// winner that conflict reports name; "" when no row is applied.
	Winner string
	// Columns maps a column name to the db whose version supplies that column, in
	// place of the winner's; nil for a whole-row decision.
	Columns map[string]string
	// Values maps a column name to a value computed by the decision (for example a
	// counter: one version's value plus the others' deltas), in place of the winner's;
	// nil for a whole-row decision. A column is in Columns or Values, not both.
	Values map[string]Field
	// Add maps a counter column to a number (decimal text) added to the base version's
	// value of it: the deltas the other sources made (a NULL value counts as 0); nil when
	// none. A column in Add is not in Columns or Values.
	Add map[string]string
	// Func names the SQL function (schema.fn) that builds the row from the versions of
	// every db in From (a Function strategy): the job calls it and puts what it returns
	// in Values; "" otherwise.
	Func string
	// From lists the dbs whose versions a Func decision needs (every source that changed
	// the row).
	From []string
}

// None reports whether the decision applies no row (Skip, Abort).
func (d Decision) None() bool { return d.Winner == "" }

// Whole reports whether the decision is the winner's version of the row unchanged,
// so a caller can copy that version without building the row.
func (d Decision) Whole() bool {
	return d.Winner != "" && len(d.Columns) == 0 && len(d.Values) == 0 && len(d.Add) == 0 && d.Func == ""
}

// Sources returns the dbs whose versions Build needs: the winner and the dbs named in
// Columns, sorted, each once; nil for a decision that applies no row.
func (d Decision) Sources() []string {
	if d.None() {
		return nil
	}
	set := map[string]bool{d.Winner: true}
	for _, db := range d.Columns {
		set[db] = true
	}
	for _, db := range d.From {
		set[db] = true
	}
	return slices.Sorted(maps.Keys(set))
}

// ErrBuild is wrapped by Build errors.
var ErrBuild = errors.New("cannot build the row")

// Build builds the row the decision describes. cols names the table's columns in the
// order of every version's fields; versions maps a db name to that db's version of the
// row (one Field per column, as DecodeCopyLine returns it) and needs an entry for every
// db in Sources; other entries are ignored. The result is a new slice in cols' order.
//
// Build fails (wrapping ErrBuild) when the decision applies no row, a version it needs
// is missing or has the wrong number of fields, it names a column not in cols, it names
// a column both in Columns and Values, or cols names a column twice.
func (d Decision) Build(cols []string, versions map[string][]Field) ([]Field, error) {
	if d.None() {
		return nil, fmt.Errorf("%w: the decision has no winner", ErrBuild)
	}
	version := func(db string) ([]Field, error) {
		v, ok := versions[db]
		if !ok {
			return nil, fmt.Errorf("%w: no version of the row from db %q", ErrBuild, db)
		}
		if len(v) != len(cols) {
			return nil, fmt.Errorf("%w: db %q's version has %d fields, the table %d columns", ErrBuild, db, len(v), len(cols))
		}
		return v, nil
	}
	base, err := version(d.Winner)
	if err != nil {
		return nil, err
	}
	row := slices.Clone(base)
	if d.Whole() {
		return row, nil
	}
	index := make(map[string]int, len(cols))
	for i, c := range cols {
		if _, dup := index[c]; dup {
			return nil, fmt.Errorf("%w: column %q is named twice", ErrBuild, c)
		}
		index[c] = i
	}
	column := func(c string) (int, error) {
		i, ok := index[c]
		if !ok {
			return 0, fmt.Errorf("%w: unknown column %q", ErrBuild, c)
		}
		return i, nil
	}
	// Sorted, so that with several faults the error is always the same one.
	for _, c := range slices.Sorted(maps.Keys(d.Columns)) {
		i, err := column(c)
		if err != nil {
			return nil, err
		}
		if _, both := d.Values[c]; both {
			return nil, fmt.Errorf("%w: column %q has both a source and a value", ErrBuild, c)
		}
		v, err := version(d.Columns[c])
		if err != nil {
			return nil, err
		}
		row[i] = v[i]
	}
	for _, c := range slices.Sorted(maps.Keys(d.Values)) {
		i, err := column(c)
		if err != nil {
			return nil, err
		}
		row[i] = d.Values[c]
	}
	for _, c := range slices.Sorted(maps.Keys(d.Add)) {
		i, err := column(c)
		if err != nil {
			return nil, err
		}
		if _, both := d.Values[c]; both {
			return nil, fmt.Errorf("%w: column %q has both a value and a delta", ErrBuild, c)
		}
		if _, both := d.Columns[c]; both {
			return nil, fmt.Errorf("%w: column %q has both a source and a delta", ErrBuild, c)
		}
		base := row[i].Text
		if row[i].Null {
			base = "0"
		}
		sum, err := AddNumbers(base, d.Add[c])
		if err != nil {
			return nil, fmt.Errorf("%w: counter %q: %w", ErrBuild, c, err)
		}
		row[i] = Field{Text: sum}
	}
	return row, nil
}
