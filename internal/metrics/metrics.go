// Package metrics holds ibex's Prometheus metrics: what runs of syncs did, as the
// scheduler (and any other long-lived entry point) exposes them on /metrics.
//
// Every Metrics has its own registry, so several can live in one process (tests run two
// schedulers side by side).
package metrics

import (
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ibexrepl/ibex/internal/compare"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/job"
)

// Values of the state label of ibex_runs_total besides the run states good, empty and bad
// and control.StateInactive (the sync was paused when the run was asked for).
const (
	StateAlreadyRunning = "already_running" // another process held the sync's lock
	StateError          = "error"           // the run could not start (control database, unknown sync, ...)
)

// Metrics are the ibex collectors.
type Metrics struct {
	Registry *prometheus.Registry

	Runs        *prometheus.CounterVec   // ibex_runs_total{sync,state}
	Rows        *prometheus.CounterVec   // ibex_rows_total{sync,kind}
	Conflicts   *prometheus.CounterVec   // ibex_conflicts_total{sync}
	ConflictsBy *prometheus.CounterVec   // ibex_conflicts_by_type_total{sync,type}
	Duration    *prometheus.HistogramVec // ibex_run_duration_seconds{sync}
	LastSuccess *prometheus.GaugeVec     // ibex_last_success_timestamp_seconds{sync}
	Kicks       *prometheus.CounterVec   // ibex_kicks_total{sync}
	Listening   *prometheus.GaugeVec     // ibex_listen_connected{db}
	Scheduled   prometheus.Gauge         // ibex_scheduler_syncs
	Pending     *prometheus.GaugeVec     // ibex_pending_changes{sync,source}
	Oldest      *prometheus.GaugeVec     // ibex_oldest_pending_seconds{sync,source}
	Differences *prometheus.GaugeVec     // ibex_compare_differences{sync,table}
}

// New returns the collectors registered in a fresh registry, with the Go runtime and
// process collectors.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ibex_runs_total",
			Help: "Runs of a sync asked for by this process, by outcome: good, empty, bad, already_running (another process held the sync's lock), inactive, error (could not start).",
		}, []string{"sync", "state"}),
		Rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ibex_rows_total",
			Help: "Rows written by runs of a sync into its receiving dbs, by kind: inserted or deleted.",
		}, []string{"sync", "kind"}),
		Conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ibex_conflicts_total",
			Help: "Conflicts (a row changed on more than one source) resolved by runs of a sync.",
		}, []string{"sync"}),
		ConflictsBy: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ibex_conflicts_by_type_total",
			Help: "Conflicts resolved by runs of a sync, by type: insert_exists, update_update, update_delete, delete_delete.",
		}, []string{"sync", "type"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ibex_run_duration_seconds",
			Help:    "Wall time of the runs of a sync that took its lock (good, empty or bad).",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900},
		}, []string{"sync"}),
		LastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ibex_last_success_timestamp_seconds",
			Help: "Unix time at which the last good or empty run of a sync started by this process ended.",
		}, []string{"sync"}),
		Kicks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ibex_kicks_total",
			Help: "Autokick notifications received for a sync (several may lead to one run).",
		}, []string{"sync"}),
		Listening: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ibex_listen_connected",
			Help: "1 while the scheduler LISTENs for autokick notifications on a db, 0 while it reconnects.",
		}, []string{"db"}),
		Scheduled: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ibex_scheduler_syncs",
			Help: "Active syncs the scheduler runs (on a schedule, by autokick, or both).",
		}),
		Pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ibex_pending_changes",
			Help: "Changes captured on a source of a sync and not yet applied to every receiver, as last read.",
		}, []string{"sync", "source"}),
		Oldest: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ibex_oldest_pending_seconds",
			Help: "Age of the oldest pending change captured on a source of a sync (0: none), as last read.",
		}, []string{"sync", "source"}),
		Differences: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ibex_compare_differences",
			Help: "Rows of a table that differed between the dbs of a sync (in-flight changes aside) at the last scheduled compare.",
		}, []string{"sync", "table"}),
	}
	m.Registry.MustRegister(m.Runs, m.Rows, m.Conflicts, m.ConflictsBy, m.Duration, m.LastSuccess, m.Kicks, m.Listening, m.Scheduled,
		m.Pending, m.Oldest, m.Differences,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// Observe records the outcome of one job.Run call: res and err as it returned them.
func (m *Metrics) Observe(sync string, res *job.Result, err error) {
	switch {
	case res == nil && errors.Is(err, job.ErrInactive):
		m.Runs.WithLabelValues(sync, control.StateInactive).Inc()
		return
	case res == nil:
		m.Runs.WithLabelValues(sync, StateError).Inc()
		return
	case res.AlreadyRunning:
		m.Runs.WithLabelValues(sync, StateAlreadyRunning).Inc()
		return
	}
	state := res.State
	if state == "" {
		state = control.StateBad
	}
	m.Runs.WithLabelValues(sync, state).Inc()
	m.Rows.WithLabelValues(sync, "inserted").Add(float64(res.Inserts))
	m.Rows.WithLabelValues(sync, "deleted").Add(float64(res.Deletes))
	m.Conflicts.WithLabelValues(sync).Add(float64(res.Conflicts))
	for typ, n := range res.ConflictTypes {
		m.ConflictsBy.WithLabelValues(sync, typ).Add(float64(n))
	}
	m.Duration.WithLabelValues(sync).Observe(res.Duration.Seconds())
	if state == control.StateGood || state == control.StateEmpty {
		m.LastSuccess.WithLabelValues(sync).Set(float64(res.Started.Add(res.Duration).UnixNano()) / float64(time.Second))
	}
}

// Forget drops every series of a sync (it was removed).
func (m *Metrics) Forget(sync string) {
	l := prometheus.Labels{"sync": sync}
	m.Runs.DeletePartialMatch(l)
	m.Rows.DeletePartialMatch(l)
	m.Conflicts.DeletePartialMatch(l)
	m.ConflictsBy.DeletePartialMatch(l)
	m.Duration.DeletePartialMatch(l)
	m.LastSuccess.DeletePartialMatch(l)
	m.Kicks.DeletePartialMatch(l)
	m.Pending.DeletePartialMatch(l)
	m.Oldest.DeletePartialMatch(l)
	m.Differences.DeletePartialMatch(l)
}

// SetLag records the lag of a sync's sources (job.Lag); a source that could not be read
// has its series dropped.
func (m *Metrics) SetLag(sync string, lags []job.SourceLag) {
	for _, l := range lags {
		if l.Error != "" {
			m.Pending.DeleteLabelValues(sync, l.DB)
			m.Oldest.DeleteLabelValues(sync, l.DB)
			continue
		}
		m.Pending.WithLabelValues(sync, l.DB).Set(float64(l.Pending))
		m.Oldest.WithLabelValues(sync, l.DB).Set(l.OldestSeconds)
	}
}

// SetCompare records the differences a compare of a sync found, per table.
func (m *Metrics) SetCompare(sync string, r *compare.Report) {
	for _, t := range r.Tables {
		m.Differences.WithLabelValues(sync, t.Table).Set(float64(t.Diverged()))
	}
}
