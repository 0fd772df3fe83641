package mariadb_test

import (
	"os"
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/sinks"
)

// A 35 MB text value (47 MB of COPY text, over the server's 16 MB max_allowed_packet here)
// and 2 MB of bytes go through LOAD DATA. IBEX_BENCH=1 runs it (it moves 100 MB).
func TestHugeValue(t *testing.T) {
	if os.Getenv("IBEX_BENCH") != "1" {
		t.Skip("IBEX_BENCH=1 runs it")
	}
	d := newTestDB(t)
	s := d.open(t)
	tbl := &sinks.Table{Schema: "public", Name: "huge", Key: []string{"id"}, Cols: []string{"id", "v", "b"},
		Columns: []catalog.Column{{Name: "id", Type: "integer"}, {Name: "v", Type: "text"}, {Name: "b", Type: "bytea"}}}
	create(t, s, tbl)
	v := strings.Repeat(`ab\\c\td `, (50<<20)/10) // 7 bytes a unit once decoded
	ctx := t.Context()
	if err := s.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	c := applyBatch(t, s, tbl, []string{"1"}, []string{"1\t" + v + "\t\\\\x" + strings.Repeat("00ff", 1<<20)})
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var n, m int64
	if err := d.app.QueryRowContext(ctx, "SELECT LENGTH(v), LENGTH(b) FROM huge").Scan(&n, &m); err != nil {
		t.Fatal(err)
	}
	if c.Written != 1 || n != int64((50<<20)/10*7) || m != 2<<20 {
		t.Fatalf("counts %+v, lengths %d, %d", c, n, m)
	}
}
