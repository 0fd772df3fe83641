package faults

import (
	"context"
	crand "crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	goredis "github.com/redis/go-redis/v9"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/ibextest"
	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/job"
	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/targets"
)

// TestTargetCutMidRun: a target that is not PostgreSQL (MariaDB, Redis), reached through a
// proxy, loses its connection while a run writes it unit after unit. The run is not Good
// and says why; what the target committed before the cut is a prefix of the source's
// changes (no row the source never had); the next run, with the connection back, converges
// exactly.
func TestTargetCutMidRun(t *testing.T) {
	for _, typ := range []control.DBType{control.DBTypeMariaDB, control.DBTypeRedis} {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			testTargetCutMidRun(t, typ)
		})
	}
}

func testTargetCutMidRun(t *testing.T, typ control.DBType) {
	const rows, batch = 20000, 500
	e := newEnv(t, pgtest.ClusterOptions{})
	src := e.ctl.CreateDB("a")
	ibextest.Exec(t, src.DSN, `CREATE TABLE big (id int PRIMARY KEY, v text NOT NULL, n numeric(10,2))`)
	e.must(ibextest.AddDBArgs("a", src.Conn)...)

	var rb [4]byte
	_, _ = crand.Read(rb[:])
	suffix := hex.EncodeToString(rb[:])
	var upstream string
	params := map[string]string{}
	switch typ {
	case control.DBTypeMariaDB:
		upstream = "127.0.0.1:3306"
		name := "ibex_faults_" + suffix
		admin, err := sql.Open("mysql", "root@tcp(127.0.0.1:3306)/")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _, _ = admin.Exec("DROP DATABASE IF EXISTS " + name); _ = admin.Close() })
		if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
			t.Skipf("MariaDB is not reachable on 127.0.0.1:3306 (.ci/run starts it): %v", err)
		}
		params["dbname"], params["user"] = name, "root"
	case control.DBTypeRedis:
		upstream = "127.0.0.1:6379"
		prefix := "ibex_faults_" + suffix + ":"
		rc := goredis.NewClient(&goredis.Options{Addr: upstream})
		t.Cleanup(func() {
			ctx := context.Background()
			for it := rc.Scan(ctx, 0, prefix+"*", 1000).Iterator(); it.Next(ctx); {
				rc.Del(ctx, it.Val())
			}
			_ = rc.Close()
		})
		if err := rc.Ping(context.Background()).Err(); err != nil {
			t.Skipf("Redis is not reachable on 127.0.0.1:6379 (.ci/run starts it): %v", err)
		}
		params["prefix"] = prefix
	}
	proxy := newProxy(t, upstream)
	host, port, _ := net.SplitHostPort(proxy.Listen)
	params["host"], params["port"], params["connect_timeout"] = host, port, "2"
	add := []string{"add", "db", "x", "type=" + string(typ)}
	for k, v := range params {
		add = append(add, k+"="+v)
	}
	e.must(add...)
	e.must("add", "table", "big", "db=a", "herd=h")
	e.must("add", "dbgroup", "g", "a:source", "x:target")
	e.must("add", "sync", "s", "herd=h", "dbs=g")
	e.must("validate", "s", "--create-targets")
	s := e.store()
	mustState(t, s, "s", job.Options{}, control.StateEmpty)
	ibextest.Exec(t, src.DSN, `INSERT INTO big SELECT g, md5(g::text), g / 100.0 FROM generate_series(1, $1) g`, rows)

	tgt := openTarget(t, typ, params)
	tbl := &sinks.Table{Schema: "public", Name: "big", Key: []string{"id"}, Cols: []string{"id", "v", "n"},
		Columns: []catalog.Column{{Name: "id", Type: "integer"}, {Name: "v", Type: "text"}, {Name: "n", Type: "numeric(10,2)"}}}
	// Slow the target down, start the run, and cut the connection once some units landed.
	addToxic(t, proxy, `{"name":"slow","type":"latency","stream":"downstream","attributes":{"latency":20}}`)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	done := make(chan *job.Result, 1)
	go func() {
		res, _ := job.Run(ctx, s, "s", job.Options{BatchSize: batch})
		done <- res
	}()
	ibextest.WaitFor(t, "the first units on the target", time.Minute, func() bool { return len(readAll(t, tgt, tbl)) > 0 })
	addToxic(t, proxy, `{"name":"cut","type":"reset_peer","attributes":{"timeout":0}}`)
	res := <-done
	if res.State == control.StateGood {
		t.Fatalf("the run with the target cut was good: %+v", res)
	}
	if !strings.Contains(res.Summary(), "db x") || strings.Contains(res.Summary(), "db x: db x:") {
		t.Errorf("the run should name the target it lost, once: %s", res.Summary())
	}
	want := sourceRows(t, src.DSN)
	got := readAll(t, tgt, tbl)
	if len(got) == 0 || len(got) >= len(want) {
		t.Fatalf("after the cut the target holds %d of %d rows: expected some, not all", len(got), len(want))
	}
	t.Logf("cut after %d of %d rows: %s", len(got), len(want), res.Summary())
	for _, r := range got {
		if _, ok := slices.BinarySearch(want, r); !ok {
			t.Fatalf("the target holds a row the source never had: %q", r)
		}
	}
	removeToxic(t, proxy, "cut")
	removeToxic(t, proxy, "slow")
	mustState(t, s, "s", job.Options{BatchSize: batch}, control.StateGood)
	if got := readAll(t, tgt, tbl); !slices.Equal(got, want) {
		t.Fatalf("after the catch-up run the target holds %d rows, the source %d (first: %q)", len(got), len(want), first(got))
	}
	mustState(t, s, "s", job.Options{}, control.StateEmpty)
}

// openTarget opens the target directly (not through the proxy) to read it back.
func openTarget(t *testing.T, typ control.DBType, params map[string]string) sinks.Reader {
	t.Helper()
	direct := map[string]string{}
	for k, v := range params {
		direct[k] = v
	}
	if typ == control.DBTypeMariaDB {
		direct["host"], direct["port"] = "127.0.0.1", "3306"
	} else {
		direct["host"], direct["port"] = "127.0.0.1", "6379"
	}
	s, err := targets.Open(context.Background(), typ, sinks.Config{DB: "x", Params: direct})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	r, ok := s.(sinks.Reader)
	if !ok {
		t.Fatalf("a %s sink is not a sinks.Reader", typ)
	}
	return r
}

func readAll(t *testing.T, r sinks.Reader, tbl *sinks.Table) []string {
	t.Helper()
	var out []string
	if err := r.ReadRows(context.Background(), tbl, func(l string) error { out = append(out, l); return nil }); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func sourceRows(t *testing.T, dsn string) []string {
	t.Helper()
	var out []string
	for _, r := range ibextest.Rows(t, dsn, `SELECT id::text, v, n::text FROM big`) {
		out = append(out, strings.Join(r, "\t"))
	}
	slices.Sort(out)
	return out
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return fmt.Sprint(s[0])
}
