package sqlite_test

import (
	"path/filepath"
	"testing"

	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/sinktest"
	"github.com/ibexrepl/ibex/sinks/sqlite"
)

// TestReadRows: every mapped type written through the sink reads back (ReadRows) as
// PostgreSQL prints it, the values SQLite keeps beyond the common ones too (numeric's
// scale and NaN, infinite floats and timestamps, arrays of every element kind as JSON).
func TestReadRows(t *testing.T) {
	vals := append(sinktest.CommonValues(),
		sinktest.Value{Type: "numeric", SQL: "'NaN'"},
		sinktest.Value{Type: "numeric", SQL: "'1.50'"},
		sinktest.Value{Type: "double precision", SQL: "'Infinity'"},
		sinktest.Value{Type: "double precision", SQL: "'-Infinity'"},
		sinktest.Value{Type: "timestamp with time zone", SQL: "'infinity'"},
		sinktest.Value{Type: "timestamp without time zone", SQL: "'-infinity'"},
		sinktest.Value{Type: "date", SQL: "'infinity'"},
		sinktest.Value{Type: "boolean[]", SQL: "'{t,f,NULL}'"},
		sinktest.Value{Type: "double precision[]", SQL: "'{1.5,NaN,-Infinity,1e+300}'"},
		sinktest.Value{Type: "numeric[]", SQL: "'{1.50,NaN,-3}'"},
		sinktest.Value{Type: "bytea[]", SQL: `'{"\\x01ff"}'`},
		sinktest.Value{Type: "jsonb[]", SQL: `ARRAY['{"a": [1, "x"]}'::jsonb, '"s"', '2', NULL]`},
		sinktest.Value{Type: "date[]", SQL: "'{2024-01-02,NULL}'"},
		sinktest.Value{Type: "text[]", SQL: `'{{a,b},{"c d",NULL}}'`},
	)
	s, err := sqlite.Open(t.Context(), sinks.Config{DB: "lite", Params: map[string]string{"path": filepath.Join(t.TempDir(), "r.db")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	sinktest.ReadBack(t, s, "public", "readback", vals)
}
