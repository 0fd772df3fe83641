package sqlite

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/pgtext"
)

// column is how one column of a table is written: its PostgreSQL type and the SQLite
// type (declared type, whose affinity never converts the values bound to it).
type column struct {
	name   string
	pg     pgtext.Type
	decl   string // INTEGER, REAL, TEXT or BLOB
	notNul bool
}

// columns returns the columns of t in t.Cols order, typed by t.Columns (a column t.Columns
// does not describe is text).
func columns(t *sinks.Table) []column {
	byName := make(map[string]int, len(t.Columns))
	for i, c := range t.Columns {
		byName[c.Name] = i
	}
	out := make([]column, len(t.Cols))
	for i, name := range t.Cols {
		c := column{name: name, pg: pgtext.ParseType("text")}
		if j, ok := byName[name]; ok {
			c.pg = pgtext.ParseType(t.Columns[j].Type)
			c.notNul = t.Columns[j].NotNull
		}
		c.decl = declType(c.pg)
		out[i] = c
	}
	return out
}

// declType is the SQLite type of a PostgreSQL type (see the package doc).
func declType(t pgtext.Type) string {
	if t.Array {
		return "TEXT"
	}
	switch t.Kind {
	case pgtext.Bool, pgtext.Int16, pgtext.Int32, pgtext.Int64:
		return "INTEGER"
	case pgtext.Float32, pgtext.Float64:
		return "REAL"
	case pgtext.Bytes:
		return "BLOB"
	}
	return "TEXT"
}

// ValueError is a value the sink refuses: SQLite cannot hold it as the type mapping says.
type ValueError struct {
	Table, Column, Type string // the table (schema.name), the column and its PostgreSQL type
	Value               string // the value's text (clipped)
	Reason              string
}

func (e *ValueError) Error() string {
	return fmt.Sprintf("table %s column %s (%s): value %q refused: %s", e.Table, e.Column, e.Type, e.Value, e.Reason)
}

// value converts a field's PostgreSQL text to what is bound for c: int64, float64,
// string or []byte (never nil: a nil []byte binds NULL).
func (c *column) value(text string) (any, error) {
	if c.pg.Array {
		return arrayJSON(text, c.pg.Kind)
	}
	switch c.pg.Kind {
	case pgtext.Bool:
		b, err := pgtext.ParseBool(text)
		if err != nil {
			return nil, err
		}
		if b {
			return int64(1), nil
		}
		return int64(0), nil
	case pgtext.Int16, pgtext.Int32, pgtext.Int64:
		n, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return nil, errors.New("not an integer")
		}
		return n, nil
	case pgtext.Float32, pgtext.Float64:
		f, err := strconv.ParseFloat(text, 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return nil, errors.New("not a floating-point number")
		}
		if math.IsNaN(f) {
			return nil, errors.New("NaN: a SQLite REAL cannot hold it (SQLite stores NULL for NaN)")
		}
		return f, nil
	case pgtext.Bytes:
		b, err := pgtext.ParseBytea(text)
		if err != nil {
			return nil, err
		}
		if b == nil {
			b = []byte{}
		}
		return b, nil
	case pgtext.Date:
		if err := checkTime(text, pgtext.ParseDate); err != nil {
			return nil, err
		}
	case pgtext.Timestamp:
		if err := checkTime(text, pgtext.ParseTimestamp); err != nil {
			return nil, err
		}
	case pgtext.TimestampTZ:
		if isInfinity(text) {
			return text, nil
		}
		ts, err := pgtext.ParseTimestampTZ(text)
		if err != nil {
			return nil, timeErr(err)
		}
		return formatTZ(ts), nil
	case pgtext.JSON, pgtext.JSONB:
		if !json.Valid([]byte(text)) {
			return nil, errors.New("not valid JSON")
		}
	}
	// Numeric (exact decimal text, NaN and Infinity too), text, uuid, time, timetz,
	// interval, json and other types: PostgreSQL's text.
	return text, nil
}

func isInfinity(s string) bool { return s == "infinity" || s == "-infinity" }

// checkTime accepts infinity and -infinity (kept as text: they sort after and before
// every date) and the dates and timestamps of the years 1 to 9999, which SQLite's date
// functions read; it refuses BC and years past 9999.
func checkTime(text string, parse func(string) (time.Time, error)) error {
	if isInfinity(text) {
		return nil
	}
	if _, err := parse(text); err != nil {
		return timeErr(err)
	}
	return nil
}

func timeErr(err error) error {
	if errors.Is(err, pgtext.ErrBC) {
		return errors.New("a BC date: SQLite's date functions read the years 0000 to 9999 only")
	}
	return fmt.Errorf("not a date or time of the years 1 to 9999 (%w)", err)
}

// formatTZ is an instant as SQLite's date functions read it and as text sorts: UTC,
// microseconds when there are any, offset +00:00 (2024-01-31 12:00:00.5+00:00).
func formatTZ(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04:05.999999") + "+00:00"
}

// arrayJSON converts an array's text output to a JSON array (nested for several
// dimensions): integers, and other numbers that JSON can write, as numbers; booleans as
// true and false; json and jsonb elements as themselves; everything else (NaN and
// Infinity too) as strings; NULL as null.
func arrayJSON(text string, kind pgtext.Kind) (string, error) {
	elems, err := pgtext.ParseArray(text)
	if err != nil {
		if errors.Is(err, pgtext.ErrArrayBounds) {
			return "", errors.New("an array with lower bounds other than 1: a JSON array cannot keep them")
		}
		return "", err
	}
	var b strings.Builder
	if err := writeJSONArray(&b, elems, kind); err != nil {
		return "", err
	}
	return b.String(), nil
}

func writeJSONArray(b *strings.Builder, elems []pgtext.ArrayElem, kind pgtext.Kind) error {
	b.WriteByte('[')
	for i, e := range elems {
		if i > 0 {
			b.WriteByte(',')
		}
		switch {
		case e.Sub != nil:
			if err := writeJSONArray(b, e.Sub, kind); err != nil {
				return err
			}
		case e.Null:
			b.WriteString("null")
		default:
			if err := writeJSONElem(b, e.Text, kind); err != nil {
				return err
			}
		}
	}
	b.WriteByte(']')
	return nil
}

func writeJSONElem(b *strings.Builder, s string, kind pgtext.Kind) error {
	switch kind {
	case pgtext.Int16, pgtext.Int32, pgtext.Int64:
		if _, err := strconv.ParseInt(s, 10, 64); err != nil {
			return fmt.Errorf("array element %q is not an integer", s)
		}
		b.WriteString(s)
		return nil
	case pgtext.Float32, pgtext.Float64, pgtext.Numeric:
		if isJSONNumber(s) {
			b.WriteString(s)
			return nil
		}
	case pgtext.Bool:
		v, err := pgtext.ParseBool(s)
		if err != nil {
			return fmt.Errorf("array element: %w", err)
		}
		b.WriteString(strconv.FormatBool(v))
		return nil
	case pgtext.JSON, pgtext.JSONB:
		if !json.Valid([]byte(s)) {
			return fmt.Errorf("array element %q is not valid JSON", s)
		}
		b.WriteString(s)
		return nil
	}
	writeJSONString(b, s)
	return nil
}

// isJSONNumber reports whether s is a number in JSON's grammar (PostgreSQL writes
// numbers so, but for NaN and Infinity).
func isJSONNumber(s string) bool {
	if s == "" || !(s[0] == '-' || s[0] >= '0' && s[0] <= '9') {
		return false
	}
	var n json.Number
	return json.Unmarshal([]byte(s), &n) == nil
}

// writeJSONString writes s as a JSON string, escaping only what JSON requires.
func writeJSONString(b *strings.Builder, s string) {
	const hexDigits = "0123456789abcdef"
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
}
