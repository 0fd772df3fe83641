package pgtext

import (
	"errors"
	"fmt"
	"strings"
)

// ArrayElem is one element of an array's text output: a value (Text, or Null) or, in a
// multidimensional array, a sub-array (Sub, non-nil).
type ArrayElem struct {
	Text string
	Null bool
	Sub  []ArrayElem
}

// ErrArrayBounds is returned for an array whose text output carries its dimensions
// ("[0:1]={1,2}": a lower bound other than 1), which a list of elements cannot keep.
var ErrArrayBounds = errors.New("array with explicit bounds")

// ParseArray reads an array's text output with the comma delimiter (every type but
// box): {1,2,NULL}, {"a b","NULL",NULL}, {{1,2},{3,4}}, {}. A quoted element is
// unescaped (\" and \\); an unquoted NULL is a NULL element.
func ParseArray(s string) ([]ArrayElem, error) {
	if strings.HasPrefix(s, "[") {
		return nil, fmt.Errorf("pgtext: array %q: %w", clipText(s), ErrArrayBounds)
	}
	elems, n, err := parseArray(s, 0)
	if err != nil {
		return nil, fmt.Errorf("pgtext: array %q: %w", clipText(s), err)
	}
	if n != len(s) {
		return nil, fmt.Errorf("pgtext: array %q: text after the closing brace", clipText(s))
	}
	return elems, nil
}

// parseArray reads the array starting at s[i] ('{') and returns its elements and the
// offset after its closing brace.
func parseArray(s string, i int) ([]ArrayElem, int, error) {
	if i >= len(s) || s[i] != '{' {
		return nil, 0, fmt.Errorf("expected '{' at byte %d", i)
	}
	i++
	elems := []ArrayElem{}
	if i < len(s) && s[i] == '}' {
		return elems, i + 1, nil
	}
	for {
		if i >= len(s) {
			return nil, 0, errors.New("unterminated array")
		}
		var e ArrayElem
		switch s[i] {
		case '{':
			sub, n, err := parseArray(s, i)
			if err != nil {
				return nil, 0, err
			}
			e.Sub, i = sub, n
		case '"':
			var b strings.Builder
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' {
					i++
					if i == len(s) {
						break
					}
				}
				b.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, 0, errors.New("unterminated quoted element")
			}
			e.Text, i = b.String(), i+1
		default:
			j := i
			for j < len(s) && s[j] != ',' && s[j] != '}' {
				if s[j] == '"' || s[j] == '{' || s[j] == '\\' {
					return nil, 0, fmt.Errorf("unexpected %q at byte %d", s[j], j)
				}
				j++
			}
			e.Text = s[i:j]
			if strings.EqualFold(e.Text, "NULL") {
				e.Text, e.Null = "", true
			}
			i = j
		}
		elems = append(elems, e)
		if i >= len(s) {
			return nil, 0, errors.New("unterminated array")
		}
		switch s[i] {
		case ',':
			i++
		case '}':
			return elems, i + 1, nil
		default:
			return nil, 0, fmt.Errorf("expected ',' or '}' at byte %d", i)
		}
	}
}

func clipText(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}
