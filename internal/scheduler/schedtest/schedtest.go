// Package schedtest sets up real syncs for the tests of ibex's entry points (scheduler,
// runonce, lambda): a control database with the ibex schema and n pgbench databases
// registered as dbs t1..tn, their three pgbench tables in herd therd and all of them
// sources of dbgroup g. It drives the ibex command line in-process, as a user would.
// (It was named synctest, which shadowed the standard library's testing/synctest.)
package schedtest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/ibextest"
	"github.com/ibexrepl/ibex/internal/pgtest"
)

// Fixture is a control database and its dbs.
type Fixture struct {
	Ctl *pgtest.DB
	DBs []*pgtest.DB // t1 is DBs[0]
}

// Tables are the replicated pgbench tables and the order to compare them in.
var Tables = map[string]string{
	"pgbench_accounts": "aid",
	"pgbench_branches": "bid",
	"pgbench_tellers":  "tid",
}

// New creates the control database and n pgbench databases (scale 1) named t1..tn in
// ibex, all sources of dbgroup g, tables in herd therd. No sync yet.
func New(t testing.TB, n int) *Fixture {
	t.Helper()
	f := &Fixture{Ctl: pgtest.NewDB(t, "")}
	first := pgtest.NewDB(t, "")
	pgtest.Pgbench(t, first, "-i", "-q", "-s", "1")
	f.DBs = append(f.DBs, first)
	for i := 1; i < n; i++ {
		f.DBs = append(f.DBs, pgtest.NewDB(t, first.Name))
	}
	f.Ibex(t, "install")
	members := []string{"add", "dbgroup", "g"}
	for i, db := range f.DBs {
		name := fmt.Sprintf("t%d", i+1)
		f.Ibex(t, ibextest.AddDBArgs(name, db.Conn)...)
		members = append(members, name+":source")
	}
	f.Ibex(t, "add", "table", "pgbench_accounts", "pgbench_branches", "pgbench_tellers", "db=t1", "herd=therd")
	f.Ibex(t, members...)
	return f
}

// DSN is the control database's conninfo (IBEX_DSN).
func (f *Fixture) DSN() string { return f.Ctl.DSN }

// Ibex runs the ibex command line against the control database and fails the test
// unless it exits 0. It returns stdout.
func (f *Fixture) Ibex(t testing.TB, args ...string) string {
	t.Helper()
	out, errOut, code := f.IbexCode(args...)
	if code != 0 {
		t.Fatalf("ibex %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// IbexCode runs the ibex command line and returns stdout, stderr and the exit code.
func (f *Fixture) IbexCode(args ...string) (string, string, int) {
	return ibextest.Ibex(f.Ctl.DSN, args...)
}

// AddSync adds sync name over herd therd and dbgroup g with extra key=value options.
func (f *Fixture) AddSync(t testing.TB, name string, opts ...string) {
	t.Helper()
	f.Ibex(t, append([]string{"add", "sync", name, "herd=therd", "dbs=g"}, opts...)...)
}

// Store opens the control database; it is closed when the test ends.
func (f *Fixture) Store(t testing.TB) *control.Store {
	t.Helper()
	s, err := control.Open(context.Background(), f.Ctl.DSN, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Run is one ibex.run row.
type Run struct {
	ID             int64
	State          string
	Started, Ended time.Time
	Inserts        int64
	Deletes        int64
}

// Runs returns the finished runs of sync, oldest first.
func (f *Fixture) Runs(t testing.TB, sync string) []Run {
	t.Helper()
	c := pgtest.Conn(t, f.Ctl.DSN)
	rows, err := c.Query(context.Background(),
		`SELECT id, state, started, ended, inserts, deletes FROM ibex.run WHERE sync = $1 AND ended IS NOT NULL ORDER BY id`, sync)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []Run
	for rows.Next() {
		var r Run
		if err := rows.Scan(&r.ID, &r.State, &r.Started, &r.Ended, &r.Inserts, &r.Deletes); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	_ = c.Close(context.Background())
	return out
}

// Same reports whether every replicated table has the same content in every db, and
// which table differs first.
func (f *Fixture) Same(t testing.TB) (bool, string) {
	t.Helper()
	for table, order := range Tables {
		want := pgtest.TableSum(t, f.DBs[0].DSN, table, order)
		for _, db := range f.DBs[1:] {
			if got := pgtest.TableSum(t, db.DSN, table, order); got != want {
				return false, table + " differs in " + db.Name
			}
		}
	}
	return true, ""
}

// WaitFor polls cond every 20ms until it is true or timeout passes; it returns how long
// it took and whether cond became true.
func WaitFor(timeout time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) > timeout {
			return time.Since(start), false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Value reads a Prometheus counter or gauge (a scheduler's metrics).
func Value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}
