package job

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/internal/pgtest"
)

// failingWriter fails every write.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("receiver gone") }

// TestPrefetch runs COPYs ahead of their readers on a real session: the stream read
// later is the COPY's whole output (larger than the buffer, so that the COPY waited for
// its reader), a reader that fails gets its error and leaves the session usable, a
// prefetch dropped unread leaves it usable too, and the COPY's own error comes back.
func TestPrefetch(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDB(t, "")
	c := pgtest.Conn(t, db.DSN)
	const sql = `COPY (SELECT g, repeat('x', 100) FROM generate_series(1, 100000) g) TO STDOUT`
	var want bytes.Buffer
	if _, err := c.PgConn().CopyTo(ctx, &want, sql); err != nil {
		t.Fatal(err)
	}
	if want.Len() <= prefetchBytes {
		t.Fatalf("the stream is %d bytes, not more than the buffer (%d)", want.Len(), prefetchBytes)
	}
	usable := func(what string) {
		t.Helper()
		var n int
		if err := c.QueryRow(ctx, `SELECT 1`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("%s: the session: %d, %v", what, n, err)
		}
	}

	p := startPrefetch(ctx, c, sql)
	var got bytes.Buffer
	if err := p.writeTo(&got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("the prefetched stream differs: %d bytes, want %d", got.Len(), want.Len())
	}
	p.discard() // taken: nothing to do
	usable("after a prefetch read")
	// The chunks the reader wrote were filled again: about the buffer's worth were made
	// for a stream of more than twice its size.
	if limit := prefetchBytes/prefetchChunk + 2; p.made > limit {
		t.Fatalf("%d chunks made for a %d-byte stream, want at most %d", p.made, want.Len(), limit)
	}

	// Rows of every size, some larger than a chunk (a message is never split), come out
	// as the server sent them.
	const mixed = `COPY (SELECT g, repeat('y', CASE WHEN g % 50 = 0 THEN 200000 ELSE g % 300 END) FROM generate_series(1, 3000) g) TO STDOUT`
	want.Reset()
	if _, err := c.PgConn().CopyTo(ctx, &want, mixed); err != nil {
		t.Fatal(err)
	}
	p = startPrefetch(ctx, c, mixed)
	got.Reset()
	if err := p.writeTo(&got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("the prefetched stream of mixed rows differs: %d bytes, want %d", got.Len(), want.Len())
	}
	usable("after a stream of mixed rows")

	p = startPrefetch(ctx, c, sql)
	if err := p.writeTo(failingWriter{}); err == nil || err.Error() != "receiver gone" {
		t.Fatalf("a failing reader: %v, want its error", err)
	}
	usable("after a failing reader")

	p = startPrefetch(ctx, c, sql)
	p.discard()
	usable("after a prefetch dropped")

	p = startPrefetch(ctx, c, `COPY (SELECT 1/0) TO STDOUT`)
	if err := p.writeTo(&got); err == nil || !strings.Contains(err.Error(), "division by zero") {
		t.Fatalf("a failing COPY: %v", err)
	}
	usable("after a failing COPY")
}
