package redis

import (
	"testing"

	"github.com/ibexrepl/ibex/sinks/sinktest"
)

// TestReadRows: every mapped type written through the sink reads back (ReadRows) as
// PostgreSQL prints it, the values Redis keeps beyond the common ones too (NaN,
// Infinity, infinite and BC timestamps and dates, arrays of any type).
func TestReadRows(t *testing.T) {
	vals := append(sinktest.CommonValues(),
		sinktest.Value{Type: "numeric", SQL: "'NaN'"},
		sinktest.Value{Type: "numeric", SQL: "'1.50'"},
		sinktest.Value{Type: "real", SQL: "'-0'"},
		sinktest.Value{Type: "double precision", SQL: "'NaN'"},
		sinktest.Value{Type: "double precision", SQL: "'-Infinity'"},
		sinktest.Value{Type: "timestamp with time zone", SQL: "'infinity'"},
		sinktest.Value{Type: "timestamp with time zone", SQL: "'0044-03-15 12:00:00+00 BC'"},
		sinktest.Value{Type: "timestamp with time zone", SQL: "'0001-01-01 01:00:00+02 BC'"},
		sinktest.Value{Type: "timestamp with time zone", SQL: "'0001-01-01 00:30:00+01'"},
		sinktest.Value{Type: "timestamp without time zone", SQL: "'-infinity'"},
		sinktest.Value{Type: "date", SQL: "'0044-03-15 BC'"},
		sinktest.Value{Type: "bytea[]", SQL: `'{"\\x01ff"}'`},
		sinktest.Value{Type: "jsonb[]", SQL: `ARRAY['{"a": 1}'::jsonb, 'null', NULL]`},
	)
	h := newHarness(t)
	sinktest.ReadBack(t, h.open(t), "public", "readback", vals)
}
