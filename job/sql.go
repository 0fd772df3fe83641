package job

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// execAll sends several statements (no parameters: values are literals) in one round
// trip and returns every statement's result.
func execAll(ctx context.Context, conn *pgx.Conn, sql string) ([]*pgconn.Result, error) {
	return conn.PgConn().Exec(ctx, sql).ReadAll()
}

// quoteCols lists cols quoted, each with prefix (a table alias and its dot, or "").
func quoteCols(prefix string, cols []string) string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = prefix + pgx.Identifier{c}.Sanitize()
	}
	return strings.Join(out, ", ")
}

// keyJoin is the condition joining aliases a and b on the key columns cols.
func keyJoin(a, b string, cols []string) string {
	out := make([]string, len(cols))
	for i, c := range cols {
		q := pgx.Identifier{c}.Sanitize()
		out[i] = a + "." + q + " = " + b + "." + q
	}
	return strings.Join(out, " AND ")
}
