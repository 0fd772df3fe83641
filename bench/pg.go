package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/dbconn"
	"github.com/ibexrepl/ibex/internal/sqlstate"
)

// debug (IBEX_BENCH_DEBUG=1) prints the floor's steps.
var debug = os.Getenv("IBEX_BENCH_DEBUG") == "1"

// prefix names every database the harness creates; it never touches any other. It is
// ibex_bench_, or IBEX_BENCH_PREFIX when that starts with ibex_bench_ (lower-case letters,
// digits and _ after it): two benches on one server then keep to their own databases.
var prefix = benchPrefix()

var prefixRe = regexp.MustCompile(`^ibex_bench_[a-z0-9_]*$`)

func benchPrefix() string {
	p := os.Getenv("IBEX_BENCH_PREFIX")
	if p == "" {
		return "ibex_bench_"
	}
	if !prefixRe.MatchString(p) {
		fmt.Fprintf(os.Stderr, "IBEX_BENCH_PREFIX=%q must start with ibex_bench_ (then lower-case letters, digits, _)\n", p)
		os.Exit(2)
	}
	return p
}

// tableSpec is a replicated pgbench table and its (single int4) key column.
type tableSpec struct{ name, key string }

var pgbenchTables = []tableSpec{
	{"pgbench_accounts", "aid"},
	{"pgbench_branches", "bid"},
	{"pgbench_tellers", "tid"},
}

// syncName is the name of the sync every section creates (one control db per section).
const syncName = "bench"

// changeTable is ibex's change table of a sync's table on a source: ibex."<sync>.public.<table>"
// (internal/capture.Name; short names are not hashed).
func changeTable(table string) string {
	return pgx.Identifier{"ibex", syncName + ".public." + table}.Sanitize()
}

type env struct {
	host, port, user string
	admin            *pgx.Conn
	tmp              string
	ibexBin          string
	schedBin         string // the scheduler, once schedulerBin found or built it
	ibexVersion      string
	pgVersion        string
	loadAtStart      string

	mu      sync.Mutex
	created []string // in creation order
	// extras are the other things the harness created (MariaDB databases, Redis keys,
	// files): undone at the end in reverse order (also on error or Ctrl-C) unless -keep.
	extras []extra
	nextID int
}

// extra is one thing to undo at cleanup.
type extra struct {
	id   int
	what string
	undo func(ctx context.Context) error
}

// onCleanup registers undo (described by what) for the end of the bench; the id runs it
// earlier with undoNow.
func (e *env) onCleanup(what string, undo func(ctx context.Context) error) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.nextID++
	e.extras = append(e.extras, extra{id: e.nextID, what: what, undo: undo})
	return e.nextID
}

// undoNow runs and forgets the cleanups ids (in reverse order), unless keep.
func (e *env) undoNow(ctx context.Context, keep bool, ids ...int) error {
	if keep {
		return nil
	}
	var errs []error
	for i := len(ids) - 1; i >= 0; i-- {
		e.mu.Lock()
		var x *extra
		for j := range e.extras {
			if e.extras[j].id == ids[i] {
				xx := e.extras[j]
				x = &xx
				break
			}
		}
		e.mu.Unlock()
		if x == nil {
			continue
		}
		if err := x.undo(ctx); err != nil {
			// Left registered: the final cleanup (with a fresh context) tries again.
			errs = append(errs, fmt.Errorf("removing %s: %w", x.what, err))
			continue
		}
		e.mu.Lock()
		for j := range e.extras {
			if e.extras[j].id == x.id {
				e.extras = append(e.extras[:j], e.extras[j+1:]...)
				break
			}
		}
		e.mu.Unlock()
	}
	return errors.Join(errs...)
}

func getenv(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func newEnv(ctx context.Context, cfg *config) (*env, error) {
	e := &env{host: getenv("PGHOST", "127.0.0.1"), port: getenv("PGPORT", "5432"), user: getenv("PGUSER", "postgres")}
	e.loadAtStart = "?"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			e.loadAtStart = strings.Join(f[:3], " ")
		}
	}
	for _, tool := range []string{"pgbench", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s is not in PATH: %w", tool, err)
		}
	}
	var err error
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	e.admin, err = pgx.Connect(cctx, e.conninfo("postgres"))
	if err != nil {
		return nil, fmt.Errorf("connecting to PostgreSQL at %s (set PGHOST/PGPORT/PGUSER): %w", e.where(), err)
	}
	if err := e.admin.QueryRow(ctx, `SELECT version()`).Scan(&e.pgVersion); err != nil {
		return nil, fmt.Errorf("SELECT version(): %w", err)
	}
	var super bool
	if err := e.admin.QueryRow(ctx, `SELECT rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&super); err != nil || !super {
		return nil, fmt.Errorf("user %s must be a superuser (the floor uses session_replication_role = replica)", e.user)
	}
	e.tmp, err = os.MkdirTemp("", "ibex-bench-")
	if err != nil {
		return nil, err
	}
	if err := e.buildIbex(ctx, cfg.ibexBin); err != nil {
		_ = os.RemoveAll(e.tmp)
		return nil, err
	}
	return e, nil
}

func (e *env) where() string { return fmt.Sprintf("%s:%s as %s", e.host, e.port, e.user) }

func (e *env) conninfo(db string) string {
	return fmt.Sprintf("host=%s port=%s user=%s dbname=%s", e.host, e.port, e.user, db)
}

func (e *env) buildIbex(ctx context.Context, prebuilt string) error {
	if prebuilt != "" {
		p, err := filepath.Abs(prebuilt)
		if err != nil {
			return err
		}
		if st, err := os.Stat(p); err != nil || st.IsDir() {
			return fmt.Errorf("-ibex %s: not an ibex binary", prebuilt)
		}
		e.ibexBin = p
		progress("using the prebuilt ibex %s", p)
		return e.ibexVersionOf(ctx, "prebuilt "+p)
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	progress("building ibex (go build ./cmd/ibex)")
	if e.ibexBin, err = e.goBuild(ctx, root, "ibex"); err != nil {
		return err
	}
	return e.ibexVersionOf(ctx, "built from ./cmd/ibex in "+root)
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// moduleRoot is the directory of the ibex module the bench runs in.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("run the benchmark from inside the ibex module (make bench)")
	}
	return filepath.Dir(gomod), nil
}

// goBuild builds ./cmd/<name> of the module in root into the temporary directory, as the
// container image and `make build` do (static, without symbol tables: it starts faster),
// and returns the binary's path.
func (e *env) goBuild(ctx context.Context, root, name string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", e.tmp+string(filepath.Separator), "./cmd/"+name)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s (go build ./cmd/%s in %s): %w\n%s", name, name, root, err, b)
	}
	return filepath.Join(e.tmp, name), nil
}

// schedulerBin is the ibex scheduler: the one beside a prebuilt -ibex binary when there is
// one, else built from ./cmd/scheduler (once).
func (e *env) schedulerBin(ctx context.Context) (string, error) {
	if e.schedBin != "" {
		return e.schedBin, nil
	}
	if dir := filepath.Dir(e.ibexBin); dir != e.tmp { // a prebuilt -ibex
		if beside := filepath.Join(dir, "scheduler"); isFile(beside) {
			e.schedBin = beside
			return beside, nil
		}
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", err
	}
	progress("building the ibex scheduler (go build ./cmd/scheduler)")
	if e.schedBin, err = e.goBuild(ctx, root, "scheduler"); err != nil {
		return "", err
	}
	return e.schedBin, nil
}

func (e *env) ibexVersionOf(ctx context.Context, where string) error {
	b, err := exec.CommandContext(ctx, e.ibexBin, "--version").Output()
	if err != nil {
		return fmt.Errorf("%s --version: %w", e.ibexBin, err)
	}
	e.ibexVersion = strings.TrimSpace(string(b)) + ", " + where
	return nil
}

// cleanup drops every database the harness created (unless keep) and removes the ibex binary.
func (e *env) cleanup(keep bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	e.mu.Lock()
	names := append([]string(nil), e.created...)
	extras := append([]extra(nil), e.extras...)
	e.extras = nil
	e.mu.Unlock()
	if keep {
		for _, x := range extras {
			progress("-keep: leaving %s", x.what)
		}
	} else {
		for i := len(extras) - 1; i >= 0; i-- {
			if err := extras[i].undo(ctx); err != nil {
				fmt.Fprintf(os.Stderr, "bench: could not remove %s: %v\n", extras[i].what, err)
			}
		}
	}
	if keep {
		if len(names) > 0 {
			progress("-keep: leaving databases %s", strings.Join(names, " "))
		}
	} else if len(names) > 0 {
		progress("dropping %d databases", len(names))
		if e.admin.IsClosed() {
			if c, err := pgx.Connect(ctx, e.conninfo("postgres")); err == nil {
				e.admin = c
			}
		}
		for i := len(names) - 1; i >= 0; i-- {
			if err := e.drop(ctx, names[i]); err != nil {
				fmt.Fprintf(os.Stderr, "bench: could not drop database %s: %v\n", names[i], err)
			}
		}
	}
	_ = e.admin.Close(ctx)
	_ = os.RemoveAll(e.tmp)
}

func (e *env) drop(ctx context.Context, name string) error {
	if !strings.HasPrefix(name, prefix) {
		return fmt.Errorf("refusing to drop %s: not an %s* database", name, prefix)
	}
	if _, err := e.admin.Exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{name}.Sanitize()+` WITH (FORCE)`); err != nil {
		return fmt.Errorf("DROP DATABASE %s: %w", name, err)
	}
	e.mu.Lock()
	for i, n := range e.created {
		if n == name {
			e.created = append(e.created[:i], e.created[i+1:]...)
			break
		}
	}
	e.mu.Unlock()
	return nil
}

// dropNow drops databases that are no longer needed, unless keep.
func (e *env) dropNow(ctx context.Context, keep bool, names ...string) error {
	if keep {
		return nil
	}
	for _, n := range names {
		if err := e.drop(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

// create (re)creates database name, empty or from template. fileCopy selects
// STRATEGY FILE_COPY, much faster than the default WAL_LOG for large templates.
func (e *env) create(ctx context.Context, name, template string, fileCopy bool) error {
	if err := e.drop(ctx, name); err != nil {
		return err
	}
	sql := `CREATE DATABASE ` + pgx.Identifier{name}.Sanitize()
	if template != "" {
		sql += ` TEMPLATE ` + pgx.Identifier{template}.Sanitize()
		if fileCopy {
			sql += ` STRATEGY FILE_COPY`
		}
	}
	e.mu.Lock()
	e.created = append(e.created, name)
	e.mu.Unlock()
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		_, err = e.admin.Exec(ctx, sql)
		var pe *pgconn.PgError
		// The template is being accessed by other users (autovacuum, a closing session).
		if err == nil || !errors.As(err, &pe) || pe.Code != sqlstate.ObjectInUse {
			break
		}
		time.Sleep(time.Second)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}

func (e *env) checkpoint(ctx context.Context) error {
	if _, err := e.admin.Exec(ctx, `CHECKPOINT`); err != nil {
		return fmt.Errorf("CHECKPOINT: %w", err)
	}
	return nil
}

func (e *env) connect(ctx context.Context, db string) (*pgx.Conn, error) {
	c, err := pgx.Connect(ctx, e.conninfo(db))
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", db, err)
	}
	return c, nil
}

func (e *env) toolEnv(extra ...string) []string {
	return append(os.Environ(), append([]string{"PGHOST=" + e.host, "PGPORT=" + e.port, "PGUSER=" + e.user}, extra...)...)
}

func tail(b []byte, n int) string {
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return s
}

// pgbenchInit runs pgbench -i -s scale on db.
func (e *env) pgbenchInit(ctx context.Context, db string, scale int) error {
	cmd := exec.CommandContext(ctx, "pgbench", "-i", "-q", "-s", strconv.Itoa(scale), db)
	cmd.Env = e.toolEnv()
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench -i -s %d %s: %w\n%s", scale, db, err, tail(b, 2000))
	}
	return nil
}

var tpsRe = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

// pgbench runs pgbench with args on db and returns its TPS.
func (e *env) pgbench(ctx context.Context, db string, args ...string) (float64, error) {
	cmd := exec.CommandContext(ctx, "pgbench", append(args, db)...)
	cmd.Env = e.toolEnv()
	b, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("pgbench %s %s: %w\n%s", strings.Join(args, " "), db, err, tail(b, 2000))
	}
	m := tpsRe.FindSubmatch(b)
	if m == nil {
		return 0, fmt.Errorf("pgbench %s %s: no \"tps = ... (without initial connection time)\" in its output:\n%s", strings.Join(args, " "), db, tail(b, 2000))
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// pgbenchResult is what a pgbench run reported.
type pgbenchResult struct {
	tps float64
	tx  int64 // transactions processed
}

var txRe = regexp.MustCompile(`number of transactions actually processed: ([0-9]+)`)

// pgbenchRun runs pgbench with args on db and returns its TPS and transactions.
func (e *env) pgbenchRun(ctx context.Context, db string, args ...string) (pgbenchResult, error) {
	var res pgbenchResult
	cmd := exec.CommandContext(ctx, "pgbench", append(args, db)...)
	cmd.Env = e.toolEnv()
	b, err := cmd.CombinedOutput()
	if err != nil {
		return res, fmt.Errorf("pgbench %s %s: %w\n%s", strings.Join(args, " "), db, err, tail(b, 2000))
	}
	m, n := tpsRe.FindSubmatch(b), txRe.FindSubmatch(b)
	if m == nil || n == nil {
		return res, fmt.Errorf("pgbench %s %s: no tps or transaction count in its output:\n%s", strings.Join(args, " "), db, tail(b, 2000))
	}
	res.tps, _ = strconv.ParseFloat(string(m[1]), 64)
	res.tx, _ = strconv.ParseInt(string(n[1]), 10, 64)
	return res, nil
}

// walLSN is the server's current WAL flush position, in bytes (pg_walinspect reads no further).
func (e *env) walLSN(ctx context.Context) (int64, error) {
	var n int64
	if err := e.admin.QueryRow(ctx, `SELECT (pg_current_wal_flush_lsn() - '0/0'::pg_lsn)::bigint`).Scan(&n); err != nil {
		return 0, fmt.Errorf("reading the WAL position: %w", err)
	}
	return n, nil
}

// walOfDB sums the WAL records between two positions that touch a relation of database
// oid (pg_walinspect, installed in db), without their full-page images: the WAL a run on
// that database wrote, without the other sessions' of the server (commit records, which
// touch no relation, are left out: capture adds none). With unattributed (a private
// cluster, where nothing else writes), the records that touch no relation (commits,
// running transactions) are counted too: wal_level = logical makes commit records larger.
// Full-page images are left out because their number follows the pages first touched
// since the last checkpoint, so per transaction it falls as a run lasts, and a faster run
// would look cheaper.
func (e *env) walOfDB(ctx context.Context, db string, oid uint32, from, to int64, unattributed bool) (int64, error) {
	c, err := e.connect(ctx, db)
	if err != nil {
		return 0, err
	}
	defer c.Close(context.WithoutCancel(ctx))
	var n int64
	err = c.QueryRow(ctx, `SELECT coalesce(sum(record_length - fpi_length), 0)::bigint FROM pg_get_wal_records_info(('0/0'::pg_lsn + $1::numeric), ('0/0'::pg_lsn + $2::numeric))
WHERE block_ref ~ ('rel [0-9]+/' || $3::text || '/') OR ($4 AND coalesce(block_ref, '') !~ 'rel [0-9]+/')`,
		from, to, strconv.FormatUint(uint64(oid), 10), unattributed).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("reading the WAL of %s: %w", db, err)
	}
	return n, nil
}

// pgbenchAll runs pgbench -n -t tx on every db concurrently and returns their TPS.
func (e *env) pgbenchAll(ctx context.Context, dbs []string, tx int, extra ...string) ([]float64, error) {
	tps := make([]float64, len(dbs))
	errs := make([]error, len(dbs))
	var wg sync.WaitGroup
	for i, db := range dbs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tps[i], errs[i] = e.pgbench(ctx, db, append([]string{"-n", "-t", strconv.Itoa(tx)}, extra...)...)
		}()
	}
	wg.Wait()
	return tps, errors.Join(errs...)
}

// ibex runs the ibex CLI with IBEX_DSN naming control database ctl.
func (e *env) ibex(ctx context.Context, ctl string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, e.ibexBin, args...)
	cmd.Env = e.toolEnv("IBEX_DSN=" + e.conninfo(ctl))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("ibex %s: %w\n%s", strings.Join(args, " "), err, tail(append(out.Bytes(), errb.Bytes()...), 3000))
	}
	return out.String(), nil
}

// setupSync creates control db ctl, installs ibex there and configures sync "bench" over
// dbs (roles "source" or "target") of e's server and the pgbench tables, like the seed demo.
func (e *env) setupSync(ctx context.Context, ctl string, dbs, roles []string) error {
	members := make([]syncMember, len(dbs))
	for i, db := range dbs {
		members[i] = syncMember{dbRef: dbRef{at: e, db: db}, role: roles[i]}
	}
	return e.setupSyncOf(ctx, ctl, members, pgbenchTables)
}

// dbRef is database db of the server that at reaches.
type dbRef struct {
	at *env
	db string
}

// syncMember is one db of a sync, in a role ("source" or "target").
type syncMember struct {
	dbRef
	role string
}

// setupSyncOf creates control db ctl on e's server, installs ibex there and configures
// sync "bench" over members and tables like the seed demo: add db, add table ... herd=,
// add dbgroup, add sync (which installs capture on the sources), autokick off.
func (e *env) setupSyncOf(ctx context.Context, ctl string, members []syncMember, tables []tableSpec) error {
	if err := e.create(ctx, ctl, "", false); err != nil {
		return err
	}
	steps := [][]string{{"install"}}
	var group []string
	for i, m := range members {
		name := fmt.Sprintf("t%d", i+1)
		steps = append(steps, []string{"add", "db", name, "dbname=" + m.db, "host=" + m.at.host, "port=" + m.at.port, "user=" + m.at.user})
		group = append(group, name+":"+m.role)
	}
	add := []string{"add", "table"}
	for _, t := range tables {
		add = append(add, t.name)
	}
	steps = append(steps, append(add, "db=t1", "herd=therd"),
		append([]string{"add", "dbgroup", "tgroup"}, group...),
		[]string{"add", "sync", syncName, "herd=therd", "dbs=tgroup", "autokick=false"})
	for _, s := range steps {
		if _, err := e.ibex(ctx, ctl, s...); err != nil {
			return err
		}
	}
	return nil
}

type kickResult struct {
	wall                        time.Duration // exec to exit
	sync                        time.Duration // the run's duration_ns
	inserts, deletes, conflicts int64
	rssKiB                      int64
	stderr                      []byte // what the kick logged
}

func (k kickResult) rowsPerSec() float64 {
	if k.sync <= 0 {
		return 0
	}
	return float64(k.inserts+k.deletes) / k.sync.Seconds()
}

// kick runs `ibex kick bench --json` and measures it; a run whose state is not good is an
// error.
func (e *env) kick(ctx context.Context, ctl string, env ...string) (kickResult, error) {
	return e.kickWith(ctx, ctl, false, env...)
}

// kickAny is kick that also accepts a run with nothing to do (state empty).
func (e *env) kickAny(ctx context.Context, ctl string, env ...string) (kickResult, error) {
	return e.kickWith(ctx, ctl, true, env...)
}

func (e *env) kickWith(ctx context.Context, ctl string, allowEmpty bool, env ...string) (kickResult, error) {
	var kr kickResult
	cmd := exec.CommandContext(ctx, e.ibexBin, "kick", syncName, "--json")
	cmd.Env = e.toolEnv(append([]string{"IBEX_DSN=" + e.conninfo(ctl)}, env...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	t0 := time.Now()
	err := cmd.Start()
	if err == nil {
		stop := watchRSS(cmd.Process.Pid)
		err = cmd.Wait()
		kr.wall = time.Since(t0)
		kr.rssKiB = stop(cmd.ProcessState)
	}
	var res []struct {
		State          string            `json:"state"`
		AlreadyRunning bool              `json:"already_running"`
		Inserts        int64             `json:"inserts"`
		Deletes        int64             `json:"deletes"`
		Conflicts      int64             `json:"conflicts"`
		Skipped        map[string]string `json:"skipped"`
		Partial        bool              `json:"partial"`
		Duration       int64             `json:"duration_ns"`
		Error          string            `json:"error"`
	}
	jerr := json.Unmarshal(out.Bytes(), &res)
	diag := tail(append(out.Bytes(), errb.Bytes()...), 3000)
	if err != nil {
		return kr, fmt.Errorf("ibex kick %s --json failed: %w\n%s", syncName, err, diag)
	}
	if jerr != nil || len(res) != 1 {
		return kr, fmt.Errorf("ibex kick %s --json: cannot read its JSON result (%v):\n%s", syncName, jerr, diag)
	}
	r := res[0]
	if (r.State != control.StateGood && !(allowEmpty && r.State == control.StateEmpty)) || r.AlreadyRunning || r.Partial || len(r.Skipped) > 0 {
		return kr, fmt.Errorf("ibex kick %s: state %q (already running %v, partial %v, skipped %v, error %q)\n%s",
			syncName, r.State, r.AlreadyRunning, r.Partial, r.Skipped, r.Error, diag)
	}
	kr.sync = time.Duration(r.Duration)
	kr.inserts, kr.deletes, kr.conflicts = r.Inserts, r.Deletes, r.Conflicts
	kr.stderr = errb.Bytes()
	return kr, nil
}

// fingerprint is an md5 fingerprint of a whole table: its row count and the sum of the
// first 60 bits of every row's md5. It is order-independent and needs no memory for
// string_agg, so it also works on 10M-row tables.
func (e *env) fingerprint(ctx context.Context, c *pgx.Conn, table string) (string, error) {
	var s string
	err := c.QueryRow(ctx, `SELECT count(*)::text || ':' || coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0)::text FROM `+
		pgx.Identifier{table}.Sanitize()+` t`).Scan(&s)
	return s, err
}

// converged reports whether every replicated table is identical in all dbs; detail
// names the tables that differ.
func (e *env) converged(ctx context.Context, dbs []string) (bool, string, error) {
	refs := make([]dbRef, len(dbs))
	for i, db := range dbs {
		refs[i] = dbRef{at: e, db: db}
	}
	return convergedOf(ctx, refs, pgbenchTables)
}

// convergedOf reports whether tables are identical in all dbs (which may be on different
// servers); detail names the tables that differ.
func convergedOf(ctx context.Context, dbs []dbRef, tables []tableSpec) (bool, string, error) {
	prints := make([][]string, len(dbs))
	errs := make([]error, len(dbs))
	var wg sync.WaitGroup
	for i, d := range dbs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := d.at.connect(ctx, d.db)
			if err != nil {
				errs[i] = err
				return
			}
			defer c.Close(context.WithoutCancel(ctx))
			for _, t := range tables {
				fp, err := d.at.fingerprint(ctx, c, t.name)
				if err != nil {
					errs[i] = fmt.Errorf("fingerprint of %s in %s: %w", t.name, d.db, err)
					return
				}
				prints[i] = append(prints[i], fp)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return false, "", err
	}
	var bad []string
	for ti, t := range tables {
		var per []string
		same := true
		for i := range dbs {
			per = append(per, dbs[i].db+"="+prints[i][ti])
			same = same && prints[i][ti] == prints[0][ti]
		}
		if !same {
			bad = append(bad, t.name+" differs: "+strings.Join(per, " "))
		}
	}
	return len(bad) == 0, strings.Join(bad, "; "), nil
}

// keySet is, per table, a list of changed keys.
type keySet map[string][]int32

// readKeys reads the distinct changed keys of every replicated table from sync bench's
// change tables on source db.
func (e *env) readKeys(ctx context.Context, db string) (keySet, error) {
	c, err := e.connect(ctx, db)
	if err != nil {
		return nil, err
	}
	defer c.Close(context.WithoutCancel(ctx))
	ks := keySet{}
	for _, t := range pgbenchTables {
		rows, _ := c.Query(ctx, `SELECT DISTINCT `+pgx.Identifier{t.key}.Sanitize()+` FROM `+changeTable(t.name))
		keys, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			return nil, fmt.Errorf("reading changed keys of %s from %s in %s: %w", t.name, changeTable(t.name), db, err)
		}
		ks[t.name] = keys
	}
	return ks, nil
}

// ownKeys gives every changed key to one source (the first that changed it): the rows a
// correct sync writes into every other db, each once.
func ownKeys(perSource []keySet) []keySet {
	out := make([]keySet, len(perSource))
	seen := map[string]map[int32]bool{}
	for i, ks := range perSource {
		out[i] = keySet{}
		for _, t := range pgbenchTables {
			if seen[t.name] == nil {
				seen[t.name] = map[int32]bool{}
			}
			for _, k := range ks[t.name] {
				if !seen[t.name][k] {
					seen[t.name][k] = true
					out[i][t.name] = append(out[i][t.name], k)
				}
			}
		}
	}
	return out
}

func arrayLiteral(keys []int32) string {
	var b strings.Builder
	b.Grow(len(keys) * 8)
	b.WriteString("'{")
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(int64(k), 10))
	}
	b.WriteString("}'::int4[]")
	return b.String()
}

type floorResult struct {
	dur            time.Duration
	deleted, wrote int64
}

func (f floorResult) rowsPerSec() float64 {
	if f.dur <= 0 {
		return 0
	}
	return float64(f.deleted+f.wrote) / f.dur.Seconds()
}

// floor applies the same changed rows by plain SQL, no replication logic: every db in
// dbs receives, in one transaction with session_replication_role = replica, for every
// source (srcIdx[i] is the index in dbs of source i) other than itself, DELETE ... WHERE
// key = ANY($1) and COPY FROM STDIN fed by COPY (SELECT ...) TO STDOUT on that source.
// Connections are opened before the clock starts.
//
// With parallel false the receivers are done one after another (the Bucardo report's
// floor), each reading from one session per source. With parallel true every receiver has
// its own session, and its own reading session on every source, and all receivers work at
// once: ibex applies the receivers of a run concurrently, so that is its honest limit.
func (e *env) floor(ctx context.Context, dbs []string, srcIdx []int, owned []keySet, parallel bool) (floorResult, error) {
	var fr floorResult
	var all []*pgx.Conn
	defer func() {
		for _, c := range all {
			_ = c.Close(context.WithoutCancel(ctx))
		}
	}()
	connect := func(db string) (*pgx.Conn, error) {
		c, err := e.connect(ctx, db)
		if err != nil {
			return nil, err
		}
		all = append(all, c)
		// The same session settings as ibex's sessions, which read as well as write: a read
		// prunes the pages it reads, and right after a checkpoint that writes them whole to
		// the WAL. Compressed where the role may set it.
		if _, err := c.Exec(ctx, dbconn.WALCompressionSQL(dbconn.ServerMajor(c.PgConn()))); err != nil {
			return nil, fmt.Errorf("floor: wal_compression in %s: %w", db, err)
		}
		return c, nil
	}
	// recv[r] writes into dbs[r]; reads[r][i] reads from dbs[i] for receiver r (the same
	// connections for every receiver when serial).
	recv := make([]*pgx.Conn, len(dbs))
	reads := make([][]*pgx.Conn, len(dbs))
	for i, db := range dbs {
		c, err := connect(db)
		if err != nil {
			return fr, err
		}
		recv[i] = c
	}
	for r := range dbs {
		if !parallel {
			reads[r] = recv
			continue
		}
		reads[r] = make([]*pgx.Conn, len(dbs))
		for _, s := range srcIdx {
			if s == r {
				continue
			}
			c, err := connect(dbs[s])
			if err != nil {
				return fr, err
			}
			reads[r][s] = c
		}
	}
	type step struct {
		src             int
		table, del      string
		keys            []int32
		copyOut, copyIn string
	}
	var steps []step
	for _, t := range pgbenchTables {
		tbl, key := pgx.Identifier{t.name}.Sanitize(), pgx.Identifier{t.key}.Sanitize()
		for s, ks := range owned {
			if len(ks[t.name]) == 0 {
				continue
			}
			steps = append(steps, step{src: srcIdx[s], table: t.name, keys: ks[t.name],
				del: `DELETE FROM ` + tbl + ` WHERE ` + key + ` = ANY($1)`,
				// ARRAY(SELECT unnest(literal)) rather than the bare literal: the planner then
				// sees one runtime array instead of estimating every element of a 10k-element
				// constant, which here costs about 3x the copy itself.
				copyOut: `COPY (SELECT * FROM ` + tbl + ` WHERE ` + key + ` = ANY(ARRAY(SELECT unnest(` + arrayLiteral(ks[t.name]) + `)))) TO STDOUT`,
				copyIn:  `COPY ` + tbl + ` FROM STDIN`})
		}
	}
	// receive applies every step into dbs[r] in one transaction; it adds to *got.
	receive := func(r int, got *floorResult) error {
		rc := recv[r]
		if _, err := rc.Exec(ctx, `BEGIN`); err != nil {
			return fmt.Errorf("floor: BEGIN in %s: %w", dbs[r], err)
		}
		// The generic plan of DELETE ... = ANY($1) skips the per-element estimates a custom
		// plan makes for a large array (3-4x faster here): a floor is the cheapest plain SQL.
		for _, set := range []string{`SET LOCAL session_replication_role = replica`, `SET LOCAL plan_cache_mode = force_generic_plan`} {
			if _, err := rc.Exec(ctx, set); err != nil {
				return fmt.Errorf("floor: %s in %s: %w", set, dbs[r], err)
			}
		}
		for _, st := range steps {
			if st.src == r {
				continue
			}
			ts := time.Now()
			tag, err := rc.Exec(ctx, st.del, st.keys)
			if err != nil {
				return fmt.Errorf("floor: DELETE from %s in %s: %w", st.table, dbs[r], err)
			}
			got.deleted += tag.RowsAffected()
			td := time.Now()
			n, err := pipeCopy(ctx, reads[r][st.src], rc, st.copyOut, st.copyIn)
			if err != nil {
				return fmt.Errorf("floor: COPY %s from %s into %s: %w", st.table, dbs[st.src], dbs[r], err)
			}
			got.wrote += n
			if debug {
				progress("  floor %s <- %s %s: %d keys, delete %.3f s, copy %d rows %.3f s", dbs[r], dbs[st.src], st.table, len(st.keys),
					td.Sub(ts).Seconds(), n, time.Since(td).Seconds())
			}
		}
		tc := time.Now()
		if _, err := rc.Exec(ctx, `COMMIT`); err != nil {
			return fmt.Errorf("floor: COMMIT in %s: %w", dbs[r], err)
		}
		if debug {
			progress("  floor %s: COMMIT %.3f s", dbs[r], time.Since(tc).Seconds())
		}
		return nil
	}
	var receivers []int
	for r := range dbs {
		for _, st := range steps {
			if st.src != r {
				receivers = append(receivers, r)
				break
			}
		}
	}
	t0 := time.Now()
	if !parallel {
		for _, r := range receivers {
			if err := receive(r, &fr); err != nil {
				return fr, err
			}
		}
		fr.dur = time.Since(t0)
		return fr, nil
	}
	got := make([]floorResult, len(dbs))
	errs := make([]error, len(dbs))
	var wg sync.WaitGroup
	for _, r := range receivers {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			errs[r] = receive(r, &got[r])
		}(r)
	}
	wg.Wait()
	fr.dur = time.Since(t0)
	if err := errors.Join(errs...); err != nil {
		return fr, err
	}
	for _, g := range got {
		fr.deleted += g.deleted
		fr.wrote += g.wrote
	}
	return fr, nil
}

// pipeCopy streams COPY ... TO STDOUT on src into COPY ... FROM STDIN on dst.
func pipeCopy(ctx context.Context, src, dst *pgx.Conn, copyOut, copyIn string) (int64, error) {
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		// CopyTo writes one row per Write and CopyFrom sends one CopyData message (a
		// syscall) per Read: without a buffer, a million rows are a million tiny writes.
		bw := bufio.NewWriterSize(pw, 64<<10)
		_, err := src.PgConn().CopyTo(ctx, bw, copyOut)
		if err == nil {
			err = bw.Flush()
		}
		_ = pw.CloseWithError(err) // nil: the reader sees EOF
		errc <- err
	}()
	tag, err := dst.PgConn().CopyFrom(ctx, pr, copyIn)
	_ = pr.CloseWithError(errors.New("COPY FROM ended")) // unblocks the writer if COPY FROM stopped early
	if serr := <-errc; serr != nil && err == nil {
		err = fmt.Errorf("COPY TO on the source: %w", serr)
	}
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}
