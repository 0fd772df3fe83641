// Package scheduler is ibex's bundled daemon: it runs every active sync on its own
// schedule (an interval or a cron expression, with gocron v2) and, for syncs with
// autokick, within moments of a committed change on one of their sources (LISTEN on
// channel ibex_kick). It reloads the sync list from the control database every few
// seconds, so adding, changing, pausing (status=inactive) or removing a sync needs no
// restart.
//
// Several schedulers may run at once against the same control database: every run goes
// through job.Run, whose per-sync advisory lock makes a second concurrent run of a sync
// return AlreadyRunning at once. The scheduler only decides when to try.
//
// Within one scheduler, a sync has at most one run going; notifications that arrive
// during a run are coalesced into at most one follow-up run; a schedule tick that comes
// while the sync is running is skipped (gocron's LimitModeReschedule).
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-co-op/gocron/v2"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/dbconn"
	"github.com/ibexrepl/ibex/internal/metrics"
	"github.com/ibexrepl/ibex/internal/schedule"
	"github.com/ibexrepl/ibex/job"
)

// Defaults of Config.
const (
	DefaultReload          = 5 * time.Second
	DefaultShutdownTimeout = 60 * time.Second
	DefaultListen          = ":9187"
)

// Config configures a Scheduler. Zero values take the defaults.
type Config struct {
	// DSN names the control database (libpq conninfo or URL); ignored when Store is set.
	DSN string
	// Store, when set, is used instead of opening DSN (and is not closed).
	Store *control.Store
	// Reload is how often the sync list is read again (default 5s).
	Reload time.Duration
	// ShutdownTimeout bounds how long running runs may go on after the context given to
	// Run is cancelled; then their context is cancelled and they roll back (default 60s).
	ShutdownTimeout time.Duration
	// Listen is the address of the HTTP server for /metrics and /healthz; "" serves none.
	Listen string
	// Logger receives the scheduler's logs; nil discards them.
	Logger *slog.Logger
	// Metrics, when nil, is a new set of collectors.
	Metrics *metrics.Metrics
	// Location is the time zone of cron schedules (default time.Local, i.e. TZ).
	Location *time.Location
	// KickRetryMax caps the delay between retries of an autokicked run that found the
	// sync's lock held by another process (default 5s).
	KickRetryMax time.Duration
	// ListenBackoffMax caps the delay between attempts to reconnect a LISTEN connection
	// (default 30s).
	ListenBackoffMax time.Duration
	// LagEvery is how often the pending changes of every active sync's sources are read
	// for /metrics (ibex_pending_changes, ibex_oldest_pending_seconds; default 30s,
	// negative: never).
	LagEvery time.Duration
	// CompareEvery, when positive, compares every active sync's tables that often
	// (job.Compare) and exports ibex_compare_differences; a sync's compare_every takes
	// precedence.
	CompareEvery time.Duration
	// KeepSessions is how long the sessions a run opened to the syncs' dbs are kept,
	// idle and reset, for the next runs (job.Options.Sessions; default
	// DefaultKeepSessions, negative: runs open their own and close them).
	KeepSessions time.Duration
}

// DefaultKeepSessions is Config.KeepSessions' default.
const DefaultKeepSessions = time.Minute

// keptPerDB is how many idle sessions of one db the scheduler keeps: a run of a source
// that sends and receives uses three (see job/session.go).
const keptPerDB = 4

// DefaultLagEvery is Config.LagEvery's default.
const DefaultLagEvery = 30 * time.Second

// Scheduler runs syncs. Create it with New and start it with Run.
type Scheduler struct {
	cfg       Config
	store     *control.Store
	ownStore  bool
	log       *slog.Logger
	jobLog    *slog.Logger
	met       *metrics.Metrics
	cron      gocron.Scheduler
	runCtx    context.Context // runs use it; cancelled only when the shutdown timeout expires
	cancelRun context.CancelFunc
	wg        sync.WaitGroup // run loops in flight

	mu       sync.Mutex
	stopping bool
	syncs    map[string]*entry

	// Owned by the reload goroutine.
	jobs      map[string]*cronJob
	listeners map[string]*listener

	httpSrv  *http.Server
	httpAddr net.Addr
	ready    chan struct{}

	// sessions keeps the runs' db sessions between runs (nil: none, see KeepSessions).
	sessions *dbconn.Pool
}

// entry is the scheduler's state of one sync; guarded by Scheduler.mu.
type entry struct {
	name       string
	def        control.Sync
	active     bool
	removed    bool
	sources    []string // source dbs (for autokick catch-up)
	running    bool
	pending    bool // a kick arrived during the run: run once more
	retry      *time.Timer
	retryDelay time.Duration
}

type cronJob struct {
	spec string
	job  gocron.Job
}

// New prepares a scheduler; it opens the control database only in Run.
func New(cfg Config) *Scheduler {
	if cfg.Reload <= 0 {
		cfg.Reload = DefaultReload
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New()
	}
	if cfg.Location == nil {
		cfg.Location = time.Local
	}
	if cfg.KickRetryMax <= 0 {
		cfg.KickRetryMax = 5 * time.Second
	}
	if cfg.ListenBackoffMax <= 0 {
		cfg.ListenBackoffMax = 30 * time.Second
	}
	if cfg.LagEvery == 0 {
		cfg.LagEvery = DefaultLagEvery
	}
	if cfg.KeepSessions == 0 {
		cfg.KeepSessions = DefaultKeepSessions
	}
	return &Scheduler{
		cfg:       cfg,
		log:       cfg.Logger,
		jobLog:    slog.New(demote{cfg.Logger.Handler()}),
		met:       cfg.Metrics,
		syncs:     map[string]*entry{},
		jobs:      map[string]*cronJob{},
		listeners: map[string]*listener{},
		ready:     make(chan struct{}),
	}
}

// Metrics returns the scheduler's collectors.
func (s *Scheduler) Metrics() *metrics.Metrics { return s.met }

// Ready is closed once the scheduler has loaded the syncs and started.
func (s *Scheduler) Ready() <-chan struct{} { return s.ready }

// Addr is the address the HTTP server listens on (nil before Ready, or without one).
func (s *Scheduler) Addr() net.Addr { return s.httpAddr }

// Run starts the scheduler and blocks until ctx is cancelled; then it stops taking new
// runs, lets the running ones finish (at most ShutdownTimeout, after which they are
// cancelled and roll back), and returns nil. It returns an error at once when it cannot
// start: the control database cannot be reached or its schema does not match (errors
// wrapping control.ErrNotInstalled, ErrSchemaOld, ErrSchemaNew), or the HTTP address is
// unusable.
func (s *Scheduler) Run(ctx context.Context) error {
	s.store = s.cfg.Store
	if s.store == nil {
		st, err := control.Open(ctx, s.cfg.DSN, s.log)
		if err != nil {
			return err
		}
		s.store, s.ownStore = st, true
	}
	defer func() {
		if s.ownStore {
			s.store.Close()
		}
	}()
	if err := s.store.Check(ctx); err != nil {
		return err
	}
	cron, err := gocron.NewScheduler(
		gocron.WithLogger(s.log.With(slog.String("component", "gocron"))),
		gocron.WithLocation(s.cfg.Location),
		gocron.WithStopTimeout(5*time.Second),
	)
	if err != nil {
		return fmt.Errorf("starting gocron: %w", err)
	}
	s.cron = cron
	s.runCtx, s.cancelRun = context.WithCancel(context.WithoutCancel(ctx))
	defer s.cancelRun()
	if s.cfg.KeepSessions > 0 {
		s.sessions = dbconn.NewPool(keptPerDB, s.cfg.KeepSessions)
		defer s.sessions.Close() // after shutdown: no run is going
	}

	if s.cfg.Listen != "" {
		if err := s.serveHTTP(); err != nil {
			_ = cron.Shutdown()
			return err
		}
	}

	listenCtx, stopListeners := context.WithCancel(ctx)
	defer stopListeners()
	if err := s.reload(ctx, listenCtx); err != nil {
		s.shutdownHTTP()
		_ = cron.Shutdown()
		return err
	}
	cron.Start()
	s.log.InfoContext(ctx, "scheduler started", slog.Int("syncs", s.activeCount()), slog.Duration("reload", s.cfg.Reload))
	close(s.ready)
	var probes sync.WaitGroup
	defer probes.Wait()
	if s.cfg.LagEvery > 0 {
		probes.Go(func() { s.every(ctx, s.cfg.LagEvery, s.probeLag) })
	}
	probes.Go(func() { s.compareLoop(ctx) })

	t := time.NewTicker(s.cfg.Reload)
	defer t.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-t.C:
			if s.sessions != nil {
				s.sessions.Prune()
			}
			if err := s.reload(ctx, listenCtx); err != nil && ctx.Err() == nil {
				s.log.WarnContext(ctx, "reloading the syncs failed: keeping the current ones", slog.String("error", err.Error()))
			}
		}
	}
	s.shutdown(stopListeners)
	return nil
}

// shutdown stops new runs, waits for running ones, then stops everything.
func (s *Scheduler) shutdown(stopListeners context.CancelFunc) {
	s.log.Info("shutting down: no new runs; waiting for running ones", slog.Duration("timeout", s.cfg.ShutdownTimeout))
	s.mu.Lock()
	s.stopping = true
	for _, e := range s.syncs {
		if e.retry != nil {
			e.retry.Stop()
			e.retry = nil
		}
	}
	s.mu.Unlock()
	stopListeners()
	for _, l := range s.listeners {
		<-l.done
	}

	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.cfg.ShutdownTimeout):
		s.log.Warn("shutdown timeout: cancelling the running runs (their open batches roll back)")
		s.cancelRun()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			s.log.Error("runs did not end after being cancelled")
		}
	}
	if err := s.cron.Shutdown(); err != nil {
		s.log.Warn("stopping gocron", slog.String("error", err.Error()))
	}
	s.shutdownHTTP()
	s.log.Info("scheduler stopped")
}

func (s *Scheduler) activeCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.syncs {
		if e.active && (e.def.Schedule != "" || e.def.Autokick) {
			n++
		}
	}
	return n
}

// ---- runs

// tick is the gocron task of a sync with a schedule: it runs the sync in gocron's
// goroutine unless it is already running here.
func (s *Scheduler) tick(name string) {
	s.mu.Lock()
	e := s.syncs[name]
	if e == nil || e.removed || !e.active || s.stopping || e.running {
		s.mu.Unlock()
		return
	}
	e.running = true
	s.wg.Add(1)
	s.mu.Unlock()
	s.loop(e, false)
}

// Kick asks for a run of sync soon. Kicks during a run of the sync coalesce into one
// follow-up run. Unknown, inactive or non-autokick syncs are ignored unless force.
func (s *Scheduler) Kick(name string) { s.kick(name, true) }

func (s *Scheduler) kick(name string, force bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.syncs[name]
	if e == nil || e.removed || !e.active || s.stopping || (!force && !e.def.Autokick) {
		return false
	}
	if e.running {
		e.pending = true
		return true
	}
	if e.retry != nil {
		// The last attempt found the lock taken by another process; the retry due soon
		// serves this kick too.
		return true
	}
	e.running = true
	s.wg.Add(1)
	go s.loop(e, true)
	return true
}

// loop runs e, then again while kicks came during the run. e.running is set by the caller.
func (s *Scheduler) loop(e *entry, kicked bool) {
	defer s.wg.Done()
	for {
		res, _ := s.runOnce(e.name)
		s.mu.Lock()
		ok := !s.stopping && !e.removed && e.active
		switch {
		case res != nil && res.AlreadyRunning:
			// Another process holds the lock. Its run may have taken its snapshot before the
			// change that kicked us committed: try again a little later (kicks that came
			// meanwhile are served by that retry, not by a busy loop).
			kicked = kicked || e.pending
			e.pending = false
			if kicked && ok && e.retry == nil {
				if e.retryDelay == 0 {
					e.retryDelay = 250 * time.Millisecond
				} else {
					e.retryDelay = min(2*e.retryDelay, s.cfg.KickRetryMax)
				}
				name := e.name
				e.retry = time.AfterFunc(e.retryDelay, func() {
					s.mu.Lock()
					if cur := s.syncs[name]; cur != nil {
						cur.retry = nil
					}
					s.mu.Unlock()
					s.kick(name, true)
				})
			}
		case res != nil:
			e.retryDelay = 0
		}
		if e.pending && ok {
			e.pending = false
			kicked = true
			s.mu.Unlock()
			continue
		}
		e.pending = false
		e.running = false
		s.mu.Unlock()
		return
	}
}

// runOnce calls job.Run once and records the outcome.
func (s *Scheduler) runOnce(name string) (res *job.Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
			s.log.Error("run panicked", slog.String("sync", name), slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
			res = nil
		}
		s.met.Observe(name, res, err)
	}()
	res, err = job.Run(s.runCtx, s.store, name, job.Options{Logger: s.jobLog, Sessions: s.sessions})
	switch {
	case res == nil && errors.Is(err, job.ErrInactive):
		s.log.Debug("sync is inactive: not run", slog.String("sync", name))
	case res == nil:
		s.log.Error("run could not start", slog.String("sync", name), slog.String("error", err.Error()))
	case res.AlreadyRunning:
		s.log.Debug("sync is already running elsewhere", slog.String("sync", name))
	case res.State == control.StateBad:
		s.log.Error(res.Summary(), slog.String("sync", name), slog.Int64("run", res.RunID))
	case res.State == control.StateEmpty:
		s.log.Debug(res.Summary(), slog.String("sync", name), slog.Int64("run", res.RunID))
	default:
		s.log.Info(res.Summary(), slog.String("sync", name), slog.Int64("run", res.RunID))
	}
	return res, err
}

// ---- reload

type dbDef struct {
	conn map[string]string
	pass string
}

func (d dbDef) equal(o dbDef) bool {
	if d.pass != o.pass || len(d.conn) != len(o.conn) {
		return false
	}
	for k, v := range d.conn {
		if w, ok := o.conn[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// reload reads the syncs and brings jobs and listeners in line with them.
func (s *Scheduler) reload(ctx context.Context, listenCtx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	q := s.store.Q()
	syncs, err := control.Syncs(ctx, q)
	if err != nil {
		return fmt.Errorf("reading the syncs: %w", err)
	}
	// The source dbs of active autokick syncs, with their connections.
	sources := map[string][]string{} // sync -> source dbs
	dbs := map[string]dbDef{}
	groups := map[string]*control.DBGroup{}
	for _, sy := range syncs {
		if sy.Status != control.StatusActive || !sy.Autokick {
			continue
		}
		g, ok := groups[sy.DBGroup]
		if !ok {
			if g, err = control.GetDBGroup(ctx, q, sy.DBGroup); err != nil {
				return fmt.Errorf("reading dbgroup %s of sync %s: %w", sy.DBGroup, sy.Name, err)
			}
			groups[sy.DBGroup] = g
		}
		for _, m := range g.Members {
			if m.Role != control.RoleSource {
				continue
			}
			sources[sy.Name] = append(sources[sy.Name], m.DB)
			if _, ok := dbs[m.DB]; ok {
				continue
			}
			d, err := control.GetDB(ctx, q, m.DB)
			if err != nil {
				return fmt.Errorf("reading db %s of sync %s: %w", m.DB, sy.Name, err)
			}
			dbs[m.DB] = dbDef{conn: d.Conn, pass: d.Pass}
		}
	}

	// Entries.
	s.mu.Lock()
	seen := map[string]bool{}
	scheduled := 0
	var catchUp []string // syncs that just became active with autokick
	for _, sy := range syncs {
		seen[sy.Name] = true
		e := s.syncs[sy.Name]
		if e == nil {
			e = &entry{name: sy.Name}
			s.syncs[sy.Name] = e
			s.log.Info("sync found", slog.String("sync", sy.Name), slog.String("status", string(sy.Status)),
				slog.String("schedule", sy.Schedule), slog.Bool("autokick", sy.Autokick))
		} else if !reflect.DeepEqual(e.def, sy) {
			s.log.Info("sync changed", slog.String("sync", sy.Name), slog.String("status", string(sy.Status)),
				slog.String("schedule", sy.Schedule), slog.Bool("autokick", sy.Autokick))
		}
		wasAuto := e.active && e.def.Autokick
		e.def = sy
		e.active = sy.Status == control.StatusActive
		if e.active && sy.Autokick && !wasAuto {
			catchUp = append(catchUp, sy.Name)
		}
		e.sources = sources[sy.Name]
		if !e.active || !sy.Autokick {
			e.pending = false
			if e.retry != nil {
				e.retry.Stop()
				e.retry = nil
			}
		}
		if e.active && (sy.Schedule != "" || sy.Autokick) {
			scheduled++
		}
	}
	var gone []string
	for name, e := range s.syncs {
		if !seen[name] {
			e.removed = true
			e.pending = false
			if e.retry != nil {
				e.retry.Stop()
				e.retry = nil
			}
			delete(s.syncs, name)
			gone = append(gone, name)
		}
	}
	s.mu.Unlock()
	s.met.Scheduled.Set(float64(scheduled))
	for _, name := range catchUp {
		s.kick(name, false) // changes committed before we listened
	}
	for _, name := range gone {
		s.log.Info("sync removed: no longer run", slog.String("sync", name))
		s.met.Forget(name)
	}

	// gocron jobs: one per active sync with a schedule.
	want := map[string]string{}
	for _, sy := range syncs {
		if sy.Status == control.StatusActive && sy.Schedule != "" {
			want[sy.Name] = sy.Schedule
		}
	}
	for name, cj := range s.jobs {
		if spec, ok := want[name]; !ok || spec != cj.spec {
			if err := s.cron.RemoveJob(cj.job.ID()); err != nil && !errors.Is(err, gocron.ErrJobNotFound) {
				s.log.Warn("removing a job", slog.String("sync", name), slog.String("error", err.Error()))
			}
			delete(s.jobs, name)
		}
	}
	for name, spec := range want {
		if _, ok := s.jobs[name]; ok {
			continue
		}
		j, err := s.newJob(name, spec)
		if err != nil {
			s.log.Error("cannot schedule sync", slog.String("sync", name), slog.String("schedule", spec), slog.String("error", err.Error()))
			continue
		}
		s.jobs[name] = &cronJob{spec: spec, job: j}
	}

	// Listeners: one per source db of an active autokick sync.
	for name, l := range s.listeners {
		if d, ok := dbs[name]; !ok || !d.equal(l.def) {
			l.stop()
			<-l.done
			delete(s.listeners, name)
			s.met.Listening.DeleteLabelValues(name)
		}
	}
	for name, d := range dbs {
		if _, ok := s.listeners[name]; ok {
			continue
		}
		s.listeners[name] = s.startListener(listenCtx, name, d)
	}
	return nil
}

func (s *Scheduler) newJob(name, spec string) (gocron.Job, error) {
	sp, err := schedule.Parse(spec)
	if err != nil {
		return nil, err
	}
	opts := []gocron.JobOption{
		gocron.WithName("sync:" + name),
		gocron.WithTags("sync:" + name),
		gocron.WithSingletonMode(gocron.LimitModeReschedule),
	}
	var def gocron.JobDefinition
	if sp.Every > 0 {
		def = gocron.DurationJob(sp.Every)
		opts = append(opts, gocron.WithStartAt(gocron.WithStartImmediately()))
	} else {
		def = gocron.CronJob(sp.Cron, sp.WithSeconds)
	}
	return s.cron.NewJob(def, gocron.NewTask(s.tick, name), opts...)
}

// sourcesOf returns the active autokick syncs that have db as a source.
func (s *Scheduler) syncsWithSource(db string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for name, e := range s.syncs {
		if e.active && e.def.Autokick && slices.Contains(e.sources, db) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// ---- logging

// demote is a slog handler that logs job.Run's Info records (run started, run ended) at
// the verbose level: the scheduler says itself what each run did, at a level that depends
// on the outcome.
type demote struct{ h slog.Handler }

func (d demote) Enabled(ctx context.Context, l slog.Level) bool {
	if l == slog.LevelInfo {
		l = slog.LevelDebug
	}
	return d.h.Enabled(ctx, l)
}

func (d demote) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelInfo {
		r.Level = slog.LevelDebug
	}
	return d.h.Handle(ctx, r)
}

func (d demote) WithAttrs(as []slog.Attr) slog.Handler { return demote{d.h.WithAttrs(as)} }
func (d demote) WithGroup(n string) slog.Handler       { return demote{d.h.WithGroup(n)} }

// ---- lag and compare probes

// every calls fn with each active sync's name at once and then every d, until ctx ends.
func (s *Scheduler) every(ctx context.Context, d time.Duration, fn func(ctx context.Context, name string)) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		s.mu.Lock()
		var names []string
		for n, e := range s.syncs {
			if e.active && !e.removed {
				names = append(names, n)
			}
		}
		s.mu.Unlock()
		slices.Sort(names)
		for _, n := range names {
			if ctx.Err() != nil {
				return
			}
			fn(ctx, n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probeLag reads a sync's lag into the metrics.
func (s *Scheduler) probeLag(ctx context.Context, name string) {
	lags, err := job.Lag(ctx, s.store, name, s.jobLog)
	if err != nil {
		s.log.DebugContext(ctx, "reading the lag failed", slog.String("sync", name), slog.String("error", err.Error()))
		return
	}
	s.met.SetLag(name, lags)
}

// probeCompare compares a sync's tables into the metrics.
func (s *Scheduler) probeCompare(ctx context.Context, name string) {
	r, err := job.Compare(ctx, s.store, name, job.CompareOptions{Logger: s.jobLog, Limit: 10})
	if err != nil {
		s.log.WarnContext(ctx, "scheduled compare failed", slog.String("sync", name), slog.String("error", err.Error()))
		return
	}
	s.met.SetCompare(name, r)
	if n := r.Diverged(); n > 0 {
		s.log.WarnContext(ctx, "scheduled compare: rows differ between the dbs (see 'ibex compare "+name+"', 'ibex repair')", slog.String("sync", name), slog.Int64("rows", n))
	}
}

// compareLoop compares each active sync whose interval (its compare_every, else
// Config.CompareEvery) has passed since its last compare, until ctx ends.
func (s *Scheduler) compareLoop(ctx context.Context) {
	last := map[string]time.Time{}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		type due struct {
			name  string
			every time.Duration
		}
		var dues []due
		s.mu.Lock()
		for n, e := range s.syncs {
			if !e.active || e.removed {
				continue
			}
			every := s.cfg.CompareEvery
			if d, err := time.ParseDuration(e.def.CompareEvery); err == nil && d > 0 {
				every = d
			}
			if every > 0 && time.Since(last[n]) >= every {
				dues = append(dues, due{n, every})
			}
		}
		s.mu.Unlock()
		slices.SortFunc(dues, func(a, b due) int { return strings.Compare(a.name, b.name) })
		for _, d := range dues {
			if ctx.Err() != nil {
				return
			}
			s.probeCompare(ctx, d.name)
			last[d.name] = time.Now()
		}
	}
}
