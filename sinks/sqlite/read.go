package sqlite

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/pgtext"
)

var _ sinks.Reader = (*Sink)(nil)

// ReadRows calls fn with every committed row of t in the file, as a COPY text line in
// PostgreSQL's text output: the inverse of the type mapping (integers and booleans from
// INTEGER, floats from REAL in PostgreSQL's shortest text, bytea from BLOB as \x hex,
// timestamptz from '...+00:00' to '...+00', arrays from JSON back to PostgreSQL's array
// text, everything else the stored text). One SELECT, streamed: memory holds one row.
// It refuses to run while the sink's own unit is open (it would read its uncommitted
// writes).
//
// What the mapping loses, and so what reads back otherwise than the source printed it
// (docs/sinks/sqlite.md): a json or jsonb element of an array that is JSON null reads
// back as a NULL element, and an element of a json or jsonb array that is itself a JSON
// array stays one element (json[] and jsonb[] read back as one-dimensional).
func (s *Sink) ReadRows(ctx context.Context, t *sinks.Table, fn func(line string) error) error {
	if s.tx {
		return s.errf(t, "reading", errors.New("a unit is open on this sink (commit it first)"))
	}
	cols := columns(t)
	rows, err := s.conn.QueryContext(ctx, fmt.Sprintf(`SELECT %s FROM %s`, quoteCols(t.Cols), ident(t)))
	if err != nil {
		return s.errf(t, "reading", err)
	}
	defer rows.Close()
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	fields := make([]conflict.Field, len(cols))
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return s.errf(t, "reading", err)
		}
		for i, v := range vals {
			if v == nil {
				fields[i] = conflict.Field{Null: true}
				continue
			}
			text, err := cols[i].text(v)
			if err != nil {
				return s.errf(t, "reading", fmt.Errorf("column %s (%s): %w", cols[i].name, cols[i].pg.Name, err))
			}
			fields[i] = conflict.Field{Text: text}
		}
		if err := fn(conflict.EncodeCopyLine(fields)); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return s.errf(t, "reading", err)
	}
	return nil
}

// text is the inverse of value: PostgreSQL's text of a stored value (int64, float64,
// string or []byte).
func (c *column) text(v any) (string, error) {
	if c.pg.Array {
		return arrayText(asString(v), c.pg.Kind)
	}
	switch c.pg.Kind {
	case pgtext.Bool:
		switch v {
		case int64(1):
			return "t", nil
		case int64(0):
			return "f", nil
		}
		return "", fmt.Errorf("stored %v (%T) is not a boolean 1 or 0", v, v)
	case pgtext.Int16, pgtext.Int32, pgtext.Int64:
		if n, ok := v.(int64); ok {
			return strconv.FormatInt(n, 10), nil
		}
	case pgtext.Float32, pgtext.Float64:
		bits := 64
		if c.pg.Kind == pgtext.Float32 {
			bits = 32
		}
		switch f := v.(type) {
		case float64:
			return pgtext.FormatFloat(f, bits), nil
		case int64:
			return pgtext.FormatFloat(float64(f), bits), nil
		}
	case pgtext.Bytes:
		return `\x` + hex.EncodeToString(asBytes(v)), nil
	case pgtext.TimestampTZ:
		s := asString(v)
		if body, ok := strings.CutSuffix(s, "+00:00"); ok {
			return body + "+00", nil
		}
		return s, nil
	}
	switch v := v.(type) {
	case string:
		return v, nil
	case []byte:
		return string(v), nil
	}
	return "", fmt.Errorf("stored %v (%T) is not a value of this type", v, v)
}

func asString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	return fmt.Sprint(v)
}

func asBytes(v any) []byte {
	if b, ok := v.([]byte); ok {
		return b
	}
	return []byte(asString(v))
}

// arrayText is the inverse of arrayJSON: a JSON array back to PostgreSQL's array text.
func arrayText(s string, kind pgtext.Kind) (string, error) {
	b, err := appendArrayText(nil, json.RawMessage(s), kind)
	if err != nil {
		return "", fmt.Errorf("stored %q: %w", clip(s), err)
	}
	return string(b), nil
}

func appendArrayText(b []byte, raw json.RawMessage, kind pgtext.Kind) ([]byte, error) {
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return nil, fmt.Errorf("not a JSON array: %w", err)
	}
	b = append(b, '{')
	for i, e := range elems {
		if i > 0 {
			b = append(b, ',')
		}
		e = bytes.TrimSpace(e)
		switch {
		case len(e) == 0:
			return nil, errors.New("empty element")
		case string(e) == "null":
			b = append(b, "NULL"...)
		case kind == pgtext.JSON || kind == pgtext.JSONB:
			b = pgtext.AppendArrayElem(b, string(e))
		case e[0] == '[':
			var err error
			if b, err = appendArrayText(b, e, kind); err != nil {
				return nil, err
			}
		case e[0] == '"':
			var str string
			if err := json.Unmarshal(e, &str); err != nil {
				return nil, err
			}
			b = pgtext.AppendArrayElem(b, str)
		case kind == pgtext.Bool && string(e) == "true":
			b = append(b, 't')
		case kind == pgtext.Bool && string(e) == "false":
			b = append(b, 'f')
		default: // a number, as PostgreSQL printed it
			b = pgtext.AppendArrayElem(b, string(e))
		}
	}
	return append(b, '}'), nil
}
