package sqlite_test

import (
	"database/sql"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/pgtext"
	"github.com/ibexrepl/ibex/sinks/sinktest"
	"github.com/ibexrepl/ibex/sinks/sqlite"
)

func TestSink(t *testing.T) { sinktest.Exercise(t, newHarness(t)) }

// harness runs sinktest on a database file of its own; app is the receiver's
// application (a database/sql pool of its own) that creates, seeds and reads tables.
type harness struct {
	path  string
	app   *sql.DB
	kinds map[string][]sinktest.Kind // a table's column kinds, by TableName
}

var _ sinktest.Harness = (*harness)(nil)

func newHarness(t *testing.T) *harness {
	path := filepath.Join(t.TempDir(), "receiver.db")
	return &harness{path: path, app: appDB(t, path), kinds: map[string][]sinktest.Kind{}}
}

// appDB opens path as an application would.
func appDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

var pgTypes = map[sinktest.Kind]string{
	sinktest.Int:    "integer",
	sinktest.BigInt: "bigint",
	sinktest.Text:   "text",
	sinktest.Bytes:  "bytea",
}

var liteTypes = map[sinktest.Kind]string{
	sinktest.Int:    "INTEGER",
	sinktest.BigInt: "INTEGER",
	sinktest.Text:   "TEXT",
	sinktest.Bytes:  "BLOB",
}

func qi(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func ident(tbl *sinks.Table) string { return qi(sqlite.TableName(tbl.Schema, tbl.Name)) }

func cols(tbl *sinks.Table) string {
	out := make([]string, len(tbl.Cols))
	for i, c := range tbl.Cols {
		out[i] = qi(c)
	}
	return strings.Join(out, ", ")
}

func (h *harness) exec(t *testing.T, stmt string, args ...any) {
	t.Helper()
	if _, err := h.app.ExecContext(t.Context(), stmt, args...); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

func (h *harness) CreateTable(t *testing.T, spec sinktest.Spec) *sinks.Table {
	t.Helper()
	tbl := &sinks.Table{Schema: spec.Schema, Name: spec.Name}
	var defs, keys []string
	var kinds []sinktest.Kind
	for i, c := range spec.Columns {
		defs = append(defs, qi(c.Name)+" "+liteTypes[c.Kind])
		tbl.Cols = append(tbl.Cols, c.Name)
		tbl.Columns = append(tbl.Columns, catalog.Column{Name: c.Name, Type: pgTypes[c.Kind], NotNull: i < spec.Key})
		kinds = append(kinds, c.Kind)
		if i < spec.Key {
			tbl.Key = append(tbl.Key, c.Name)
			keys = append(keys, qi(c.Name))
		}
	}
	h.exec(t, fmt.Sprintf(`CREATE TABLE %s (%s, PRIMARY KEY (%s))`, ident(tbl), strings.Join(defs, ", "), strings.Join(keys, ", ")))
	h.kinds[sqlite.TableName(tbl.Schema, tbl.Name)] = kinds
	t.Cleanup(func() { _, _ = h.app.Exec(`DROP TABLE IF EXISTS ` + ident(tbl)) })
	return tbl
}

func (h *harness) Seed(t *testing.T, tbl *sinks.Table, rows []string) {
	t.Helper()
	kinds := h.kinds[sqlite.TableName(tbl.Schema, tbl.Name)]
	marks := strings.TrimSuffix(strings.Repeat("?, ", len(tbl.Cols)), ", ")
	for _, r := range rows {
		fields, err := conflict.DecodeCopyLine(r)
		if err != nil {
			t.Fatal(err)
		}
		args := make([]any, len(fields))
		for i, f := range fields {
			if f.Null {
				continue
			}
			switch kinds[i] {
			case sinktest.Int, sinktest.BigInt:
				if args[i], err = strconv.ParseInt(f.Text, 10, 64); err != nil {
					t.Fatal(err)
				}
			case sinktest.Bytes:
				b, err := pgtext.ParseBytea(f.Text)
				if err != nil {
					t.Fatal(err)
				}
				args[i] = append([]byte{}, b...)
			default:
				args[i] = f.Text
			}
		}
		h.exec(t, fmt.Sprintf(`INSERT INTO %s (%s) VALUES (%s)`, ident(tbl), cols(tbl), marks), args...)
	}
}

func (h *harness) NewSink(t *testing.T) sinks.Sink {
	t.Helper()
	s, err := sqlite.Open(t.Context(), sinks.Config{DB: "lite", Params: map[string]string{"path": h.path}})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func (h *harness) Rows(t *testing.T, tbl *sinks.Table) []string {
	t.Helper()
	s := h.NewSink(t).(*sqlite.Sink)
	var got []string
	if err := s.ReadRows(t.Context(), tbl, func(line string) error {
		got = append(got, line)
		return nil
	}); err != nil {
		t.Fatalf("ReadRows(%s): %v", tbl.Label(), err)
	}
	slices.Sort(got)
	// The file's own view, storage classes checked: the same rows.
	if raw := readRows(t, h.app, tbl, h.kinds[sqlite.TableName(tbl.Schema, tbl.Name)]); !slices.Equal(got, raw) {
		t.Fatalf("%s: ReadRows gives %q, the file holds %q", tbl.Label(), got, raw)
	}
	return got
}

// readRows reads tbl's rows as COPY text, sorted: integers in decimal, text as is, blobs
// as \x and hex.
func readRows(t *testing.T, db *sql.DB, tbl *sinks.Table, kinds []sinktest.Kind) []string {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), fmt.Sprintf(`SELECT %s FROM %s`, cols(tbl), ident(tbl)))
	if err != nil {
		t.Fatalf("reading %s: %v", tbl.Label(), err)
	}
	defer rows.Close()
	var out []string
	vals := make([]any, len(tbl.Cols))
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		fields := make([]conflict.Field, len(vals))
		for i, v := range vals {
			switch v := v.(type) {
			case nil:
				fields[i].Null = true
			case int64:
				if kinds[i] != sinktest.Int && kinds[i] != sinktest.BigInt {
					t.Fatalf("%s column %s: integer %d in a %v column", tbl.Label(), tbl.Cols[i], v, kinds[i])
				}
				fields[i].Text = strconv.FormatInt(v, 10)
			case string:
				if kinds[i] != sinktest.Text {
					t.Fatalf("%s column %s: text %q in a %v column", tbl.Label(), tbl.Cols[i], v, kinds[i])
				}
				fields[i].Text = v
			case []byte:
				if kinds[i] != sinktest.Bytes {
					t.Fatalf("%s column %s: blob in a %v column", tbl.Label(), tbl.Cols[i], kinds[i])
				}
				fields[i].Text = `\x` + hex.EncodeToString(v)
			default:
				t.Fatalf("%s column %s: unexpected %T", tbl.Label(), tbl.Cols[i], v)
			}
		}
		out = append(out, conflict.EncodeCopyLine(fields))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}
