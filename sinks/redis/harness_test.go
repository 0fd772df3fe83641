package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/sinktest"
)

const testAddr = "127.0.0.1:6379"

// harness runs sinktest on the local Redis, every key under a prefix of its own.
type harness struct {
	client *goredis.Client
	prefix string
	extra  map[string]string // more params for NewSink
}

var _ sinktest.Harness = (*harness)(nil)

// testClient is a plain client on the test server, closed when t ends.
func testClient(t *testing.T) *goredis.Client {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: testAddr, Protocol: 2, DisableIdentity: true})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("redis on %s: %v", testAddr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// newHarness makes a unique prefix and deletes every key under it when t ends.
func newHarness(t *testing.T) *harness {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	h := &harness{client: testClient(t), prefix: "ibex_sinktest_" + hex.EncodeToString(b[:]) + ":"}
	t.Cleanup(func() {
		ctx := context.Background()
		var cursor uint64
		for {
			keys, next, err := h.client.Scan(ctx, cursor, globEscape(h.prefix)+"*", 1000).Result()
			if err != nil {
				t.Errorf("cleanup: %v", err)
				return
			}
			if len(keys) > 0 {
				h.client.Del(ctx, keys...)
			}
			if next == 0 {
				return
			}
			cursor = next
		}
	})
	return h
}

var pgTypes = map[sinktest.Kind]string{
	sinktest.Int:    "integer",
	sinktest.BigInt: "bigint",
	sinktest.Text:   "text",
	sinktest.Bytes:  "bytea",
}

func (h *harness) CreateTable(t *testing.T, spec sinktest.Spec) *sinks.Table {
	tbl := &sinks.Table{Schema: spec.Schema, Name: spec.Name}
	for i, c := range spec.Columns {
		tbl.Cols = append(tbl.Cols, c.Name)
		tbl.Columns = append(tbl.Columns, catalog.Column{Name: c.Name, Type: pgTypes[c.Kind], NotNull: i < spec.Key})
		if i < spec.Key {
			tbl.Key = append(tbl.Key, c.Name)
		}
	}
	return tbl
}

// Seed stores rows with plain HSETs.
func (h *harness) Seed(t *testing.T, tbl *sinks.Table, rows []string) {
	t.Helper()
	l, err := newLayout(h.prefix, tbl)
	if err != nil {
		t.Fatal(err)
	}
	var a arena
	for _, r := range rows {
		row, _, err := l.packRow(&a, r)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.client.Do(t.Context(), hsetArgs(nil, row, l.cols)...).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

func (h *harness) params() map[string]string {
	p := map[string]string{"host": "127.0.0.1", "port": "6379", "prefix": h.prefix}
	for k, v := range h.extra {
		p[k] = v
	}
	return p
}

func (h *harness) NewSink(t *testing.T) sinks.Sink {
	t.Helper()
	return h.open(t)
}

func (h *harness) open(t *testing.T) *Sink {
	t.Helper()
	s, err := Open(t.Context(), sinks.Config{DB: "r1", Params: h.params()})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Rows reads tbl back through the sink's ReadRows, sorted.
func (h *harness) Rows(t *testing.T, tbl *sinks.Table) []string {
	t.Helper()
	var rows []string
	if err := h.open(t).ReadRows(t.Context(), tbl, func(line string) error {
		rows = append(rows, line)
		return nil
	}); err != nil {
		t.Fatalf("reading %s: %v", tbl.Label(), err)
	}
	slices.Sort(rows)
	return rows
}

func TestConformance(t *testing.T) {
	sinktest.Exercise(t, newHarness(t))
}
