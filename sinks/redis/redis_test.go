package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/sinks"
)

func TestKeyLayout(t *testing.T) {
	tbl := func(schema, name string, key ...string) *sinks.Table {
		return &sinks.Table{Schema: schema, Name: name, Key: key, Cols: append(slices.Clone(key), "v")}
	}
	cases := []struct {
		t    *sinks.Table
		key  string // PrepareBatch text
		want string
	}{
		{tbl("public", "users", "id"), "42", "p:public.users:42"},
		{tbl("a.b", "c", "id"), "1", `p:a\.b.c:1`},
		{tbl("a", "b.c", "id"), "1", `p:a.b\.c:1`},
		{tbl("s:x", `t\y`, "id"), "1", `p:s\:x.t\\y:1`},
		{tbl("public", "orders", "a", "b"), "1\t2", "p:public.orders:1:2"},
		{tbl("public", "orders", "a", "b"), `x:y` + "\tz", `p:public.orders:x\:y:z`},
		{tbl("public", "orders", "a", "b"), "x\t" + `y:z`, `p:public.orders:x:y\:z`},
		{tbl("public", "orders", "a", "b"), `x\\` + "\t:", `p:public.orders:x\\:\:`},
		{tbl("public", "orders", "a", "b"), `a\tb` + "\tc", "p:public.orders:a\tb:c"},
	}
	for _, c := range cases {
		l, err := newLayout("p:", c.t)
		if err != nil {
			t.Fatal(err)
		}
		got, err := l.key(c.key)
		if err != nil || got != c.want {
			t.Errorf("key(%s, %q) = %q, %v; expected %q", c.t.Label(), c.key, got, err, c.want)
		}
	}
	if got := globEscape(`a*b?c[d]e\f`); got != `a\*b\?c\[d\]e\\f` {
		t.Errorf("globEscape = %q", got)
	}
	l, _ := newLayout("p:", tbl("public", "t", "id"))
	if _, err := l.key(`\N`); err == nil || err.Error() != "table public.t: key column id is NULL" {
		t.Errorf("NULL key: %v", err)
	}
	if _, err := l.key("1\t2"); err == nil || err.Error() != `table public.t: key "1\t2" has 2 fields, expected 1` {
		t.Errorf("two fields: %v", err)
	}
}

// TestGlobPrefix: a prefix and names holding glob characters match only their own keys.
func TestGlobPrefix(t *testing.T) {
	h := newHarness(t)
	h.prefix += `x*[a]?\:`
	ctx := t.Context()
	mk := func(schema, name string) *sinks.Table {
		return &sinks.Table{Schema: schema, Name: name, Key: []string{"id"}, Cols: []string{"id", "v"},
			Columns: []catalog.Column{{Name: "id", Type: "integer"}, {Name: "v", Type: "text"}}}
	}
	a, b, c := mk("s*", "t?"), mk("s", "t"), mk("s*", "t?x")
	h.Seed(t, a, []string{"1\ta"})
	h.Seed(t, b, []string{"1\tb"})
	h.Seed(t, c, []string{"1\tc"})
	// A key of another prefix that the unescaped pattern would match.
	other := strings.Replace(h.prefix, "[a]", "a", 1) + "s*.t?:1"
	h.client.HSet(ctx, other, "id", "1")
	t.Cleanup(func() { h.client.Del(context.Background(), other) })
	s := h.open(t)
	if err := s.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Truncate(ctx, []sinks.Truncation{{Table: a}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		t    *sinks.Table
		want []string
	}{{a, nil}, {b, []string{"1\tb"}}, {c, []string{"1\tc"}}} {
		if got := h.Rows(t, x.t); !slices.Equal(got, x.want) {
			t.Errorf("%s: %q, expected %q", x.t.Label(), got, x.want)
		}
	}
	if n, _ := h.client.Exists(ctx, other).Result(); n != 1 {
		t.Errorf("the other prefix's key was deleted")
	}
}

func TestCheckParams(t *testing.T) {
	cases := []struct {
		p    map[string]string
		want string
	}{
		{map[string]string{}, ""},
		{map[string]string{"host": "h", "port": "6380", "db": "3", "user": "u", "prefix": "app:", "connect_timeout": "2.5", "timeout": "5", "tls": "on"}, ""},
		{map[string]string{"dbname": "x"}, `unknown setting "dbname" for a redis db (allowed: connect_timeout, db, host, port, prefix, timeout, tls, user)`},
		{map[string]string{"port": "0"}, `redis: parameter port: is "0", expected an integer from 1 to 65535`},
		{map[string]string{"db": "-1"}, `redis: parameter db: is "-1", expected an integer from 0 to 1048576`},
		{map[string]string{"connect_timeout": "0"}, `redis: parameter connect_timeout: is "0", expected a number of seconds above 0`},
		{map[string]string{"timeout": "x"}, `redis: parameter timeout: is "x", expected a number of seconds above 0`},
		{map[string]string{"tls": "yes"}, `redis: parameter tls: is "yes", expected on or off`},
		{map[string]string{"host": ""}, `redis: parameter host: is empty`},
	}
	for _, c := range cases {
		err := CheckParams(c.p)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("CheckParams(%v) = %q, expected %q", c.p, got, c.want)
		}
	}
}

// openFails opens with params and password and checks that it fails within limit with
// an error naming the db and not holding the password.
func openFails(t *testing.T, params map[string]string, password string, limit time.Duration, want string) {
	t.Helper()
	start := time.Now()
	s, err := Open(t.Context(), sinks.Config{DB: "cache1", Params: params, Password: password})
	took := time.Since(start)
	if err == nil {
		_ = s.Close()
		t.Fatalf("Open(%v) succeeded", params)
	}
	if took > limit {
		t.Errorf("Open took %s, expected at most %s", took, limit)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "db cache1: ") || !strings.Contains(msg, want) {
		t.Errorf("Open error %q: expected it to start with %q and hold %q", msg, "db cache1: ", want)
	}
	if password != "" && strings.Contains(msg, password) {
		t.Errorf("Open error %q holds the password", msg)
	}
}

func TestOpenFails(t *testing.T) {
	// A closed port.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
	_ = l.Close()
	openFails(t, map[string]string{"port": port, "connect_timeout": "2"}, "", 3*time.Second, "connecting to redis at 127.0.0.1:"+port+" (db 0) within 2s: ")

	// A port that accepts and never answers (Bucardo issue #250: add db type=redis hangs).
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hang.Close()
	var conns []net.Conn
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // held open, never answered
		}
	}()
	port = fmt.Sprint(hang.Addr().(*net.TCPAddr).Port)
	openFails(t, map[string]string{"port": port, "connect_timeout": "1"}, "", 2*time.Second, "within 1s: ")

	// A wrong password (the test server has none, or another one).
	openFails(t, map[string]string{"port": "6379", "user": "nobody"}, "s3cret-Pa55", 5*time.Second, "connecting to redis at 127.0.0.1:6379")

	// Bad params.
	openFails(t, map[string]string{"hosts": "x"}, "", time.Second, `unknown setting "hosts" for a redis db`)
}

// TestConnectionCut: a unit whose connection is killed (CLIENT KILL from another client)
// fails at Commit, and nothing of it is written.
func TestConnectionCut(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	tbl := basicTable("cut")
	h.Seed(t, tbl, []string{"1\tone\t1\t\\\\x01"})
	s := h.open(t)
	if err := s.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PrepareBatch(ctx, tbl, []string{"1", "2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteRows(ctx, tbl, strings.NewReader("2\ttwo\t2\t\\N\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FinishBatch(ctx, tbl); err != nil {
		t.Fatal(err)
	}
	id, err := s.tx.conn.ClientID(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := h.client.ClientKillByFilter(ctx, "ID", fmt.Sprint(id)).Err(); err != nil {
		t.Fatal(err)
	}
	err = s.Commit(ctx)
	if err == nil || !strings.HasPrefix(err.Error(), "db r1: committing (MULTI/EXEC of 2 writes): ") {
		t.Fatalf("Commit after the connection was killed: %v", err)
	}
	if got := h.Rows(t, tbl); !slices.Equal(got, []string{"1\tone\t1\t\\\\x01"}) {
		t.Fatalf("rows after the failed commit: %q", got)
	}
	// The sink takes a new unit.
	if err := s.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PrepareBatch(ctx, tbl, []string{"1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FinishBatch(ctx, tbl); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := h.Rows(t, tbl); got != nil {
		t.Fatalf("rows: %q", got)
	}
}

func basicTable(name string) *sinks.Table {
	return &sinks.Table{Schema: "public", Name: name, Key: []string{"id"}, Cols: []string{"id", "name", "n", "data"},
		Columns: []catalog.Column{{Name: "id", Type: "integer"}, {Name: "name", Type: "text"}, {Name: "n", Type: "bigint"}, {Name: "data", Type: "bytea"}}}
}

// unitOf runs fn in a unit and commits it.
func unitOf(t *testing.T, s *Sink, fn func(ctx context.Context)) {
	t.Helper()
	ctx := t.Context()
	if err := s.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	fn(ctx)
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

func copyRows(t *testing.T, s *Sink, tbl *sinks.Table, rows []string) sinks.Counts {
	t.Helper()
	ctx := t.Context()
	if skipped, err := s.ReplaceTable(ctx, tbl, false); err != nil || skipped {
		t.Fatalf("ReplaceTable: %v %v", skipped, err)
	}
	return writeAndFinish(t, s, tbl, rows)
}

// writeAndFinish writes rows (COPY text lines) into the batch or copy under way and
// finishes it, returning its counts.
func writeAndFinish(t *testing.T, s *Sink, tbl *sinks.Table, rows []string) sinks.Counts {
	t.Helper()
	ctx := t.Context()
	body := ""
	if len(rows) > 0 {
		body = strings.Join(rows, "\n") + "\n"
	}
	if n, err := s.WriteRows(ctx, tbl, strings.NewReader(body)); err != nil || n != int64(len(rows)) {
		t.Fatalf("WriteRows = %d, %v", n, err)
	}
	c, err := s.FinishBatch(ctx, tbl)
	if err != nil {
		t.Fatalf("FinishBatch: %v", err)
	}
	return c
}

func numbered(from, to int, tag string) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("%d\t%s%d\t%d\t\\N", i, tag, i, i))
	}
	return out
}

func sorted(rows []string) []string {
	rows = slices.Clone(rows)
	slices.Sort(rows)
	return rows
}

// TestChunkedCopy: a copy past the threshold is written in chunks before Commit; the
// result and the counts are those of a queued copy, the unit's earlier writes of the
// table are superseded, its writes of other tables still wait for Commit, and the
// temporary set is gone.
func TestChunkedCopy(t *testing.T) {
	h := newHarness(t)
	tbl, other := basicTable("chunked"), basicTable("other")
	h.Seed(t, tbl, numbered(1, 30, "old"))
	s := h.open(t)
	s.copyRows, s.chunkRows = 10, 4
	fresh := numbered(21, 45, "new")
	unitOf(t, s, func(ctx context.Context) {
		// Earlier writes of the table in the unit: superseded by the copy.
		if _, err := s.PrepareBatch(ctx, tbl, []string{"1", "99"}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.WriteRows(ctx, tbl, strings.NewReader("99\tx\t9\t\\N\n")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.FinishBatch(ctx, tbl); err != nil {
			t.Fatal(err)
		}
		if _, err := s.PrepareBatch(ctx, other, []string{"5"}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.WriteRows(ctx, other, strings.NewReader("5\tfive\t5\t\\N\n")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.FinishBatch(ctx, other); err != nil {
			t.Fatal(err)
		}
		c := copyRows(t, s, tbl, fresh)
		// 30 keys on the server (the dropped batch's changes do not count).
		if c != (sinks.Counts{Written: 25, Deleted: 30}) {
			t.Errorf("counts %+v", c)
		}
		// Written before the commit; the other table's batch not yet.
		if got := h.Rows(t, tbl); !slices.Equal(got, sorted(fresh)) {
			t.Errorf("before Commit: %d rows, expected the copy's %d", len(got), len(fresh))
		}
		if got := h.Rows(t, other); got != nil {
			t.Errorf("other before Commit: %q", got)
		}
		// A batch after the copy, in the unit.
		if _, err := s.PrepareBatch(ctx, tbl, []string{"45"}); err != nil {
			t.Fatal(err)
		}
		if c, err := s.FinishBatch(ctx, tbl); err != nil || c.Deleted != 1 {
			t.Fatalf("batch after the copy: %+v %v", c, err)
		}
	})
	if got := h.Rows(t, tbl); !slices.Equal(got, sorted(fresh[:len(fresh)-1])) {
		t.Errorf("after Commit: %q", got)
	}
	if got := h.Rows(t, other); !slices.Equal(got, []string{"5\tfive\t5\t\\N"}) {
		t.Errorf("other after Commit: %q", got)
	}
	keys, _ := h.client.Keys(t.Context(), globEscape(h.prefix)+"ibex:copy:*").Result()
	if len(keys) != 0 {
		t.Errorf("temporary sets left: %q", keys)
	}

	// Many stale keys and few rows: the copy goes chunked at FinishBatch.
	unitOf(t, s, func(ctx context.Context) {
		c := copyRows(t, s, tbl, numbered(1, 2, "z"))
		if c != (sinks.Counts{Written: 2, Deleted: 24}) {
			t.Errorf("counts %+v", c)
		}
	})
	if got := h.Rows(t, tbl); !slices.Equal(got, numbered(1, 2, "z")) {
		t.Errorf("after the second copy: %q", got)
	}

	// A rolled-back chunked copy leaves what it wrote (documented), and the next copy
	// fixes it.
	ctx := t.Context()
	if err := s.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	copyRows(t, s, tbl, numbered(3, 20, "r"))
	s.Rollback(ctx)
	if got := h.Rows(t, tbl); len(got) != 18 {
		t.Errorf("after a rolled-back chunked copy: %d rows, expected the copy's 18", len(got))
	}
	keys, _ = h.client.Keys(ctx, globEscape(h.prefix)+"ibex:copy:*").Result()
	if len(keys) != 0 {
		t.Errorf("temporary sets left: %q", keys)
	}
}

// TestQueuedCopyMidway: while a queued copy is in the unit, a reader sees the old rows.
func TestQueuedCopyMidway(t *testing.T) {
	h := newHarness(t)
	tbl := basicTable("midway")
	h.Seed(t, tbl, numbered(1, 3, "old"))
	s := h.open(t)
	unitOf(t, s, func(ctx context.Context) {
		copyRows(t, s, tbl, numbered(2, 4, "new"))
		if got := h.Rows(t, tbl); !slices.Equal(got, numbered(1, 3, "old")) {
			t.Errorf("mid-unit: %q", got)
		}
	})
	if got := h.Rows(t, tbl); !slices.Equal(got, numbered(2, 4, "new")) {
		t.Errorf("after: %q", got)
	}
}

func TestWriteRowsErrors(t *testing.T) {
	h := newHarness(t)
	tbl := basicTable("errs")
	s := h.open(t)
	ctx := t.Context()
	if err := s.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Rollback(ctx)
	if _, err := s.WriteRows(ctx, tbl, strings.NewReader("")); err == nil || err.Error() != "db r1: writing rows of public.errs: no batch of this table is under way (PrepareBatch or ReplaceTable first)" {
		t.Errorf("WriteRows without a batch: %v", err)
	}
	if _, err := s.PrepareBatch(ctx, tbl, []string{"1"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ rows, want string }{
		{"1\ta\n", "db r1: writing row 1 of public.errs: table public.errs: a row has 2 fields, expected 4"},
		{"1\ta\t1\t\\\\xzz\n", `db r1: writing row 1 of public.errs: table public.errs, column data (bytea): value "\\xzz" refused: pgtext: bytea: encoding/hex: invalid byte: U+007A 'z'`},
		{"\\N\ta\t1\t\\N\n", "db r1: writing row 1 of public.errs: table public.errs: key column id is NULL"},
	} {
		_, err := s.WriteRows(ctx, tbl, strings.NewReader(c.rows))
		if err == nil || err.Error() != c.want {
			t.Errorf("WriteRows(%q): %v\nexpected %s", c.rows, err, c.want)
		}
	}
}

var _ = errors.Is
var _ goredis.Cmdable = (*goredis.Client)(nil)

// TestUnitTooLarge: a unit whose queued rows pass the sink's memory bound fails with
// ErrUnitTooLarge (saying what to change) instead of growing without end, and nothing of
// it is written.
func TestUnitTooLarge(t *testing.T) {
	h := newHarness(t)
	s := h.open(t)
	s.maxUnit = 4 << 10
	tbl := basicTable("too_large")
	ctx := t.Context()
	if err := s.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	var rows []string
	keys := make([]string, 0, 100)
	for i := 1; i <= 100; i++ {
		k := strconv.Itoa(i)
		keys, rows = append(keys, k), append(rows, k+"\t"+strings.Repeat("x", 100)+"\t1\t\\N")
	}
	if _, err := s.PrepareBatch(ctx, tbl, keys); err != nil {
		t.Fatal(err)
	}
	_, err := s.WriteRows(ctx, tbl, strings.NewReader(strings.Join(rows, "\n")+"\n"))
	if !errors.Is(err, ErrUnitTooLarge) || !strings.Contains(err.Error(), "lower the sync's batch_size, or turn single_transaction off") {
		t.Fatalf("WriteRows past the bound: %v", err)
	}
	s.Rollback(ctx)
	if got := h.Rows(t, tbl); len(got) != 0 {
		t.Fatalf("a refused unit wrote %d rows", len(got))
	}
}

// batchRows runs one batch of tbl (keys, then rows) in the open unit and returns its counts.
func batchRows(t *testing.T, s *Sink, tbl *sinks.Table, keys, rows []string) sinks.Counts {
	t.Helper()
	ctx := t.Context()
	if _, err := s.PrepareBatch(ctx, tbl, keys); err != nil {
		t.Fatalf("PrepareBatch: %v", err)
	}
	return writeAndFinish(t, s, tbl, rows)
}

func keysOf(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, strconv.Itoa(i))
	}
	return out
}

// TestFastKeys: a unit's first batch of a table whose keys are a range of integers is
// tracked in bits (fastKeys); its counts, its deletes, and what later batches and copies of
// the same table in the unit see of it are those of the map: keys without a row deleted, a
// key twice, a row of a key not in the batch, a second batch re-touching its keys, a copy
// with ifEmpty after it.
func TestFastKeys(t *testing.T) {
	h := newHarness(t)
	tbl := basicTable("fast")
	h.Seed(t, tbl, numbered(1, 20, "old"))
	s := h.open(t)
	if f := mustLayout(t, tbl).fastKeysOf(keysOf(1, 40)); f == nil || len(f.keys) != 40 {
		t.Fatalf("fastKeysOf 1..40: %+v", f)
	}
	if f := mustLayout(t, tbl).fastKeysOf([]string{"1", "1000"}); f != nil {
		t.Fatalf("a sparse range is fast: %+v", f)
	}
	if f := mustLayout(t, tbl).fastKeysOf([]string{"1", "01"}); f != nil {
		t.Fatalf("a key printed another way is fast: %+v", f)
	}
	unitOf(t, s, func(ctx context.Context) {
		// Keys 11..30 (11..20 exist), twice over; rows for 11..15 and 21..25, and for 99,
		// which is not a key of the batch.
		keys := append(keysOf(11, 30), keysOf(11, 30)...)
		rows := append(append(numbered(11, 15, "new"), numbered(21, 25, "new")...), numbered(99, 99, "odd")...)
		if c := batchRows(t, s, tbl, keys, rows); c != (sinks.Counts{Written: 11, Deleted: 10}) {
			t.Fatalf("first batch: %+v", c)
		}
		// A second batch of the table in the unit: 14..16 (14 and 15 got rows above, 16
		// was deleted) and 99 (written above).
		if c := batchRows(t, s, tbl, []string{"14", "15", "16", "99"}, numbered(16, 16, "again")); c != (sinks.Counts{Written: 1, Deleted: 3}) {
			t.Fatalf("second batch: %+v", c)
		}
	})
	want := append(append(append(numbered(1, 10, "old"), numbered(11, 13, "new")...), numbered(16, 16, "again")...), numbered(21, 25, "new")...)
	if got := h.Rows(t, tbl); !slices.Equal(got, sorted(want)) {
		t.Fatalf("rows:\n%q\nwant\n%q", got, sorted(want))
	}
	// A copy with ifEmpty after a fast batch that deleted every key of the table: empty.
	unitOf(t, s, func(ctx context.Context) {
		keys := keysOf(1, 25)
		if c := batchRows(t, s, tbl, keys, nil); c != (sinks.Counts{Deleted: 19}) {
			t.Fatalf("deleting batch: %+v", c)
		}
		if skipped, err := s.ReplaceTable(ctx, tbl, true); err != nil || skipped {
			t.Fatalf("ReplaceTable(ifEmpty) after the table was emptied: skipped %v, %v", skipped, err)
		}
		if n, err := s.WriteRows(ctx, tbl, strings.NewReader(strings.Join(numbered(5, 6, "copy"), "\n")+"\n")); err != nil || n != 2 {
			t.Fatalf("WriteRows = %d, %v", n, err)
		}
		if c, err := s.FinishBatch(ctx, tbl); err != nil || c != (sinks.Counts{Written: 2}) {
			t.Fatalf("copy: %+v, %v", c, err)
		}
	})
	if got, want := h.Rows(t, tbl), sorted(numbered(5, 6, "copy")); !slices.Equal(got, want) {
		t.Fatalf("rows after the copy: %q, want %q", got, want)
	}
}

func mustLayout(t *testing.T, tbl *sinks.Table) *layout {
	t.Helper()
	l, err := newLayout("p:", tbl)
	if err != nil {
		t.Fatal(err)
	}
	return l
}
