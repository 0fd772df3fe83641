package faults

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/dbconn"
	"github.com/ibexrepl/ibex/internal/ibextest"
	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/job"
)

// TestTLS proves that sslmode and the certificates given as libpq keywords are honoured,
// by dbconn.Connect, by 'ibex add db' and by a run: against a cluster with ssl=on whose
// pg_hba.conf refuses connections without TLS, and whose certificate (for localhost
// only) is issued by a CA made here.
func TestTLS(t *testing.T) {
	t.Parallel()
	ca, wrong := pgtest.NewCA(t, "ibex test CA"), pgtest.NewCA(t, "another CA")
	crt, key := ca.ServerPair(t, "localhost")
	dir := t.TempDir()
	caFile, wrongFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "wrong-ca.crt")
	const password = "tls-Secret-4b2c"
	pass := "file:" + filepath.Join(dir, "pw")
	for p, b := range map[string][]byte{caFile: ca.PEM, wrongFile: wrong.PEM, pass[len("file:"):]: []byte(password + "\n")} {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e := newEnv(t, pgtest.ClusterOptions{
		Password: password, // scram-sha-256 over TCP, so channel binding can be checked
		Settings: map[string]string{"ssl": "on", "ssl_cert_file": "server.crt", "ssl_key_file": "server.key"},
		HBA:      []string{"hostnossl all all all reject"},
		Files:    map[string][]byte{"server.crt": crt, "server.key": key},
	})
	d1, d2 := e.ctl.CreateDB("d1"), e.ctl.CreateDB("d2")
	port := strconv.Itoa(e.ctl.Port)
	conn := func(db string, kv ...string) map[string]string {
		c := map[string]string{"host": "localhost", "port": port, "user": "postgres", "dbname": db, "connect_timeout": "5"}
		for i := 0; i < len(kv); i += 2 {
			c[kv[i]] = kv[i+1]
		}
		return c
	}
	ctx := context.Background()

	for _, tc := range []struct {
		name string
		conn map[string]string
		fail []string // what the error says; none: connects over TLS
	}{
		{"verify-full", conn("d1", "sslmode", "verify-full", "sslrootcert", caFile), nil},
		{"verify-full, channel binding", conn("d1", "sslmode", "verify-full", "sslrootcert", caFile, "channel_binding", "require"), nil},
		{"verify-full, wrong CA", conn("d1", "sslmode", "verify-full", "sslrootcert", wrongFile),
			[]string{"cannot connect to db t1 (host=localhost port=" + port + " dbname=d1 user=postgres): ", "tls: failed to verify certificate: x509: certificate signed by unknown authority"}},
		{"verify-full, name not in the certificate", conn("d1", "host", "127.0.0.1", "sslmode", "verify-full", "sslrootcert", caFile),
			[]string{"cannot connect to db t1 (host=127.0.0.1 port=" + port + " dbname=d1 user=postgres): ", "tls: failed to verify certificate: x509: cannot validate certificate for 127.0.0.1 because it doesn't contain any IP SANs"}},
		{"verify-ca, name not in the certificate", conn("d1", "host", "127.0.0.1", "sslmode", "verify-ca", "sslrootcert", caFile), nil},
		{"verify-ca, wrong CA", conn("d1", "sslmode", "verify-ca", "sslrootcert", wrongFile),
			[]string{"cannot connect to db t1 (", "certificate signed by unknown authority"}},
		{"require", conn("d1", "sslmode", "require"), nil},
		{"require with sslrootcert checks the CA, as libpq", conn("d1", "sslmode", "require", "sslrootcert", wrongFile),
			[]string{"cannot connect to db t1 (", "certificate signed by unknown authority"}},
		{"prefer", conn("d1", "sslmode", "prefer"), nil},
		{"disable, refused by hostnossl", conn("d1", "sslmode", "disable"),
			[]string{"cannot connect to db t1 (host=localhost port=" + port + " dbname=d1 user=postgres): ", `pg_hba.conf rejects connection for host "127.0.0.1", user "postgres", database "d1", no encryption`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dbconn.Connect(ctx, "t1", tc.conn, pass)
			if tc.fail != nil {
				if err == nil {
					c.Close(ctx)
					t.Fatalf("connected; want an error saying %q", tc.fail)
				}
				if !contains(err.Error(), tc.fail...) || err.Error()[:len(tc.fail[0])] != tc.fail[0] {
					t.Errorf("error %q\nwant it to start with %q and say %q", err, tc.fail[0], tc.fail[1:])
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(ctx)
			var ssl bool
			if err := c.QueryRow(ctx, `SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&ssl); err != nil || !ssl {
				t.Errorf("pg_stat_ssl.ssl = %v, %v; want true", ssl, err)
			}
		})
	}

	// Through the CLI: add db tests the connection with the db's own keywords.
	full := conn("d1", "sslmode", "verify-full", "sslrootcert", caFile, "pass", pass)
	e.must(ibextest.AddDBArgs("d1", full)...)
	bad := maps.Clone(full)
	bad["sslrootcert"] = wrongFile
	out, errOut, code := e.run(ibextest.AddDBArgs("dx", bad)...)
	if code == 0 || !contains(errOut, "cannot connect to db dx (host=localhost port="+port+" dbname=d1 user=postgres): ", "certificate signed by unknown authority") {
		t.Errorf("add db with the wrong CA: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	e.must(ibextest.AddDBArgs("d2", conn("d2", "host", "127.0.0.1", "sslmode", "verify-ca", "sslrootcert", caFile, "pass", pass))...)

	// And a run over those connections converges.
	dsns := map[string]string{"d1": d1.DSN + " sslmode=require", "d2": d2.DSN + " sslmode=require"} // with the password
	for _, dsn := range dsns {
		ibextest.Exec(t, dsn, `CREATE TABLE kv (id int PRIMARY KEY, v text NOT NULL)`)
	}
	e.must("add", "table", "kv", "db=d1", "herd=h")
	e.must("add", "sync", "s", "herd=h", "dbs=d1:source,d2:source")
	s := e.store()
	mustState(t, s, "s", job.Options{}, control.StateEmpty)
	ibextest.Exec(t, dsns["d1"], `INSERT INTO kv SELECT g, 'd1-' || g FROM generate_series(1, 100) g`)
	ibextest.Exec(t, dsns["d2"], `INSERT INTO kv SELECT g, 'd2-' || g FROM generate_series(101, 150) g`)
	res := mustState(t, s, "s", job.Options{}, control.StateGood)
	if res.Inserts != 150 || res.Deletes != 0 || len(res.Skipped) != 0 {
		t.Errorf("run over TLS: inserts %d deletes %d skipped %v, want 150, 0, none", res.Inserts, res.Deletes, res.Skipped)
	}
	if got := ibextest.SameEverywhere(t, "kv", "", dsns); int64(len(got)) != 150 {
		t.Errorf("%d rows, want 150", int64(len(got)))
	}
}
