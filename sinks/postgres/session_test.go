package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/postgres"
)

func setting(t *testing.T, conn *pgx.Conn, name string) string {
	t.Helper()
	var v string
	if err := conn.QueryRow(t.Context(), `SELECT coalesce(current_setting($1, true), '')`, name).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// Configure sets session_replication_role = replica when the role may, and ibex.applying
// otherwise; lock_timeout either way.
func TestConfigure(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t, "")
	conn := pgtest.Conn(t, db.DSN)
	replica, err := postgres.Configure(t.Context(), conn)
	if err != nil || !replica {
		t.Fatalf("Configure as a superuser = %v, %v; expected true, nil", replica, err)
	}
	if v := setting(t, conn, "session_replication_role"); v != "replica" {
		t.Fatalf("session_replication_role = %q", v)
	}
	if v := setting(t, conn, "lock_timeout"); v != "1min" {
		t.Fatalf("lock_timeout = %q", v)
	}

	b := make([]byte, 4)
	_, _ = rand.Read(b)
	role := "ibt_plain_" + hex.EncodeToString(b)
	pgtest.Exec(t, db.DSN, `CREATE ROLE `+pgx.Identifier{role}.Sanitize()+` LOGIN`)
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), db.DSN)
		if err == nil {
			_, _ = c.Exec(context.Background(), `DROP ROLE IF EXISTS `+pgx.Identifier{role}.Sanitize())
			_ = c.Close(context.Background())
		}
	})
	plain := pgtest.Conn(t, fmt.Sprintf("host=%s port=%s user=%s dbname=%s", db.Conn["host"], db.Conn["port"], role, db.Name))
	replica, err = postgres.Configure(t.Context(), plain)
	if err != nil || replica {
		t.Fatalf("Configure as a plain role = %v, %v; expected false, nil", replica, err)
	}
	if v := setting(t, plain, "ibex.applying"); v != "on" {
		t.Fatalf("ibex.applying = %q", v)
	}
	if v := setting(t, plain, "session_replication_role"); v != "origin" {
		t.Fatalf("session_replication_role = %q", v)
	}
	if v := setting(t, plain, "lock_timeout"); v != "1min" {
		t.Fatalf("lock_timeout = %q", v)
	}
}

// Commit of a unit whose transaction failed returns an error (the server rolled it back),
// and the sink takes a new unit afterwards.
func TestCommitAfterFailure(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	h := newHarness(t, false)
	tbl := custom(t, h, "failing", `(id int PRIMARY KEY, name text)`)
	h.Seed(t, tbl, rowsOf("1\tone"))
	s := h.NewSink(t)
	ok(t, s.Begin(ctx))
	must[sinks.Prepared](t)(s.PrepareBatch(ctx, tbl, []string{"1"}))
	if _, err := s.WriteRows(ctx, tbl, reader(rowsOf("1\tnot\ttoo many fields"))); err == nil {
		t.Fatal("WriteRows took a malformed row")
	}
	if err := s.Commit(ctx); err == nil {
		t.Fatal("Commit of a failed transaction returned no error")
	}
	wantRows(t, h, tbl, "1\tone")
	ok(t, s.Begin(ctx))
	must[sinks.Prepared](t)(s.PrepareBatch(ctx, tbl, []string{"1"}))
	must[int64](t)(s.WriteRows(ctx, tbl, reader(rowsOf("1\tONE"))))
	if c := must[sinks.Counts](t)(s.FinishBatch(ctx, tbl)); c != (sinks.Counts{Written: 1, Deleted: 1}) {
		t.Fatalf("counts %+v", c)
	}
	ok(t, s.Commit(ctx))
	wantRows(t, h, tbl, "1\tONE")
}
