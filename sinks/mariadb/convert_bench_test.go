package mariadb

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/sinks"
)

// BenchmarkConvert is the conversion of 100,000 pgbench_accounts-like rows alone.
func BenchmarkConvert(b *testing.B) {
	var buf bytes.Buffer
	filler := strings.Repeat("x", 84)
	for i := 1; i <= 100_000; i++ {
		fmt.Fprintf(&buf, "%d\t%d\t0\t%s\n", i, 1, filler)
	}
	t := &sinks.Table{Schema: "public", Name: "a", Key: []string{"aid"}, Cols: []string{"aid", "bid", "abalance", "filler"},
		Columns: []catalog.Column{{Name: "aid", Type: "integer"}, {Name: "bid", Type: "integer"}, {Name: "abalance", Type: "integer"}, {Name: "filler", Type: "character(84)"}}}
	conv := newConverter(t, t.Cols)
	b.SetBytes(int64(buf.Len()))
	for b.Loop() {
		if _, err := io.Copy(io.Discard, newRowReader(bytes.NewReader(buf.Bytes()), conv, nil)); err != nil {
			b.Fatal(err)
		}
	}
}
