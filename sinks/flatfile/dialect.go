package flatfile

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/pgtext"
)

// Dialect is the SQL the files are written in.
type Dialect string

const (
	// Postgres writes PostgreSQL SQL (psql).
	Postgres Dialect = "postgres"
	// MySQL writes MySQL/MariaDB SQL (the mysql or mariadb client).
	MySQL Dialect = "mysql"
)

// TableName is the name a PostgreSQL table schema.name has in a MySQL/MariaDB database
// the mysql dialect's files are replayed into: name when the schema is public, else
// schema.name as ONE identifier (a dot inside the backquotes: `sales.orders`), so that
// tables of two schemas never meet. It is the only place of that rule.
func TableName(schema, name string) string { return sinks.FlatName(schema, name) }

// mysqlMaxName is MySQL's and MariaDB's limit on a table's or a column's name, in
// characters.
const mysqlMaxName = 64

// checkNames returns an error when the dialect cannot name t or one of its columns.
func (d Dialect) checkNames(t *sinks.Table) error {
	if d != MySQL {
		return nil
	}
	check := func(what, n string) error {
		switch {
		case utf8.RuneCountInString(n) > mysqlMaxName:
			return fmt.Errorf("%s name %q is longer than %d characters (MySQL/MariaDB)", what, n, mysqlMaxName)
		case strings.HasSuffix(n, " "):
			return fmt.Errorf("%s name %q ends with a space (MySQL/MariaDB refuse it)", what, n)
		case n == "":
			return fmt.Errorf("empty %s name", what)
		}
		return nil
	}
	if err := check("table", TableName(t.Schema, t.Name)); err != nil {
		return err
	}
	for _, c := range t.Cols {
		if err := check("column", c); err != nil {
			return err
		}
	}
	return nil
}

// quote quotes an identifier: "..." doubling " (postgres), `...` doubling ` (mysql).
func (d Dialect) quote(name string) string {
	if d == MySQL {
		return "`" + strings.ReplaceAll(name, "`", "``") + "`"
	}
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// table is t's quoted name: "schema"."name" (postgres), `TableName(schema, name)` (mysql).
func (d Dialect) table(t *sinks.Table) string {
	if d == MySQL {
		return d.quote(TableName(t.Schema, t.Name))
	}
	return d.quote(t.Schema) + "." + d.quote(t.Name)
}

// cols is the quoted column list.
func (d Dialect) cols(cols []string) string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = d.quote(c)
	}
	return strings.Join(out, ", ")
}

// header and footer open and close a unit's file.
func (d Dialect) header() string {
	if d == MySQL {
		return "SET NAMES utf8mb4;\nSET time_zone = '+00:00';\nSTART TRANSACTION;\n"
	}
	return "SET client_encoding = 'UTF8';\nBEGIN;\n"
}

func (d Dialect) footer() string { return "COMMIT;\n" }

// ErrNotFinite is a NaN or an infinite number, which MySQL/MariaDB cannot hold.
var ErrNotFinite = errors.New("NaN or infinite number")

var numberRe = regexp.MustCompile(`^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$`)

// value writes f, of PostgreSQL type typ, as a literal of the dialect.
func (d Dialect) value(w *bufio.Writer, typ pgtext.Type, f conflict.Field) error {
	if f.Null {
		_, err := w.WriteString("NULL")
		return err
	}
	s := f.Text
	if typ.Array {
		return d.str(w, s)
	}
	switch typ.Kind {
	case pgtext.Int16, pgtext.Int32, pgtext.Int64:
		if _, err := strconv.ParseInt(s, 10, 64); err != nil {
			return fmt.Errorf("%q is not an integer", s)
		}
		_, err := w.WriteString(s)
		return err
	case pgtext.Numeric, pgtext.Float32, pgtext.Float64:
		if numberRe.MatchString(s) {
			_, err := w.WriteString(s)
			return err
		}
		if d == MySQL {
			switch strings.ToLower(s) {
			case "nan", "infinity", "-infinity", "+infinity", "inf", "-inf":
				return fmt.Errorf("%s: %w", s, ErrNotFinite)
			}
			return fmt.Errorf("%q is not a number", s)
		}
		return d.str(w, s)
	}
	if d != MySQL {
		// PostgreSQL reads every other value from its text output, as COPY does.
		return d.str(w, s)
	}
	switch typ.Kind {
	case pgtext.Bool:
		b, err := pgtext.ParseBool(s)
		if err != nil {
			return err
		}
		if b {
			_, err = w.WriteString("TRUE")
		} else {
			_, err = w.WriteString("FALSE")
		}
		return err
	case pgtext.Bytes:
		return writeHexBytea(w, s)
	case pgtext.Date:
		t, err := pgtext.ParseDate(s)
		if err != nil {
			return err
		}
		return d.str(w, t.Format("2006-01-02"))
	case pgtext.Timestamp:
		t, err := pgtext.ParseTimestamp(s)
		if err != nil {
			return err
		}
		return d.str(w, t.Format(mysqlDatetime))
	case pgtext.TimestampTZ:
		t, err := pgtext.ParseTimestampTZ(s)
		if err != nil {
			return err
		}
		return d.str(w, t.UTC().Format(mysqlDatetime))
	}
	// text, varchar, char, uuid, json, jsonb, time, timetz, interval, enums, other: the
	// PostgreSQL text output.
	return d.str(w, s)
}

// rawValue is value for a field that is not NULL, given as the bytes of its text (a
// field of a COPY line without a backslash is its text as it is), without making a
// string of it for integers, numbers and plain strings (see plain), written as value
// writes them. The others go to value.
func (d Dialect) rawValue(w *bufio.Writer, typ pgtext.Type, b []byte) error {
	switch k := typ.Kind; {
	case typ.Array:
		// A string, below.
	case k == pgtext.Int16 || k == pgtext.Int32 || k == pgtext.Int64:
		if !shortInt(b) {
			return d.value(w, typ, conflict.Field{Text: string(b)})
		}
		_, err := w.Write(b)
		return err
	case k == pgtext.Numeric || k == pgtext.Float32 || k == pgtext.Float64:
		if !numberRe.Match(b) {
			return d.value(w, typ, conflict.Field{Text: string(b)})
		}
		_, err := w.Write(b)
		return err
	case d == MySQL && (k == pgtext.Bool || k == pgtext.Bytes || k == pgtext.Date || k == pgtext.Timestamp || k == pgtext.TimestampTZ):
		return d.value(w, typ, conflict.Field{Text: string(b)})
	}
	if !plainBytes(b) {
		return d.value(w, typ, conflict.Field{Text: string(b)})
	}
	// As str writes a plain string.
	w.WriteByte('\'')
	for {
		i := bytes.IndexByte(b, '\'')
		if i < 0 {
			break
		}
		w.Write(b[:i+1])
		w.WriteByte('\'')
		b = b[i+1:]
	}
	w.Write(b)
	return w.WriteByte('\'')
}

// shortInt reports whether b is an integer strconv.ParseInt takes for certain: an
// optional minus sign and 1 to 18 digits.
func shortInt(b []byte) bool {
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// plainBytes is plain of a string's bytes.
func plainBytes(b []byte) bool {
	for _, c := range b {
		if c == '\\' || c < 0x20 || c == 0x7f {
			return false
		}
	}
	return utf8.Valid(b)
}

// mysqlDatetime is a DATETIME(6) literal's text (fractional digits only when there are).
const mysqlDatetime = "2006-01-02 15:04:05.999999"

// writeHexBytea writes a bytea's text output as X'hex' (mysql).
func writeHexBytea(w *bufio.Writer, s string) error {
	if _, err := w.WriteString("X'"); err != nil {
		return err
	}
	if strings.HasPrefix(s, `\x`) {
		h := s[2:]
		for i := 0; i < len(h); i++ {
			if !isHex(h[i]) {
				return fmt.Errorf("bytea: invalid hex digit at byte %d", i+2)
			}
		}
		if len(h)%2 != 0 {
			return errors.New("bytea: odd number of hex digits")
		}
		if _, err := w.WriteString(h); err != nil {
			return err
		}
	} else {
		b, err := pgtext.ParseBytea(s)
		if err != nil {
			return err
		}
		if _, err := w.WriteString(hex.EncodeToString(b)); err != nil {
			return err
		}
	}
	return w.WriteByte('\'')
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// plain reports whether s can be written between single quotes with only ' doubled,
// meaning the same whatever the server's settings: valid UTF-8 without backslashes and
// control characters.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' || c < 0x20 || c == 0x7f {
			return false
		}
	}
	return utf8.ValidString(s)
}

// str writes s as a string literal. A plain string (see plain) is '...' with ' doubled
// in both dialects. Any other string is, in postgres, an escape string E'...' (' doubled,
// \ doubled, control characters as \n \t ... or \ooo), which reads the same whatever
// standard_conforming_strings is; in mysql, _utf8mb4 X'hex' (X'hex' when s is not valid
// UTF-8), which reads the same whatever sql_mode (NO_BACKSLASH_ESCAPES, ANSI_QUOTES) is.
func (d Dialect) str(w *bufio.Writer, s string) error {
	if plain(s) {
		w.WriteByte('\'')
		for {
			i := strings.IndexByte(s, '\'')
			if i < 0 {
				break
			}
			w.WriteString(s[:i+1])
			w.WriteByte('\'')
			s = s[i+1:]
		}
		w.WriteString(s)
		return w.WriteByte('\'')
	}
	if d == MySQL {
		if utf8.ValidString(s) {
			w.WriteString("_utf8mb4 ")
		}
		w.WriteString("X'")
		var buf [512]byte
		for len(s) > 0 {
			n := min(len(s), len(buf)/2)
			hex.Encode(buf[:], []byte(s[:n]))
			w.Write(buf[:2*n])
			s = s[n:]
		}
		return w.WriteByte('\'')
	}
	w.WriteString("E'")
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		size := 1
		var esc string
		switch {
		case c == '\'':
			esc = "''"
		case c == '\\':
			esc = `\\`
		case c < 0x20 || c == 0x7f:
			esc = ctlEscape(c)
		case c >= utf8.RuneSelf:
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				esc = fmt.Sprintf(`\%03o`, c)
			}
			size = n
		}
		if esc != "" {
			w.WriteString(s[start:i])
			w.WriteString(esc)
			start = i + size
		}
		i += size
	}
	w.WriteString(s[start:])
	return w.WriteByte('\'')
}

func ctlEscape(c byte) string {
	switch c {
	case '\b':
		return `\b`
	case '\f':
		return `\f`
	case '\n':
		return `\n`
	case '\r':
		return `\r`
	case '\t':
		return `\t`
	}
	return fmt.Sprintf(`\%03o`, c)
}
