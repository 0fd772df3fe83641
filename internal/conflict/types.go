package conflict

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
)

// Types lists the conflict types, in the order reports show them.
var Types = []string{TypeInsertExists, TypeUpdateUpdate, TypeUpdateDelete, TypeDeleteDelete}

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
