// Command bench is ibex's benchmark: it measures, on the local PostgreSQL, the figures a
// user comparing ibex with Bucardo 5 will measure (the seed demo's kick-to-done and sync
// time, the raw SQL floor for the same rows, capture overhead on pgbench, growth with table
// size, a large backlog, the targets that are not PostgreSQL against their own bulk paths) and prints them as one table. With Bucardo 5.6 installed (or
// -bucardo install), it also runs Bucardo on the seed workload in a private throwaway
// cluster and reports ibex's ratio to it. -sections peers measures ibex against native
// logical replication and pglogical, one source -> one target, in two private clusters.
// See bench/README.md.
//
//	go run ./bench [-quick] [-repeats N] [-sections seed,floor,capture,counters,growth,backlog,sinks,compare,peers] [-bucardo auto|install|off] [-peers auto|install|off] ...
//
// Every database it creates is named ibex_bench_* and is dropped at the end unless -keep.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type config struct {
	scale          int
	tx             int
	sources        int
	targets        int
	repeats        int
	sections       map[string]bool
	growthScales   []int
	growthTx       int
	growthScript   string
	growthRepeats  int
	backlogRows    int
	backlogRepeats int
	backlogSources int
	captureSeconds int
	capturePairs   int
	captureScripts []string
	// capturePrivate: the capture section runs in private clusters (wal_level replica,
	// and logical for the publication) instead of on the harness's server.
	capturePrivate bool
	smallKicks     int
	keep           bool
	quick          bool
	ibexBin        string
	bucardoMode    string
	sinksRows      int
	sinksRepeats   int
	sinksRSSRows   int
	sinks          []string
	sinksProfile   string
	sinksOnError   string
	mariadbAddr    string
	mariadbUser    string
	redisAddr      string
	compareScale   int
	compareDiffs   int
	compareRepeats int
	peersMode      string
	peersRepeats   int
	peersTx        int
	peersRows      int
	peersRate      int
	peersSeconds   int
}

var allSections = []string{"seed", "floor", "bucardo", "small", "capture", "counters", "growth", "backlog", "sinks", "compare", "peers"}

// allSinks are the sink types the sinks section knows, in its order.
var allSinks = []string{"mariadb", "sqlite", "redis", "flatfile"}

func parseFlags(args []string) (*config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	c := &config{}
	var sections, growthScales, sinkList string
	fs.IntVar(&c.scale, "scale", 1, "pgbench scale of the seed demo databases")
	fs.IntVar(&c.tx, "tx", 10000, "pgbench transactions per source in the seed demo")
	fs.IntVar(&c.sources, "sources", 4, "source databases in the seed demo")
	fs.IntVar(&c.targets, "targets", 1, "target databases in the seed demo")
	fs.IntVar(&c.repeats, "repeats", 3, "repeats of the seed demo (and of Bucardo's)")
	fs.StringVar(&sections, "sections", "seed,floor,small,capture,counters,growth,backlog,sinks,compare", "comma list of sections: "+strings.Join(allSections, ", "))
	fs.StringVar(&growthScales, "growth-scales", "1,10,100", "pgbench scales of the growth section")
	fs.IntVar(&c.growthTx, "growth-tx", 2000, "pgbench transactions on the source in the growth section (1 source + 1 target)")
	fs.StringVar(&c.growthScript, "growth-script", "simple-update", "pgbench built-in script of the growth section: simple-update (one accounts row per transaction, so the changed rows are the same at every scale) or tpcb-like (also one of 10 x scale tellers and one of scale branches)")
	fs.IntVar(&c.growthRepeats, "growth-repeats", 2, "repeats per scale in the growth section")
	fs.IntVar(&c.backlogRows, "backlog-rows", 1000000, "pending changed rows in the backlog section")
	fs.IntVar(&c.backlogRepeats, "backlog-repeats", 2, "repeats of the backlog section")
	fs.IntVar(&c.backlogSources, "backlog-sources", 4, "sources of the backlog section (the seed demo's shape: each changes its share of the rows; one target)")
	fs.IntVar(&c.sinksRows, "sinks-rows", 100000, "changed pgbench_accounts rows per kick in the sinks section")
	fs.IntVar(&c.sinksRepeats, "sinks-repeats", 11, "repeats per sink in the sinks section")
	fs.IntVar(&c.sinksRSSRows, "sinks-rss-rows", 1000000, "changed rows of the sinks section's one RSS kick into a flatfile target (0 skips it)")
	fs.StringVar(&sinkList, "sinks", strings.Join(allSinks, ","), "comma list of the sink types the sinks section measures")
	fs.StringVar(&c.sinksOnError, "sinks-on-error", "stop", "on_error of the sinks section's syncs: stop, or skip (rows a target refuses are parked; none is refused here)")
	fs.StringVar(&c.sinksProfile, "sinks-profile", "", "write a CPU profile and the debug log of each timed kick of the sinks section to DIR/<sink>-<repeat>.pprof and .log (IBEX_CPUPROFILE, IBEX_LOG_LEVEL=debug)")
	fs.StringVar(&c.mariadbAddr, "mariadb", "127.0.0.1:3306", "MariaDB host:port of the sinks section (no password)")
	fs.StringVar(&c.mariadbUser, "mariadb-user", "root", "MariaDB user of the sinks section (CREATE/DROP DATABASE, local_infile)")
	fs.StringVar(&c.redisAddr, "redis", "127.0.0.1:6379", "Redis host:port of the sinks section (database 0, keys ibex_bench:*)")
	fs.IntVar(&c.compareScale, "compare-scale", 10, "pgbench scale of the compare section's 3 dbs (100,000 accounts rows each)")
	fs.IntVar(&c.compareDiffs, "compare-diffs", 100, "rows made to differ behind ibex's back in the compare section")
	fs.IntVar(&c.compareRepeats, "compare-repeats", 3, "repeats of the compare section")
	fs.StringVar(&c.peersMode, "peers", "auto", "peers section (not in the default sections; -sections peers): auto (pglogical measured when postgresql-"+pgMajor+
		"-pglogical is installed), install (apt-get install -y postgresql-"+pgMajor+"-pglogical first when missing; needs root), off (native logical replication and ibex only)")
	fs.IntVar(&c.peersRepeats, "peers-repeats", 2, "repeats of the peers section (each system measured once per repeat)")
	fs.IntVar(&c.peersTx, "peers-tx", 20000, "pgbench transactions per client (4 clients) of the peers section's transaction backlog")
	fs.IntVar(&c.peersRows, "peers-rows", 1000000, "changed pgbench_accounts rows of the peers section's row backlog (committed in chunks of 100,000)")
	fs.IntVar(&c.peersRate, "peers-rate", 200, "pgbench -R of the peers section's steady state")
	fs.IntVar(&c.peersSeconds, "peers-seconds", 20, "length of the peers section's steady state (pgbench -T)")
	fs.IntVar(&c.smallKicks, "small-kicks", 41, "timed one-row kicks (and as many empty ones) in the small section")
	fs.IntVar(&c.captureSeconds, "capture-seconds", 10, "length of each pgbench -T run in the capture section")
	fs.IntVar(&c.capturePairs, "capture-pairs", 7, "interleaved rounds (without capture, with capture, with a publication) per script in the capture section")
	var captureScripts string
	fs.BoolVar(&c.capturePrivate, "capture-clusters", true, "capture section: run in two private clusters (wal_level=replica without/with capture; wal_level=logical with a publication and a consumed slot) instead of on the harness's server (false: no publication figures)")
	fs.StringVar(&captureScripts, "capture-scripts", "tpcb-like,simple-update", "pgbench built-in scripts of the capture section (each gets its pairs)")
	fs.BoolVar(&c.keep, "keep", false, "keep the ibex_bench_* databases (those of each section's last repeat)")
	fs.StringVar(&c.ibexBin, "ibex", "", "use this ibex binary instead of building ./cmd/ibex (e.g. to compare two builds)")
	fs.BoolVar(&c.quick, "quick", false, "skip the heavy sections (counters, growth, backlog, sinks, compare, peers)")
	fs.StringVar(&c.bucardoMode, "bucardo", "auto", "bucardo section: auto (measure Bucardo 5.6 in a private cluster when bucardo and PL/Perl "+pgMajor+
		" are installed, else print reference figures), install (apt-get install -y bucardo postgresql-plperl-"+pgMajor+" first when missing; needs root), off (reference figures only)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: go run ./bench [flags]   (or: make bench BENCH_ARGS=\"...\")\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	for _, v := range []struct {
		name string
		n    int
	}{{"-scale", c.scale}, {"-tx", c.tx}, {"-sources", c.sources}, {"-repeats", c.repeats}, {"-growth-tx", c.growthTx},
		{"-growth-repeats", c.growthRepeats}, {"-backlog-rows", c.backlogRows}, {"-backlog-repeats", c.backlogRepeats}, {"-backlog-sources", c.backlogSources},
		{"-capture-seconds", c.captureSeconds}, {"-small-kicks", c.smallKicks}, {"-capture-pairs", c.capturePairs},
		{"-compare-scale", c.compareScale}, {"-compare-diffs", c.compareDiffs}, {"-compare-repeats", c.compareRepeats}, {"-sinks-rows", c.sinksRows}, {"-sinks-repeats", c.sinksRepeats},
		{"-peers-repeats", c.peersRepeats}, {"-peers-tx", c.peersTx}, {"-peers-rows", c.peersRows}, {"-peers-rate", c.peersRate}, {"-peers-seconds", c.peersSeconds}} {
		if v.n < 1 {
			return nil, fmt.Errorf("%s must be at least 1", v.name)
		}
	}
	if c.sinksRSSRows < 0 {
		return nil, errors.New("-sinks-rss-rows must be 0 (skip) or more")
	}
	if c.sinksOnError != "stop" && c.sinksOnError != "skip" {
		return nil, fmt.Errorf("-sinks-on-error must be stop or skip, not %q", c.sinksOnError)
	}
	for _, s := range strings.Split(sinkList, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(allSinks, s) {
			return nil, fmt.Errorf("unknown sink %q in -sinks (known: %s)", s, strings.Join(allSinks, ", "))
		}
		if !slices.Contains(c.sinks, s) {
			c.sinks = append(c.sinks, s)
		}
	}
	for _, sc := range strings.Split(captureScripts, ",") {
		switch sc = strings.TrimSpace(sc); sc {
		case "":
		case "tpcb-like", "simple-update", "select-only":
			c.captureScripts = append(c.captureScripts, sc)
		default:
			return nil, fmt.Errorf("unknown pgbench script %q in -capture-scripts (tpcb-like, simple-update, select-only)", sc)
		}
	}
	if c.growthScript != "simple-update" && c.growthScript != "tpcb-like" {
		return nil, fmt.Errorf("-growth-script must be simple-update or tpcb-like, not %q", c.growthScript)
	}
	switch c.peersMode {
	case "auto", "install", "off":
	default:
		return nil, fmt.Errorf("-peers must be auto, install or off, not %q", c.peersMode)
	}
	switch c.bucardoMode {
	case "auto", "install", "off":
	default:
		return nil, fmt.Errorf("-bucardo must be auto, install or off, not %q", c.bucardoMode)
	}
	if c.targets < 0 || c.sources+c.targets < 2 {
		return nil, fmt.Errorf("-sources + -targets must be at least 2 (and -targets >= 0)")
	}
	c.sections = map[string]bool{}
	for _, s := range strings.Split(sections, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		ok := false
		for _, a := range allSections {
			ok = ok || a == s
		}
		if !ok {
			return nil, fmt.Errorf("unknown section %q in -sections (known: %s)", s, strings.Join(allSections, ", "))
		}
		c.sections[s] = true
	}
	for _, s := range strings.Split(growthScales, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad scale %q in -growth-scales", s)
		}
		c.growthScales = append(c.growthScales, n)
	}
	if c.sections["growth"] && len(c.growthScales) == 0 {
		return nil, errors.New("-growth-scales is empty")
	}
	if c.quick {
		for _, s := range []string{"counters", "growth", "backlog", "sinks", "compare", "peers"} {
			if c.sections[s] {
				delete(c.sections, s)
				progress("-quick: skipping section %s", s)
			}
		}
	}
	if len(c.sections) == 0 {
		return nil, errors.New("no section to run")
	}
	return c, nil
}

var start = time.Now()

// progress prints a progress line on stderr.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%7.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
}

func commandLine() string {
	var b strings.Builder
	if strings.Contains(os.Args[0], "go-build") {
		b.WriteString("go run ./bench")
	} else {
		b.WriteString(os.Args[0])
	}
	for _, a := range os.Args[1:] {
		b.WriteByte(' ')
		if a == "" || strings.ContainsAny(a, " \t\"'$\\|&;<>()*?") {
			a = strconv.Quote(a)
		}
		b.WriteString(a)
	}
	return b.String()
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: "+err.Error())
		os.Exit(2)
	}
	os.Exit(run(cfg))
}

func run(cfg *config) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	env, err := newEnv(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: FAILED: "+err.Error())
		return 1
	}
	rep := &report{}
	failed := ""
	b := &bench{cfg: cfg, env: env, rep: rep}
	err = b.runSections(ctx)
	if err != nil {
		failed = err.Error()
		if ctx.Err() != nil {
			failed = "interrupted: " + failed
		}
	}
	env.cleanup(cfg.keep)

	fmt.Println()
	fmt.Println("ibex benchmark")
	fmt.Printf("command:    %s\n", commandLine())
	fmt.Printf("machine:    %d cores (runtime.NumCPU), %s/%s, load average at start %s\n", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, env.loadAtStart)
	fmt.Printf("postgresql: %s at %s\n", env.pgVersion, env.where())
	if cfg.sections["seed"] || cfg.sections["floor"] || cfg.sections["bucardo"] || cfg.sections["counters"] {
		fmt.Printf("workload:   seed demo = %d source(s) + %d target(s), pgbench scale %d, %d transactions per source; %d repeats\n",
			cfg.sources, cfg.targets, cfg.scale, cfg.tx, cfg.repeats)
	}
	if cfg.sections["sinks"] {
		fmt.Printf("sinks:      %s: %d changed pgbench_accounts rows per kick, %d repeats each", strings.Join(cfg.sinks, ", "), cfg.sinksRows, cfg.sinksRepeats)
		if cfg.sinksOnError != "stop" {
			fmt.Printf(", on_error=%s", cfg.sinksOnError)
		}
		if b.sinkInfo != "" {
			fmt.Printf("; %s", b.sinkInfo)
		}
		fmt.Println()
	}
	if cfg.sections["capture"] && b.captureInfo != "" {
		fmt.Printf("capture:    %s\n", b.captureInfo)
	}
	if cfg.sections["peers"] && b.peersInfo != "" {
		fmt.Printf("peers:      %s\n", b.peersInfo)
	}
	fmt.Printf("            median / min / max over the repeats; ratios are paired per repeat (same run, same dbs)\n")
	fmt.Println()
	rep.print(os.Stdout)
	if env.ibexVersion != "" {
		fmt.Printf("\nibex: %s\n", env.ibexVersion)
	}
	code := 0
	if len(rep.failures) > 0 {
		fmt.Println()
		for _, f := range rep.failures {
			fmt.Println("FAIL: " + f)
		}
		code = 1
	}
	if failed != "" {
		fmt.Println()
		fmt.Println("bench: FAILED: " + failed)
		fmt.Fprintln(os.Stderr, "bench: FAILED: "+failed)
		code = 1
	}
	return code
}

type bench struct {
	cfg *config
	env *env
	rep *report
	// seed figures kept for the bucardo comparison
	seedKick, seedSync []float64
	// parFloor is the seed's parallel floor (every receiver at once), per repeat.
	parFloor []float64
	// sinkInfo names the MariaDB and Redis servers the sinks section used.
	sinkInfo string
	// peersInfo describes the peers section's setup.
	peersInfo string
	// captureInfo describes the capture section's setup.
	captureInfo string
}

func (b *bench) runSections(ctx context.Context) error {
	s := b.cfg.sections
	if s["seed"] || s["floor"] {
		if err := b.seed(ctx); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
	}
	if s["seed"] || s["floor"] || s["bucardo"] {
		b.bucardo(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("bucardo: %w", err)
		}
	}
	if s["small"] {
		if err := b.small(ctx); err != nil {
			return fmt.Errorf("small: %w", err)
		}
	}
	if s["capture"] {
		if err := b.capture(ctx); err != nil {
			return fmt.Errorf("capture: %w", err)
		}
	}
	if s["counters"] {
		if err := b.counters(ctx); err != nil {
			return fmt.Errorf("counters: %w", err)
		}
	}
	if s["growth"] {
		if err := b.growth(ctx); err != nil {
			return fmt.Errorf("growth: %w", err)
		}
	}
	if s["backlog"] {
		if err := b.backlog(ctx); err != nil {
			return fmt.Errorf("backlog: %w", err)
		}
	}
	if s["sinks"] {
		if err := b.sinks(ctx); err != nil {
			return fmt.Errorf("sinks: %w", err)
		}
	}
	if s["compare"] {
		if err := b.compareBench(ctx); err != nil {
			return fmt.Errorf("compare: %w", err)
		}
	}
	if s["peers"] {
		if err := b.peers(ctx); err != nil {
			return fmt.Errorf("peers: %w", err)
		}
	}
	return nil
}
