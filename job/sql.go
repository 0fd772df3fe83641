package job

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// indexed wraps a statement joining the key list to a user table so that it probes the
// table's key index: its cost then follows the number of changed keys, never the table's
// size, whatever the planner guesses about the key list. It must run in a transaction.
func indexed(stmt string) string {
	return `SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; ` + stmt +
		`; SET LOCAL enable_hashjoin = on; SET LOCAL enable_mergejoin = on`
}

// execIndexed runs indexed(stmt) in one round trip and returns the statement's tag.
func execIndexed(ctx context.Context, conn *pgx.Conn, stmt string) (pgconn.CommandTag, error) {
	res, err := execAll(ctx, conn, indexed(stmt))
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	return res[2].CommandTag, nil
}

// execAll sends several statements (no parameters: values are literals) in one round
// trip and returns every statement's result.
func execAll(ctx context.Context, conn *pgx.Conn, sql string) ([]*pgconn.Result, error) {
	return conn.PgConn().Exec(ctx, sql).ReadAll()
}

// scalar reads the single integer a result holds.
func scalar(res *pgconn.Result, col int) (int64, error) {
	if len(res.Rows) != 1 || len(res.Rows[0]) <= col {
		return 0, fmt.Errorf("unexpected result of %d rows", len(res.Rows))
	}
	return strconv.ParseInt(string(res.Rows[0][col]), 10, 64)
}

func quoteCols(prefix string, cols []string) string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = prefix + pgx.Identifier{c}.Sanitize()
	}
	return strings.Join(out, ", ")
}

func keyJoin(a, b string, cols []string) string {
	out := make([]string, len(cols))
	for i, c := range cols {
		q := pgx.Identifier{c}.Sanitize()
		out[i] = a + "." + q + " = " + b + "." + q
	}
	return strings.Join(out, " AND ")
}
