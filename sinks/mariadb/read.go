package mariadb

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/pgtext"
)

var _ sinks.Reader = (*Sink)(nil)

// ReadRows calls fn with every committed row of t, as a COPY text line in PostgreSQL's
// text output: the inverse of the type mapping. It reads with one prepared SELECT (the
// binary protocol: FLOAT and DOUBLE come back as their exact bits), streamed: memory
// holds one row. It refuses to run while the sink's own unit is open.
//
// What the mapping loses, and so what reads back otherwise than the source printed it
// (docs/sinks/mariadb.md): a numeric without a precision (DECIMAL(65,30)) reads back
// without its trailing fractional zeros (1.50 as 1.5, 2.0 as 2); -0 of a real or double
// reads back as 0; on MySQL a json or jsonb value comes back as MySQL normalises JSON.
// A char(n) (n <= 255: CHAR(n), whose trailing spaces MariaDB drops) is padded back to n.
func (s *Sink) ReadRows(ctx context.Context, t *sinks.Table, fn func(line string) error) error {
	if s.tx {
		return s.errf(t, "reading", errors.New("a unit is open on this sink (commit it first)"))
	}
	if s.conn == nil {
		if err := s.connect(ctx); err != nil {
			return fmt.Errorf("db %s: reconnecting: %w", s.db, err)
		}
	}
	readers := make([]func(v any) (string, error), len(t.Cols))
	for i, name := range t.Cols {
		typ := "text"
		if col, ok := column(t, name); ok && col.Type != "" {
			typ = col.Type
		}
		readers[i] = readerOf(pgtext.ParseType(typ))
	}
	// A parameter makes the driver prepare the statement: the binary protocol.
	rows, err := s.conn.QueryContext(ctx, fmt.Sprintf("SELECT %s FROM %s WHERE ?", quoteCols("", t.Cols), ident(s.schema, t)), 1)
	if err != nil {
		s.drop(err)
		return s.errf(t, "reading", err)
	}
	defer rows.Close()
	vals := make([]any, len(t.Cols))
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	fields := make([]conflict.Field, len(vals))
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return s.errf(t, "reading", err)
		}
		for i, v := range vals {
			if v == nil {
				fields[i] = conflict.Field{Null: true}
				continue
			}
			text, err := readers[i](v)
			if err != nil {
				return s.errf(t, "reading", fmt.Errorf("column %s: %w", t.Cols[i], err))
			}
			fields[i] = conflict.Field{Text: text}
		}
		if err := fn(conflict.EncodeCopyLine(fields)); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		s.drop(err)
		return s.errf(t, "reading", err)
	}
	return nil
}

// readerOf returns the inverse of convOf: PostgreSQL's text of a value the driver read
// ([]byte, int64, float32, float64).
func readerOf(t pgtext.Type) func(v any) (string, error) {
	if t.Array {
		return asText
	}
	switch t.Kind {
	case pgtext.Bool:
		return func(v any) (string, error) {
			switch s, _ := asText(v); s {
			case "1":
				return "t", nil
			case "0":
				return "f", nil
			}
			return "", fmt.Errorf("%v is not a boolean 1 or 0", v)
		}
	case pgtext.Float32, pgtext.Float64:
		bits := 64
		if t.Kind == pgtext.Float32 {
			bits = 32
		}
		return func(v any) (string, error) {
			var f float64
			switch v := v.(type) {
			case float32:
				f = float64(v)
			case float64:
				f = v
			default:
				s, _ := asText(v)
				var err error
				if f, err = strconv.ParseFloat(s, bits); err != nil {
					return "", err
				}
			}
			if f == 0 {
				f = 0 // -0 is not kept
			}
			return pgtext.FormatFloat(f, bits), nil
		}
	case pgtext.Numeric:
		if exactDecimal(t) {
			return asText
		}
		return func(v any) (string, error) { // DECIMAL(65,30): 30 fractional digits
			s, err := asText(v)
			if err != nil || !strings.Contains(s, ".") {
				return s, err
			}
			s = strings.TrimSuffix(strings.TrimRight(s, "0"), ".")
			if s == "-0" {
				s = "0"
			}
			return s, nil
		}
	case pgtext.Bytes:
		return func(v any) (string, error) {
			b, ok := v.([]byte)
			if !ok {
				s, _ := asText(v)
				b = []byte(s)
			}
			return `\x` + hex.EncodeToString(b), nil
		}
	case pgtext.Text:
		if strings.HasPrefix(t.Name, "character(") && t.Length > 0 && t.Length <= 255 {
			n := t.Length
			return func(v any) (string, error) { // CHAR(n): padding dropped on reading
				s, err := asText(v)
				if c := utf8.RuneCountInString(s); c < n {
					s += strings.Repeat(" ", n-c)
				}
				return s, err
			}
		}
	case pgtext.Time, pgtext.Timestamp:
		return func(v any) (string, error) {
			s, err := asText(v)
			return pgtext.TrimFraction(s), err
		}
	case pgtext.TimestampTZ:
		return func(v any) (string, error) {
			s, err := asText(v)
			return pgtext.TrimFraction(s) + "+00", err
		}
	}
	return asText
}

func asText(v any) (string, error) {
	switch v := v.(type) {
	case []byte:
		return string(v), nil
	case string:
		return v, nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case uint64:
		return strconv.FormatUint(v, 10), nil
	}
	return "", fmt.Errorf("unexpected %T from the driver", v)
}
