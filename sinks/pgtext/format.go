package pgtext

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// The inverse direction: PostgreSQL's text output of values a sink read back from its
// receiver (sinks.Reader), with ibex's session settings (DateStyle ISO, TimeZone UTC,
// extra_float_digits 3).

// FormatTimestampTZ is the text output of a timestamp with time zone in the time zone
// UTC: 2024-01-02 03:04:05.123456+00, the fraction's trailing zeros dropped (no point
// when there is none), the year at least 4 digits, a year before 1 as " BC" (the
// astronomical year 0 is 1 BC). Nanoseconds past the microsecond are dropped.
func FormatTimestampTZ(t time.Time) string {
	return formatTimestamp(t.UTC(), "+00")
}

// FormatTimestamp is the text output of a timestamp without time zone holding t's wall
// clock: as FormatTimestampTZ without the offset.
func FormatTimestamp(t time.Time) string {
	return formatTimestamp(t, "")
}

func formatTimestamp(t time.Time, off string) string {
	t = t.Truncate(time.Microsecond)
	y := t.Year()
	bc := y <= 0
	if bc {
		y = 1 - y
	}
	var b strings.Builder
	ys := strconv.Itoa(y)
	for i := len(ys); i < 4; i++ {
		b.WriteByte('0')
	}
	b.WriteString(ys)
	b.WriteString(t.Format("-01-02 15:04:05.999999"))
	b.WriteString(off)
	if bc {
		b.WriteString(" BC")
	}
	return b.String()
}

// TrimFraction drops the trailing zeros of a time's fractional seconds, and the point
// when nothing is left: "12:00:00.500000" is "12:00:00.5", "12:00:00.000" is "12:00:00"
// (PostgreSQL prints times and timestamps so). Text without a point is returned as is.
func TrimFraction(s string) string {
	i := strings.LastIndexByte(s, '.')
	if i < 0 || strings.ContainsAny(s[i:], " +-") {
		return s
	}
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

// FormatFloat is the text output of a real (bits 32) or double precision (bits 64) with
// extra_float_digits above 0: the shortest text that reads back as the same value, in
// fixed notation for decimal exponents from -4 to 14 (real: to 5), else as 1.5e+20,
// 1e-05; NaN, Infinity, -Infinity; -0 as -0.
func FormatFloat(f float64, bits int) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	e := strconv.FormatFloat(f, 'e', -1, bits)
	exp, _ := strconv.Atoi(e[strings.IndexByte(e, 'e')+1:])
	limit := 15
	if bits == 32 {
		limit = 6
	}
	if exp >= -4 && exp < limit {
		return strconv.FormatFloat(f, 'f', -1, bits)
	}
	return e
}

// AppendArrayElem appends s as an element of an array's text output: quoted (with \"
// and \\) when it is empty, is NULL in any case, or holds a brace, a comma, a quote, a
// backslash or white space, as PostgreSQL's array_out does.
func AppendArrayElem(b []byte, s string) []byte {
	quote := s == "" || strings.EqualFold(s, "NULL")
	for i := 0; i < len(s) && !quote; i++ {
		switch s[i] {
		case '{', '}', ',', '"', '\\', ' ', '\t', '\n', '\r', '\v', '\f':
			quote = true
		}
	}
	if !quote {
		return append(b, s...)
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}
