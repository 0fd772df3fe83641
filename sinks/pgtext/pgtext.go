// Package pgtext reads PostgreSQL values in their text output (as COPY text carries them,
// once decoded by conflict.DecodeCopyLine) for sinks that are not PostgreSQL: the kind of
// a column from its format_type() text, and typed values from text.
//
// ibex's sessions read with DateStyle ISO, bytea_output hex, IntervalStyle postgres, TimeZone UTC and
// extra_float_digits 3 (package dbconn sets them), so the formats here are those.
package pgtext

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Kind is what a PostgreSQL type is, for mapping it to another system's types.
type Kind int

// The kinds. Other is any type without a kind of its own (enums, domains over such,
// inet, money, geometric types, ranges, tsvector, ...): its text output is kept as text.
const (
	Other Kind = iota
	Bool
	Int16
	Int32
	Int64
	Float32
	Float64
	Numeric
	Text // text, varchar(n), char(n), name, citext
	Bytes
	UUID
	Date
	Time        // time without time zone
	TimeTZ      // time with time zone
	Timestamp   // timestamp without time zone
	TimestampTZ // timestamp with time zone
	Interval
	JSON
	JSONB
)

var kindNames = [...]string{"other", "bool", "int16", "int32", "int64", "float32", "float64", "numeric",
	"text", "bytes", "uuid", "date", "time", "timetz", "timestamp", "timestamptz", "interval", "json", "jsonb"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Type is a column's PostgreSQL type, parsed from format_type() text.
type Type struct {
	// Name is the format_type() text, as given.
	Name string
	// Kind is the type's kind; for an array, its elements' kind.
	Kind Kind
	// Array is set for an array type (any number of dimensions).
	Array bool
	// Length is n of varchar(n), char(n), bit(n); -1 when there is none.
	Length int
	// Precision and Scale are numeric(p,s)'s, or a time type's fractional digits in
	// Precision; -1 when not given.
	Precision, Scale int
}

// ParseType reads format_type() text: "integer", "numeric(10,2)", "character varying(20)",
// "timestamp(3) with time zone", "text[]", "public.my_enum" ...
func ParseType(name string) Type {
	t := Type{Name: name, Length: -1, Precision: -1, Scale: -1}
	base := strings.TrimSpace(name)
	for strings.HasSuffix(base, "[]") {
		t.Array = true
		base = strings.TrimSpace(strings.TrimSuffix(base, "[]"))
	}
	// Type modifiers: "numeric(10,2)", "character varying(20)", "timestamp(3) with time zone".
	var mods []int
	if i := strings.IndexByte(base, '('); i >= 0 {
		if j := strings.IndexByte(base[i:], ')'); j > 0 {
			for _, p := range strings.Split(base[i+1:i+j], ",") {
				if n, err := strconv.Atoi(strings.TrimSpace(p)); err == nil {
					mods = append(mods, n)
				}
			}
			base = strings.TrimSpace(base[:i] + base[i+j+1:])
			base = strings.Join(strings.Fields(base), " ")
		}
	}
	switch base {
	case "boolean":
		t.Kind = Bool
	case "smallint":
		t.Kind = Int16
	case "integer":
		t.Kind = Int32
	case "bigint":
		t.Kind = Int64
	case "real":
		t.Kind = Float32
	case "double precision":
		t.Kind = Float64
	case "numeric":
		t.Kind = Numeric
		if len(mods) > 0 {
			t.Precision, t.Scale = mods[0], 0
		}
		if len(mods) > 1 {
			t.Scale = mods[1]
		}
		return t
	case "text", "name", "citext", "character varying", "character", "\"char\"":
		t.Kind = Text
	case "bytea":
		t.Kind = Bytes
	case "uuid":
		t.Kind = UUID
	case "date":
		t.Kind = Date
	case "time without time zone":
		t.Kind = Time
	case "time with time zone":
		t.Kind = TimeTZ
	case "timestamp without time zone":
		t.Kind = Timestamp
	case "timestamp with time zone":
		t.Kind = TimestampTZ
	case "interval":
		t.Kind = Interval
	case "json":
		t.Kind = JSON
	case "jsonb":
		t.Kind = JSONB
	default:
		t.Kind = Other
	}
	if len(mods) > 0 {
		switch t.Kind {
		case Text:
			t.Length = mods[0]
		case Time, TimeTZ, Timestamp, TimestampTZ, Interval:
			t.Precision = mods[0]
		}
	}
	return t
}

// ErrInfinite is returned for the dates and timestamps infinity and -infinity, which
// other systems cannot hold.
var ErrInfinite = errors.New("infinite date or timestamp")

// ErrBC is returned for a date or timestamp before the year 1 (" BC").
var ErrBC = errors.New("date or timestamp BC")

// ParseBool reads a boolean's text output (t or f).
func ParseBool(s string) (bool, error) {
	switch s {
	case "t", "true":
		return true, nil
	case "f", "false":
		return false, nil
	}
	return false, fmt.Errorf("pgtext: not a boolean: %q", s)
}

// ParseBytea reads a bytea's text output: hex (\x0a0b) or escape format.
func ParseBytea(s string) ([]byte, error) {
	if strings.HasPrefix(s, `\x`) {
		b, err := hex.DecodeString(s[2:])
		if err != nil {
			return nil, fmt.Errorf("pgtext: bytea: %w", err)
		}
		return b, nil
	}
	// Escape format: \\ is a backslash, \ooo an octal byte, anything else itself.
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			out = append(out, s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '\\' {
			out = append(out, '\\')
			i++
			continue
		}
		if i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				out = append(out, byte(v))
				i += 3
				continue
			}
		}
		return nil, fmt.Errorf("pgtext: bytea: invalid escape at byte %d", i)
	}
	return out, nil
}

// ParseDate reads a date in ISO output (2024-01-31).
func ParseDate(s string) (time.Time, error) {
	if err := finite(s); err != nil {
		return time.Time{}, err
	}
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		return time.Time{}, fmt.Errorf("pgtext: date: %w", err)
	}
	return t, nil
}

// ParseTimestamp reads a timestamp without time zone in ISO output
// (2024-01-31 12:00:00.123456); the result is in UTC, with the same wall clock.
func ParseTimestamp(s string) (time.Time, error) {
	if err := finite(s); err != nil {
		return time.Time{}, err
	}
	t, err := time.Parse("2006-01-02 15:04:05.999999999", s)
	if err != nil {
		return time.Time{}, fmt.Errorf("pgtext: timestamp: %w", err)
	}
	return t, nil
}

// ParseTimestampTZ reads a timestamp with time zone in ISO output, whatever the
// session's time zone was (2024-01-31 12:00:00.5+00, ...+05:30, ...-03:30:15); the
// result is the same instant in UTC.
func ParseTimestampTZ(s string) (time.Time, error) {
	if err := finite(s); err != nil {
		return time.Time{}, err
	}
	// The offset starts at the last + or - after the time of day.
	i := strings.LastIndexAny(s, "+-")
	if i < len("2006-01-02 15:04:05") {
		return time.Time{}, fmt.Errorf("pgtext: timestamptz %q: no UTC offset", s)
	}
	off := s[i:]
	switch len(off) {
	case 3: // +05
		off += ":00:00"
	case 6: // +05:30
		off += ":00"
	}
	t, err := time.Parse("2006-01-02 15:04:05.999999999-07:00:00", s[:i]+off)
	if err != nil {
		return time.Time{}, fmt.Errorf("pgtext: timestamptz: %w", err)
	}
	return t.UTC(), nil
}

func finite(s string) error {
	switch {
	case s == "infinity" || s == "-infinity":
		return fmt.Errorf("pgtext: %q: %w", s, ErrInfinite)
	case strings.HasSuffix(s, " BC"):
		return fmt.Errorf("pgtext: %q: %w", s, ErrBC)
	}
	return nil
}
