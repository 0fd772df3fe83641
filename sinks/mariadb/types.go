package mariadb

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/pgtext"
)

// The type mapping (docs/sinks/mariadb.md has it as a table). A value the target type
// cannot hold exactly is refused, never rounded or clipped.
//
//	smallint, integer, bigint        SMALLINT, INT, BIGINT
//	numeric(p,s), p<=65, 0<=s<=30    DECIMAL(p,s)
//	numeric (other)                  DECIMAL(65,30): more than 35 integer digits or
//	                                 30 fractional digits (trailing zeros aside) refused
//	real, double precision           FLOAT, DOUBLE (NaN, Infinity refused)
//	boolean                          BOOLEAN (1, 0)
//	text, name, citext               LONGTEXT; as a key VARCHAR(255)
//	varchar(n)                       VARCHAR(n) for n<=1024, else LONGTEXT (key: <=255)
//	char(n)                          CHAR(n) for n<=255, else LONGTEXT
//	bytea                            LONGBLOB; as a key VARBINARY(255)
//	uuid                             CHAR(36)
//	date                             DATE (infinity, BC, years past 9999 refused)
//	time                             TIME(p) (p default 6)
//	timestamp                        DATETIME(p) (infinity, BC, years past 9999 refused)
//	timestamptz                      DATETIME(p) holding UTC (likewise)
//	timetz, interval                 VARCHAR(64), VARCHAR(255): PostgreSQL's text
//	json, jsonb                      JSON (MariaDB: LONGTEXT checked by JSON_VALID)
//	arrays, enums, other types       LONGTEXT: PostgreSQL's text ({1,2,NULL}, ...)
//
// Text columns (and the table) use utf8mb4 with a binary NO PAD collation
// (utf8mb4_nopad_bin on MariaDB, utf8mb4_0900_bin on MySQL), so keys compare as
// PostgreSQL's do: 'a', 'A' and 'a ' are three keys.

// colType is the column type (DDL) of PostgreSQL type pgType.
func colType(pgType string, key bool) string {
	t := pgtext.ParseType(pgType)
	if t.Array {
		return textType(key)
	}
	switch t.Kind {
	case pgtext.Bool:
		return "BOOLEAN"
	case pgtext.Int16:
		return "SMALLINT"
	case pgtext.Int32:
		return "INT"
	case pgtext.Int64:
		return "BIGINT"
	case pgtext.Float32:
		return "FLOAT"
	case pgtext.Float64:
		return "DOUBLE"
	case pgtext.Numeric:
		if exactDecimal(t) {
			return fmt.Sprintf("DECIMAL(%d,%d)", t.Precision, t.Scale)
		}
		return "DECIMAL(65,30)"
	case pgtext.Text:
		switch {
		case strings.HasPrefix(t.Name, "character varying") && t.Length > 0 && (t.Length <= 1024 && !key || t.Length <= 255):
			return fmt.Sprintf("VARCHAR(%d)", t.Length)
		case strings.HasPrefix(t.Name, "character(") && t.Length > 0 && t.Length <= 255:
			return fmt.Sprintf("CHAR(%d)", t.Length)
		}
		return textType(key)
	case pgtext.Bytes:
		if key {
			return "VARBINARY(255)"
		}
		return "LONGBLOB"
	case pgtext.UUID:
		return "CHAR(36)"
	case pgtext.Date:
		return "DATE"
	case pgtext.Time:
		return "TIME" + fraction(t)
	case pgtext.Timestamp, pgtext.TimestampTZ:
		return "DATETIME" + fraction(t)
	case pgtext.TimeTZ:
		return "VARCHAR(64)"
	case pgtext.Interval:
		return "VARCHAR(255)"
	case pgtext.JSON, pgtext.JSONB:
		if key {
			return textType(key)
		}
		return "JSON"
	}
	return textType(key)
}

func textType(key bool) string {
	if key {
		return "VARCHAR(255)"
	}
	return "LONGTEXT"
}

// exactDecimal tells whether numeric(p,s) maps to DECIMAL(p,s).
func exactDecimal(t pgtext.Type) bool {
	return t.Precision > 0 && t.Precision <= 65 && t.Scale >= 0 && t.Scale <= 30 && t.Scale <= t.Precision
}

func fraction(t pgtext.Type) string {
	if t.Precision >= 0 && t.Precision <= 6 {
		return fmt.Sprintf("(%d)", t.Precision)
	}
	return "(6)"
}

// fieldConv converts one non-NULL field (its text, COPY escapes undone) to the value
// LOAD DATA gets, appended raw (unescaped) to out.
type fieldConv func(out []byte, s string) ([]byte, error)

// converter turns COPY text rows of a table's columns into LOAD DATA rows.
type converter struct {
	cols  []string
	convs []fieldConv // nil: the text as it is
	kinds []string    // the PostgreSQL type, for messages
}

// newConverter returns the converter of cols of t.
func newConverter(t *sinks.Table, cols []string) *converter {
	c := &converter{cols: cols, convs: make([]fieldConv, len(cols)), kinds: make([]string, len(cols))}
	for i, name := range cols {
		typ := "text"
		if col, ok := column(t, name); ok && col.Type != "" {
			typ = col.Type
		}
		c.kinds[i] = typ
		c.convs[i] = convOf(pgtext.ParseType(typ))
	}
	return c
}

func column(t *sinks.Table, name string) (catalog.Column, bool) {
	for _, c := range t.Columns {
		if c.Name == name {
			return c, true
		}
	}
	return catalog.Column{}, false
}

// targets is LOAD DATA's column list (and SET clause). The file is read as CHARACTER SET
// binary (bytes pass unchanged; text goes into utf8mb4 columns as it is); a json or jsonb
// column's value goes through a variable converted to utf8mb4, since MySQL's JSON type
// refuses a binary string.
func (c *converter) targets() string {
	list := make([]string, len(c.cols))
	var set []string
	for i, name := range c.cols {
		list[i] = quote(name)
		if k := pgtext.ParseType(c.kinds[i]); !k.Array && (k.Kind == pgtext.JSON || k.Kind == pgtext.JSONB) {
			v := fmt.Sprintf("@ibex_%d", i)
			list[i] = v
			set = append(set, fmt.Sprintf("%s = CONVERT(%s USING utf8mb4)", quote(name), v))
		}
	}
	out := "(" + strings.Join(list, ", ") + ")"
	if len(set) > 0 {
		out += " SET " + strings.Join(set, ", ")
	}
	return out
}

// valueError is a value the target cannot hold.
type valueError struct {
	col, typ, value string
	err             error
}

func (e *valueError) Error() string {
	v := e.value
	if len(v) > 60 {
		v = v[:60] + "..."
	}
	return fmt.Sprintf("column %s (%s): value %q cannot be written: %v", e.col, e.typ, v, e.err)
}

func (e *valueError) Unwrap() error { return e.err }

// appendRow converts one COPY text line (without its newline) and appends it, with its
// newline, to out in LOAD DATA's format: fields tab-separated, NULL as \N, a backslash,
// tab, newline, carriage return and zero byte escaped with a backslash.
func (c *converter) appendRow(out []byte, line string) ([]byte, error) {
	fields, err := conflict.DecodeCopyLine(line)
	if err != nil {
		return out, err
	}
	if len(fields) != len(c.cols) {
		return out, fmt.Errorf("%w: %d fields, expected %d (%s)", conflict.ErrCopyText, len(fields), len(c.cols), strings.Join(c.cols, ", "))
	}
	for i, f := range fields {
		if i > 0 {
			out = append(out, '\t')
		}
		if f.Null {
			out = append(out, '\\', 'N')
			continue
		}
		if c.convs[i] == nil {
			out = appendEscaped(out, f.Text)
			continue
		}
		start := len(out)
		out, err = c.convs[i](out, f.Text)
		if err != nil {
			return out[:start], &valueError{col: c.cols[i], typ: c.kinds[i], value: f.Text, err: err}
		}
		// Escape in place what the conversion appended (bytes may hold anything).
		if needsEscape(out[start:]) {
			raw := string(out[start:])
			out = appendEscaped(out[:start], raw)
		}
	}
	return append(out, '\n'), nil
}

var escapes = [256]byte{'\\': '\\', '\t': 't', '\n': 'n', '\r': 'r', 0: '0'}

func needsEscape(b []byte) bool {
	for _, c := range b {
		if escapes[c] != 0 || c == 0 {
			return true
		}
	}
	return false
}

func appendEscaped(out []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if e := escapes[c]; e != 0 || c == 0 {
			out = append(out, '\\', e)
		} else {
			out = append(out, c)
		}
	}
	return out
}

// Refusals.
var (
	errNaN      = errors.New("NaN and infinities have no value in the target type")
	errNumeric  = errors.New("it does not fit DECIMAL(65,30) exactly (at most 35 integer and 30 fractional digits)")
	errYear     = errors.New("years past 9999 do not fit DATE/DATETIME")
	errInfinite = errors.New("infinity does not fit DATE/DATETIME")
	errBC       = errors.New("dates BC do not fit DATE/DATETIME")
)

// convOf returns the conversion of a PostgreSQL type's values (nil: the text as it is).
func convOf(t pgtext.Type) fieldConv {
	if t.Array {
		return nil
	}
	switch t.Kind {
	case pgtext.Bool:
		return func(out []byte, s string) ([]byte, error) {
			v, err := pgtext.ParseBool(s)
			if err != nil {
				return out, err
			}
			if v {
				return append(out, '1'), nil
			}
			return append(out, '0'), nil
		}
	case pgtext.Float32:
		// PostgreSQL prints a real's shortest text (3.4028235e+38), which as a decimal
		// may lie past FLOAT's range: send the float32's exact value instead.
		return func(out []byte, s string) ([]byte, error) {
			if s == "NaN" || strings.HasSuffix(s, "Infinity") {
				return out, errNaN
			}
			f, err := strconv.ParseFloat(s, 32)
			if err != nil {
				return out, err
			}
			return strconv.AppendFloat(out, f, 'g', 17, 64), nil
		}
	case pgtext.Float64:
		return func(out []byte, s string) ([]byte, error) {
			if s == "NaN" || strings.HasSuffix(s, "Infinity") {
				return out, errNaN
			}
			return append(out, s...), nil
		}
	case pgtext.Numeric:
		exact := exactDecimal(t)
		return func(out []byte, s string) ([]byte, error) {
			if s == "NaN" || strings.HasSuffix(s, "Infinity") {
				return out, errNaN
			}
			if !exact && !fitsDecimal(s) {
				return out, errNumeric
			}
			return append(out, s...), nil
		}
	case pgtext.Bytes:
		return func(out []byte, s string) ([]byte, error) {
			b, err := pgtext.ParseBytea(s)
			if err != nil {
				return out, err
			}
			return append(out, b...), nil
		}
	case pgtext.Date:
		return func(out []byte, s string) ([]byte, error) {
			if err := dateRange(s); err != nil {
				return out, err
			}
			d, err := pgtext.ParseDate(s)
			if err != nil {
				return out, err
			}
			return d.AppendFormat(out, "2006-01-02"), nil
		}
	case pgtext.Timestamp:
		return func(out []byte, s string) ([]byte, error) {
			if err := dateRange(s); err != nil {
				return out, err
			}
			ts, err := pgtext.ParseTimestamp(s)
			if err != nil {
				return out, err
			}
			return ts.AppendFormat(out, "2006-01-02 15:04:05.999999"), nil
		}
	case pgtext.TimestampTZ:
		return func(out []byte, s string) ([]byte, error) {
			if err := dateRange(s); err != nil {
				return out, err
			}
			ts, err := pgtext.ParseTimestampTZ(s)
			if err != nil {
				return out, err
			}
			if ts.Year() > 9999 {
				return out, errYear
			}
			return ts.AppendFormat(out, "2006-01-02 15:04:05.999999"), nil
		}
	}
	return nil
}

// dateRange refuses what DATE and DATETIME cannot hold, with a clear reason.
func dateRange(s string) error {
	switch {
	case s == "infinity" || s == "-infinity":
		return errInfinite
	case strings.HasSuffix(s, " BC"):
		return errBC
	}
	if i := strings.IndexByte(s, '-'); i > 4 {
		return errYear
	}
	return nil
}

// fitsDecimal tells whether numeric text s fits DECIMAL(65,30) exactly.
func fitsDecimal(s string) bool {
	s = strings.TrimLeft(s, "+-")
	intPart, frac, _ := strings.Cut(s, ".")
	intPart = strings.TrimLeft(intPart, "0")
	frac = strings.TrimRight(frac, "0")
	if len(intPart) > 35 || len(frac) > 30 {
		return false
	}
	for _, c := range intPart + frac {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
