package catalog_test

import (
	"strconv"
	"testing"

	"github.com/ibexrepl/ibex/internal/catalog"
)

func TestKeyIn(t *testing.T) {
	many := make([]string, catalog.InlineKeysMax+1)
	for i := range many {
		many[i] = strconv.Itoa(i)
	}
	for _, c := range []struct {
		name   string
		prefix string
		cols   []string
		keys   []string
		want   string // "" when not inlined
	}{
		{"one column", "", []string{"id"}, []string{"1", "2"}, `"id" IN ('1', '2')`},
		{"prefix and quotes", "t.", []string{"k"}, []string{"O'Brien"}, `t."k" IN ('O''Brien')`},
		{"two columns", "", []string{"a", "B"}, []string{"1\tx", "2\ty"}, `("a", "B") IN (('1', 'x'), ('2', 'y'))`},
		{"empty text key", "", []string{"id"}, []string{""}, `"id" IN ('')`},
		{"a COPY escape", "", []string{"id"}, []string{`a\tb`}, ""},
		{"NULL", "", []string{"id"}, []string{`\N`}, ""},
		{"wrong field count", "", []string{"a", "b"}, []string{"1"}, ""},
		{"invalid UTF-8", "", []string{"id"}, []string{"\xff"}, ""},
		{"no keys", "", []string{"id"}, nil, ""},
		{"too many keys", "", []string{"id"}, many, ""},
	} {
		got, ok := catalog.KeyIn(c.prefix, c.cols, c.keys)
		if ok != (c.want != "") || got != c.want {
			t.Errorf("%s: KeyIn = %q, %v; want %q", c.name, got, ok, c.want)
		}
	}
}
