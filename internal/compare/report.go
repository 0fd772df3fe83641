package compare

import (
	"fmt"
	"html/template"
	"io"
	"strings"
	"sync"
	"time"
)

// Table is the comparison of one table.
type Table struct {
	Table string `json:"table"`
	// Rows counts the table's rows on each db.
	Rows map[string]int64 `json:"rows"`
	// Blocks is the number of blocks, DifferingBlocks how many differed.
	Blocks          int `json:"blocks"`
	DifferingBlocks int `json:"differing_blocks"`
	// Missing, Extra and Different count the differences that are not in flight, by kind;
	// InFlight counts those explained by pending captured changes.
	Missing   int64 `json:"missing"`
	Extra     int64 `json:"extra"`
	Different int64 `json:"different"`
	InFlight  int64 `json:"in_flight"`
	// PendingTruncate: a source has a TRUNCATE of the table pending: every difference is
	// in flight.
	PendingTruncate bool `json:"pending_truncate,omitempty"`
	// Diffs lists the differences, at most the limit asked for; Truncated says some were
	// left out.
	Diffs     []Diff `json:"diffs"`
	Truncated bool   `json:"truncated,omitempty"`
}

// Diverged is the number of differences that are not in flight.
func (t *Table) Diverged() int64 { return t.Missing + t.Extra + t.Different }

// Count counts d.
func (t *Table) Count(d Diff) {
	switch {
	case d.InFlight:
		t.InFlight++
	case d.Kind == KindMissing:
		t.Missing++
	case d.Kind == KindExtra:
		t.Extra++
	default:
		t.Different++
	}
}

// Report is a comparison of a sync's tables across its dbs.
type Report struct {
	Sync     string        `json:"sync"`
	DBs      []string      `json:"dbs"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
	Tables   []*Table      `json:"tables"`
	// NotCompared lists dbs left out, with why (a target whose sink cannot list rows, an
	// inactive db).
	NotCompared map[string]string `json:"not_compared,omitempty"`
}

// Diverged is the number of differences, over all tables, that are not in flight.
func (r *Report) Diverged() int64 {
	var n int64
	for _, t := range r.Tables {
		n += t.Diverged()
	}
	return n
}

// WriteText writes the report for people.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Compare %s: %d tables on %s in %s\n", r.Sync, len(r.Tables), strings.Join(r.DBs, ", "), r.Duration.Round(time.Millisecond))
	for db, why := range r.NotCompared {
		fmt.Fprintf(&b, "  db %s not compared: %s\n", db, why)
	}
	for _, t := range r.Tables {
		var counts []string
		for _, db := range r.DBs {
			if n, ok := t.Rows[db]; ok {
				counts = append(counts, fmt.Sprintf("%s %d", db, n))
			}
		}
		state := "same"
		if t.Diverged() > 0 {
			state = fmt.Sprintf("DIFFERS: %d missing, %d extra, %d different", t.Missing, t.Extra, t.Different)
		}
		if t.InFlight > 0 {
			state += fmt.Sprintf(" (%d in flight)", t.InFlight)
		}
		fmt.Fprintf(&b, "%s: %s; rows %s\n", t.Table, state, strings.Join(counts, ", "))
		for _, d := range t.Diffs {
			flight := ""
			if d.InFlight {
				flight = " (in flight)"
			}
			fmt.Fprintf(&b, "  %s %s: %s%s\n", d.Kind, d.Label(), d.Where(r.DBs), flight)
		}
		if t.Truncated {
			fmt.Fprintf(&b, "  ... (more differences not listed: raise --limit)\n")
		}
	}
	if n := r.Diverged(); n > 0 {
		fmt.Fprintf(&b, "Result: %d rows differ\n", n)
	} else {
		fmt.Fprintf(&b, "Result: identical\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// page is parsed on first use, not when the program starts (every ibex command would pay
// for it).
var page = sync.OnceValue(func() *template.Template { return template.Must(template.New("report").Parse(pageHTML)) })

const pageHTML = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ibex compare {{.Sync}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f3f3f3}.same{color:#070}.differs{color:#b00;font-weight:bold}.flight{color:#888}
code{font-size:.9em}
</style></head><body>
<h1>ibex compare: sync {{.Sync}}</h1>
<p>Started {{.Started.UTC.Format "2006-01-02 15:04:05 UTC"}}, took {{.Took}}. Dbs: {{range $i, $d := .DBs}}{{if $i}}, {{end}}{{$d}}{{end}}.</p>
{{range $db, $why := .NotCompared}}<p>db {{$db}} not compared: {{$why}}</p>{{end}}
<table><tr><th>Table</th><th>State</th><th>Missing</th><th>Extra</th><th>Different</th><th>In flight</th><th>Rows</th></tr>
{{range .Tables}}<tr><td>{{.Table}}</td>{{if .Diverged}}<td class="differs">differs</td>{{else}}<td class="same">same</td>{{end}}<td>{{.Missing}}</td><td>{{.Extra}}</td><td>{{.Different}}</td><td>{{.InFlight}}</td><td>{{range $db, $n := .Rows}}{{$db}}: {{$n}} {{end}}</td></tr>
{{end}}</table>
{{range $t := .Tables}}{{if .Diffs}}<h2>{{.Table}}</h2>
<table><tr><th>Key</th><th>Kind</th>{{range $.DBs}}<th>{{.}}</th>{{end}}<th></th></tr>
{{range .Diffs}}<tr><td><code>{{.Label}}</code></td><td>{{.Kind}}</td>{{$d := .}}{{range $.DBs}}<td><code>{{index $d.Versions .}}</code></td>{{end}}<td>{{if .InFlight}}<span class="flight">in flight</span>{{end}}</td></tr>
{{end}}</table>{{if .Truncated}}<p>More differences were not listed (raise --limit).</p>{{end}}{{end}}{{end}}
<p>Cells are the md5 of each db's row; an empty cell: the db lacks the row. Rows in flight have captured changes still pending: the next run settles them.</p>
</body></html>
`

// WriteHTML writes the report as a standalone HTML page.
func (r *Report) WriteHTML(w io.Writer) error {
	return page().Execute(w, struct {
		*Report
		Took string
	}{r, r.Duration.Round(time.Millisecond).String()})
}
