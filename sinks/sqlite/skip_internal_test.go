package sqlite

import (
	"errors"
	"fmt"
	"testing"
)

type codeErr int

func (e codeErr) Error() string { return fmt.Sprintf("sqlite error %d", int(e)) }
func (e codeErr) Code() int     { return int(e) }

// What on_error=skip leaves out (a refused row) and what still fails the batch.
func TestIsRowError(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{codeErr(19), true},   // SQLITE_CONSTRAINT
		{codeErr(275), true},  // SQLITE_CONSTRAINT_CHECK
		{codeErr(1299), true}, // SQLITE_CONSTRAINT_NOTNULL
		{codeErr(1811), true}, // SQLITE_CONSTRAINT_TRIGGER
		{codeErr(20), true},   // SQLITE_MISMATCH
		{codeErr(18), true},   // SQLITE_TOOBIG
		{fmt.Errorf("row 2: %w", &ValueError{Table: "public.t", Column: "d", Type: "real", Value: "NaN", Reason: "NaN"}), true},
		{codeErr(5), false},  // SQLITE_BUSY
		{codeErr(10), false}, // SQLITE_IOERR
		{codeErr(13), false}, // SQLITE_FULL
		{codeErr(1), false},  // SQLITE_ERROR
		{errors.New("context canceled"), false},
	} {
		if got := isRowError(c.err); got != c.want {
			t.Errorf("isRowError(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
