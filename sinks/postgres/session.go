package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/dbconn"
)

// Configure readies a receiving session: rows ibex applies must not fire capture, user
// triggers or foreign-key checks (session_replication_role = replica, or, when the role
// may not set it, ibex.applying = on, which ibex's capture trigger honours); a lock wait
// gives up after 60 s; and the session's WAL is compressed where the role may ask for it
// (dbconn.WALCompressionSQL). replica reports whether session_replication_role took: when
// it did not, user triggers and foreign keys fire for applied rows. also are more
// statements (no parameters) sent in the same round trip.
func Configure(ctx context.Context, conn *pgx.Conn, also ...string) (replica bool, err error) {
	wal := dbconn.WALCompressionSQL(dbconn.ServerMajor(conn.PgConn()))
	more := ""
	for _, a := range also {
		more += "; " + a
	}
	if _, err := dbconn.ExecAll(ctx, conn, `SET lock_timeout = '60s'; SET session_replication_role = replica; `+wal+more); err == nil {
		return true, nil
	}
	if _, err := dbconn.ExecAll(ctx, conn, `SET lock_timeout = '60s'; SET ibex.applying = 'on'; `+wal+more); err != nil {
		return false, fmt.Errorf("configuring the session: %w", err)
	}
	return false, nil
}
