// Package sqlstate names the PostgreSQL error codes (SQLSTATE) ibex branches on, so that
// callers test an error's class by name, never by its text. The names are PostgreSQL's
// condition names (Appendix A of its manual) in Go case.
package sqlstate

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
)

// The codes ibex branches on.
const (
	UniqueViolation       = "23505" // unique_violation
	ForeignKeyViolation   = "23503" // foreign_key_violation
	CheckViolation        = "23514" // check_violation
	InsufficientPrivilege = "42501" // insufficient_privilege: "permission denied", "must be owner"
	InvalidSchemaName     = "3F000" // invalid_schema_name: the schema does not exist
	ObjectInUse           = "55006" // object_in_use
	SerializationFailure  = "40001" // serialization_failure
	DeadlockDetected      = "40P01" // deadlock_detected
	FeatureNotSupported   = "0A000" // feature_not_supported
	DependentObjects      = "2BP01" // dependent_objects_still_exist
	TooManyConnections    = "53300" // too_many_connections
	LockNotAvailable      = "55P03" // lock_not_available: lock_timeout expired
)

// Code returns the SQLSTATE of err, or "" when err is not a PostgreSQL error.
func Code(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// Is reports whether err is a PostgreSQL error with one of codes.
func Is(err error, codes ...string) bool {
	c := Code(err)
	if c == "" {
		return false
	}
	for _, want := range codes {
		if c == want {
			return true
		}
	}
	return false
}

// Retryable reports whether err is a serialization failure or a deadlock: the
// transaction it ended can be tried again as it was.
func Retryable(err error) bool { return Is(err, SerializationFailure, DeadlockDetected) }
