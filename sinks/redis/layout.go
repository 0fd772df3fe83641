package redis

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/pgtext"
)

// escName escapes a schema or table name for a key: a backslash, a dot and a colon
// each get a backslash before them, so that the first unescaped dot after the prefix
// ends the schema and the first unescaped colon after it ends the table.
func escName(s string) string {
	if !strings.ContainsAny(s, `\.:`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\', '.', ':':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// escKeyField escapes one key field's value: a backslash and a colon each get a
// backslash before them; the fields are then joined with unescaped colons.
func escKeyField(s string) string {
	if !strings.ContainsAny(s, `\:`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\', ':':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// globEscape escapes s for a SCAN MATCH pattern: *, ?, [, ] and \ match themselves.
func globEscape(s string) string {
	if !strings.ContainsAny(s, `*?[]\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// tableBase is the start of every key of a table: prefix, escaped schema, a dot,
// escaped table, a colon.
func tableBase(prefix string, t *sinks.Table) string {
	return prefix + escName(t.Schema) + "." + escName(t.Name) + ":"
}

// tablePattern is the SCAN MATCH pattern of every key of a table (and of no other key).
func tablePattern(base string) string { return globEscape(base) + "*" }

// copySetKey is the temporary set a chunked whole-table copy records its keys in.
func copySetKey(prefix string, t *sinks.Table, random string) string {
	return prefix + "ibex:copy:" + escName(t.Schema) + "." + escName(t.Name) + ":" + random
}

// layout is a table's columns as the sink converts them.
type layout struct {
	t     *sinks.Table
	base  string
	types []pgtext.Type // by position in t.Cols
	// cols are t.Cols boxed once, for HSET arguments (a string made an interface
	// value per row and column would be an allocation each).
	cols    []any
	scratch []byte           // a row's key while it is packed
	fields  []conflict.Field // a row's fields while it is packed
}

func newLayout(prefix string, t *sinks.Table) (*layout, error) {
	if len(t.Key) == 0 || len(t.Key) > len(t.Cols) {
		return nil, fmt.Errorf("table %s: %d key columns of %d columns", t.Label(), len(t.Key), len(t.Cols))
	}
	for i, k := range t.Key {
		if t.Cols[i] != k {
			return nil, fmt.Errorf("table %s: column %d is %q, expected the key column %q", t.Label(), i+1, t.Cols[i], k)
		}
	}
	types := make(map[string]string, len(t.Columns))
	for _, c := range t.Columns {
		types[c.Name] = c.Type
	}
	l := &layout{t: t, base: tableBase(prefix, t), types: make([]pgtext.Type, len(t.Cols))}
	l.cols = make([]any, len(t.Cols))
	for i, c := range t.Cols {
		l.types[i] = pgtext.ParseType(types[c]) // a column without a type is kept as text
		l.cols[i] = c
	}
	return l, nil
}

// value converts field i of a row (PostgreSQL text output) to what is stored: bytea as
// its raw bytes, timestamptz as UTC ISO 8601, everything else unchanged.
func (l *layout) value(i int, text string) (any, error) {
	ty := l.types[i]
	if ty.Array {
		return text, nil
	}
	switch ty.Kind {
	case pgtext.Bytes:
		b, err := pgtext.ParseBytea(text)
		if err != nil {
			return nil, l.refused(i, text, err)
		}
		return b, nil
	case pgtext.TimestampTZ:
		s, err := utcISO(text)
		if err != nil {
			return nil, l.refused(i, text, err)
		}
		return s, nil
	}
	return text, nil
}

func (l *layout) refused(i int, text string, err error) error {
	if len(text) > 60 {
		text = text[:60] + "..."
	}
	return fmt.Errorf("table %s, column %s (%s): value %q refused: %w", l.t.Label(), l.t.Cols[i], l.types[i].Name, text, err)
}

// keyOf builds the key of a row from its key fields.
func (l *layout) keyOf(fields []conflict.Field) (string, error) {
	b, err := l.appendKey(make([]byte, 0, len(l.base)+16), fields)
	return string(b), err
}

// appendKey appends the key of a row, from its key fields, to dst.
func (l *layout) appendKey(dst []byte, fields []conflict.Field) ([]byte, error) {
	dst = append(dst, l.base...)
	for i := range l.t.Key {
		if fields[i].Null {
			return dst, fmt.Errorf("table %s: key column %s is NULL", l.t.Label(), l.t.Cols[i])
		}
		v, err := l.value(i, fields[i].Text)
		if err != nil {
			return dst, err
		}
		if i > 0 {
			dst = append(dst, ':')
		}
		switch v := v.(type) {
		case []byte:
			dst = append(dst, escKeyField(string(v))...)
		case string:
			dst = append(dst, escKeyField(v)...)
		}
	}
	return dst, nil
}

// key builds the key of a key as PrepareBatch takes it (key fields in COPY text,
// tab-separated).
func (l *layout) key(text string) (string, error) {
	if len(l.t.Key) == 1 && !l.types[0].Array && l.types[0].Kind != pgtext.Bytes && l.types[0].Kind != pgtext.TimestampTZ &&
		text != "" && !strings.ContainsAny(text, "\\\t\n\r:") {
		return l.base + text, nil // the common case: nothing to decode or escape
	}
	fields, err := conflict.DecodeCopyLine(text)
	if err != nil {
		return "", fmt.Errorf("table %s: key %q: %w", l.t.Label(), text, err)
	}
	if len(fields) != len(l.t.Key) {
		return "", fmt.Errorf("table %s: key %q has %d fields, expected %d", l.t.Label(), text, len(fields), len(l.t.Key))
	}
	return l.keyOf(fields)
}

// packRow converts a row (COPY text line) and packs it into a (see queue.go): its key,
// then its values as stored, NULL fields marked. It returns the packed row and its size
// in bytes (for a copy's thresholds).
func (l *layout) packRow(a *arena, line string) (row string, size int64, err error) {
	l.fields, err = sinks.DecodeLine(l.fields[:0], line)
	if err != nil {
		return "", 0, fmt.Errorf("table %s: %w", l.t.Label(), err)
	}
	fields := l.fields
	if len(fields) != len(l.t.Cols) {
		return "", 0, fmt.Errorf("table %s: a row has %d fields, expected %d", l.t.Label(), len(fields), len(l.t.Cols))
	}
	l.scratch, err = l.appendKey(l.scratch[:0], fields)
	if err != nil {
		return "", 0, err
	}
	a.begin(len(line) + len(l.scratch) + 2*binary.MaxVarintLen64 + len(fields))
	a.uvarint(uint64(len(l.scratch)))
	a.b.Write(l.scratch)
	size = int64(len(l.scratch))
	for i, f := range fields {
		if f.Null {
			a.null()
			continue
		}
		if err := l.packValue(a, i, f.Text); err != nil {
			return "", 0, err
		}
		size += int64(len(l.t.Cols[i]) + len(f.Text))
	}
	return a.end(), size, nil
}

// packValue packs field i of a row as stored (see value); text, the common case, is
// written straight into the arena.
func (l *layout) packValue(a *arena, i int, text string) error {
	if ty := l.types[i]; ty.Array || ty.Kind != pgtext.Bytes && ty.Kind != pgtext.TimestampTZ {
		a.str(text)
		return nil
	}
	v, err := l.value(i, text)
	if err != nil {
		return err
	}
	switch v := v.(type) {
	case []byte:
		a.bytes(v)
	case string:
		a.str(v)
	}
	return nil
}

// utcISO renders a timestamptz's text output as the same instant in UTC, ISO 8601:
// 2024-01-31T10:00:00.5Z. infinity and -infinity are kept; a BC timestamp gets the
// ISO 8601 astronomical year (1 BC is 0000, 44 BC is -0043).
func utcISO(s string) (string, error) {
	if s == "infinity" || s == "-infinity" {
		return s, nil
	}
	body, bc := strings.CutSuffix(s, " BC")
	u, err := pgtext.ParseTimestampTZ(body)
	if err != nil {
		return "", err
	}
	if bc {
		// The offset, from the wall clock as written; then the same wall clock in the
		// astronomical year.
		i := strings.LastIndexAny(body, "+-")
		w, err := pgtext.ParseTimestamp(body[:i])
		if err != nil {
			return "", err
		}
		off := w.Sub(u)
		u = time.Date(1-w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), w.Nanosecond(), time.UTC).Add(-off)
	}
	return isoUTC(u), nil
}

func isoUTC(u time.Time) string {
	var b strings.Builder
	switch y := u.Year(); {
	case y < 0:
		fmt.Fprintf(&b, "-%04d", -y)
	case y > 9999:
		fmt.Fprintf(&b, "+%d", y)
	default:
		fmt.Fprintf(&b, "%04d", y)
	}
	b.WriteString(u.Format("-01-02T15:04:05.999999"))
	b.WriteByte('Z')
	return b.String()
}
