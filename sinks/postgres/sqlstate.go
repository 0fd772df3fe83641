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
