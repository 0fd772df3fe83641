package flatfile_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/flatfile"
	"github.com/ibexrepl/ibex/sinks/sinktest"
)

// harness runs sinktest on a directory of postgres-dialect files whose replay target is
// a fresh PostgreSQL database: CreateTable creates the table there, Seed stores rows
// there and in the directory's key index (flatfile.Seed), Rows replays the files not yet
// replayed, in name order, and reads the table back.
type harness struct {
	dir      string
	params   map[string]string
	db       *pgtest.DB
	app      *pgx.Conn
	run      int64
	replayed map[string]bool
}

var _ sinktest.Harness = (*harness)(nil)

func newHarness(t *testing.T, params map[string]string) *harness {
	dir := t.TempDir()
	p := map[string]string{"path": dir}
	for k, v := range params {
		p[k] = v
	}
	db := pgtest.NewDB(t, "")
	return &harness{dir: dir, params: p, db: db, app: pgtest.Conn(t, db.DSN), replayed: map[string]bool{}}
}

var pgTypes = map[sinktest.Kind]string{
	sinktest.Int:    "integer",
	sinktest.BigInt: "bigint",
	sinktest.Text:   "text",
	sinktest.Bytes:  "bytea",
}

func qi(s string) string { return pgx.Identifier{s}.Sanitize() }

func ident(t *sinks.Table) string { return pgx.Identifier{t.Schema, t.Name}.Sanitize() }

func cols(t *sinks.Table) string {
	var out []string
	for _, c := range t.Cols {
		out = append(out, qi(c))
	}
	return strings.Join(out, ", ")
}

func (h *harness) exec(t *testing.T, sql string) {
	t.Helper()
	if _, err := h.app.Exec(t.Context(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func (h *harness) CreateTable(t *testing.T, spec sinktest.Spec) *sinks.Table {
	t.Helper()
	tbl := &sinks.Table{Schema: spec.Schema, Name: spec.Name}
	var defs, keys []string
	for i, c := range spec.Columns {
		defs = append(defs, qi(c.Name)+" "+pgTypes[c.Kind])
		tbl.Cols = append(tbl.Cols, c.Name)
		if i < spec.Key {
			tbl.Key = append(tbl.Key, c.Name)
			keys = append(keys, qi(c.Name))
		}
	}
	h.exec(t, `CREATE SCHEMA IF NOT EXISTS `+qi(spec.Schema))
	h.exec(t, fmt.Sprintf(`CREATE TABLE %s (%s, PRIMARY KEY (%s))`, ident(tbl), strings.Join(defs, ", "), strings.Join(keys, ", ")))
	return h.describe(t, tbl)
}

// describe fills tbl's columns from the replay target's catalog (the source's, in a
// run) and drops the table when t ends.
func (h *harness) describe(t *testing.T, tbl *sinks.Table) *sinks.Table {
	t.Helper()
	desc, err := catalog.Describe(t.Context(), h.app, catalog.QualName{Schema: tbl.Schema, Name: tbl.Name})
	if err != nil {
		t.Fatal(err)
	}
	tbl.Columns = desc.Columns
	t.Cleanup(func() {
		h.replay(t) // files of this table must replay before it goes
		_, _ = h.app.Exec(context.Background(), `DROP TABLE IF EXISTS `+ident(tbl)+` CASCADE`)
	})
	return tbl
}

func (h *harness) Seed(t *testing.T, tbl *sinks.Table, rows []string) {
	t.Helper()
	body := strings.Join(rows, "\n") + "\n"
	if len(rows) == 0 {
		body = ""
	}
	sql := fmt.Sprintf(`COPY %s (%s) FROM STDIN`, ident(tbl), cols(tbl))
	if _, err := h.app.PgConn().CopyFrom(t.Context(), strings.NewReader(body), sql); err != nil {
		t.Fatalf("seeding %s: %v", tbl.Label(), err)
	}
	if err := flatfile.Seed(t.Context(), h.dir, tbl, rows); err != nil {
		t.Fatal(err)
	}
}

// config is a sink's Config: each sink is a run of its own, as in ibex.
func (h *harness) config() sinks.Config {
	h.run++
	return sinks.Config{DB: "ff", Params: h.params, Sync: "sink test", Run: h.run}
}

func (h *harness) NewSink(t *testing.T) sinks.Sink {
	t.Helper()
	s, err := flatfile.Open(t.Context(), h.config())
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// files lists the directory's committed files in replay order.
func files(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.sql"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

// replay runs every committed file not yet replayed, in order, on the replay target.
func (h *harness) replay(t *testing.T) {
	t.Helper()
	for _, name := range files(t, h.dir) {
		if h.replayed[name] {
			continue
		}
		sql, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.app.PgConn().Exec(context.Background(), string(sql)).ReadAll(); err != nil {
			t.Fatalf("replaying %s: %v", filepath.Base(name), err)
		}
		h.replayed[name] = true
	}
}

func (h *harness) Rows(t *testing.T, tbl *sinks.Table) []string {
	t.Helper()
	h.replay(t)
	var buf bytes.Buffer
	if _, err := h.app.PgConn().CopyTo(t.Context(), &buf, fmt.Sprintf(`COPY (SELECT %s FROM %s) TO STDOUT`, cols(tbl), ident(tbl))); err != nil {
		t.Fatalf("reading %s: %v", tbl.Label(), err)
	}
	if buf.Len() == 0 {
		return nil
	}
	rows := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	slices.Sort(rows)
	return rows
}

func TestConformance(t *testing.T) {
	t.Parallel()
	sinktest.Exercise(t, newHarness(t, nil))
}

func TestConformanceNoFsync(t *testing.T) {
	t.Parallel()
	sinktest.Exercise(t, newHarness(t, map[string]string{"fsync": "off"}))
}
