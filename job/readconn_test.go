package job

import (
	"context"
	"slices"
	"testing"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/pgtest"
)

// TestReadSessionCompressesWAL: a source's read session turns on wal_compression when
// the run compresses its WAL (member.compressReads): its reads prune the pages they read,
// which right after a checkpoint writes them whole to the WAL. Without it the session
// keeps the server's setting. Either way its joins probe the key index.
func TestReadSessionCompressesWAL(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewDB(t, "")
	var server string
	if err := pgtest.Conn(t, db.DSN).QueryRow(ctx, `SHOW wal_compression`).Scan(&server); err != nil {
		t.Fatal(err)
	}
	if server != "off" {
		t.Skipf("the server compresses its WAL already (wal_compression = %s)", server)
	}
	for _, compress := range []bool{true, false} {
		m := &member{name: "a", db: &control.DB{Type: control.DBTypePostgres, Conn: db.Conn}, compressReads: compress}
		c, err := openReadConn(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		var wal, hash string
		err = c.QueryRow(ctx, `SELECT current_setting('wal_compression'), current_setting('enable_hashjoin')`).Scan(&wal, &hash)
		closeConn(c)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"off"}
		if compress {
			want = []string{"lz4", "pglz"}
		}
		if !slices.Contains(want, wal) {
			t.Errorf("compressReads %v: the read session's wal_compression is %s, want %v", compress, wal, want)
		}
		if hash != "off" {
			t.Errorf("compressReads %v: the read session's enable_hashjoin is %s, want off", compress, hash)
		}
	}
}
