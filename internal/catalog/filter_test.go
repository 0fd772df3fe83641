package catalog_test

import (
	"testing"

	"github.com/ibexrepl/ibex/internal/catalog"
)

func TestFilter(t *testing.T) {
	q := func(s, n string) catalog.QualName { return catalog.QualName{Schema: s, Name: n} }
	for _, c := range []struct {
		name string
		f    catalog.Filter
		in   catalog.QualName
		want bool
	}{
		{"empty", catalog.Filter{}, q("public", "t"), true},
		{"-t name any schema", catalog.Filter{Names: []string{"pgbench_%"}}, q("app", "pgbench_accounts"), true},
		{"-t no match", catalog.Filter{Names: []string{"pgbench_%"}}, q("public", "orders"), false},
		{"-t qualified", catalog.Filter{Names: []string{"app.*"}}, q("public", "orders"), false},
		{"-t qualified match", catalog.Filter{Names: []string{"app.*"}}, q("app", "orders"), true},
		{"-T", catalog.Filter{ExcludeNames: []string{"%_log"}}, q("public", "audit_log"), false},
		{"-T other", catalog.Filter{ExcludeNames: []string{"%_log"}}, q("public", "audit"), true},
		{"-n", catalog.Filter{Schemas: []string{"app%"}}, q("app2", "t"), true},
		{"-n no", catalog.Filter{Schemas: []string{"app"}}, q("public", "t"), false},
		{"-N", catalog.Filter{ExcludeSchemas: []string{"tmp"}}, q("tmp", "t"), false},
		{"_ literal", catalog.Filter{Names: []string{"a_b"}}, q("public", "axb"), false},
		{"? one char", catalog.Filter{Names: []string{"a?b"}}, q("public", "axb"), true},
		{"brackets literal", catalog.Filter{Names: []string{"t[1]"}}, q("public", "t1"), false},
	} {
		if got := c.f.Keep(c.in); got != c.want {
			t.Errorf("%s: Keep(%s) = %v, want %v", c.name, c.in, got, c.want)
		}
	}
}

func TestIsPattern(t *testing.T) {
	for arg, want := range map[string]bool{
		"all": true, "public.*": true, "pgbench_%": true, "t?": true, "t[12]": true,
		"public.t": false, `"public"."%s%d"`: false, `"a*b".c`: false, `"a*b".c%`: true,
	} {
		if got := catalog.IsPattern(arg); got != want {
			t.Errorf("IsPattern(%q) = %v, want %v", arg, got, want)
		}
	}
}
