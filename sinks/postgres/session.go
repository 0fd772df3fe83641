package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/dbconn"
)

// Configure readies a receiving session: rows ibex applies must not fire capture, user
// triggers or foreign-key checks (session_replication_role = replica, or, when the role
// may not set it, ibex.applying = on, which ibex's capture trigger honours); and a lock
// wait gives up after 60 s. replica reports whether session_replication_role took: when
// it did not, user triggers and foreign keys fire for applied rows. also are more
// statements (no parameters) sent in the same round trip: dbconn.WALCompressionSQL for a
// session that writes many rows (it reads pg_settings, which costs a new session about
// a millisecond: a run sends it only when it has that many rows to write).
func Configure(ctx context.Context, conn *pgx.Conn, also ...string) (replica bool, err error) {
	more := ""
	for _, a := range also {
		more += "; " + a
	}
	if _, err := dbconn.ExecAll(ctx, conn, `SET lock_timeout = '60s'; SET session_replication_role = replica`+more); err == nil {
		return true, nil
	}
	if _, err := dbconn.ExecAll(ctx, conn, `SET lock_timeout = '60s'; SET ibex.applying = 'on'`+more); err != nil {
		return false, fmt.Errorf("configuring the session: %w", err)
	}
	return false, nil
}
