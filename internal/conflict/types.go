package conflict

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Kind is what one source's pending changes did to a row, taken together: it was there
// before and is still (an update), it was not there and is now (an insert), or it was
// there and is gone (a delete; a row inserted and deleted again counts as a delete).
type Kind byte

// The kinds of Change.Kind.
const (
	KindUpdate Kind = iota
	KindInsert
	KindDelete
)

// The types of conflict, named as Spock and pgactive name them (PostgreSQL's own logical
// replication says insert_exists too).
const (
	// TypeInsertExists: a row inserted on one source with a key another source also
	// inserted (or still had, and updated).
	TypeInsertExists = "insert_exists"
	// TypeUpdateUpdate: a row updated on several sources.
	TypeUpdateUpdate = "update_update"
	// TypeUpdateDelete: a row deleted on some sources and inserted or updated on others.
	TypeUpdateDelete = "update_delete"
	// TypeDeleteDelete: a row deleted on several sources.
	TypeDeleteDelete = "delete_delete"
	// TypeUniqueClash: rows of different keys from different sources with the same values
	// in another unique index: the strategy keeps one source's row, the others' are
	// deleted (and logged in full).
	TypeUniqueClash = "unique_clash"
)

// TypeOrphan: a child row whose parent row (a foreign key between two tables of the sync)
// another source deleted; resolved by the sync's on_orphan, not by a strategy.
const TypeOrphan = "orphan"

// Types lists the conflict types, in the order reports show them.
var Types = []string{TypeInsertExists, TypeUpdateUpdate, TypeUpdateDelete, TypeDeleteDelete, TypeUniqueClash}

// Classify names the conflict of a row changed on several sources.
func Classify(changes []Change) string {
	var inserts, deletes int
	for _, c := range changes {
		switch c.Kind {
		case KindInsert:
			inserts++
		case KindDelete:
			deletes++
		}
	}
	switch {
	case deletes == len(changes):
		return TypeDeleteDelete
	case deletes > 0:
		return TypeUpdateDelete
	case inserts > 0:
		return TypeInsertExists
	}
	return TypeUpdateUpdate
}

// Strategies are a sync's conflict strategies: its conflict_strategy, and the ones it sets
// for some conflict types instead.
type Strategies struct {
	Default Strategy
	ByType  map[string]Strategy
}

// ParseAll parses a sync's conflict_strategy and its strategies by type (type ->
// strategy, as ParseType checks), for a dbgroup of dbs with these sources.
func ParseAll(def string, byType map[string]string, dbs, sources []string) (Strategies, error) {
	var ss Strategies
	var err error
	if ss.Default, err = Parse(def, dbs, sources); err != nil {
		return ss, err
	}
	for typ, v := range byType {
		if err := CheckType(typ); err != nil {
			return ss, err
		}
		st, err := Parse(v, dbs, sources)
		if err != nil {
			return ss, fmt.Errorf("on_%s: %w", typ, err)
		}
		if ss.ByType == nil {
			ss.ByType = map[string]Strategy{}
		}
		ss.ByType[typ] = st
	}
	return ss, nil
}

// CheckType reports an error unless typ is a conflict type.
func CheckType(typ string) error {
	if !slices.Contains(Types, typ) {
		return fmt.Errorf("unknown conflict type %q (use %s)", typ, strings.Join(Types, ", "))
	}
	return nil
}

// For returns the strategy for conflicts of type typ.
func (ss Strategies) For(typ string) Strategy {
	if st, ok := ss.ByType[typ]; ok {
		return st
	}
	return ss.Default
}

// Aborts reports whether some type's strategy is abort.
func (ss Strategies) Aborts() bool {
	if ss.Default.Kind == Abort {
		return true
	}
	for _, st := range ss.ByType {
		if st.Kind == Abort {
			return true
		}
	}
	return false
}

// Functions returns the SQL functions the strategies name (Function strategies), sorted,
// each once.
func (ss Strategies) Functions() []string {
	var fns []string
	for _, st := range append([]Strategy{ss.Default}, slices.Collect(maps.Values(ss.ByType))...) {
		if st.Kind == Function && !slices.Contains(fns, st.Func) {
			fns = append(fns, st.Func)
		}
	}
	slices.Sort(fns)
	return fns
}
