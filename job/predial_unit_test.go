package job

import (
	"context"
	"maps"
	"net"
	"strconv"
	"testing"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/pgtest"
)

// TestPredials: the sessions a run opens ahead are taken once, only for a db whose
// settings are still those they were opened with; an opening that failed gives its error
// to the one who takes it; inactive dbs and other types get none; close closes those
// nobody took.
func TestPredials(t *testing.T) {
	ctx := context.Background()
	a, b := pgtest.NewDB(t, ""), pgtest.NewDB(t, "")
	// A port nobody listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	gone := map[string]string{"host": "127.0.0.1", "port": strconv.Itoa(port), "dbname": "x", "user": "postgres", "connect_timeout": "5"}
	dbs := map[string]*control.DB{
		"a":    {Name: "a", Type: control.DBTypePostgres, Conn: a.Conn, Status: control.StatusActive},
		"b":    {Name: "b", Type: control.DBTypePostgres, Conn: b.Conn, Status: control.StatusActive},
		"gone": {Name: "gone", Type: control.DBTypePostgres, Conn: gone, Status: control.StatusActive},
		"off":  {Name: "off", Type: control.DBTypePostgres, Conn: a.Conn, Status: control.StatusInactive},
		"rd":   {Name: "rd", Type: control.DBTypeRedis, Conn: map[string]string{"host": "127.0.0.1"}, Status: control.StatusActive},
	}
	p := startPredials(ctx, dbs)

	other := maps.Clone(a.Conn)
	other["application_name"] = "changed"
	if _, _, ok := p.take(ctx, "a", other, ""); ok {
		t.Error("a session was taken for db a with other settings")
	}
	c, err, ok := p.take(ctx, "a", a.Conn, "")
	if !ok || err != nil {
		t.Fatalf("take a: ok %v, err %v", ok, err)
	}
	var one int
	if err := c.QueryRow(ctx, `SELECT 1`).Scan(&one); err != nil || one != 1 {
		t.Fatalf("the session of a: %d, %v", one, err)
	}
	if _, _, ok := p.take(ctx, "a", a.Conn, ""); ok {
		t.Error("the session of a was taken twice")
	}
	if _, err, ok := p.take(ctx, "gone", gone, ""); !ok || err == nil {
		t.Errorf("take gone: ok %v, err %v; want its connection error", ok, err)
	}
	for _, n := range []string{"off", "rd"} {
		if _, _, ok := p.take(ctx, n, dbs[n].Conn, ""); ok {
			t.Errorf("a session was opened ahead for db %s", n)
		}
	}
	<-p.byKey[predialKey("b", b.Conn, "")].done
	untaken := p.byKey[predialKey("b", b.Conn, "")].c
	p.close()
	if untaken == nil || !untaken.IsClosed() {
		t.Error("close left the session of b (nobody took it) open")
	}
	if c.IsClosed() {
		t.Error("close closed the session of a, which was taken")
	}
	closeConn(c)
}
