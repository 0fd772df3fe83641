// Command runonce runs one sync once and exits: the entry point of containers, Kubernetes
// CronJobs and plain cron.
//
//	runonce --sync NAME [--timeout D] [--log-level L] [--log-format text|json] [--json]
//
// Exit codes: 0 the run was good or empty, another run of the sync held its lock, or the
// sync is inactive (paused); 1 the run failed; 2 bad usage or configuration.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/flagset"
	"github.com/ibexrepl/ibex/internal/logging"
	"github.com/ibexrepl/ibex/job"
)

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

const usage = `Usage: runonce --sync NAME [flags]

Runs sync NAME once, in this process, and prints what it did: a summary line, or the
result as JSON with --json. The control database is named by IBEX_DSN (libpq conninfo or
URL; the PG* variables and ~/.pgpass also work).

Exit codes:
  0  the run was good or had nothing to do; or another run of the sync already held
     its lock (nothing to do here); or the sync is inactive (paused, not run)
  1  the run failed: the error is printed and recorded ('ibex status NAME')
  2  bad usage or configuration: unknown flag, no --sync, unknown sync, invalid
     IBEX_DSN, ibex control schema not installed or of another version

SIGTERM or SIGINT cancel the run: its open batch rolls back, it is recorded as bad and
the next run goes on from there.

Flags:
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("runonce", flag.ContinueOnError)
	fs.SetOutput(stderr)
	syncName := fs.String("sync", os.Getenv("IBEX_SYNC"), "the sync to run (IBEX_SYNC)")
	timeout := fs.Duration("timeout", 0, "stop taking new batches shortly before this much time has passed, and cancel the run at it (0: no limit)")
	logLevel := fs.String("log-level", flagset.EnvOr("IBEX_LOG_LEVEL", "terse"), "log level: terse, normal, verbose or debug (IBEX_LOG_LEVEL)")
	logFormat := fs.String("log-format", flagset.EnvOr("IBEX_LOG_FORMAT", "text"), "log format: text or json (IBEX_LOG_FORMAT)")
	jsonOut := fs.Bool("json", false, "print the result as JSON")
	force := fs.Bool("force", false, "run the sync even if it is inactive")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		flagset.Print(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return exitOK
		}
		return exitUsage
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "runonce: "+format+"\n", a...)
		return code
	}
	if fs.NArg() > 0 {
		return fail(exitUsage, "unexpected argument %q (give the sync with --sync NAME)", fs.Arg(0))
	}
	if *syncName == "" {
		return fail(exitUsage, "no sync: give --sync NAME or set IBEX_SYNC (see runonce --help)")
	}
	if *timeout < 0 {
		return fail(exitUsage, "--timeout must not be negative")
	}
	logger, err := logging.New(stderr, *logLevel, *logFormat)
	if err != nil {
		return fail(exitUsage, "%v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := job.Options{Logger: logger, Force: *force}
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
		// Stop taking batches a little before the hard limit, so the run ends cleanly.
		opts.Deadline = time.Now().Add(*timeout)
		opts.DeadlineMargin = min(max(*timeout/5, time.Millisecond), 10*time.Second)
	}

	store, err := control.Open(ctx, os.Getenv("IBEX_DSN"), logger)
	if err != nil {
		if strings.Contains(err.Error(), "invalid IBEX_DSN") {
			return fail(exitUsage, "%v", err)
		}
		return fail(exitFailed, "%v", err)
	}
	defer store.Close()

	res, err := job.Run(ctx, store, *syncName, opts)
	if res == nil {
		switch {
		case errors.Is(err, job.ErrInactive):
			if *jsonOut {
				_ = printJSON(stdout, map[string]string{"sync": *syncName, "state": control.StateInactive})
			} else {
				fmt.Fprintf(stdout, "sync %s is inactive: not run (use --force to run it anyway)\n", *syncName)
			}
			return exitOK
		case errors.Is(err, control.ErrNotFound), errors.Is(err, control.ErrNotInstalled),
			errors.Is(err, control.ErrSchemaOld), errors.Is(err, control.ErrSchemaNew):
			return fail(exitUsage, "%v", err)
		}
		return fail(exitFailed, "%v", err)
	}
	if *jsonOut {
		if err := printJSON(stdout, res); err != nil {
			return fail(exitFailed, "%v", err)
		}
	} else {
		fmt.Fprintln(stdout, res.Summary())
		if res.Partial {
			fmt.Fprintln(stdout, "stopped before its deadline: the next run goes on")
		}
	}
	if err != nil || res.State == control.StateBad {
		if err == nil {
			err = errors.New(res.Error)
		}
		return fail(exitFailed, "sync %s failed: %v (see 'ibex status %s')", *syncName, err, *syncName)
	}
	return exitOK
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
