package sqlite_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/sqlite"
)

func TestCheckParams(t *testing.T) {
	for _, c := range []struct {
		p    map[string]string
		want string
	}{
		{map[string]string{"path": "x.db"}, ""},
		{map[string]string{"path": "x.db", "busy_timeout": "0", "connect_timeout": "3", "journal": "wal"}, ""},
		{map[string]string{"path": "x.db", "journal": "delete"}, ""},
		{map[string]string{"path": "x.db", "host": "h"}, `unknown setting "host" for a sqlite db (allowed: busy_timeout, connect_timeout, journal, path)`},
		{map[string]string{}, `sqlite: parameter path (the database file) is required`},
		{map[string]string{"path": ""}, `sqlite: parameter path (the database file) is required`},
		{map[string]string{"path": "x.db", "busy_timeout": "10s"}, `sqlite: parameter busy_timeout: "10s" is not a number of milliseconds (0 to 86400000)`},
		{map[string]string{"path": "x.db", "busy_timeout": "-1"}, `sqlite: parameter busy_timeout: "-1" is not a number of milliseconds (0 to 86400000)`},
		{map[string]string{"path": "x.db", "connect_timeout": "0"}, `sqlite: parameter connect_timeout: "0" is not a number of seconds (1 to 3600)`},
		{map[string]string{"path": "x.db", "journal": "WAL2"}, `sqlite: parameter journal: "WAL2" is not wal or delete`},
	} {
		err := sqlite.CheckParams(c.p)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("CheckParams(%v) = %q, expected %q", c.p, got, c.want)
		}
	}
}

func TestOpen(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	open := func(params map[string]string, password string) (*sqlite.Sink, error, time.Duration) {
		start := time.Now()
		s, err := sqlite.Open(ctx, sinks.Config{DB: "lite", Params: params, Password: password})
		if s != nil {
			t.Cleanup(func() { s.Close() })
		}
		return s, err, time.Since(start)
	}

	// A missing file is created.
	path := filepath.Join(dir, "new file ?#%.db")
	if _, err, _ := open(map[string]string{"path": path}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the file was not created: %v", err)
	}

	// A password is refused, and never printed.
	if _, err, _ := open(map[string]string{"path": path}, "s3cret"); err == nil || err.Error() != "db lite: sqlite takes no password" {
		t.Fatalf("Open with a password: %v", err)
	}

	// Params are checked.
	if _, err, _ := open(map[string]string{"path": path, "port": "1"}, ""); err == nil ||
		err.Error() != `db lite: unknown setting "port" for a sqlite db (allowed: busy_timeout, connect_timeout, journal, path)` {
		t.Fatalf("Open with an unknown param: %v", err)
	}

	// A directory that does not exist, a directory, a file that is not a database.
	junk := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(junk, []byte(strings.Repeat("not a database\n", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{filepath.Join(dir, "no such dir", "x.db"), dir, junk} {
		_, err, took := open(map[string]string{"path": bad}, "")
		if err == nil || !strings.HasPrefix(err.Error(), "db lite: opening "+bad+": ") || took > 5*time.Second {
			t.Errorf("Open(%s): %v after %v; expected an error naming the db and the file", bad, err, took)
		}
	}

	// journal=wal puts the file in WAL mode; without journal the mode is left as it is.
	wal := filepath.Join(dir, "wal.db")
	if _, err, _ := open(map[string]string{"path": wal, "journal": "wal"}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err, _ := open(map[string]string{"path": wal}, ""); err != nil {
		t.Fatal(err)
	}
	var mode string
	if err := appDB(t, wal).QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal mode %q, %v; expected wal", mode, err)
	}

	// A file another connection holds exclusively: Open fails within connect_timeout,
	// whatever busy_timeout is.
	locked := filepath.Join(dir, "locked.db")
	app := appDB(t, locked)
	conn, err := app.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `CREATE TABLE x (a); BEGIN EXCLUSIVE; INSERT INTO x VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	_, err, took := open(map[string]string{"path": locked, "busy_timeout": "60000", "connect_timeout": "1"}, "")
	if err == nil || !strings.HasPrefix(err.Error(), "db lite: opening "+locked+": ") || !strings.Contains(err.Error(), "connect_timeout 1s") || took > 3*time.Second {
		t.Fatalf("Open of a locked file: %v after %v; expected a timeout within 1 s", err, took)
	}
	if _, err := conn.ExecContext(ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
}

// TestBusy: Begin takes the write lock (BEGIN IMMEDIATE), waiting busy_timeout for
// another writer; in WAL mode readers see the last commit while a unit is open.
func TestBusy(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "busy.db")
	tbl := &sinks.Table{Schema: "public", Name: "t", Key: []string{"id"}, Cols: []string{"id", "v"},
		Columns: []catalog.Column{{Name: "id", Type: "integer"}, {Name: "v", Type: "text"}}}
	s, err := sqlite.Open(ctx, sinks.Config{DB: "lite", Params: map[string]string{"path": path, "journal": "wal", "busy_timeout": "300"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CreateTable(ctx, tbl); err != nil {
		t.Fatal(err)
	}
	app := appDB(t, path)
	if _, err := app.Exec(`INSERT INTO t VALUES (1, 'old')`); err != nil {
		t.Fatal(err)
	}

	// Another writer holds the lock: Begin fails after busy_timeout.
	conn, err := app.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = s.Begin(ctx)
	took := time.Since(start)
	if err == nil || !strings.HasPrefix(err.Error(), "db lite: beginning (another writer holding the file longer than busy_timeout 300ms?): ") || took < 250*time.Millisecond || took > 3*time.Second {
		t.Fatalf("Begin while another writer holds the file: %v after %v", err, took)
	}
	if _, err := conn.ExecContext(ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	conn.Close()

	// During a unit, a reader sees the old row (and is not blocked).
	if err := s.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PrepareBatch(ctx, tbl, []string{"1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteRows(ctx, tbl, strings.NewReader("1\tnew\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FinishBatch(ctx, tbl); err != nil {
		t.Fatal(err)
	}
	read := func() string {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		var v string
		if err := app.QueryRowContext(rctx, `SELECT v FROM t WHERE id = 1`).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := read(); v != "old" {
		t.Fatalf("a reader during the unit sees %q, expected old", v)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if v := read(); v != "new" {
		t.Fatalf("a reader after the commit sees %q, expected new", v)
	}
}
