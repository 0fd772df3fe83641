package conflict_test

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ibexrepl/ibex/internal/conflict"
)

func fs(vals ...any) []conflict.Field {
	out := make([]conflict.Field, len(vals))
	for i, v := range vals {
		if v == nil {
			out[i] = null
		} else {
			out[i] = f(v.(string))
		}
	}
	return out
}

// Lines as COPY TO writes them: both directions.
var canonical = []struct {
	line   string
	fields []conflict.Field
}{
	{``, fs("")},
	{`\N`, fs(nil)},
	{"\t", fs("", "")},
	{"\\N\t", fs(nil, "")},
	{"\t\\N", fs("", nil)},
	{"\\N\t\\N\t\\N", fs(nil, nil, nil)},
	{"1\tplain\t\\N", fs("1", "plain", nil)},
	{`\\N`, fs(`\N`)},
	{`N`, fs(`N`)},
	{`\\`, fs(`\`)},
	{`\\\\`, fs(`\\`)},
	{`a\\tb`, fs(`a\tb`)},
	{`tab\there`, fs("tab\there")},
	{`new\nline`, fs("new\nline")},
	{`cr\r\nlf`, fs("cr\r\nlf")},
	{`\b\f\v`, fs("\b\f\v")},
	{`\t\t`, fs("\t\t")},
	{" lead and trail ", fs(" lead and trail ")},
	{"it's \"quoted\", a,b", fs(`it's "quoted", a,b`)},
	{"héllo ✓ 𝄞 日本", fs("héllo ✓ 𝄞 日本")},
	{"\x01\x1f\x7f", fs("\x01\x1f\x7f")}, // other control bytes go raw
	{`{"a":"b\\"c"}`, fs(`{"a":"b\"c"}`)},
	{`{a,"b\\\\c",NULL}`, fs(`{a,"b\\c",NULL}`)},
	{`\\x41\\101`, fs(`\x41\101`)},
	{"x\t\\\\.\ty", fs("x", `\.`, "y")},
	{".", fs(".")},
}

func TestCopyLineCanonical(t *testing.T) {
	t.Parallel()
	for _, tc := range canonical {
		got, err := conflict.DecodeCopyLine(tc.line)
		if err != nil {
			t.Errorf("DecodeCopyLine(%q): %v", tc.line, err)
		} else if diff := cmp.Diff(tc.fields, got); diff != "" {
			t.Errorf("DecodeCopyLine(%q) (-want +got):\n%s", tc.line, diff)
		}
		if got := conflict.EncodeCopyLine(tc.fields); got != tc.line {
			t.Errorf("EncodeCopyLine(%v) = %q, want %q", tc.fields, got, tc.line)
		}
	}
	if got := conflict.EncodeCopyLine(nil); got != "" {
		t.Errorf("EncodeCopyLine(nil) = %q", got)
	}
	// A NULL's text is not written.
	if got := conflict.EncodeCopyLine([]conflict.Field{{Text: "x", Null: true}}); got != `\N` {
		t.Errorf("EncodeCopyLine(NULL with text) = %q", got)
	}
}

// Escapes COPY FROM accepts but COPY TO does not write: decoded, and encoded back in
// COPY TO's form.
func TestDecodeCopyLineEscapes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		line   string
		fields []conflict.Field
		again  string // EncodeCopyLine of the fields
	}{
		{`\x41`, fs("A"), "A"},
		{`\101`, fs("A"), "A"},
		{`\x41\101`, fs("AA"), "AA"},
		{`\x4a\x4A`, fs("JJ"), "JJ"},
		{`\x4`, fs("\x04"), "\x04"},
		{`\x4g`, fs("\x04g"), "\x04g"},
		{`\x414`, fs("A4"), "A4"}, // two hex digits at most
		{`\xg`, fs("xg"), "xg"},   // no hex digit: the x itself
		{`\x`, fs("x"), "x"},
		{`\7`, fs("\a"), "\a"},
		{`\11`, fs("\t"), `\t`},
		{`\12`, fs("\n"), `\n`},
		{`\1234`, fs("S4"), "S4"}, // three octal digits at most
		{`\18`, fs("\x018"), "\x018"},
		{`\0`, fs("\x00"), "\x00"},
		{`\377`, fs("\xff"), "\xff"},
		{`\777`, fs("\xff"), "\xff"}, // masked to a byte, as PostgreSQL does
		{`\303\251`, fs("é"), "é"},
		{`\xe2\x9c\x93`, fs("✓"), "✓"},
		{`\134`, fs(`\`), `\\`},
		{`\a\q\,\"`, fs(`aq,"`), `aq,"`}, // any other character: itself
		{`a\Nb`, fs("aNb"), "aNb"},
		{`\N\N`, fs("NN"), "NN"}, // NULL only when \N is the whole field
		{`\ `, fs(" "), " "},
		{"\\\t", fs("\t"), `\t`}, // backslash-tab: a tab in the field, not a delimiter
		{"\\\tx\ty", fs("\tx", "y"), "\\tx\ty"},
		{`\é`, fs("é"), "é"}, // the first byte escaped, then the second as it is
	} {
		got, err := conflict.DecodeCopyLine(tc.line)
		if err != nil {
			t.Errorf("DecodeCopyLine(%q): %v", tc.line, err)
			continue
		}
		if diff := cmp.Diff(tc.fields, got); diff != "" {
			t.Errorf("DecodeCopyLine(%q) (-want +got):\n%s", tc.line, diff)
		}
		if again := conflict.EncodeCopyLine(got); again != tc.again {
			t.Errorf("EncodeCopyLine(DecodeCopyLine(%q)) = %q, want %q", tc.line, again, tc.again)
		}
	}
}

func TestDecodeCopyLineErrors(t *testing.T) {
	t.Parallel()
	for line, msg := range map[string]string{
		`\`:         "field 1: backslash at the end of the line",
		"a\tb\\":    "field 2: backslash at the end of the line",
		`x\\\`:      "field 1: backslash at the end of the line",
		"a\nb":      "raw newline or carriage return at byte 1",
		"a\tb\r":    "raw newline or carriage return at byte 3",
		"a\n":       "raw newline or carriage return at byte 1",
		`\.`:        "the end-of-data marker is not a row",
		"\\\n":      "raw newline or carriage return at byte 1",
		"ok\t\\N\\": "field 2: backslash at the end of the line",
		`a\.b`:      `field 1: \. (the end-of-data marker) inside a line`,
		"x\t\\.":    `field 2: \. (the end-of-data marker) inside a line`,
	} {
		got, err := conflict.DecodeCopyLine(line)
		if !errors.Is(err, conflict.ErrCopyText) || !strings.Contains(err.Error(), msg) || got != nil {
			t.Errorf("DecodeCopyLine(%q) = %v, %v; want ErrCopyText: %s", line, got, err, msg)
		}
	}
}

// copyToLine writes fields the way PostgreSQL's CopyAttributeOutText does (default
// options), independently of EncodeCopyLine.
func copyToLine(fields []conflict.Field) string {
	parts := make([]string, len(fields))
	for i, fl := range fields {
		if fl.Null {
			parts[i] = `\N`
			continue
		}
		var b strings.Builder
		for _, c := range []byte(fl.Text) {
			switch c {
			case '\b':
				b.WriteString(`\b`)
			case '\f':
				b.WriteString(`\f`)
			case '\n':
				b.WriteString(`\n`)
			case '\r':
				b.WriteString(`\r`)
			case '\t':
				b.WriteString(`\t`)
			case '\v':
				b.WriteString(`\v`)
			case '\\':
				b.WriteString(`\\`)
			default:
				b.WriteByte(c)
			}
		}
		parts[i] = b.String()
	}
	return strings.Join(parts, "\t")
}

// TestCopyLineRoundTrip: for many generated rows, the line COPY TO writes decodes to
// the row and encodes back to itself, byte for byte.
func TestCopyLineRoundTrip(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "Z", "0", " ", `\`, "\t", "\n", "\r", "\b", "\f", "\v", "\x00", "\x01", "\x7f",
		"N", ".", "x", "4", "1", `"`, "'", ",", "é", "✓", "𝄞", "\xff", "\xc3"}
	for n := range 20000 {
		row := make([]conflict.Field, 1+rng.IntN(5))
		for i := range row {
			if rng.IntN(6) == 0 {
				row[i] = null
				continue
			}
			var b strings.Builder
			for range rng.IntN(8) {
				b.WriteString(alphabet[rng.IntN(len(alphabet))])
			}
			row[i] = f(b.String())
		}
		line := copyToLine(row)
		got, err := conflict.DecodeCopyLine(line)
		if err != nil {
			t.Fatalf("#%d DecodeCopyLine(%q): %v", n, line, err)
		}
		if diff := cmp.Diff(row, got); diff != "" {
			t.Fatalf("#%d DecodeCopyLine(%q) (-want +got):\n%s", n, line, diff)
		}
		if again := conflict.EncodeCopyLine(got); again != line {
			t.Fatalf("#%d EncodeCopyLine(DecodeCopyLine(%q)) = %q", n, line, again)
		}
	}
}

// FuzzDecodeCopyLine: any line that decodes encodes to a line that decodes to the same
// fields, and a line in COPY TO's form encodes back to itself.
func FuzzDecodeCopyLine(f *testing.F) {
	for _, tc := range canonical {
		f.Add(tc.line)
	}
	for _, s := range []string{`\x41\101`, `\777`, `\xg`, `a\Nb`, "\\\tx", `\`, "a\nb", `\.`, `a\.b`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		fields, err := conflict.DecodeCopyLine(line)
		if err != nil {
			if !errors.Is(err, conflict.ErrCopyText) {
				t.Fatalf("DecodeCopyLine(%q): %v, not ErrCopyText", line, err)
			}
			return
		}
		again := conflict.EncodeCopyLine(fields)
		if again != copyToLine(fields) {
			t.Fatalf("EncodeCopyLine(%v) = %q, COPY TO writes %q", fields, again, copyToLine(fields))
		}
		back, err := conflict.DecodeCopyLine(again)
		if err != nil {
			t.Fatalf("DecodeCopyLine(%q) of EncodeCopyLine: %v", again, err)
		}
		if diff := cmp.Diff(fields, back); diff != "" {
			t.Fatalf("%q -> %q: fields differ (-first +second):\n%s", line, again, diff)
		}
		if line == copyToLine(fields) && again != line {
			t.Fatalf("canonical line %q encodes as %q", line, again)
		}
	})
}
