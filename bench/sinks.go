package main

// ---- 7: sinks: targets that are not PostgreSQL against their own bulk paths

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	_ "modernc.org/sqlite" // driver "sqlite"
)

// accountsCols are pgbench_accounts' columns, key first (the order of COPY and of the sinks' streams).
var accountsCols = []string{"aid", "bid", "abalance", "filler"}

const accountsCopyCols = "aid, bid, abalance, filler"

// acct is one pgbench_accounts row as COPY text fields (null marks \N).
type acct struct {
	f    [4]string
	null [4]bool
	aid  int64
}

// parseCopy parses COPY text rows of pgbench_accounts.
func parseCopy(raw []byte) ([]acct, error) {
	var rows []acct
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		if i < 0 {
			return nil, errors.New("COPY text: last line not terminated")
		}
		line := string(raw[:i])
		raw = raw[i+1:]
		parts := strings.Split(line, "\t")
		if len(parts) != 4 {
			return nil, fmt.Errorf("COPY text: %d fields in %q", len(parts), line)
		}
		var a acct
		for j, p := range parts {
			if p == `\N` {
				a.null[j] = true
				continue
			}
			a.f[j] = unescapeCopy(p)
		}
		aid, err := strconv.ParseInt(a.f[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("COPY text: aid %q: %w", a.f[0], err)
		}
		a.aid = aid
		rows = append(rows, a)
	}
	return rows, nil
}

// unescapeCopy undoes COPY text's backslash escapes (\\, \t, \n, \r, \b, \f, \v; octal
// and hex escapes do not occur in COPY TO output).
func unescapeCopy(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch s[i] {
		case 't':
			b.WriteByte('\t')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'v':
			b.WriteByte('\v')
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func randomHex() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// sinkTarget is one target of a sink type: what `ibex add db` gets, and a count of its
// pgbench_accounts rows.
type sinkTarget struct {
	addDB []string // after "add db NAME"
	where string   // for messages
	count func(ctx context.Context) (int64, error)
}

// sinkFloor is the floor of a sink type: its own bulk path from a plain Go client.
type sinkFloor interface {
	// write applies rows (raw: their COPY text) in one transaction (or one file).
	write(ctx context.Context, raw []byte, rows []acct) error
	count(ctx context.Context) (int64, error)
	close()
}

// sinkServices are the connections of the sinks section to the services it needs.
type sinkServices struct {
	maria   *sql.DB // nil: not reachable
	mariaNo string  // why MariaDB is not measured
	rdb     *redis.Client
	redisNo string
	dir     string // temp dir of the sqlite files and flatfile dirs
}

func (b *bench) sinkServices(ctx context.Context) (*sinkServices, error) {
	cfg := b.cfg
	sv := &sinkServices{}
	want := func(s string) bool {
		for _, x := range cfg.sinks {
			if x == s {
				return true
			}
		}
		return false
	}
	if want("mariadb") {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		db, err := sql.Open("mysql", cfg.mariadbUser+"@tcp("+cfg.mariadbAddr+")/?timeout=5s")
		if err == nil {
			err = db.PingContext(cctx)
		}
		var infile string
		if err == nil {
			err = db.QueryRowContext(cctx, `SELECT @@local_infile`).Scan(&infile)
		}
		cancel()
		switch {
		case err != nil:
			sv.mariaNo = fmt.Sprintf("MariaDB not reachable at %s as %s (-mariadb, -mariadb-user): %v", cfg.mariadbAddr, cfg.mariadbUser, err)
		case infile != "1" && !strings.EqualFold(infile, "ON"):
			sv.mariaNo = fmt.Sprintf("MariaDB at %s has local_infile=%s: the sink and the floor need ON", cfg.mariadbAddr, infile)
		default:
			sv.maria = db
			b.env.onCleanup("the MariaDB connection", func(context.Context) error { return db.Close() })
		}
		if sv.maria == nil && db != nil {
			_ = db.Close()
		}
	}
	if want("redis") {
		rdb := redis.NewClient(&redis.Options{Addr: cfg.redisAddr, DB: 0, DialTimeout: 5 * time.Second, ReadTimeout: 60 * time.Second, WriteTimeout: 60 * time.Second})
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := rdb.Ping(cctx).Err()
		cancel()
		if err != nil {
			sv.redisNo = fmt.Sprintf("Redis not reachable at %s (-redis): %v", cfg.redisAddr, err)
			_ = rdb.Close()
		} else {
			sv.rdb = rdb
			b.env.onCleanup("the Redis connection", func(context.Context) error { return rdb.Close() })
		}
	}
	var info []string
	if sv.maria != nil {
		var v string
		if err := sv.maria.QueryRowContext(ctx, `SELECT VERSION()`).Scan(&v); err == nil {
			info = append(info, "MariaDB "+v+" at "+cfg.mariadbAddr)
		}
	}
	if sv.rdb != nil {
		if s, err := sv.rdb.Info(ctx, "server").Result(); err == nil {
			for _, l := range strings.Split(s, "\n") {
				if v, ok := strings.CutPrefix(strings.TrimSpace(l), "redis_version:"); ok {
					info = append(info, "Redis "+v+" at "+cfg.redisAddr)
				}
			}
		}
	}
	b.sinkInfo = strings.Join(info, ", ")
	dir, err := os.MkdirTemp("", "ibex-bench-sinks-")
	if err != nil {
		return nil, err
	}
	sv.dir = dir
	b.env.onCleanup("directory "+dir, func(context.Context) error { return os.RemoveAll(dir) })
	return sv, nil
}

// sinkPair makes, for one repeat, ibex's target and the floor's (another MariaDB database,
// file, prefix or dir), registering their removal; ids are the cleanups.
func (b *bench) sinkPair(ctx context.Context, sv *sinkServices, kind string) (tgt sinkTarget, mkFloor func(ctx context.Context) (sinkFloor, error), ids []int, err error) {
	cfg := b.cfg
	r := randomHex()
	switch kind {
	case "mariadb":
		host, port, _ := strings.Cut(cfg.mariadbAddr, ":")
		if port == "" {
			port = "3306"
		}
		db, fdb := prefix+"sink_"+r, prefix+"sinkf_"+r
		for _, d := range []string{db, fdb} {
			ids = append(ids, b.env.onCleanup("MariaDB database "+d, func(ctx context.Context) error {
				_, err := sv.maria.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+d+"`")
				return err
			}))
			if _, err := sv.maria.ExecContext(ctx, "CREATE DATABASE `"+d+"` CHARACTER SET utf8mb4"); err != nil {
				return tgt, nil, ids, fmt.Errorf("MariaDB: CREATE DATABASE %s: %w", d, err)
			}
		}
		tgt = sinkTarget{addDB: []string{"type=mariadb", "host=" + host, "port=" + port, "dbname=" + db, "user=" + cfg.mariadbUser},
			where: "MariaDB database " + db,
			count: func(ctx context.Context) (int64, error) { return mariaCount(ctx, sv.maria, db) }}
		mkFloor = func(ctx context.Context) (sinkFloor, error) {
			if _, err := sv.maria.ExecContext(ctx, "CREATE TABLE `"+fdb+"`.`pgbench_accounts` LIKE `"+db+"`.`pgbench_accounts`"); err != nil {
				return nil, fmt.Errorf("MariaDB: creating the floor's table like ibex's: %w", err)
			}
			return newMariaFloor(ctx, cfg, fdb)
		}
	case "sqlite":
		path, fpath := filepath.Join(sv.dir, "ibex_"+r+".db"), filepath.Join(sv.dir, "floor_"+r+".db")
		for _, p := range []string{path, fpath} {
			ids = append(ids, b.env.onCleanup("SQLite file "+p, func(context.Context) error {
				var errs []error
				for _, f := range []string{p, p + "-journal", p + "-wal", p + "-shm"} {
					if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
						errs = append(errs, err)
					}
				}
				return errors.Join(errs...)
			}))
		}
		tgt = sinkTarget{addDB: []string{"type=sqlite", "path=" + path}, where: "SQLite file " + path,
			count: func(ctx context.Context) (int64, error) { return sqliteCount(ctx, path) }}
		mkFloor = func(ctx context.Context) (sinkFloor, error) { return newSQLiteFloor(ctx, path, fpath) }
	case "redis":
		p, fp := "ibex_bench:"+r+":", "ibex_bench:"+r+"f:"
		ids = append(ids, b.env.onCleanup("Redis keys ibex_bench:"+r+"*", func(ctx context.Context) error {
			_, err := redisScan(ctx, sv.rdb, "ibex_bench:"+r+"*", true)
			return err
		}))
		host, port, _ := strings.Cut(cfg.redisAddr, ":")
		if port == "" {
			port = "6379"
		}
		tgt = sinkTarget{addDB: []string{"type=redis", "host=" + host, "port=" + port, "db=0", "prefix=" + p}, where: "Redis prefix " + p,
			count: func(ctx context.Context) (int64, error) {
				return redisScan(ctx, sv.rdb, p+"public.pgbench_accounts:*", false)
			}}
		mkFloor = func(context.Context) (sinkFloor, error) { return &redisFloor{rdb: sv.rdb, prefix: fp}, nil }
	case "flatfile":
		d, fd := filepath.Join(sv.dir, "ibex_"+r), filepath.Join(sv.dir, "floor_"+r)
		for _, x := range []string{d, fd} {
			ids = append(ids, b.env.onCleanup("directory "+x, func(context.Context) error { return os.RemoveAll(x) }))
		}
		if err := os.Mkdir(fd, 0o700); err != nil {
			return tgt, nil, ids, err
		}
		tgt = sinkTarget{addDB: []string{"type=flatfile", "path=" + d}, where: "flatfile dir " + d,
			count: func(ctx context.Context) (int64, error) { return flatfileIndexCount(ctx, d) }}
		mkFloor = func(context.Context) (sinkFloor, error) { return &fileFloor{dir: fd}, nil }
	default:
		return tgt, nil, nil, fmt.Errorf("unknown sink %q", kind)
	}
	return tgt, mkFloor, ids, nil
}

// setupSinkSync creates control db ctl and sync bench: src (PostgreSQL, source) -> t2 (a
// db of another type, target), herd pgbench_accounts only, onetimecopy=1 (the first kick
// copies the whole table), on_error onError, then `ibex validate bench --create-targets`.
func (e *env) setupSinkSync(ctx context.Context, ctl, src string, tgt sinkTarget, onetimecopy bool, onError string) error {
	if err := e.create(ctx, ctl, "", false); err != nil {
		return err
	}
	otc := "0"
	if onetimecopy {
		otc = "1"
	}
	steps := [][]string{{"install"},
		{"add", "db", "t1", "dbname=" + src, "host=" + e.host, "port=" + e.port, "user=" + e.user},
		append([]string{"add", "db", "t2"}, tgt.addDB...),
		{"add", "table", "pgbench_accounts", "db=t1", "herd=therd"},
		{"add", "dbgroup", "tgroup", "t1:source", "t2:target"},
		{"add", "sync", syncName, "herd=therd", "dbs=tgroup", "autokick=false", "onetimecopy=" + otc, "on_error=" + onError},
		{"validate", syncName, "--create-targets"}}
	for _, s := range steps {
		if _, err := e.ibex(ctx, ctl, s...); err != nil {
			return err
		}
	}
	return nil
}

// updateAccounts runs UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= n
// on db, in committed chunks of 100,000 rows.
func (e *env) updateAccounts(ctx context.Context, label, db string, n int) error {
	const chunk = 100000
	c, err := e.connect(ctx, db)
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		if n > chunk {
			progress("%s: UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid in (%d, %d] on %s", label, lo, hi, db)
		}
		if _, err := c.Exec(ctx, `UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid > $1 AND aid <= $2`, lo, hi); err != nil {
			return fmt.Errorf("UPDATE pgbench_accounts on %s: %w", db, err)
		}
	}
	return nil
}

func (e *env) countAccounts(ctx context.Context, db string) (int64, error) {
	c, err := e.connect(ctx, db)
	if err != nil {
		return 0, err
	}
	defer c.Close(context.WithoutCancel(ctx))
	var n int64
	if err := c.QueryRow(ctx, `SELECT count(*) FROM pgbench_accounts`).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting pgbench_accounts in %s: %w", db, err)
	}
	return n, nil
}

// runFloor reads the rows aid <= n from src (COPY ... TO STDOUT) and writes them with f,
// timed from the COPY on (the connections are open before).
func runFloor(ctx context.Context, src *pgx.Conn, f sinkFloor, n int) (time.Duration, int, error) {
	t0 := time.Now()
	var buf bytes.Buffer
	if _, err := src.PgConn().CopyTo(ctx, &buf, `COPY (SELECT `+accountsCopyCols+` FROM pgbench_accounts WHERE aid <= `+strconv.Itoa(n)+`) TO STDOUT`); err != nil {
		return 0, 0, fmt.Errorf("floor: COPY TO on the source: %w", err)
	}
	rows, err := parseCopy(buf.Bytes())
	if err != nil {
		return 0, 0, err
	}
	if err := f.write(ctx, buf.Bytes(), rows); err != nil {
		return 0, 0, err
	}
	return time.Since(t0), len(rows), nil
}

func (b *bench) sinks(ctx context.Context) error {
	cfg := b.cfg
	sv, err := b.sinkServices(ctx)
	if err != nil {
		return err
	}
	const sec = "sinks"
	scale := max(1, (cfg.sinksRows+99999)/100000)
	tmpl, src, fsrc, ctl := prefix+"sk_tmpl", prefix+"sk_src", prefix+"sk_fsrc", prefix+"sk_ctl"
	made := false
	for _, kind := range cfg.sinks {
		switch {
		case kind == "mariadb" && sv.maria == nil:
			b.rep.text(sec, kind, "not measured", sv.mariaNo)
			progress("sinks: %s: not measured: %s", kind, sv.mariaNo)
			continue
		case kind == "redis" && sv.rdb == nil:
			b.rep.text(sec, kind, "not measured", sv.redisNo)
			progress("sinks: %s: not measured: %s", kind, sv.redisNo)
			continue
		}
		if !made {
			progress("sinks: pgbench -i -s %d into %s (%d accounts rows)", scale, tmpl, scale*100000)
			if err := b.env.create(ctx, tmpl, "", false); err != nil {
				return err
			}
			if err := b.env.pgbenchInit(ctx, tmpl, scale); err != nil {
				return err
			}
			made = true
		}
		var initWall, initSync, initRSS, wall, sync, floor, rss, moved []float64
		good, fails := 0, len(b.rep.failures)
		var srcRows int64
		for r := 1; r <= cfg.sinksRepeats; r++ {
			label := fmt.Sprintf("sinks %s repeat %d/%d", kind, r, cfg.sinksRepeats)
			tgt, mkFloor, ids, err := b.sinkPair(ctx, sv, kind)
			if err != nil {
				return err
			}
			progress("%s: %s and %s from %s (FILE_COPY); sync %s -> %s (herd pgbench_accounts, onetimecopy=1), validate --create-targets", label, src, fsrc, tmpl, src, tgt.where)
			for _, db := range []string{src, fsrc} {
				if err := b.env.create(ctx, db, tmpl, true); err != nil {
					return err
				}
			}
			if err := b.env.setupSinkSync(ctx, ctl, src, tgt, true, cfg.sinksOnError); err != nil {
				return fmt.Errorf("configuring the sync: %w", err)
			}
			if srcRows, err = b.env.countAccounts(ctx, src); err != nil {
				return err
			}
			if err := b.env.checkpoint(ctx); err != nil {
				return err
			}
			progress("%s: first kick: onetimecopy of pgbench_accounts (%d rows)", label, srcRows)
			k0, err := b.env.kick(ctx, ctl)
			if err != nil {
				return fmt.Errorf("initial copy: %w", err)
			}
			progress("%s: initial copy: kick to done %.3f s, sync %.3f s, peak RSS %.1f MiB", label, secs(k0.wall), secs(k0.sync), mib(k0.rssKiB))
			// The floor's target gets the same initial content through its own path (untimed).
			f, err := mkFloor(ctx)
			if err != nil {
				return err
			}
			fc, err := b.env.connect(ctx, fsrc)
			if err != nil {
				f.close()
				return err
			}
			closeFloor := func() { f.close(); _ = fc.Close(context.WithoutCancel(ctx)) }
			if _, _, err := runFloor(ctx, fc, f, int(srcRows)); err != nil {
				closeFloor()
				return fmt.Errorf("loading the floor's target: %w", err)
			}
			progress("%s: UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= %d on %s and %s", label, cfg.sinksRows, src, fsrc)
			for _, db := range []string{src, fsrc} {
				if err := b.env.updateAccounts(ctx, label, db, cfg.sinksRows); err != nil {
					closeFloor()
					return err
				}
			}
			if err := b.env.checkpoint(ctx); err != nil {
				closeFloor()
				return err
			}
			progress("%s: ibex kick %s", label, syncName)
			var kenv []string
			if cfg.sinksProfile != "" {
				kenv = append(kenv, "IBEX_CPUPROFILE="+filepath.Join(cfg.sinksProfile, fmt.Sprintf("%s-%d.pprof", kind, r)), "IBEX_LOG_LEVEL=debug")
			}
			k, err := b.env.kick(ctx, ctl, kenv...)
			if err != nil {
				closeFloor()
				return err
			}
			if cfg.sinksProfile != "" {
				if err := os.WriteFile(filepath.Join(cfg.sinksProfile, fmt.Sprintf("%s-%d.log", kind, r)), k.stderr, 0o644); err != nil {
					closeFloor()
					return err
				}
			}
			progress("%s: kick to done %.3f s, sync %.3f s, inserts %d, deletes %d, peak RSS %.1f MiB",
				label, secs(k.wall), secs(k.sync), k.inserts, k.deletes, mib(k.rssKiB))
			if err := b.env.checkpoint(ctx); err != nil {
				closeFloor()
				return err
			}
			progress("%s: floor (%s's own bulk path, plain Go client)", label, kind)
			fd, fn, err := runFloor(ctx, fc, f, cfg.sinksRows)
			if err != nil {
				closeFloor()
				return err
			}
			progress("%s: floor %.3f s (%d rows)", label, secs(fd), fn)
			nt, err := tgt.count(ctx)
			if err != nil {
				closeFloor()
				return fmt.Errorf("counting ibex's target rows: %w", err)
			}
			nf, err := f.count(ctx)
			closeFloor()
			if err != nil {
				return fmt.Errorf("counting the floor's target rows: %w", err)
			}
			switch {
			case nt != srcRows:
				b.rep.fail("%s: ibex's target (%s) holds %d pgbench_accounts rows, the source %d", label, tgt.where, nt, srcRows)
			case nf != srcRows:
				b.rep.fail("%s: the floor's target holds %d pgbench_accounts rows, the source %d", label, nf, srcRows)
			case fn != cfg.sinksRows:
				b.rep.fail("%s: the floor wrote %d rows, not %d", label, fn, cfg.sinksRows)
			default:
				good++
				progress("%s: row counts equal: source, ibex's target and the floor's: %d", label, srcRows)
			}
			initWall, initSync, initRSS = append(initWall, secs(k0.wall)), append(initSync, secs(k0.sync)), append(initRSS, mib(k0.rssKiB))
			wall, sync, floor = append(wall, secs(k.wall)), append(sync, secs(k.sync)), append(floor, secs(fd))
			rss, moved = append(rss, mib(k.rssKiB)), append(moved, float64(k.inserts))
			if err := b.env.dropNow(ctx, cfg.keep, ctl, src, fsrc); err != nil {
				return err
			}
			if err := b.env.undoNow(ctx, cfg.keep, ids...); err != nil {
				return err
			}
		}
		b.rep.add(sec, kind+": initial copy, kick to done", uSec, initWall, fmt.Sprintf("onetimecopy of pgbench_accounts, %d rows (first kick)", srcRows))
		b.rep.add(sec, kind+": initial copy, sync", uSec, initSync, "")
		b.rep.add(sec, kind+": initial copy, peak RSS", uMiB, initRSS, "")
		b.rep.add(sec, kind+": ibex kick to done", uSec, wall, fmt.Sprintf("%d changed rows, 1 PostgreSQL src -> 1 %s tgt", cfg.sinksRows, kind))
		b.rep.add(sec, kind+": ibex sync", uSec, sync, "")
		b.rep.add(sec, kind+": floor", uSec, floor, floorNote[kind])
		b.rep.add(sec, kind+": ibex sync / floor", uRatio, ratios(sync, floor), "target <= 1.5")
		b.rep.add(sec, kind+": ibex kick to done / floor", uRatio, ratios(wall, floor), "")
		b.rep.add(sec, kind+": peak RSS of the kick", uMiB, rss, "")
		b.rep.add(sec, kind+": rows moved", uRows, moved, "the kick's inserts")
		counts := fmt.Sprintf("yes %d/%d", good, cfg.sinksRepeats)
		note := "row count of ibex's target and of the floor's = the source's"
		if f := len(b.rep.failures) - fails; f > 0 {
			counts, note = fmt.Sprintf("FAIL (%d of %d)", f, cfg.sinksRepeats), "see FAIL lines below"
		}
		b.rep.text(sec, kind+": row counts", counts, note)
	}
	if made {
		if err := b.env.dropNow(ctx, cfg.keep, tmpl); err != nil {
			return err
		}
	}
	if cfg.sinksRSSRows > 0 {
		if err := b.sinksRSS(ctx, sv); err != nil {
			return fmt.Errorf("RSS kick: %w", err)
		}
	}
	return nil
}

var floorNote = map[string]string{
	"mariadb":  "COPY out + DELETE IN (5000 keys) + LOAD DATA LOCAL, 1 tx",
	"sqlite":   "COPY out + DELETE IN (500 keys) + prepared INSERTs, 1 tx",
	"redis":    "COPY out + pipelined DEL+HSET per row (1000 rows a round trip)",
	"flatfile": "COPY out + DELETE/INSERT statements (1000 a statement) to a file, fsync, rename",
}

// sinksRSS kicks cfg.sinksRSSRows changed rows into one flatfile target (the cheapest
// sink: no table to create or fill first) and reports the kick's peak RSS.
func (b *bench) sinksRSS(ctx context.Context, sv *sinkServices) error {
	cfg := b.cfg
	const sec = "sinks"
	n := cfg.sinksRSSRows
	scale := max(1, (n+99999)/100000)
	src, ctl := prefix+"skr_src", prefix+"skr_ctl"
	label := fmt.Sprintf("sinks RSS (%d rows into flatfile)", n)
	progress("%s: pgbench -i -s %d into %s", label, scale, src)
	if err := b.env.create(ctx, src, "", false); err != nil {
		return err
	}
	if err := b.env.pgbenchInit(ctx, src, scale); err != nil {
		return err
	}
	d := filepath.Join(sv.dir, "ibex_rss_"+randomHex())
	id := b.env.onCleanup("directory "+d, func(context.Context) error { return os.RemoveAll(d) })
	tgt := sinkTarget{addDB: []string{"type=flatfile", "path=" + d}, where: "flatfile dir " + d}
	if err := b.env.setupSinkSync(ctx, ctl, src, tgt, false, cfg.sinksOnError); err != nil {
		return fmt.Errorf("configuring the sync: %w", err)
	}
	if err := b.env.updateAccounts(ctx, label, src, n); err != nil {
		return err
	}
	if err := b.env.checkpoint(ctx); err != nil {
		return err
	}
	progress("%s: ibex kick %s", label, syncName)
	k, err := b.env.kick(ctx, ctl)
	if err != nil {
		return err
	}
	progress("%s: kick to done %.3f s, sync %.3f s, inserts %d, peak RSS %.1f MiB", label, secs(k.wall), secs(k.sync), k.inserts, mib(k.rssKiB))
	cnt, err := flatfileIndexCount(ctx, d)
	if err != nil {
		return err
	}
	if cnt != int64(n) {
		b.rep.fail("%s: the target's key index holds %d pgbench_accounts rows, not %d", label, cnt, n)
	}
	fig := fmt.Sprintf("%s rows: peak RSS of the kick", thousands(n))
	b.rep.add(sec, fig, uMiB, []float64{mib(k.rssKiB)}, fmt.Sprintf("target <= 200 MB; one kick of %d changed rows into flatfile (the cheapest sink)", n))
	b.rep.add(sec, fmt.Sprintf("%s rows: ibex kick to done", thousands(n)), uSec, []float64{secs(k.wall)}, fmt.Sprintf("sync %.3f s; %d rows in the target's key index", secs(k.sync), cnt))
	if err := b.env.dropNow(ctx, cfg.keep, ctl, src); err != nil {
		return err
	}
	return b.env.undoNow(ctx, cfg.keep, id)
}

func thousands(n int) string {
	s := strconv.Itoa(n)
	var out []string
	for len(s) > 3 {
		out = append([]string{s[len(s)-3:]}, out...)
		s = s[:len(s)-3]
	}
	return strings.Join(append([]string{s}, out...), ",")
}

// ---- counts

func mariaCount(ctx context.Context, db *sql.DB, name string) (int64, error) {
	var n int64
	err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM `"+name+"`.`pgbench_accounts`").Scan(&n)
	return n, err
}

func openSQLite(path string) (*sql.DB, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_txlock=immediate")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

func sqliteCount(ctx context.Context, path string) (int64, error) {
	db, err := openSQLite(path)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n int64
	err = db.QueryRowContext(ctx, `SELECT count(*) FROM pgbench_accounts`).Scan(&n)
	return n, err
}

// redisScan counts the keys matching pattern (and, with del, unlinks them).
func redisScan(ctx context.Context, rdb *redis.Client, pattern string, del bool) (int64, error) {
	var n int64
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, pattern, 10000).Result()
		if err != nil {
			return n, err
		}
		n += int64(len(keys))
		if del && len(keys) > 0 {
			if err := rdb.Unlink(ctx, keys...).Err(); err != nil {
				return n, err
			}
		}
		cursor = next
		if cursor == 0 {
			return n, nil
		}
	}
}

// flatfileIndexCount is the number of pgbench_accounts keys in a flatfile dir's key index
// (docs/sinks/flatfile.md): the rows the files leave in a replay target.
func flatfileIndexCount(ctx context.Context, dir string) (int64, error) {
	db, err := openSQLite(filepath.Join(dir, ".ibex-index.sqlite"))
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n int64
	err = db.QueryRowContext(ctx, `SELECT count(*) FROM ibex_keys k JOIN ibex_tables t ON t.id = k.t
WHERE t.schema_name = 'public' AND t.table_name = 'pgbench_accounts'`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("flatfile key index in %s: %w", dir, err)
	}
	return n, nil
}

func keyList(rows []acct) string {
	var b strings.Builder
	for i, r := range rows {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.FormatInt(r.aid, 10))
	}
	return b.String()
}

// ---- MariaDB: DELETE of the keys + LOAD DATA LOCAL INFILE, one transaction

type mariaFloor struct {
	pool *sql.DB
	conn *sql.Conn
	seq  int
}

func newMariaFloor(ctx context.Context, cfg *config, db string) (*mariaFloor, error) {
	pool, err := sql.Open("mysql", cfg.mariadbUser+"@tcp("+cfg.mariadbAddr+")/"+db+"?timeout=5s&charset=utf8mb4")
	if err != nil {
		return nil, err
	}
	conn, err := pool.Conn(ctx)
	if err != nil {
		_ = pool.Close()
		return nil, fmt.Errorf("MariaDB floor: connecting to %s: %w", db, err)
	}
	return &mariaFloor{pool: pool, conn: conn}, nil
}

func (m *mariaFloor) write(ctx context.Context, raw []byte, rows []acct) error {
	tx, err := m.conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for i := 0; i < len(rows); i += 5000 {
		if _, err := tx.ExecContext(ctx, "DELETE FROM `pgbench_accounts` WHERE `aid` IN ("+keyList(rows[i:min(i+5000, len(rows))])+")"); err != nil {
			return fmt.Errorf("MariaDB floor: DELETE: %w", err)
		}
	}
	m.seq++
	name := fmt.Sprintf("ibex_bench_floor_%d", m.seq)
	mysql.RegisterReaderHandler(name, func() io.Reader { return bytes.NewReader(raw) })
	defer mysql.DeregisterReaderHandler(name)
	res, err := tx.ExecContext(ctx, "LOAD DATA LOCAL INFILE 'Reader::"+name+"' INTO TABLE `pgbench_accounts` CHARACTER SET utf8mb4 "+
		`FIELDS TERMINATED BY '\t' ESCAPED BY '\\' LINES TERMINATED BY '\n' (`+"`aid`, `bid`, `abalance`, `filler`)")
	if err != nil {
		return fmt.Errorf("MariaDB floor: LOAD DATA: %w", err)
	}
	if n, _ := res.RowsAffected(); n != int64(len(rows)) {
		return fmt.Errorf("MariaDB floor: LOAD DATA loaded %d rows of %d", n, len(rows))
	}
	return tx.Commit()
}

func (m *mariaFloor) count(ctx context.Context) (int64, error) {
	var n int64
	err := m.conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM `pgbench_accounts`").Scan(&n)
	return n, err
}

func (m *mariaFloor) close() { _ = m.conn.Close(); _ = m.pool.Close() }

// ---- SQLite: one transaction of DELETE + prepared INSERTs

type sqliteFloor struct{ db *sql.DB }

// newSQLiteFloor creates fpath's pgbench_accounts with the DDL ibex's --create-targets
// gave the table in path.
func newSQLiteFloor(ctx context.Context, path, fpath string) (*sqliteFloor, error) {
	src, err := openSQLite(path)
	if err != nil {
		return nil, err
	}
	var ddl string
	err = src.QueryRowContext(ctx, `SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'pgbench_accounts'`).Scan(&ddl)
	_ = src.Close()
	if err != nil {
		return nil, fmt.Errorf("SQLite floor: reading the DDL of ibex's table in %s: %w", path, err)
	}
	db, err := openSQLite(fpath)
	if err != nil {
		return nil, err
	}
	if _, err := db.ExecContext(ctx, ddl); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("SQLite floor: %s: %w", ddl, err)
	}
	return &sqliteFloor{db: db}, nil
}

func (s *sqliteFloor) write(ctx context.Context, _ []byte, rows []acct) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for i := 0; i < len(rows); i += 500 {
		if _, err := tx.ExecContext(ctx, `DELETE FROM pgbench_accounts WHERE aid IN (`+keyList(rows[i:min(i+500, len(rows))])+`)`); err != nil {
			return fmt.Errorf("SQLite floor: DELETE: %w", err)
		}
	}
	st, err := tx.PrepareContext(ctx, `INSERT INTO pgbench_accounts (aid, bid, abalance, filler) VALUES (?1, ?2, ?3, ?4)`)
	if err != nil {
		return err
	}
	defer st.Close()
	args := make([]any, 4)
	for _, r := range rows {
		for j := range 4 {
			switch {
			case r.null[j]:
				args[j] = nil
			case j < 3:
				v, err := strconv.ParseInt(r.f[j], 10, 64)
				if err != nil {
					return fmt.Errorf("SQLite floor: %s %q: %w", accountsCols[j], r.f[j], err)
				}
				args[j] = v
			default:
				args[j] = r.f[j]
			}
		}
		if _, err := st.ExecContext(ctx, args...); err != nil {
			return fmt.Errorf("SQLite floor: INSERT: %w", err)
		}
	}
	return tx.Commit()
}

func (s *sqliteFloor) count(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM pgbench_accounts`).Scan(&n)
	return n, err
}

func (s *sqliteFloor) close() { _ = s.db.Close() }

// ---- Redis: pipelined DEL + HSET per row, one hash per row (the sink's layout)

type redisFloor struct {
	rdb    *redis.Client
	prefix string
}

func (f *redisFloor) write(ctx context.Context, _ []byte, rows []acct) error {
	pipe := f.rdb.Pipeline()
	kp := f.prefix + "public.pgbench_accounts:"
	for i, r := range rows {
		key := kp + r.f[0]
		pipe.Del(ctx, key)
		var fields []any
		for j, c := range accountsCols {
			if !r.null[j] {
				fields = append(fields, c, r.f[j])
			}
		}
		pipe.HSet(ctx, key, fields...)
		if (i+1)%1000 == 0 || i == len(rows)-1 {
			if _, err := pipe.Exec(ctx); err != nil {
				return fmt.Errorf("Redis floor: %w", err)
			}
		}
	}
	return nil
}

func (f *redisFloor) count(ctx context.Context) (int64, error) {
	return redisScan(ctx, f.rdb, f.prefix+"public.pgbench_accounts:*", false)
}

func (f *redisFloor) close() {}

// ---- flatfile: the same rows as multi-row INSERT statements in a file, fsynced

type fileFloor struct {
	dir string
	seq int
}

func sqlLiteral(s string) string {
	if strings.Contains(s, `\`) {
		return "E'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", "''") + "'"
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

func (f *fileFloor) write(_ context.Context, _ []byte, rows []acct) error {
	f.seq++
	name := fmt.Sprintf("floor.%04d.sql", f.seq)
	tmp := filepath.Join(f.dir, "."+name+".tmp")
	fh, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	w := bufio.NewWriterSize(fh, 1<<20)
	const tbl = `"public"."pgbench_accounts"`
	w.WriteString("SET client_encoding = 'UTF8';\nBEGIN;\n")
	for i := 0; i < len(rows); i += 1000 {
		w.WriteString(`DELETE FROM ` + tbl + ` WHERE "aid" IN (` + keyList(rows[i:min(i+1000, len(rows))]) + ");\n")
	}
	for i, r := range rows {
		if i%1000 == 0 {
			w.WriteString(`INSERT INTO ` + tbl + ` ("aid", "bid", "abalance", "filler") VALUES` + "\n")
		}
		w.WriteByte('(')
		for j := range 4 {
			if j > 0 {
				w.WriteString(", ")
			}
			switch {
			case r.null[j]:
				w.WriteString("NULL")
			case j < 3:
				w.WriteString(r.f[j])
			default:
				w.WriteString(sqlLiteral(r.f[j]))
			}
		}
		if i%1000 == 999 || i == len(rows)-1 {
			w.WriteString(");\n")
		} else {
			w.WriteString("),\n")
		}
	}
	w.WriteString("COMMIT;\n")
	if err := w.Flush(); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Sync(); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(f.dir, name)); err != nil {
		return err
	}
	d, err := os.Open(f.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// count replays the floor's files' keys in name order: a DELETE ... IN (...) line removes
// its keys, a row line "(aid, ..." adds its key.
func (f *fileFloor) count(context.Context) (int64, error) {
	names, err := filepath.Glob(filepath.Join(f.dir, "*.sql"))
	if err != nil {
		return 0, err
	}
	sort.Strings(names)
	keys := map[string]bool{}
	for _, n := range names {
		fh, err := os.Open(n)
		if err != nil {
			return 0, err
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "DELETE FROM "):
				_, list, ok := strings.Cut(line, " IN (")
				if !ok {
					continue
				}
				for _, k := range strings.Split(strings.TrimSuffix(list, ");"), ", ") {
					delete(keys, k)
				}
			case strings.HasPrefix(line, "("):
				k, _, _ := strings.Cut(line[1:], ",")
				keys[k] = true
			}
		}
		err = sc.Err()
		fh.Close()
		if err != nil {
			return 0, err
		}
	}
	return int64(len(keys)), nil
}

func (f *fileFloor) close() {}
