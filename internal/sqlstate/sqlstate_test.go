package sqlstate

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestIs(t *testing.T) {
	pe := &pgconn.PgError{Code: DeadlockDetected, Message: "deadlock detected"}
	wrapped := fmt.Errorf("db t1: applying x: %w", pe)
	for _, c := range []struct {
		err       error
		code      string
		retryable bool
		unique    bool
	}{
		{nil, "", false, false},
		{errors.New("40P01"), "", false, false}, // text is never matched
		{pe, DeadlockDetected, true, false},
		{wrapped, DeadlockDetected, true, false},
		{&pgconn.PgError{Code: SerializationFailure}, SerializationFailure, true, false},
		{&pgconn.PgError{Code: UniqueViolation}, UniqueViolation, false, true},
	} {
		if got := Code(c.err); got != c.code {
			t.Errorf("Code(%v) = %q, want %q", c.err, got, c.code)
		}
		if got := Retryable(c.err); got != c.retryable {
			t.Errorf("Retryable(%v) = %v", c.err, got)
		}
		if got := Is(c.err, UniqueViolation, CheckViolation); got != c.unique {
			t.Errorf("Is(%v, unique, check) = %v", c.err, got)
		}
	}
}
