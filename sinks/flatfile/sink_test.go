package flatfile_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/flatfile"
)

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), flatfile.IndexFile) {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestCheckParams(t *testing.T) {
	for _, c := range []struct {
		params map[string]string
		want   string
	}{
		{map[string]string{"path": "/x"}, ""},
		{map[string]string{"path": "/x", "dialect": "mysql", "fsync": "off"}, ""},
		{map[string]string{"path": "/x", "dialect": "postgres", "fsync": "on"}, ""},
		{map[string]string{}, `flatfile: param path (the directory the files go to) is required`},
		{map[string]string{"path": "/x", "host": "h"}, `unknown setting "host" for a flatfile db (allowed: dialect, fsync, path)`},
		{map[string]string{"path": "/x", "dialect": "oracle"}, `flatfile: param dialect="oracle": expected postgres or mysql`},
		{map[string]string{"path": "/x", "fsync": "maybe"}, `flatfile: param fsync="maybe": expected on or off`},
	} {
		err := flatfile.CheckParams(c.params)
		if got := ""; err != nil {
			got = err.Error()
			if got != c.want {
				t.Errorf("CheckParams(%v) = %q, expected %q", c.params, got, c.want)
			}
		} else if c.want != "" {
			t.Errorf("CheckParams(%v) = nil, expected %q", c.params, c.want)
		}
	}
}

func TestOpen(t *testing.T) {
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "a", "b")
	_, err := flatfile.Open(ctx, sinks.Config{DB: "ff", Params: map[string]string{"path": dir}, Password: "s3cret"})
	if err == nil || err.Error() != "db ff: flatfile: a flat file takes no password (remove it from the db)" {
		t.Fatalf("Open with a password: %v", err)
	}
	_, err = flatfile.Open(ctx, sinks.Config{DB: "ff", Params: map[string]string{}})
	if err == nil || err.Error() != "db ff: flatfile: param path (the directory the files go to) is required" {
		t.Fatalf("Open without path: %v", err)
	}
	s, err := flatfile.Open(ctx, sinks.Config{DB: "ff", Params: map[string]string{"path": dir}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("directory: %v, %v; expected mode 0700", st, err)
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := flatfile.Open(ctx, sinks.Config{DB: "ff", Params: map[string]string{"path": file}}); err == nil || !strings.HasPrefix(err.Error(), "db ff: flatfile: ") {
		t.Fatalf("Open on a file: %v", err)
	}
}

// Files: named <sync>.<run>.<unit>.sql, written only by Commit (a temp file meanwhile,
// never matching *.sql), none for a unit that wrote nothing or was rolled back; a sink
// opened again for the same run goes on after the last unit.
func TestFiles(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	tbl := awkTable("public", "f")
	open := func(sync string, run int64) *flatfile.Sink {
		s, err := flatfile.Open(ctx, sinks.Config{DB: "ff", Params: map[string]string{"path": dir}, Sync: sync, Run: run})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	s := open("my sync/ü.x", 42)
	unit(t, s, tbl, nil, nil) // nothing written: no file
	if got := names(t, dir); len(got) != 0 {
		t.Fatalf("files after an empty unit: %q", got)
	}
	if err := s.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PrepareBatch(ctx, tbl, []string{"1"}); err != nil {
		t.Fatal(err)
	}
	if got := names(t, dir); !slices.Equal(got, []string{".my_sync___x.000000000042.0001.sql.tmp"}) {
		t.Fatalf("files during a unit: %q", got)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*.sql")); len(m) != 0 {
		t.Fatalf("*.sql matches %q during a unit", m)
	}
	s.Rollback(ctx)
	if got := names(t, dir); len(got) != 0 {
		t.Fatalf("files after a rollback: %q", got)
	}
	unit(t, s, tbl, []string{"1"}, []string{row("1", "x", "1", `\N`)})
	unit(t, s, tbl, []string{"1"}, nil)
	open("my sync/ü.x", 42).Close()
	unit(t, open("my sync/ü.x", 42), tbl, []string{"2"}, nil)
	unit(t, open("", 0), tbl, []string{"3"}, nil)
	want := []string{"ibex.000000000000.0001.sql", "my_sync___x.000000000042.0001.sql", "my_sync___x.000000000042.0002.sql", "my_sync___x.000000000042.0003.sql"}
	if got := names(t, dir); !slices.Equal(got, want) {
		t.Fatalf("files %q, expected %q", got, want)
	}
	b, err := os.ReadFile(filepath.Join(dir, want[1]))
	if err != nil {
		t.Fatal(err)
	}
	const content = "SET client_encoding = 'UTF8';\nBEGIN;\n" +
		`DELETE FROM "public"."f" WHERE "id" IN (1);` + "\n" +
		`INSERT INTO "public"."f" ("id", "name", "n", "data") VALUES` + "\n" +
		`(1, 'x', 1, NULL);` + "\nCOMMIT;\n"
	if string(b) != content {
		t.Fatalf("file:\n%s\nexpected\n%s", b, content)
	}
	if st, err := os.Stat(filepath.Join(dir, want[1])); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("file mode: %v, %v", st, err)
	}
}

// Statements are chunked: 1,000 keys a DELETE, 1,000 rows an INSERT; composite keys are
// row values; the key index counts keys across units.
func TestStatements(t *testing.T) {
	dir := t.TempDir()
	tbl := &sinks.Table{Schema: "s", Name: "t", Key: []string{"a", "b"}, Cols: []string{"a", "b", "v"}}
	var keys, rows []string
	for i := range 2500 {
		k := row(strings.Repeat("k", i%3+1), string(rune('a'+i%26))+strings.Repeat("x", i/26))
		keys = append(keys, k)
		rows = append(rows, row(k, "v"))
	}
	s := openSink(t, dir, 1, "dialect", "mysql")
	if c := unit(t, s, tbl, keys, rows); c != (sinks.Counts{Written: 2500}) {
		t.Fatalf("counts %+v", c)
	}
	if c := unit(t, s, tbl, append(keys[:10:10], row("new", "key")), nil); c != (sinks.Counts{Deleted: 10}) {
		t.Fatalf("counts %+v", c)
	}
	b, err := os.ReadFile(files(t, dir)[0])
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	if n := strings.Count(text, "DELETE FROM `s.t` WHERE (`a`, `b`) IN (('k', 'a'), ('kk', 'b'),"); n != 1 {
		t.Fatalf("first DELETE: %d\n%.300s", n, text)
	}
	if d, i := strings.Count(text, "DELETE FROM"), strings.Count(text, "INSERT INTO `s.t` (`a`, `b`, `v`) VALUES\n"); d != 3 || i != 3 {
		t.Fatalf("%d DELETEs and %d INSERTs, expected 3 and 3", d, i)
	}
	if !strings.HasPrefix(text, "SET NAMES utf8mb4;\nSET time_zone = '+00:00';\nSTART TRANSACTION;\n") || !strings.HasSuffix(text, ");\nCOMMIT;\n") {
		t.Fatalf("file starts or ends wrong:\n%.200s\n...\n%s", text, text[len(text)-200:])
	}
}
