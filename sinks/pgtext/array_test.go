package pgtext

import (
	"errors"
	"reflect"
	"testing"
)

func TestParseArray(t *testing.T) {
	v := func(s string) ArrayElem { return ArrayElem{Text: s} }
	null := ArrayElem{Null: true}
	for _, c := range []struct {
		in   string
		want []ArrayElem
	}{
		{`{}`, []ArrayElem{}},
		{`{1,2,NULL}`, []ArrayElem{v("1"), v("2"), null}},
		{`{a,"b c","NULL",NULL,""}`, []ArrayElem{v("a"), v("b c"), v("NULL"), null, v("")}},
		{`{"q\"uote","back\\slash","com,ma","{br}"}`, []ArrayElem{v(`q"uote`), v(`back\slash`), v("com,ma"), v("{br}")}},
		{`{{1,2},{3,NULL}}`, []ArrayElem{{Sub: []ArrayElem{v("1"), v("2")}}, {Sub: []ArrayElem{v("3"), null}}}},
		{`{"ü 😀",tab	x}`, []ArrayElem{v("ü 😀"), v("tab\tx")}},
	} {
		got, err := ParseArray(c.in)
		if err != nil {
			t.Errorf("ParseArray(%q): %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseArray(%q) = %#v, expected %#v", c.in, got, c.want)
		}
	}
	for _, in := range []string{``, `{`, `{1,2`, `{"a}`, `{1}x`, `1,2`, `{a"b}`} {
		if got, err := ParseArray(in); err == nil {
			t.Errorf("ParseArray(%q) = %#v, expected an error", in, got)
		}
	}
	if _, err := ParseArray(`[0:1]={1,2}`); !errors.Is(err, ErrArrayBounds) {
		t.Errorf("ParseArray with bounds: %v, expected ErrArrayBounds", err)
	}
}
