package postgres

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
)

// SQLSTATEs the sink tells apart (PostgreSQL, Appendix A).
const (
	// uniqueViolation is unique_violation: the upsert of a source tripped over another
	// unique column, and the sink deletes and inserts instead.
	uniqueViolation = "23505"
)

// isCode reports whether err is a PostgreSQL error with SQLSTATE code.
func isCode(err error, code string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == code
}

// isRowError reports whether err is the database refusing a row (on_error=skip leaves such
// a row out): a data exception (class 22: a value its type rejects), an integrity
// constraint (23: CHECK, NOT NULL, foreign key, unique), a PL/pgSQL raise (P0: a trigger)
// or a view's WITH CHECK OPTION (44).
func isRowError(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || len(pe.Code) != 5 {
		return false
	}
	switch pe.Code[:2] {
	case "22", "23", "P0", "44":
		return true
	}
	return false
}
