// Command sinkcheck says whether every target of a sync holds exactly the rows of its
// first source, table by table, comparing normalized rows: each target's rows are read
// back through its sink (sinks.Reader renders them as PostgreSQL prints them), a flatfile
// directory is replayed into a scratch PostgreSQL database first. It is the check of
// `make demo-sinks`; `ibex compare` (issue 2.6) will be the user's tool.
//
//	go run ./scripts/sinkcheck -sync foobar     (IBEX_DSN names the control database)
//
// It exits 0 when every target matches, 1 when one differs, 2 when it could not compare.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/dbconn"
	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/targets"
)

func main() {
	syncName := flag.String("sync", "", "the sync whose targets to check")
	flag.Parse()
	if *syncName == "" || os.Getenv("IBEX_DSN") == "" {
		fmt.Fprintln(os.Stderr, "usage: IBEX_DSN=... go run ./scripts/sinkcheck -sync NAME")
		os.Exit(2)
	}
	same, err := check(context.Background(), os.Getenv("IBEX_DSN"), *syncName)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sinkcheck:", err)
		os.Exit(2)
	}
	if !same {
		fmt.Println("NOT IDENTICAL")
		os.Exit(1)
	}
	fmt.Println("IDENTICAL: every target holds exactly the sources' rows")
}

func check(ctx context.Context, dsn, syncName string) (bool, error) {
	store, err := control.Open(ctx, dsn, nil)
	if err != nil {
		return false, err
	}
	defer store.Close()
	q := store.Q()
	sync, err := control.GetSync(ctx, q, syncName)
	if err != nil {
		return false, err
	}
	group, err := control.GetDBGroup(ctx, q, sync.DBGroup)
	if err != nil {
		return false, err
	}
	herds, err := control.Herds(ctx, q)
	if err != nil {
		return false, err
	}
	var names []string
	for _, h := range herds {
		if h.Name == sync.Herd {
			names = h.Tables
		}
	}
	src, err := control.GetDB(ctx, q, group.Sources()[0])
	if err != nil {
		return false, err
	}
	sconn, err := dbconn.Connect(ctx, src.Name, src.Conn, src.Pass)
	if err != nil {
		return false, err
	}
	defer sconn.Close(ctx)
	var tables []*sinks.Table
	want := map[string][]string{}
	for _, n := range names {
		qn, err := catalog.ParseName(n)
		if err != nil {
			return false, err
		}
		d, err := catalog.Describe(ctx, sconn, qn)
		if err != nil {
			return false, fmt.Errorf("db %s: %w", src.Name, err)
		}
		t := &sinks.Table{Schema: d.Schema, Name: d.Name, Key: d.KeyCols, Cols: slices.Clone(d.KeyCols), Columns: d.Columns}
		for _, c := range d.Columns {
			if !slices.Contains(t.Key, c.Name) {
				t.Cols = append(t.Cols, c.Name)
			}
		}
		tables = append(tables, t)
		if want[t.Label()], err = copyOut(ctx, sconn, t); err != nil {
			return false, fmt.Errorf("db %s: %w", src.Name, err)
		}
	}
	same := true
	for _, m := range group.Members {
		if m.Role == control.RoleSource && m.DB == src.Name {
			continue
		}
		d, err := control.GetDB(ctx, q, m.DB)
		if err != nil {
			return false, err
		}
		read, done, err := reader(ctx, d, tables)
		if err != nil {
			return false, err
		}
		for _, t := range tables {
			got, err := read(t)
			if err != nil {
				done()
				return false, fmt.Errorf("db %s: table %s: %w", d.Name, t.Label(), err)
			}
			sort.Strings(got)
			w := want[t.Label()]
			if slices.Equal(got, w) {
				fmt.Printf("%-10s %-9s %-28s %8d rows: identical\n", d.Name, d.Type, t.Label(), len(got))
				continue
			}
			same = false
			fmt.Printf("%-10s %-9s %-28s DIFFERS: %d rows, the source has %d; first difference: %s\n", d.Name, d.Type, t.Label(), len(got), len(w), firstDiff(w, got))
		}
		done()
	}
	return same, nil
}

// reader returns how to read a table's rows (sorted later) on db d.
func reader(ctx context.Context, d *control.DB, tables []*sinks.Table) (func(*sinks.Table) ([]string, error), func(), error) {
	switch {
	case d.Type.Postgres():
		conn, err := dbconn.Connect(ctx, d.Name, d.Conn, d.Pass)
		if err != nil {
			return nil, nil, err
		}
		return func(t *sinks.Table) ([]string, error) { return copyOut(ctx, conn, t) }, func() { _ = conn.Close(ctx) }, nil
	case d.Type == control.DBTypeFlatfile:
		return replayed(ctx, d, tables)
	}
	pass, err := dbconn.ResolvePass(d.Pass)
	if err != nil {
		return nil, nil, err
	}
	s, err := targets.Open(ctx, d.Type, sinks.Config{DB: d.Name, Params: d.Conn, Password: pass})
	if err != nil {
		return nil, nil, err
	}
	r, ok := s.(sinks.Reader)
	if !ok {
		_ = s.Close()
		return nil, nil, fmt.Errorf("db %s: a %s sink cannot list its rows", d.Name, d.Type)
	}
	return func(t *sinks.Table) ([]string, error) {
		var out []string
		err := r.ReadRows(ctx, t, func(line string) error { out = append(out, line); return nil })
		return out, err
	}, func() { _ = s.Close() }, nil
}

// replayed replays a flatfile directory (dialect postgres) into a scratch database made
// on the control database's server, and reads it there.
func replayed(ctx context.Context, d *control.DB, tables []*sinks.Table) (func(*sinks.Table) ([]string, error), func(), error) {
	if dl := d.Conn["dialect"]; dl != "" && dl != "postgres" {
		return nil, nil, fmt.Errorf("db %s: only dialect=postgres is replayed here (it has %s)", d.Name, dl)
	}
	admin, err := pgx.Connect(ctx, os.Getenv("IBEX_DSN"))
	if err != nil {
		return nil, nil, err
	}
	scratch := "ibex_sinkcheck_" + d.Name
	ident := pgx.Identifier{scratch}.Sanitize()
	if _, err := admin.Exec(ctx, `DROP DATABASE IF EXISTS `+ident+` WITH (FORCE)`); err != nil {
		return nil, nil, err
	}
	if _, err := admin.Exec(ctx, `CREATE DATABASE `+ident); err != nil {
		return nil, nil, err
	}
	cleanup := func() {
		_, _ = admin.Exec(context.WithoutCancel(ctx), `DROP DATABASE IF EXISTS `+ident+` WITH (FORCE)`)
		_ = admin.Close(context.WithoutCancel(ctx))
	}
	cfg := admin.Config().Copy()
	cfg.Database = scratch
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	done := func() { _ = conn.Close(ctx); cleanup() }
	fail := func(err error) (func(*sinks.Table) ([]string, error), func(), error) { done(); return nil, nil, err }
	for _, t := range tables {
		var cols []string
		for _, c := range t.Columns {
			cols = append(cols, pgx.Identifier{c.Name}.Sanitize()+" "+c.Type)
		}
		var key []string
		for _, k := range t.Key {
			key = append(key, pgx.Identifier{k}.Sanitize())
		}
		ddl := fmt.Sprintf(`CREATE SCHEMA IF NOT EXISTS %s; CREATE TABLE %s (%s, PRIMARY KEY (%s))`, pgx.Identifier{t.Schema}.Sanitize(),
			pgx.Identifier{t.Schema, t.Name}.Sanitize(), strings.Join(cols, ", "), strings.Join(key, ", "))
		if err := conn.PgConn().Exec(ctx, ddl).Close(); err != nil {
			return fail(fmt.Errorf("scratch table %s: %w", t.Label(), err))
		}
	}
	files, err := filepath.Glob(filepath.Join(d.Conn["path"], "*.sql"))
	if err != nil {
		return fail(err)
	}
	sort.Strings(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return fail(err)
		}
		if err := conn.PgConn().Exec(ctx, string(b)).Close(); err != nil {
			return fail(fmt.Errorf("replaying %s: %w", f, err))
		}
	}
	fmt.Printf("%-10s %-9s replayed %d files of %s into a scratch database\n", d.Name, d.Type, len(files), d.Conn["path"])
	return func(t *sinks.Table) ([]string, error) { return copyOut(ctx, conn, t) }, done, nil
}

// copyOut is a table's rows as COPY text lines, with ibex's session settings.
func copyOut(ctx context.Context, conn *pgx.Conn, t *sinks.Table) ([]string, error) {
	if _, err := conn.Exec(ctx, `SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; SET bytea_output = 'hex'; SET IntervalStyle = 'postgres'; SET extra_float_digits = 3`); err != nil {
		return nil, err
	}
	var cols []string
	for _, c := range t.Cols {
		cols = append(cols, pgx.Identifier{c}.Sanitize())
	}
	var buf bytes.Buffer
	sql := fmt.Sprintf(`COPY (SELECT %s FROM %s) TO STDOUT`, strings.Join(cols, ", "), pgx.Identifier{t.Schema, t.Name}.Sanitize())
	if _, err := conn.PgConn().CopyTo(ctx, &buf, sql); err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if buf.Len() == 0 {
		lines = nil
	}
	sort.Strings(lines)
	return lines, nil
}

func firstDiff(want, got []string) string {
	for i := 0; i < max(len(want), len(got)); i++ {
		switch {
		case i >= len(want):
			return fmt.Sprintf("extra row %q", clip(got[i]))
		case i >= len(got):
			return fmt.Sprintf("missing row %q", clip(want[i]))
		case want[i] != got[i]:
			return fmt.Sprintf("source %q, target %q", clip(want[i]), clip(got[i]))
		}
	}
	return "none"
}

func clip(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}
