// Command scheduler is ibex's bundled daemon: it runs every active sync on its schedule
// and, with autokick, within moments of a change. See docs/scheduler.md.
//
//	scheduler [--listen :9187] [--reload 5s] [--shutdown-timeout 60s] [--keep-sessions 1m] [--log-level L] [--log-format text|json]
//
// Exit codes: 0 after SIGTERM/SIGINT once running runs ended; 1 it could not start (control
// database unreachable, address in use); 2 bad usage or configuration.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/flagset"
	"github.com/ibexrepl/ibex/internal/logging"
	"github.com/ibexrepl/ibex/internal/scheduler"
)

const usage = `Usage: scheduler [flags]

Runs every active sync of the ibex control database (IBEX_DSN) on the schedule stored with
it (ibex add/update sync NAME schedule=30s or schedule="*/5 * * * *") and, for syncs with
autokick=true, within moments of a committed change on one of their sources. The sync
list is read again every --reload: added, changed, paused (status=inactive) and removed
syncs take effect without a restart. Several schedulers may run at once: a sync's runs
never overlap, whichever process starts them.

Serves /metrics (Prometheus) and /healthz on --listen. On SIGTERM or SIGINT it starts no
new run, waits for running ones (at most --shutdown-timeout, then cancels them: their open
batches roll back) and exits 0.

Exit codes: 0 stopped by a signal; 1 could not start (control database unreachable,
address in use); 2 bad usage or configuration (unknown flag, invalid IBEX_DSN, ibex
control schema not installed or of another version).

Flags:
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("scheduler", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dsn := fs.String("dsn", "", "control database conninfo or URL (default IBEX_DSN, then the PG* variables)")
	listen := fs.String("listen", flagset.EnvOr("IBEX_LISTEN", scheduler.DefaultListen), "address of /metrics and /healthz; empty: none (IBEX_LISTEN)")
	reload := fs.Duration("reload", scheduler.DefaultReload, "how often to read the sync list again")
	shutdown := fs.Duration("shutdown-timeout", scheduler.DefaultShutdownTimeout, "on SIGTERM, how long running runs may go on before they are cancelled")
	lagEvery := fs.Duration("lag-every", scheduler.DefaultLagEvery, "how often to read every sync's pending changes for /metrics (0: never)")
	compareEvery := fs.Duration("compare-every", 0, "compare every active sync's tables this often and export ibex_compare_differences (0: never)")
	keepSessions := fs.Duration("keep-sessions", scheduler.DefaultKeepSessions, "how long the sessions of a run to the syncs' dbs are kept, idle and reset, for the next runs (0: none, each run opens its own)")
	logLevel := fs.String("log-level", flagset.EnvOr("IBEX_LOG_LEVEL", "normal"), "log level: terse, normal, verbose or debug (IBEX_LOG_LEVEL)")
	logFormat := fs.String("log-format", flagset.EnvOr("IBEX_LOG_FORMAT", "text"), "log format: text or json (IBEX_LOG_FORMAT)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		flagset.Print(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "scheduler: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *lagEvery == 0 {
		*lagEvery = -1 // never
	}
	if *keepSessions <= 0 {
		*keepSessions = -1 // none
	}
	if *reload <= 0 || *shutdown <= 0 {
		fmt.Fprintln(stderr, "scheduler: --reload and --shutdown-timeout must be positive")
		return 2
	}
	logger, err := logging.New(stderr, *logLevel, *logFormat)
	if err != nil {
		fmt.Fprintln(stderr, "scheduler: "+err.Error())
		return 2
	}
	if *dsn == "" {
		*dsn = os.Getenv("IBEX_DSN")
	}
	s := scheduler.New(scheduler.Config{
		DSN:             *dsn,
		Reload:          *reload,
		ShutdownTimeout: *shutdown,
		Listen:          *listen,
		Logger:          logger,
		LagEvery:        *lagEvery,
		CompareEvery:    *compareEvery,
		KeepSessions:    *keepSessions,
	})
	if err := s.Run(ctx); err != nil {
		fmt.Fprintln(stderr, "scheduler: "+err.Error())
		if errors.Is(err, control.ErrNotInstalled) || errors.Is(err, control.ErrSchemaOld) ||
			errors.Is(err, control.ErrSchemaNew) || strings.Contains(err.Error(), "invalid IBEX_DSN") {
			return 2
		}
		return 1
	}
	return 0
}
