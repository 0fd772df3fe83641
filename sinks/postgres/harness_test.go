package postgres_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/capture"
	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/postgres"
	"github.com/ibexrepl/ibex/sinks/sinktest"
)

// syncName is the sync whose capture a source-mode harness installs.
const syncName = "s1"

// harness runs sinktest on a test database, in target mode or (source) with ibex's
// capture on every table and sinks in source mode; with partitioned, every table it
// creates is partitioned by hash of its first key column, in 3 partitions.
type harness struct {
	db          *pgtest.DB
	app         *pgx.Conn // the receiver's application: creates, seeds and reads tables
	source      bool
	partitioned bool
}

var _ sinktest.Harness = (*harness)(nil)

func newHarness(t *testing.T, source bool) *harness {
	db := pgtest.NewDB(t, "")
	return &harness{db: db, app: pgtest.Conn(t, db.DSN), source: source}
}

var pgTypes = map[sinktest.Kind]string{
	sinktest.Int:    "integer",
	sinktest.BigInt: "bigint",
	sinktest.Text:   "text",
	sinktest.Bytes:  "bytea",
}

func qi(s string) string { return pgx.Identifier{s}.Sanitize() }

func (h *harness) exec(t *testing.T, sql string) {
	t.Helper()
	if _, err := h.app.Exec(t.Context(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func (h *harness) CreateTable(t *testing.T, spec sinktest.Spec) *sinks.Table {
	t.Helper()
	tbl := &sinks.Table{Schema: spec.Schema, Name: spec.Name}
	var defs []string
	for i, c := range spec.Columns {
		defs = append(defs, qi(c.Name)+" "+pgTypes[c.Kind])
		tbl.Cols = append(tbl.Cols, c.Name)
		if i < spec.Key {
			tbl.Key = append(tbl.Key, c.Name)
		}
	}
	var keys []string
	for _, k := range tbl.Key {
		keys = append(keys, qi(k))
	}
	h.exec(t, `CREATE SCHEMA IF NOT EXISTS `+qi(spec.Schema))
	ddl := fmt.Sprintf(`CREATE TABLE %s (%s, PRIMARY KEY (%s))`, ident(tbl), strings.Join(defs, ", "), strings.Join(keys, ", "))
	if !h.partitioned {
		h.exec(t, ddl)
		return h.describe(t, tbl)
	}
	h.exec(t, ddl+` PARTITION BY HASH (`+keys[0]+`)`)
	for i := range 3 {
		part := pgx.Identifier{spec.Schema, fmt.Sprintf("%s_p%d", spec.Name, i)}.Sanitize()
		h.exec(t, fmt.Sprintf(`CREATE TABLE %s PARTITION OF %s FOR VALUES WITH (MODULUS 3, REMAINDER %d)`, part, ident(tbl), i))
	}
	tbl = h.describe(t, tbl)
	if !tbl.Partitioned {
		t.Fatalf("%s is not partitioned", tbl.Label())
	}
	return tbl
}

// describe fills tbl from the catalog, installs capture in source mode, and removes the
// table when t ends.
func (h *harness) describe(t *testing.T, tbl *sinks.Table) *sinks.Table {
	t.Helper()
	desc, err := catalog.Describe(t.Context(), h.app, catalog.QualName{Schema: tbl.Schema, Name: tbl.Name})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(desc.KeyCols, tbl.Key) {
		t.Fatalf("key of %s: %q, expected %q", tbl.Label(), desc.KeyCols, tbl.Key)
	}
	tbl.Columns, tbl.Partitioned = desc.Columns, desc.Partitioned
	if h.source {
		for _, stmt := range capture.DDL(syncName, desc, capture.Options{}) {
			h.exec(t, stmt)
		}
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if h.source {
			for _, stmt := range capture.DropDDL(syncName, catalog.QualName{Schema: tbl.Schema, Name: tbl.Name}) {
				_, _ = h.app.Exec(ctx, stmt)
			}
		}
		_, _ = h.app.Exec(ctx, `DROP TABLE IF EXISTS `+ident(tbl)+` CASCADE`)
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
}

func (h *harness) NewSink(t *testing.T) sinks.Sink {
	t.Helper()
	return h.newSink(t, pgtest.Conn(t, h.db.DSN))
}

// newSink configures conn and returns its sink (source mode: as of a snapshot taken now).
func (h *harness) newSink(t *testing.T, conn *pgx.Conn) *postgres.Sink {
	t.Helper()
	replica, err := postgres.Configure(t.Context(), conn)
	if err != nil {
		t.Fatalf("Configure: %v", err)
	}
	if !replica {
		t.Fatal("Configure: session_replication_role = replica did not take (the test role is a superuser)")
	}
	var opts []postgres.Option
	if h.source {
		var snap string
		if err := conn.QueryRow(t.Context(), `SELECT pg_current_snapshot()::text`).Scan(&snap); err != nil {
			t.Fatal(err)
		}
		opts = append(opts, postgres.WithSource(postgres.Source{Snapshot: snap, ChangeTable: changeTable}))
	}
	s, err := postgres.New(conn, h.db.Name, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func changeTable(t *sinks.Table) string {
	return capture.ChangeTable(syncName, t.Schema, t.Name).Sanitize()
}

func (h *harness) Rows(t *testing.T, tbl *sinks.Table) []string {
	t.Helper()
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

func ident(t *sinks.Table) string { return pgx.Identifier{t.Schema, t.Name}.Sanitize() }

func cols(t *sinks.Table) string {
	var out []string
	for _, c := range t.Cols {
		out = append(out, qi(c))
	}
	return strings.Join(out, ", ")
}
