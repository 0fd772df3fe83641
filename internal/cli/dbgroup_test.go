package cli_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/internal/ibextest"
)

// dbsYAML is the dbs section of a file with dbs d1..dn, all on the database db.
func dbsYAML(dbname string, n int) string {
	var b strings.Builder
	b.WriteString("dbs:\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "  d%d:\n    dbname: %s\n", i, dbname)
	}
	return b.String()
}

// members are "d1:role1", "d2:role2", ... for the roles given, then targets up to n.
func members(n int, roles ...string) []string {
	var out []string
	for i := 1; i <= n; i++ {
		role := "target"
		if i <= len(roles) {
			role = roles[i-1]
		}
		out = append(out, fmt.Sprintf("d%d:%s", i, role))
	}
	return out
}

// dbgroupYAML is a dbgroups section with the one dbgroup g.
func dbgroupYAML(ms []string) string {
	return "dbgroups:\n  g: [" + strings.Join(ms, ", ") + "]\n"
}

// TestDBGroupRulesInApply: ibex apply refuses the dbgroups that ibex add dbgroup refuses,
// with the same words. A fullcopy dbgroup with two sources was applied, and a fullcopy
// run then copied from the last source and said nothing.
func TestDBGroupRulesInApply(t *testing.T) {
	t.Parallel()
	ctl := newControl(t)
	for i := 1; i <= 3; i++ {
		ok(t, ctl.DSN, ibextest.AddDBArgs(fmt.Sprintf("d%d", i), ctl.Conn)...)
	}
	before := state(t, ctl.DSN)
	exported := ok(t, ctl.DSN, "export") // the dbs as they are, so that apply would change only the dbgroup
	for _, tc := range []struct {
		name string
		ms   []string
		want string
	}{
		{"fullcopy with two sources", members(3, "source", "source", "fullcopy"),
			"dbgroup g: a fullcopy dbgroup has exactly one source and only fullcopy dbs besides"},
		{"fullcopy with a target", members(3, "source", "fullcopy", "target"),
			"dbgroup g: a fullcopy dbgroup has exactly one source and only fullcopy dbs besides"},
		{"no source", members(2, "target", "fullcopy"),
			"dbgroup g has no source: give at least one db the role source"},
	} {
		if msg := refused(t, ctl.DSN, 2, append([]string{"add", "dbgroup", "g"}, tc.ms...)); msg != "ibex: "+tc.want+"\n" {
			t.Errorf("%s: add dbgroup: %q, want %q", tc.name, msg, tc.want)
		}
		f := writeFile(t, strings.ReplaceAll(tc.name, " ", "_")+".yaml", exported+dbgroupYAML(tc.ms))
		for _, dry := range []bool{true, false} {
			a := []string{"apply", "-f", f}
			if dry {
				a = append(a, "--dry-run")
			}
			if msg := refused(t, ctl.DSN, 2, a); msg != "ibex: "+f+": "+tc.want+"\n" {
				t.Errorf("%s: %s: %q, want %q", tc.name, strings.Join(a, " "), msg, "ibex: "+f+": "+tc.want+"\n")
			}
		}
	}
	unchanged(t, ctl.DSN, before, "refused dbgroups")
}

// TestDBGroupAtMost64DBs: a run tracks a dbgroup's dbs in 64-bit masks, so a dbgroup has
// at most 64 dbs; one with more is refused when it is made or changed, by the command
// line and by apply.
func TestDBGroupAtMost64DBs(t *testing.T) {
	t.Parallel()
	ctl := newControl(t)
	// 65 dbs without testing their connections (they all name the control database).
	ibextest.Exec(t, ctl.DSN, `INSERT INTO ibex.db (name, conn) SELECT 'd' || i, jsonb_build_object('dbname', $1::text) FROM generate_series(1, 65) i`, ctl.Name)
	const want = `dbgroup "g" has 65 dbs: a dbgroup has at most 64`

	if out := ok(t, ctl.DSN, append([]string{"add", "dbgroup", "g"}, members(64, "source", "source")...)...); !strings.HasPrefix(out, "Added dbgroup g: d1:source d2:source d3:target") {
		t.Errorf("add dbgroup of 64 dbs said %q", out)
	}
	before := state(t, ctl.DSN)
	refuseAll(t, ctl.DSN,
		rf(2, append([]string{"update", "dbgroup", "g"}, members(65, "source", "source")...), "ibex: "+want+"\n"),
		rf(2, append([]string{"add", "dbgroup", "g2"}, members(65, "source")...), "ibex: "+strings.Replace(want, `"g"`, `"g2"`, 1)+"\n"),
	)
	f := writeFile(t, "65.yaml", dbsYAML(ctl.Name, 65)+dbgroupYAML(members(65, "source")))
	for _, dry := range []bool{true, false} {
		a := []string{"apply", "-f", f}
		if dry {
			a = append(a, "--dry-run")
		}
		if msg := refused(t, ctl.DSN, 2, a); msg != "ibex: "+f+": "+want+"\n" {
			t.Errorf("%s: %q, want %q", strings.Join(a, " "), msg, "ibex: "+f+": "+want+"\n")
		}
	}
	unchanged(t, ctl.DSN, before, "refused dbgroups of 65 dbs")
}
