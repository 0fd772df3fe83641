// Package conflict decides, for a row changed on more than one source in a run, what
// every db ends up with: a Decision, today one source's whole version of the row (or
// none), and room for rows built from several versions (columns from other sources,
// computed values). It also decodes and encodes rows in PostgreSQL's COPY text format,
// the form versions arrive in and built rows leave in. It is pure: no I/O.
package conflict

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Strategy kinds.
const (
	Latest = "latest" // the most recent change of the row wins (default)
	Source = "source" // the first source in the dbgroup's order wins
	Abort  = "abort"  // the run fails, nothing is applied
	Skip   = "skip"   // the row is left alone everywhere and reported
	List   = "list"   // an ordered list of db names: the first that changed the row wins
	// Function: an SQL function in the control database builds the row from every
	// version (conflict_strategy=function:schema.fn).
	Function = "function"
)

// FunctionPrefix starts a Function strategy's text.
const FunctionPrefix = "function:"

// Strategy is a parsed conflict_strategy.
type Strategy struct {
	Kind  string
	Order []string // for List: db names; for Source: the dbgroup's sources in order
	// Func is a Function strategy's function, schema-qualified as written (schema.fn).
	Func string
}

// String renders the strategy as users write it.
func (s Strategy) String() string {
	switch s.Kind {
	case List:
		return strings.Join(s.Order, " ")
	case Function:
		return FunctionPrefix + s.Func
	}
	return s.Kind
}

var aliases = map[string]string{
	"": Latest, "latest": Latest, "bucardo_latest": Latest, "default": Latest,
	"source": Source, "bucardo_source": Source,
	"abort": Abort, "bucardo_abort": Abort,
	"skip": Skip, "bucardo_skip": Skip,
}

// ErrInvalid is wrapped by Parse errors.
var ErrInvalid = errors.New("invalid conflict_strategy")

// Normalize returns the canonical text of a conflict_strategy value.
func Normalize(v string) string {
	v = strings.TrimSpace(v)
	if k, ok := aliases[strings.ToLower(v)]; ok {
		return k
	}
	return strings.Join(strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == ',' }), " ")
}

// Parse checks a conflict_strategy against the sync's dbs (in dbgroup order) and sources.
func Parse(v string, dbs, sources []string) (Strategy, error) {
	n := Normalize(v)
	if len(n) >= len(FunctionPrefix) && strings.EqualFold(n[:len(FunctionPrefix)], FunctionPrefix) {
		name := strings.TrimSpace(n[len(FunctionPrefix):])
		if !funcName.MatchString(name) {
			return Strategy{}, fmt.Errorf("%w %q: function: takes a schema-qualified SQL function name of letters, digits and _, such as function:public.pick_row", ErrInvalid, v)
		}
		return Strategy{Kind: Function, Func: name}, nil
	}
	switch n {
	case Latest, Abort, Skip:
		return Strategy{Kind: n}, nil
	case Source:
		return Strategy{Kind: Source, Order: slices.Clone(sources)}, nil
	}
	names := strings.Fields(n)
	seen := map[string]bool{}
	for _, name := range names {
		if !slices.Contains(dbs, name) {
			return Strategy{}, fmt.Errorf("%w %q: %q is not a db of this sync (its dbs: %s); use latest, source, abort, skip or a list of its db names",
				ErrInvalid, v, name, strings.Join(dbs, " "))
		}
		if seen[name] {
			return Strategy{}, fmt.Errorf("%w %q: db %q is listed twice", ErrInvalid, v, name)
		}
		seen[name] = true
	}
	return Strategy{Kind: List, Order: names}, nil
}

// funcName is the form of a Function strategy's name: schema.function, plain identifiers
// (PostgreSQL folds them to lower case; quoting is not needed, so not accepted).
var funcName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]*\.[A-Za-z_][A-Za-z0-9_$]*$`)

// Change is one source's change of a row: the source and the time of its latest change
// (microseconds since the epoch).
type Change struct {
	DB string
	At int64
	// Kind is what the source's changes did to the row (for the conflict's type).
	Kind Kind
}

// Decide returns the strategy's decision for a row changed by changes (at least two
// entries). Every strategy of today decides a whole row, one source's version (see
// Winner), or none (Skip, Abort: the zero Decision).
func (s Strategy) Decide(changes []Change) Decision {
	d := Decision{Winner: s.winner(changes)}
	if s.Kind == Function {
		// The latest version is the base; the function's columns replace its own.
		d.Func = s.Func
		for _, c := range changes {
			d.From = append(d.From, c.DB)
		}
	}
	return d
}

// Winner returns the source whose version of the row wins, or "" when the strategy
// decides no winner (Skip, Abort): Decide(changes).Winner. changes has at least two
// entries.
func (s Strategy) Winner(changes []Change) string {
	return s.Decide(changes).Winner
}

func (s Strategy) winner(changes []Change) string {
	switch s.Kind {
	case Abort, Skip:
		return ""
	case List, Source:
		for _, name := range s.Order {
			for _, c := range changes {
				if c.DB == name {
					return name
				}
			}
		}
	}
	// Latest, and List/Source when no listed db changed the row: the latest change wins;
	// ties go to the db whose name sorts first, so every run decides the same way.
	best := changes[0]
	for _, c := range changes[1:] {
		if c.At > best.At || (c.At == best.At && c.DB < best.DB) {
			best = c
		}
	}
	return best.DB
}
