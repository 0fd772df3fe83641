package postgres

import "testing"

func TestLooseType(t *testing.T) {
	for in, want := range map[string]string{
		"character varying(5)":           "character varying",
		"numeric(10,2)":                  "numeric",
		"character(3)":                   "bpchar",
		"bit(4)":                         "bit varying",
		"timestamp(3) without time zone": "timestamp without time zone",
		"character varying(5)[]":         "character varying[]",
		"integer":                        "integer",
	} {
		if got := looseType(in); got != want {
			t.Errorf("looseType(%q) = %q, want %q", in, got, want)
		}
	}
}
