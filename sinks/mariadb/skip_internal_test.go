package mariadb

import (
	"database/sql/driver"
	"fmt"
	"testing"

	"github.com/go-sql-driver/mysql"
)

// What on_error=skip leaves out (a refused row) and what still fails the batch.
func TestIsRowError(t *testing.T) {
	state := func(s string) [5]byte { var b [5]byte; copy(b[:], s); return b }
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&mysql.MySQLError{Number: 4025, SQLState: state("23000"), Message: "CONSTRAINT `c` failed"}, true},
		{&mysql.MySQLError{Number: 1406, SQLState: state("22001"), Message: "Data too long"}, true},
		{&mysql.MySQLError{Number: 1644, SQLState: state("45000"), Message: "no beast"}, true},
		{&mysql.MySQLError{Number: 1048, SQLState: state("23000"), Message: "cannot be null"}, true},
		{&mysql.MySQLError{Number: 9999, SQLState: state("22007"), Message: "a data exception"}, true},
		{fmt.Errorf("row 3: %w", &valueError{col: "d", typ: "real", value: "NaN", err: errNaN}), true},
		{&warnedError{msg: "Warning 1265: Data truncated"}, true},
		{&mysql.MySQLError{Number: 1213, SQLState: state("40001"), Message: "Deadlock found"}, false},
		{&mysql.MySQLError{Number: 1205, SQLState: state("HY000"), Message: "Lock wait timeout exceeded"}, false},
		{&mysql.MySQLError{Number: 1146, SQLState: state("42S02"), Message: "Table doesn't exist"}, false},
		{driver.ErrBadConn, false},
		{mysql.ErrInvalidConn, false},
	} {
		if got := isRowError(c.err); got != c.want {
			t.Errorf("isRowError(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
