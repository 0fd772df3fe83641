package pgtext

import (
	"errors"
	"math"
	"testing"
	"time"
)

func TestParseType(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Type
	}{
		{"integer", Type{Kind: Int32, Length: -1, Precision: -1, Scale: -1}},
		{"bigint", Type{Kind: Int64, Length: -1, Precision: -1, Scale: -1}},
		{"numeric", Type{Kind: Numeric, Length: -1, Precision: -1, Scale: -1}},
		{"numeric(10,2)", Type{Kind: Numeric, Length: -1, Precision: 10, Scale: 2}},
		{"numeric(7)", Type{Kind: Numeric, Length: -1, Precision: 7, Scale: 0}},
		{"character varying(20)", Type{Kind: Text, Length: 20, Precision: -1, Scale: -1}},
		{"character(3)", Type{Kind: Text, Length: 3, Precision: -1, Scale: -1}},
		{"timestamp(3) with time zone", Type{Kind: TimestampTZ, Length: -1, Precision: 3, Scale: -1}},
		{"timestamp without time zone", Type{Kind: Timestamp, Length: -1, Precision: -1, Scale: -1}},
		{"text[]", Type{Kind: Text, Array: true, Length: -1, Precision: -1, Scale: -1}},
		{"integer[][]", Type{Kind: Int32, Array: true, Length: -1, Precision: -1, Scale: -1}},
		{"jsonb", Type{Kind: JSONB, Length: -1, Precision: -1, Scale: -1}},
		{"public.mood", Type{Kind: Other, Length: -1, Precision: -1, Scale: -1}},
		{"bytea", Type{Kind: Bytes, Length: -1, Precision: -1, Scale: -1}},
		{"boolean", Type{Kind: Bool, Length: -1, Precision: -1, Scale: -1}},
	} {
		c.want.Name = c.in
		if got := ParseType(c.in); got != c.want {
			t.Errorf("ParseType(%q) = %+v; expected %+v", c.in, got, c.want)
		}
	}
}

func TestParseValues(t *testing.T) {
	b, err := ParseBytea(`\xdeadbeef`)
	if err != nil || string(b) != "\xde\xad\xbe\xef" {
		t.Errorf("hex bytea = %q, %v", b, err)
	}
	b, err = ParseBytea(`a\\b\000\377`)
	if err != nil || string(b) != "a\\b\x00\xff" {
		t.Errorf("escape bytea = %q, %v", b, err)
	}
	if _, err := ParseBytea(`\9`); err == nil {
		t.Error("bad escape bytea: no error")
	}
	for in, want := range map[string]time.Time{
		"2024-02-29 23:59:59.999999+00": time.Date(2024, 2, 29, 23, 59, 59, 999999000, time.UTC),
		"1999-12-31 18:30:00+05:30":     time.Date(1999, 12, 31, 13, 0, 0, 0, time.UTC),
		"2000-01-01 00:00:00-03:30:15":  time.Date(2000, 1, 1, 3, 30, 15, 0, time.UTC),
		"2000-01-01 00:00:00+00":        time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		got, err := ParseTimestampTZ(in)
		if err != nil || !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("ParseTimestampTZ(%q) = %v, %v; expected %v", in, got, err, want)
		}
	}
	if _, err := ParseTimestampTZ("infinity"); !errors.Is(err, ErrInfinite) {
		t.Errorf("infinity: %v", err)
	}
	if _, err := ParseTimestampTZ("0044-03-15 12:00:00+00 BC"); !errors.Is(err, ErrBC) {
		t.Errorf("BC: %v", err)
	}
	if got, err := ParseTimestamp("2024-01-31 12:00:00.5"); err != nil || !got.Equal(time.Date(2024, 1, 31, 12, 0, 0, 5e8, time.UTC)) {
		t.Errorf("ParseTimestamp = %v, %v", got, err)
	}
	if got, err := ParseDate("2024-01-31"); err != nil || !got.Equal(time.Date(2024, 1, 31, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("ParseDate = %v, %v", got, err)
	}
	if v, err := ParseBool("t"); err != nil || !v {
		t.Errorf("ParseBool(t) = %v, %v", v, err)
	}
}

func TestFormat(t *testing.T) {
	ts := time.Date(2024, 1, 2, 3, 4, 5, 123456000, time.UTC)
	for _, c := range []struct{ got, want string }{
		{FormatTimestampTZ(ts), "2024-01-02 03:04:05.123456+00"},
		{FormatTimestampTZ(ts.Truncate(time.Second)), "2024-01-02 03:04:05+00"},
		{FormatTimestampTZ(time.Date(2024, 1, 2, 3, 4, 5, 500000000, time.FixedZone("x", 3600))), "2024-01-02 02:04:05.5+00"},
		{FormatTimestampTZ(time.Date(-43, 3, 15, 12, 0, 0, 0, time.UTC)), "0044-03-15 12:00:00+00 BC"},
		{FormatTimestampTZ(time.Date(0, 3, 15, 12, 0, 0, 0, time.UTC)), "0001-03-15 12:00:00+00 BC"},
		{FormatTimestampTZ(time.Date(12345, 3, 15, 12, 0, 0, 0, time.UTC)), "12345-03-15 12:00:00+00"},
		{FormatTimestampTZ(time.Date(44, 3, 15, 12, 0, 0, 0, time.UTC)), "0044-03-15 12:00:00+00"},
		{FormatTimestamp(ts), "2024-01-02 03:04:05.123456"},
		{TrimFraction("12:00:00.500000"), "12:00:00.5"},
		{TrimFraction("2024-01-02 12:00:00.000"), "2024-01-02 12:00:00"},
		{TrimFraction("12:00:00"), "12:00:00"},
		{FormatFloat(1.5, 64), "1.5"},
		{FormatFloat(0.1, 64), "0.1"},
		{FormatFloat(1e15, 64), "1e+15"},
		{FormatFloat(123456789012345, 64), "123456789012345"},
		{FormatFloat(1e-5, 64), "1e-05"},
		{FormatFloat(0.0001, 64), "0.0001"},
		{FormatFloat(float64(float32(0.1)), 32), "0.1"},
		{FormatFloat(float64(float32(123456)), 32), "123456"},
		{FormatFloat(float64(float32(1234567)), 32), "1.234567e+06"},
		{FormatFloat(math.Copysign(0, -1), 64), "-0"},
		{FormatFloat(math.Inf(-1), 64), "-Infinity"},
		{string(AppendArrayElem(nil, "a b")), `"a b"`},
		{string(AppendArrayElem(nil, "null")), `"null"`},
		{string(AppendArrayElem(nil, "")), `""`},
		{string(AppendArrayElem(nil, `x"\y`)), `"x\"\\y"`},
		{string(AppendArrayElem(nil, "é")), `é`},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
