package mariadb_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/mariadb"
	"github.com/ibexrepl/ibex/sinks/pgtext"
	"github.com/ibexrepl/ibex/sinks/sinktest"
)

// The server the tests use: MariaDB (or MySQL) on IBEX_TEST_MARIADB_ADDR (default
// 127.0.0.1:3306) as root without a password, with local_infile on.
func serverAddr() string {
	if a := os.Getenv("IBEX_TEST_MARIADB_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:3306"
}

// testDB is a database of its own for one test, dropped when the test ends.
type testDB struct {
	name string
	app  *sql.DB // the receiver's application: seeds and reads tables
}

// root returns a pool of connections as root to no database in particular.
func (*testDB) root(t *testing.T) *sql.DB {
	t.Helper()
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr = "root", "tcp", serverAddr()
	root, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = root.Close() })
	return root
}

func newTestDB(t *testing.T) *testDB {
	t.Helper()
	root := (*testDB)(nil).root(t)
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr = "root", "tcp", serverAddr()
	name := "ibex_sinktest_" + rand.Text()[:12]
	name = strings.ToLower(name)
	if _, err := root.ExecContext(t.Context(), "CREATE DATABASE `"+name+"` CHARACTER SET utf8mb4"); err != nil {
		t.Fatalf("creating test database (MariaDB on %s, root, no password): %v", serverAddr(), err)
	}
	t.Cleanup(func() { _, _ = root.ExecContext(context.Background(), "DROP DATABASE `"+name+"`") })
	cfg.DBName = name
	app, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app.Close() })
	return &testDB{name: name, app: app}
}

func (d *testDB) config() sinks.Config {
	host, port, _ := strings.Cut(serverAddr(), ":")
	return sinks.Config{DB: "mdb", Params: map[string]string{"host": host, "port": port, "dbname": d.name, "user": "root"}}
}

func (d *testDB) open(t *testing.T) *mariadb.Sink {
	t.Helper()
	s, err := mariadb.Open(t.Context(), d.config())
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func qi(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

func (d *testDB) ident(t *sinks.Table) string {
	return qi(d.name) + "." + qi(mariadb.TableName(t.Schema, t.Name))
}

func qcols(cols []string) string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = qi(c)
	}
	return strings.Join(out, ", ")
}

// harness runs sinktest on a test database.
type harness struct{ *testDB }

var _ sinktest.Harness = harness{}

var pgTypes = map[sinktest.Kind]string{
	sinktest.Int:    "integer",
	sinktest.BigInt: "bigint",
	sinktest.Text:   "text",
	sinktest.Bytes:  "bytea",
}

// CreateTable creates the table with the sink's own CreateTable (the type mapping).
func (h harness) CreateTable(t *testing.T, spec sinktest.Spec) *sinks.Table {
	t.Helper()
	tbl := &sinks.Table{Schema: spec.Schema, Name: spec.Name}
	for i, c := range spec.Columns {
		tbl.Cols = append(tbl.Cols, c.Name)
		tbl.Columns = append(tbl.Columns, catalog.Column{Name: c.Name, Type: pgTypes[c.Kind], NotNull: i < spec.Key})
		if i < spec.Key {
			tbl.Key = append(tbl.Key, c.Name)
		}
	}
	create(t, h.open(t), tbl)
	t.Cleanup(func() { _, _ = h.app.ExecContext(context.Background(), "DROP TABLE IF EXISTS "+h.ident(tbl)) })
	return tbl
}

func create(t *testing.T, s *mariadb.Sink, tbl *sinks.Table) {
	t.Helper()
	if err := s.CreateTable(t.Context(), tbl); err != nil {
		t.Fatalf("CreateTable: %v", err)
	}
	if err := s.CheckTable(t.Context(), tbl); err != nil {
		t.Fatalf("CheckTable after CreateTable: %v", err)
	}
}

// Seed stores rows with plain INSERTs, outside any sink.
func (h harness) Seed(t *testing.T, tbl *sinks.Table, rows []string) {
	t.Helper()
	q := fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", h.ident(tbl), qcols(tbl.Cols), strings.TrimSuffix(strings.Repeat("?,", len(tbl.Cols)), ","))
	for _, r := range rows {
		fields, err := conflict.DecodeCopyLine(r)
		if err != nil {
			t.Fatal(err)
		}
		args := make([]any, len(fields))
		for i, f := range fields {
			switch {
			case f.Null:
			case pgtext.ParseType(tbl.Columns[i].Type).Kind == pgtext.Bytes:
				b, err := pgtext.ParseBytea(f.Text)
				if err != nil {
					t.Fatal(err)
				}
				args[i] = b
			default:
				args[i] = f.Text
			}
		}
		if _, err := h.app.ExecContext(t.Context(), q, args...); err != nil {
			t.Fatalf("seeding %s: %v", tbl.Label(), err)
		}
	}
}

func (h harness) NewSink(t *testing.T) sinks.Sink { return h.open(t) }

// Rows reads tbl back through the sink's ReadRows, sorted.
func (h harness) Rows(t *testing.T, tbl *sinks.Table) []string {
	t.Helper()
	var got []string
	if err := h.open(t).ReadRows(t.Context(), tbl, func(line string) error {
		got = append(got, line)
		return nil
	}); err != nil {
		t.Fatalf("ReadRows(%s): %v", tbl.Label(), err)
	}
	slices.Sort(got)
	return got
}

// readRows reads tbl back as COPY text with a plain SELECT: integers and text as they
// are, bytes as \x and hex.
func readRows(t *testing.T, d *testDB, tbl *sinks.Table) []string {
	t.Helper()
	rows, err := d.app.QueryContext(t.Context(), fmt.Sprintf("SELECT %s FROM %s", qcols(tbl.Cols), d.ident(tbl)))
	if err != nil {
		t.Fatalf("reading %s: %v", tbl.Label(), err)
	}
	defer rows.Close()
	var out []string
	vals := make([]sql.RawBytes, len(tbl.Cols))
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
			switch {
			case v == nil:
				fields[i].Null = true
			case pgtext.ParseType(tbl.Columns[i].Type).Kind == pgtext.Bytes:
				fields[i].Text = `\x` + hex.EncodeToString(v)
			default:
				fields[i].Text = string(v)
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

func TestConformance(t *testing.T) {
	sinktest.Exercise(t, harness{newTestDB(t)})
}
