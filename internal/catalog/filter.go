package catalog

import (
	"path"
	"strings"
)

// Filter is Bucardo's selection of tables (or sequences) for 'add all tables': include
// and exclude patterns for names and schemas. A name pattern with a dot matches
// schema.name, one without matches the name in any schema. In patterns, % and * match any
// run of characters and ? one character (_ is an ordinary character: it is common in
// names). The zero Filter keeps everything.
type Filter struct {
	Names, ExcludeNames     []string // -t, -T
	Schemas, ExcludeSchemas []string // -n, -N
}

// Empty reports whether the filter keeps everything.
func (f Filter) Empty() bool {
	return len(f.Names)+len(f.ExcludeNames)+len(f.Schemas)+len(f.ExcludeSchemas) == 0
}

// Keep reports whether q passes the filter: in one of Schemas (when any), in none of
// ExcludeSchemas, matching one of Names (when any), matching none of ExcludeNames.
func (f Filter) Keep(q QualName) bool {
	if len(f.Schemas) > 0 && !anyMatch(f.Schemas, q.Schema) {
		return false
	}
	if anyMatch(f.ExcludeSchemas, q.Schema) {
		return false
	}
	if len(f.Names) > 0 && !anyName(f.Names, q) {
		return false
	}
	return !anyName(f.ExcludeNames, q)
}

func anyName(pats []string, q QualName) bool {
	for _, p := range pats {
		if strings.Contains(p, ".") {
			if match(p, q.String()) {
				return true
			}
		} else if match(p, q.Name) {
			return true
		}
	}
	return false
}

func anyMatch(pats []string, s string) bool {
	for _, p := range pats {
		if match(p, s) {
			return true
		}
	}
	return false
}

// match matches s against a pattern of %, * and ?; every other character is literal.
func match(pat, s string) bool { return matchGlob(pat, s, false) }

// matchGlob matches s against a pattern of %, * and ?, and of [...] classes (as
// path.Match) when classes is set; every other character is literal.
func matchGlob(pat, s string, classes bool) bool {
	var b strings.Builder
	for _, r := range pat {
		switch {
		case r == '%' || r == '*':
			b.WriteByte('*')
		case r == '\\' || (!classes && (r == '[' || r == ']')):
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	ok, _ := path.Match(b.String(), s)
	return ok
}
