package conflict

import (
	"errors"
	"fmt"
	"strings"
)

// Field is one column's value in a version of a row, as PostgreSQL's COPY text format
// carries it: the value's text output (any bytes, not necessarily UTF-8 after octal or
// hex escapes), or NULL.
type Field struct {
	Text string // the value's text; "" when Null
	Null bool   // the value is NULL
}

// ErrCopyText is wrapped by DecodeCopyLine errors.
var ErrCopyText = errors.New("invalid COPY text line")

// DecodeCopyLine splits one line of PostgreSQL's COPY text format (default options:
// tab delimiter, \N for NULL), given without its line terminator, into fields and
// undoes the escapes as COPY FROM does: \b \f \n \r \t \v, \ooo (1 to 3 octal digits),
// \xhh (1 or 2 hex digits), and a backslash before any other character (a raw tab too:
// it is then not a delimiter) stands for that character. A field that is exactly \N is
// NULL (\\N is the text \N).
//
// The line "" is one empty field, as COPY FROM reads it (a table with no columns is
// not supported). DecodeCopyLine fails (wrapping ErrCopyText) on a raw newline or
// carriage return, a backslash ending the line, and the end-of-data marker \. (the
// whole line or not: COPY FROM rejects it inside a line too).
func DecodeCopyLine(line string) ([]Field, error) {
	if i := strings.IndexAny(line, "\n\r"); i >= 0 {
		return nil, fmt.Errorf("%w: raw newline or carriage return at byte %d", ErrCopyText, i)
	}
	if line == `\.` {
		return nil, fmt.Errorf("%w: the end-of-data marker is not a row", ErrCopyText)
	}
	fields := make([]Field, 0, strings.Count(line, "\t")+1)
	for {
		f, n, err := decodeField(line)
		if err != nil {
			return nil, fmt.Errorf("%w: field %d: %w", ErrCopyText, len(fields)+1, err)
		}
		fields = append(fields, f)
		if n == len(line) {
			return fields, nil
		}
		line = line[n+1:] // past the delimiter
	}
}

// decodeField decodes the field at the start of s and returns it and its length in s:
// up to the first tab that no backslash escapes, or the end of s.
func decodeField(s string) (Field, int, error) {
	end := strings.IndexByte(s, '\t')
	if end < 0 {
		end = len(s)
	}
	if !strings.Contains(s[:end], `\`) {
		return Field{Text: s[:end]}, end, nil
	}
	var b strings.Builder
	b.Grow(end)
	i := 0
	for ; i < len(s) && s[i] != '\t'; i++ {
		c := s[i]
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		i++
		if i == len(s) {
			return Field{}, 0, errors.New("backslash at the end of the line")
		}
		c = s[i]
		switch {
		case c >= '0' && c <= '7':
			v := int(c - '0')
			for n := 1; n < 3 && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '7'; n++ {
				i++
				v = v<<3 + int(s[i]-'0')
			}
			b.WriteByte(byte(v & 0o377))
		case c == 'x' && i+1 < len(s) && isHex(s[i+1]):
			i++
			v := hexVal(s[i])
			if i+1 < len(s) && isHex(s[i+1]) {
				i++
				v = v<<4 + hexVal(s[i])
			}
			b.WriteByte(byte(v))
		case c == '.':
			return Field{}, 0, errors.New(`\. (the end-of-data marker) inside a line`)
		default: // a backslash before a tab makes it part of the field, as in COPY FROM
			b.WriteByte(unescape[c])
		}
	}
	// NULL is the raw field \N, before escapes are undone (\\N is the text \N).
	if s[:i] == `\N` {
		return Field{Null: true}, i, nil
	}
	return Field{Text: b.String()}, i, nil
}

// unescape maps the character after a backslash to the byte it stands for (octal and
// hex escapes aside): the letters of the control escapes, and every other character
// to itself.
var unescape = func() (t [256]byte) {
	for i := range t {
		t[i] = byte(i)
	}
	t['b'], t['f'], t['n'], t['r'], t['t'], t['v'] = '\b', '\f', '\n', '\r', '\t', '\v'
	return t
}()

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func hexVal(c byte) int {
	switch {
	case c <= '9':
		return int(c - '0')
	case c >= 'a':
		return int(c-'a') + 10
	default:
		return int(c-'A') + 10
	}
}

// EncodeCopyLine joins fields into one line of PostgreSQL's COPY text format (default
// options), without a line terminator, escaping exactly as COPY TO does: a backslash
// as \\, backspace, form feed, newline, carriage return, tab and vertical tab as \b \f
// \n \r \t \v, NULL as \N, and every other byte as itself. So for every line COPY TO
// emits, EncodeCopyLine(DecodeCopyLine(line)) is that line.
//
// No fields encode as "", which DecodeCopyLine reads as one empty field.
func EncodeCopyLine(fields []Field) string {
	var b strings.Builder
	for i, f := range fields {
		if i > 0 {
			b.WriteByte('\t')
		}
		if f.Null {
			b.WriteString(`\N`)
			continue
		}
		s := f.Text
		for j := 0; j < len(s); j++ {
			c := s[j]
			if e := escape[c]; e != 0 {
				b.WriteByte('\\')
				b.WriteByte(e)
			} else {
				b.WriteByte(c)
			}
		}
	}
	return b.String()
}

// escape maps a byte COPY TO escapes to the character after the backslash; 0 for the
// bytes it writes as themselves.
var escape = [256]byte{'\\': '\\', '\b': 'b', '\f': 'f', '\n': 'n', '\r': 'r', '\t': 't', '\v': 'v'}
