package main

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"unicode/utf8"
)

// Units of a figure; they choose its format.
const (
	uSec   = "s"
	uMs    = "ms" // values in seconds, shown in milliseconds
	uUs    = "µs" // values in seconds, shown in microseconds
	uRatio = "x"
	uMiB   = "MiB"
	uRows  = "rows"
	uRate  = "rows/s"
	uTPS   = "tps"
)

type row struct {
	section, figure string
	unit            string
	vals            []float64
	text            string // instead of numbers
	note            string
}

type report struct {
	rows     []row
	failures []string
}

func (r *report) add(section, figure, unit string, vals []float64, note string) {
	r.rows = append(r.rows, row{section: section, figure: figure, unit: unit, vals: append([]float64(nil), vals...), note: note})
}

func (r *report) text(section, figure, text, note string) {
	r.rows = append(r.rows, row{section: section, figure: figure, text: text, note: note})
}

func (r *report) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.failures = append(r.failures, msg)
	progress("FAIL: %s", msg)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func minmax(v []float64) (float64, float64) {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, x := range v {
		lo, hi = math.Min(lo, x), math.Max(hi, x)
	}
	return lo, hi
}

// ratios divides a by b pairwise (the same repeat).
func ratios(a, b []float64) []float64 {
	var out []float64
	for i := range a {
		if i < len(b) && b[i] > 0 {
			out = append(out, a[i]/b[i])
		}
	}
	return out
}

func scaled(v []float64, f float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = x * f
	}
	return out
}

func format(unit string, x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "-"
	}
	switch unit {
	case uSec:
		return fmt.Sprintf("%.3f s", x)
	case uMs:
		return fmt.Sprintf("%.1f ms", x*1000)
	case uUs:
		return fmt.Sprintf("%.0f µs", x*1e6)
	case uRatio:
		return fmt.Sprintf("%.2fx", x)
	case uMiB:
		return fmt.Sprintf("%.1f MiB", x)
	case uTPS:
		return fmt.Sprintf("%.1f", x)
	default: // rows, rows/s
		return fmt.Sprintf("%.0f", x)
	}
}

func (r *report) print(w io.Writer) {
	header := []string{"section", "figure", "median", "min", "max", "n", "target / note"}
	var cells [][]string
	for _, rw := range r.rows {
		if rw.text != "" || len(rw.vals) == 0 {
			t := rw.text
			if t == "" {
				t = "-"
			}
			cells = append(cells, []string{rw.section, rw.figure, t, "", "", "", rw.note})
			continue
		}
		lo, hi := minmax(rw.vals)
		fig := rw.figure
		if rw.unit == uRate || rw.unit == uRows || rw.unit == uTPS {
			fig += " (" + rw.unit + ")"
		}
		cells = append(cells, []string{rw.section, fig, format(rw.unit, median(rw.vals)), format(rw.unit, lo), format(rw.unit, hi),
			fmt.Sprint(len(rw.vals)), rw.note})
	}
	width := make([]int, len(header))
	for _, c := range append([][]string{header}, cells...) {
		for i, s := range c {
			width[i] = max(width[i], utf8.RuneCountInString(s))
		}
	}
	right := map[int]bool{2: true, 3: true, 4: true, 5: true}
	line := func(c []string) {
		var b strings.Builder
		for i, s := range c {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(s))
			if i > 0 {
				b.WriteString("  ")
			}
			if right[i] {
				b.WriteString(pad + s)
			} else if i < len(c)-1 {
				b.WriteString(s + pad)
			} else {
				b.WriteString(s)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	line(header)
	var sep []string
	for _, n := range width {
		sep = append(sep, strings.Repeat("-", n))
	}
	line(sep)
	prev := ""
	for _, c := range cells {
		if prev != "" && c[0] != prev {
			fmt.Fprintln(w)
		}
		prev = c[0]
		line(c)
	}
}

// minOf is the least of v (0 when empty).
func minOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	m, _ := minmax(v)
	return m
}
