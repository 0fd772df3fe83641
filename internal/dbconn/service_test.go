package dbconn_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/internal/dbconn"
	"github.com/ibexrepl/ibex/internal/pgtest"
)

// TestService: a db may be only a service, found where libpq looks for it: servicefile=
// (PostgreSQL 18), else PGSERVICEFILE, else ~/.pg_service.conf, then pg_service.conf in
// PGSYSCONFDIR when the first file lacks it. The service names the database (dbname) or
// the db does: PGDATABASE and the user name never choose it. Not parallel: it sets the
// environment.
func TestService(t *testing.T) {
	db := pgtest.NewDB(t, "")
	other := pgtest.NewDB(t, "")
	home, user, sys := t.TempDir(), t.TempDir(), t.TempDir()
	server := "host=" + db.Conn["host"] + "\nport=" + db.Conn["port"] + "\nuser=" + db.Conn["user"] + "\n"
	write := func(path, text string) string {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	userFile := write(filepath.Join(user, "services"), "[svc]\n"+server+"dbname="+db.Name+"\npassword=ServiceSecret\n[nodb]\n"+server)
	sysFile := write(filepath.Join(sys, "pg_service.conf"), "[svc]\n"+server+"dbname="+other.Name+"\n[syssvc]\n"+server+"dbname="+other.Name+"\n")
	badFile := write(filepath.Join(user, "bad"), "host=x\n[svc]\n")
	t.Setenv("HOME", home)
	t.Setenv("PGSERVICE", "")
	t.Setenv("PGSERVICEFILE", "")
	t.Setenv("PGSYSCONFDIR", "")
	t.Setenv("PGDATABASE", other.Name) // never used: a db names its database

	ctx := context.Background()
	for _, tc := range []struct {
		name string
		conn map[string]string
		env  map[string]string
		want string // current_database(), or the error
	}{
		{"PGSERVICEFILE", map[string]string{"service": "svc"}, map[string]string{"PGSERVICEFILE": userFile}, db.Name},
		{"servicefile=", map[string]string{"service": "svc", "servicefile": userFile}, nil, db.Name},
		{"servicefile= wins over PGSERVICEFILE", map[string]string{"service": "svc", "servicefile": userFile}, map[string]string{"PGSERVICEFILE": sysFile}, db.Name},
		{"dbname= wins over the service's", map[string]string{"service": "svc", "dbname": other.Name}, map[string]string{"PGSERVICEFILE": userFile}, other.Name},
		{"PGSERVICE", map[string]string{"dbname": other.Name}, map[string]string{"PGSERVICE": "svc", "PGSERVICEFILE": userFile}, other.Name},
		{"~/.pg_service.conf", map[string]string{"service": "svc"}, map[string]string{"HOME": user + "/home"}, "HOME"},
		{"the user's file wins over PGSYSCONFDIR", map[string]string{"service": "svc"}, map[string]string{"PGSERVICEFILE": userFile, "PGSYSCONFDIR": sys}, db.Name},
		{"PGSYSCONFDIR when the user's file lacks it", map[string]string{"service": "syssvc"}, map[string]string{"PGSERVICEFILE": userFile, "PGSYSCONFDIR": sys}, other.Name},
		{"PGSYSCONFDIR when there is no user's file", map[string]string{"service": "svc"}, map[string]string{"PGSYSCONFDIR": sys}, other.Name},
		{"PGSYSCONFDIR after servicefile=", map[string]string{"service": "syssvc", "servicefile": userFile}, map[string]string{"PGSYSCONFDIR": sys}, other.Name},

		{"unknown service", map[string]string{"service": "nosuch"}, map[string]string{"PGSERVICEFILE": userFile},
			`db t1: service "nosuch" is not defined in ` + userFile},
		{"unknown service, two files", map[string]string{"service": "nosuch"}, map[string]string{"PGSERVICEFILE": userFile, "PGSYSCONFDIR": sys},
			`db t1: service "nosuch" is not defined in ` + userFile + ` nor in ` + sysFile},
		{"no service file", map[string]string{"service": "svc"}, nil,
			`db t1: service "svc" is not defined in ` + filepath.Join(home, ".pg_service.conf") + ` (no such file)`},
		{"missing servicefile=", map[string]string{"service": "svc", "servicefile": userFile + ".missing"}, map[string]string{"PGSYSCONFDIR": user},
			`db t1: service "svc" is not defined in ` + userFile + `.missing (no such file) nor in ` + filepath.Join(user, "pg_service.conf") + ` (no such file)`},
		{"malformed service file", map[string]string{"service": "svc"}, map[string]string{"PGSERVICEFILE": badFile},
			`db t1: reading service file ` + badFile + `: line 1 is not in a section`},
		{"service without dbname", map[string]string{"service": "nodb"}, map[string]string{"PGSERVICEFILE": userFile},
			`db t1: service "nodb" (in ` + userFile + `) does not set dbname: set it there, or give the db dbname=`},
		{"service without dbname, dbname=", map[string]string{"service": "nodb", "dbname": db.Name}, map[string]string{"PGSERVICEFILE": userFile}, db.Name},
		{"neither dbname nor service", map[string]string{"host": db.Conn["host"], "port": db.Conn["port"], "user": db.Conn["user"]}, nil,
			`db t1: dbname= or service= is required (the database's name on its server, or a service of pg_service.conf that sets dbname)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			want := tc.want
			if want == "HOME" { // ~/.pg_service.conf of this HOME
				home := tc.env["HOME"]
				if err := os.MkdirAll(home, 0o700); err != nil {
					t.Fatal(err)
				}
				write(filepath.Join(home, ".pg_service.conf"), "[svc]\n"+server+"dbname="+db.Name+"\n")
				want = db.Name
			}
			c, err := dbconn.Connect(ctx, "t1", tc.conn, "")
			if strings.HasPrefix(want, "db t1: ") {
				if err == nil {
					c.Close(ctx)
					t.Fatalf("connected; want %s", want)
				}
				if err.Error() != want {
					t.Errorf("error:\n%s\nwant:\n%s", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(ctx)
			var got string
			if err := c.QueryRow(ctx, `SELECT current_database()`).Scan(&got); err != nil || got != want {
				t.Errorf("current_database() = %q, %v; want %q", got, err, want)
			}
		})
	}

	// Messages name the service's database and never hold its password.
	t.Setenv("PGSERVICEFILE", userFile)
	_, err := dbconn.Connect(ctx, "t1", map[string]string{"service": "svc", "port": "1"}, "")
	want := "cannot connect to db t1 (host=" + db.Conn["host"] + " port=1 dbname=" + db.Name + " user=" + db.Conn["user"] + "): "
	if err == nil || !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "ServiceSecret") {
		t.Errorf("Connect through a service to a closed port: %v\nwant %s...", err, want)
	}
}
