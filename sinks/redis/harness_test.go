package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
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
	for _, r := range rows {
		key, args, _, err := l.row(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.client.HSet(t.Context(), key, args...).Err(); err != nil {
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

// Rows reads every hash of tbl back as COPY text lines (absent field: \N; bytea as
// \\x hex), sorted.
func (h *harness) Rows(t *testing.T, tbl *sinks.Table) []string {
	t.Helper()
	ctx := t.Context()
	l, err := newLayout(h.prefix, tbl)
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	err = scanKeys(ctx, h.client, l.base, func(keys []string) error {
		for _, k := range keys {
			m, err := h.client.HGetAll(ctx, k).Result()
			if err != nil {
				return err
			}
			if len(m) == 0 {
				continue // deleted since the SCAN
			}
			var fields []string
			for i, c := range tbl.Cols {
				v, ok := m[c]
				switch {
				case !ok:
					fields = append(fields, `\N`)
				case tbl.Columns[i].Type == "bytea":
					fields = append(fields, `\\x`+hex.EncodeToString([]byte(v)))
				default:
					fields = append(fields, copyEscape(v))
				}
			}
			if len(m) != countPresent(fields) {
				return fmt.Errorf("key %q: fields %v, expected only %q", k, mapKeys(m), tbl.Cols)
			}
			rows = append(rows, strings.Join(fields, "\t"))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("reading %s: %v", tbl.Label(), err)
	}
	slices.Sort(rows)
	rows = slices.Compact(rows) // SCAN may return a key twice
	return rows
}

func countPresent(fields []string) int {
	n := 0
	for _, f := range fields {
		if f != `\N` {
			n++
		}
	}
	return n
}

func mapKeys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// copyEscape is PostgreSQL's COPY TO escaping of a text value.
func copyEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\v':
			b.WriteString(`\v`)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func TestConformance(t *testing.T) {
	sinktest.Exercise(t, newHarness(t))
}
