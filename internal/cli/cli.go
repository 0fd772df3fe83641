// Package cli is the ibex admin command line: Bucardo's commands and key=value syntax
// over the control database.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/logging"
)

// Version is set at build time.
var Version = "dev"

// ExitError carries a process exit code.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

type app struct {
	stdout, stderr io.Writer
	started        bool // a command's own code began (cobra's parsing and checks passed)
	logLevel       string
	logFormat      string
	dsn            string
	jsonOut        bool
	noLag          bool           // status: do not read the sources' pending changes
	filter         catalog.Filter // add all tables/sequences: Bucardo's -t, -T, -n, -N
	logger         *slog.Logger
	store          *control.Store
}

// Main runs the ibex command line and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a := &app{stdout: stdout, stderr: stderr}
	root := a.root()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if a.store != nil {
		a.store.Close()
	}
	if err == nil {
		return 0
	}
	var ee *ExitError
	switch {
	case errors.As(err, &ee):
		fmt.Fprintln(stderr, "ibex: "+err.Error())
		return ee.Code
	case !a.started:
		// cobra's own usage errors (unknown command or flag, wrong number of arguments)
		// come before any command runs: bad usage, exit 2 like ibex's own.
		fmt.Fprintf(stderr, "ibex: %v (see '%s --help')\n", err, cmd.CommandPath())
		return 2
	}
	fmt.Fprintln(stderr, "ibex: "+err.Error())
	return 1
}

func (a *app) root() *cobra.Command {
	root := &cobra.Command{
		Use:   "ibex",
		Short: "ibex: multi-master replication for PostgreSQL, run as stateless jobs",
		Long: `ibex replicates tables between PostgreSQL databases, in Bucardo's words: dbs, tables
grouped in herds, dbgroups of sources and targets, and syncs. Every run of a sync is a
stateless, idempotent job started by 'ibex kick', runonce, the scheduler or a Lambda.

The control database is named by IBEX_DSN (libpq conninfo or URL; PG* variables and
~/.pgpass also work).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			a.started = true
			l, err := logging.New(a.stderr, a.logLevel, a.logFormat)
			if err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			a.logger = l
			return nil
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.logLevel, "log-level", envOr("IBEX_LOG_LEVEL", "terse"), "log level: terse, normal, verbose or debug (IBEX_LOG_LEVEL)")
	pf.StringVar(&a.logFormat, "log-format", envOr("IBEX_LOG_FORMAT", "text"), "log format: text or json (IBEX_LOG_FORMAT)")
	pf.StringVar(&a.dsn, "dsn", "", "control database conninfo or URL (default IBEX_DSN, then PG* variables)")
	root.AddCommand(a.installCmd(), a.upgradeCmd(), a.addCmd(), a.updateCmd(), a.removeCmd(), a.listCmd(),
		a.validateCmd(), a.ddlCmd(), a.kickCmd(), a.statusCmd(), a.conflictsCmd(), a.exportCmd(), a.applyCmd(),
		a.compareCmd(), a.repairCmd())
	return root
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// open connects to the control database and, unless installing, checks its version.
func (a *app) open(ctx context.Context, check bool) (*control.Store, error) {
	if a.store != nil {
		return a.store, nil
	}
	dsn := a.dsn
	if dsn == "" {
		dsn = os.Getenv("IBEX_DSN")
	}
	s, err := control.Open(ctx, dsn, a.logger)
	if err != nil {
		return nil, err
	}
	if check {
		if err := s.Check(ctx); err != nil {
			s.Close()
			return nil, err
		}
	}
	a.store = s
	return s, nil
}

func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (a *app) say(format string, args ...any) { fmt.Fprintf(a.stdout, format+"\n", args...) }

// usageErr is a bad-usage error: exit code 2.
func usageErr(format string, args ...any) error {
	return &ExitError{Code: 2, Err: fmt.Errorf(format, args...)}
}

// kv is parsed key=value arguments, in order, with the positional words apart.
type kv struct {
	words []string
	keys  []string
	vals  map[string]string
}

func parseKV(args []string) kv {
	out := kv{vals: map[string]string{}}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" || strings.ContainsAny(k, " :") {
			out.words = append(out.words, a)
			continue
		}
		k = strings.ToLower(k)
		if _, dup := out.vals[k]; !dup {
			out.keys = append(out.keys, k)
		}
		out.vals[k] = v
	}
	return out
}

func (p kv) has(k string) bool { _, ok := p.vals[k]; return ok }

// take removes and returns the first present key among names.
func (p *kv) take(names ...string) (string, bool) {
	for _, n := range names {
		if v, ok := p.vals[n]; ok {
			delete(p.vals, n)
			return v, true
		}
	}
	return "", false
}

// rest returns the keys not taken, sorted.
func (p kv) rest() []string {
	var out []string
	for k := range p.vals {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// table prints rows under headers in Bucardo's "a | b | c" layout.
func printTable(w io.Writer, headers []string, rows [][]string) {
	widths := make([]int, len(headers))
	for i, h := range headers {
		widths[i] = len([]rune(h))
	}
	for _, r := range rows {
		for i, c := range r {
			if n := len([]rune(c)); n > widths[i] {
				widths[i] = n
			}
		}
	}
	line := func(cells []string, sep string) string {
		var b strings.Builder
		for i, c := range cells {
			if i > 0 {
				b.WriteString(sep)
			}
			b.WriteString(c)
			if i < len(cells)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-len([]rune(c))))
			}
		}
		return strings.TrimRight(b.String(), " ")
	}
	fmt.Fprintln(w, line(headers, "   "))
	for _, r := range rows {
		fmt.Fprintln(w, line(r, " | "))
	}
}
