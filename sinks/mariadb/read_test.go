package mariadb_test

import (
	"testing"

	"github.com/ibexrepl/ibex/sinks/sinktest"
)

// TestReadRows: every mapped type written through the sink reads back (ReadRows) as
// PostgreSQL prints it: FLOAT and DOUBLE exactly (binary protocol), DATETIME and TIME
// with PostgreSQL's trimmed fractions, CHAR(n) padded back.
func TestReadRows(t *testing.T) {
	vals := append(sinktest.CommonValues(),
		sinktest.Value{Type: "numeric(30,10)", SQL: "'1.5000000000'"},
		sinktest.Value{Type: "character(3)", SQL: "'é'"},
		sinktest.Value{Type: "time(3) without time zone", SQL: "'01:02:03.12'"},
	)
	d := newTestDB(t)
	sinktest.ReadBack(t, d.open(t), "public", "readback", vals)
}
