package config_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/internal/config"
)

// TestParseDBGroupRules: a file's dbgroups follow the rules of 'ibex add dbgroup'
// (control.DBGroup.Check), with the same words.
func TestParseDBGroupRules(t *testing.T) {
	t.Parallel()
	file := func(n int, roles ...string) string {
		var dbs, ms []string
		for i := 1; i <= n; i++ {
			dbs = append(dbs, fmt.Sprintf("  d%d: {dbname: x}\n", i))
			role := "target"
			if i <= len(roles) {
				role = roles[i-1]
			}
			ms = append(ms, fmt.Sprintf("d%d:%s", i, role))
		}
		return "dbs:\n" + strings.Join(dbs, "") + "dbgroups:\n  g: [" + strings.Join(ms, ", ") + "]\n"
	}
	for _, tc := range []struct{ name, in, want string }{
		{"fullcopy with two sources", file(3, "source", "source", "fullcopy"),
			"f.yaml: dbgroup g: a fullcopy dbgroup has exactly one source and only fullcopy dbs besides"},
		{"fullcopy with a target", file(3, "source", "fullcopy", "target"),
			"f.yaml: dbgroup g: a fullcopy dbgroup has exactly one source and only fullcopy dbs besides"},
		{"no source", file(2, "target", "target"), "f.yaml: dbgroup g has no source: give at least one db the role source"},
		{"no dbs", "dbgroups:\n  g: []\n", "f.yaml: dbgroup g: list its dbs as name:role (source, target or fullcopy)"},
		{"65 dbs", file(65, "source"), `f.yaml: dbgroup "g" has 65 dbs: a dbgroup has at most 64`},
		{"64 dbs", file(64, "source", "source"), ""},
		{"fullcopy", file(3, "source", "fullcopy", "fullcopy"), ""},
	} {
		_, err := config.Parse("f.yaml", strings.NewReader(tc.in))
		if got := fmt.Sprint(err); (err == nil) != (tc.want == "") || (err != nil && got != tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
