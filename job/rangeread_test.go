package job

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/internal/pgtest"
)

// TestFullRangeRead runs a full key range's read as a sender sends it: the rows of the
// range come, the COPY's tag is the statement's result, the plan is a bitmap scan, and
// the settings do not outlive the statement (the read session reads other tables next).
func TestFullRangeRead(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDB(t, "")
	c := pgtest.Conn(t, db.DSN)
	if _, err := c.Exec(ctx, `CREATE TABLE acct (id bigint PRIMARY KEY, v text);
		INSERT INTO acct SELECT g, 'v' || g FROM generate_series(1, 20000) g;
		UPDATE acct SET v = v || '!'; ANALYZE acct`); err != nil {
		t.Fatal(err)
	}
	copySQL := `COPY (SELECT t."id", t."v" FROM "public"."acct" t WHERE t."id" BETWEEN 101 AND 10100) TO STDOUT`
	var buf bytes.Buffer
	tag, err := c.PgConn().CopyTo(ctx, &buf, fullRangeRead+copySQL)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if tag.String() != "COPY 10000" || len(lines) != 10000 {
		t.Fatalf("tag %q, %d lines, want COPY 10000", tag, len(lines))
	}
	seen := map[string]bool{}
	for _, l := range lines {
		id, v, _ := strings.Cut(l, "\t")
		if v != "v"+id+"!" || seen[id] {
			t.Fatalf("row %q: not the updated row, or twice", l)
		}
		seen[id] = true
	}
	if !seen["101"] || !seen["10100"] || seen["100"] || seen["10101"] {
		t.Fatalf("rows outside the range, or its ends missing")
	}
	for _, s := range []string{"enable_indexscan", "enable_seqscan"} {
		var v string
		if err := c.QueryRow(ctx, "SHOW "+s).Scan(&v); err != nil {
			t.Fatal(err)
		}
		if v != "on" {
			t.Errorf("%s is %s after the read, want on", s, v)
		}
	}
	res, err := c.PgConn().Exec(ctx, fullRangeRead+`EXPLAIN SELECT t."id", t."v" FROM "public"."acct" t WHERE t."id" BETWEEN 101 AND 10100`).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var plan []string
	for _, r := range res[len(res)-1].Rows {
		plan = append(plan, string(r[0]))
	}
	if !strings.HasPrefix(plan[0], "Bitmap Heap Scan on acct t") {
		t.Errorf("plan:\n%s\nwant a Bitmap Heap Scan", strings.Join(plan, "\n"))
	}
}
