// Package grafana holds the Grafana dashboard of ibex's metrics (ibex.json); its test
// checks that every metric the dashboard queries is one the scheduler exports.
package grafana_test

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/internal/metrics"
)

func TestDashboardMetricsExist(t *testing.T) {
	b, err := os.ReadFile("ibex.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	// Give every vector a series so that Gather lists it.
	m.Runs.WithLabelValues("s", "good")
	m.Rows.WithLabelValues("s", "inserted")
	m.Conflicts.WithLabelValues("s")
	m.ConflictsBy.WithLabelValues("s", "update_update")
	m.Duration.WithLabelValues("s").Observe(1)
	m.LastSuccess.WithLabelValues("s")
	m.Pending.WithLabelValues("s", "t1")
	m.Oldest.WithLabelValues("s", "t1")
	m.Differences.WithLabelValues("s", "public.t")
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, f := range fams {
		known[f.GetName()] = true
	}
	re := regexp.MustCompile(`ibex_[a-z_]+`)
	n := 0
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, name := range re.FindAllString(tg.Expr, -1) {
				n++
				if !known[name] && !(strings.HasSuffix(name, "_bucket") && known[strings.TrimSuffix(name, "_bucket")]) {
					t.Errorf("panel %q queries %s, which ibex does not export", p.Title, name)
				}
			}
		}
	}
	if n < 8 {
		t.Errorf("only %d metric references in the dashboard", n)
	}
}
