package flatfile_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/flatfile"
)

// openSink opens a sink on dir with params (path added) as run run of sync "t".
func openSink(t *testing.T, dir string, run int64, params ...string) *flatfile.Sink {
	t.Helper()
	p := map[string]string{"path": dir}
	for i := 0; i+1 < len(params); i += 2 {
		p[params[i]] = params[i+1]
	}
	s, err := flatfile.Open(t.Context(), sinks.Config{DB: "ff", Params: p, Sync: "t", Run: run})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// unit writes one batch of tbl (keys, then rows) in a unit of its own and commits it.
func unit(t *testing.T, s sinks.Sink, tbl *sinks.Table, keys, rows []string) sinks.Counts {
	t.Helper()
	ctx := t.Context()
	if err := s.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PrepareBatch(ctx, tbl, keys); err != nil {
		t.Fatalf("PrepareBatch: %v", err)
	}
	if _, err := s.WriteRows(ctx, tbl, lines(rows)); err != nil {
		t.Fatalf("WriteRows: %v", err)
	}
	c, err := s.FinishBatch(ctx, tbl)
	if err != nil {
		t.Fatalf("FinishBatch: %v", err)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return c
}

func lines(rows []string) *strings.Reader {
	if len(rows) == 0 {
		return strings.NewReader("")
	}
	return strings.NewReader(strings.Join(rows, "\n") + "\n")
}

// mariaDSN is the test MariaDB server (IBEX_TEST_MARIADB_DSN, else root on
// 127.0.0.1:3306), without a database.
func mariaDSN() string {
	if v := os.Getenv("IBEX_TEST_MARIADB_DSN"); v != "" {
		return v
	}
	return "root@tcp(127.0.0.1:3306)/"
}

// mariaDB creates a fresh MariaDB database, dropped when t ends, and returns a pool on
// it taking several statements at once.
func mariaDB(t *testing.T) *sql.DB {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "ibex_sinktest_ff_" + hex.EncodeToString(b)
	admin, err := sql.Open("mysql", mariaDSN()+"?timeout=10s")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE `"+name+"` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"); err != nil {
		if os.Getenv("IBEX_TEST_SKIP_DB") == "1" {
			t.Skipf("no MariaDB: %v", err)
		}
		t.Fatalf("creating MariaDB database %s (set IBEX_TEST_MARIADB_DSN): %v", name, err)
	}
	t.Cleanup(func() {
		a, err := sql.Open("mysql", mariaDSN())
		if err != nil {
			return
		}
		defer a.Close()
		_, _ = a.Exec("DROP DATABASE IF EXISTS `" + name + "`")
	})
	db, err := sql.Open("mysql", mariaDSN()+name+"?multiStatements=true&timeout=10s")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1) // one session: its sql_mode holds for every file
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// replayMaria runs the committed files of dir, in order, on db with sql_mode mode.
func replayMaria(t *testing.T, db *sql.DB, dir, mode string) {
	t.Helper()
	if _, err := db.ExecContext(t.Context(), "SET SESSION sql_mode = '"+mode+"'"); err != nil {
		t.Fatal(err)
	}
	for _, name := range files(t, dir) {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(t.Context(), string(b)); err != nil {
			t.Fatalf("replaying %s into MariaDB (sql_mode %q): %v", name, mode, err)
		}
	}
}
