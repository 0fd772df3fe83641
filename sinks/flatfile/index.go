package flatfile

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	_ "modernc.org/sqlite" // the key index: driver "sqlite", pure Go

	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/sinks"
)

// IndexFile is the key index's file in the directory: per table, the keys the files
// written so far leave in the target, which a file cannot tell.
const IndexFile = ".ibex-index.sqlite"

// indexVersion is the index's format, kept in its user_version. Format 1 (user_version
// 0, which ibex released on main only) held every key's text and is refused.
const indexVersion = 2

// chunk is how many keys one index statement takes (2 variables each: under SQLite's
// limit of 32,766).
const chunk = 500

// ibex_keys holds one entry per key (indexKey): a WITHOUT ROWID table is the primary
// key's B-tree alone, so a lookup or an insert touches one tree.
const indexSchema = `
CREATE TABLE ibex_tables (
	id INTEGER PRIMARY KEY,
	schema_name TEXT NOT NULL,
	table_name TEXT NOT NULL,
	UNIQUE (schema_name, table_name)
);
CREATE TABLE ibex_keys (
	t INTEGER NOT NULL,
	k BLOB NOT NULL, -- BLOB affinity: an INTEGER stays one
	PRIMARY KEY (t, k)
) WITHOUT ROWID;
PRAGMA user_version = 2;`

// index is the key index of a directory. Its changes of a unit are made in one SQLite
// transaction, committed right after the unit's file is renamed into place.
type index struct {
	db  *sql.DB
	tx  *sql.Tx
	ids map[[2]string]int64 // table ids known in tx
	ins *sql.Stmt           // insert of a full chunk, in tx
	del *sql.Stmt           // delete of a full chunk, in tx
}

// openIndex opens (creating it when missing) the key index in dir.
func openIndex(ctx context.Context, dir string, fsync bool) (*index, error) {
	sync := "FULL"
	if !fsync {
		sync = "OFF"
	}
	u := url.URL{Scheme: "file", Path: filepath.Join(dir, IndexFile)}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(30000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous("+sync+")")
	q.Set("_txlock", "immediate")
	u.RawQuery = q.Encode()
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return nil, fmt.Errorf("key index %s: %w", u.Path, err)
	}
	db.SetMaxOpenConns(1)
	if err := initIndex(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("key index %s: %w", u.Path, err)
	}
	if err := os.Chmod(u.Path, 0o600); err != nil && !os.IsNotExist(err) {
		db.Close()
		return nil, fmt.Errorf("key index %s: %w", u.Path, err)
	}
	return &index{db: db}, nil
}

// initIndex creates the index's tables in a new file and refuses a file of another
// format.
func initIndex(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil) // immediate: one process checks and creates
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var version, tables int
	if err := tx.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version); err != nil {
		return err
	}
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema`).Scan(&tables); err != nil {
		return err
	}
	switch {
	case version == indexVersion:
		return nil
	case version == 0 && tables == 0:
		if _, err := tx.ExecContext(ctx, indexSchema); err != nil {
			return err
		}
		return tx.Commit()
	case version == 0:
		return fmt.Errorf("written by an older ibex in format 1, which this one cannot read: remove it (a batch's counts and onetimecopy's emptiness check then start from nothing; flatfile.Seed records rows the target holds)")
	default:
		return fmt.Errorf("written in format %d, this ibex reads format %d (a newer ibex wrote it?)", version, indexVersion)
	}
}

func (x *index) close() error { return x.db.Close() }

// begin opens the index's transaction of a unit.
func (x *index) begin(ctx context.Context) error {
	tx, err := x.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("key index: beginning: %w", err)
	}
	x.tx, x.ids = tx, map[[2]string]int64{}
	return nil
}

func (x *index) end() {
	x.tx, x.ids, x.ins, x.del = nil, nil, nil, nil
}

func (x *index) commit() error {
	if x.tx == nil {
		return nil
	}
	defer x.end()
	if err := x.tx.Commit(); err != nil {
		return fmt.Errorf("key index: committing: %w", err)
	}
	return nil
}

func (x *index) rollback() {
	if x.tx != nil {
		_ = x.tx.Rollback()
		x.end()
	}
}

// table returns t's id in the index, adding t when missing.
func (x *index) table(ctx context.Context, t *sinks.Table) (int64, error) {
	k := [2]string{t.Schema, t.Name}
	if id, ok := x.ids[k]; ok {
		return id, nil
	}
	var id int64
	err := x.tx.QueryRowContext(ctx, `INSERT INTO ibex_tables (schema_name, table_name) VALUES (?, ?)
		ON CONFLICT (schema_name, table_name) DO UPDATE SET id = id RETURNING id`, t.Schema, t.Name).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("key index: table: %w", err)
	}
	x.ids[k] = id
	return id, nil
}

// placeholders is n groups of group, comma-separated.
func placeholders(n int, group string) string {
	return strings.TrimSuffix(strings.Repeat(group+",", n), ",")
}

// remove deletes keys of table id and returns how many the index held.
func (x *index) remove(ctx context.Context, id int64, keys []key) (int64, error) {
	var total int64
	for len(keys) > 0 {
		n := min(len(keys), chunk)
		args := make([]any, 0, n+1)
		args = append(args, id)
		for _, k := range keys[:n] {
			args = append(args, k.arg())
		}
		var res sql.Result
		var err error
		if n == chunk {
			if x.del == nil {
				if x.del, err = x.tx.PrepareContext(ctx, `DELETE FROM ibex_keys WHERE t = ? AND k IN (`+placeholders(chunk, "?")+`)`); err != nil {
					return 0, fmt.Errorf("key index: %w", err)
				}
			}
			res, err = x.del.ExecContext(ctx, args...)
		} else {
			res, err = x.tx.ExecContext(ctx, `DELETE FROM ibex_keys WHERE t = ? AND k IN (`+placeholders(n, "?")+`)`, args...)
		}
		if err != nil {
			return 0, fmt.Errorf("key index: deleting keys: %w", err)
		}
		c, err := res.RowsAffected()
		if err != nil {
			return 0, fmt.Errorf("key index: %w", err)
		}
		total += c
		keys = keys[n:]
	}
	return total, nil
}

// add records keys of table id as present and returns how many were not
// (a key the index holds is left as it is: INSERT OR IGNORE, one lookup).
func (x *index) add(ctx context.Context, id int64, keys []key) (int64, error) {
	var total int64
	for len(keys) > 0 {
		n := min(len(keys), chunk)
		args := make([]any, 0, n+1)
		args = append(args, id)
		for _, k := range keys[:n] {
			args = append(args, k.arg())
		}
		var res sql.Result
		var err error
		if n == chunk {
			if x.ins == nil {
				if x.ins, err = x.tx.PrepareContext(ctx, addSQL(chunk)); err != nil {
					return 0, fmt.Errorf("key index: %w", err)
				}
			}
			res, err = x.ins.ExecContext(ctx, args...)
		} else {
			res, err = x.tx.ExecContext(ctx, addSQL(n), args...)
		}
		if err != nil {
			return 0, fmt.Errorf("key index: adding keys: %w", err)
		}
		c, err := res.RowsAffected()
		if err != nil {
			return 0, fmt.Errorf("key index: %w", err)
		}
		total += c
		keys = keys[n:]
	}
	return total, nil
}

// addSQL is the insert of n keys of a table: its id once, then the keys.
func addSQL(n int) string {
	return `INSERT OR IGNORE INTO ibex_keys (t, k) SELECT ?1, column1 FROM (VALUES ` + placeholders(n, "(?)") + `)`
}

// countRange returns how many integer keys from lo to hi the index holds for table id
// (an integer key is an INTEGER value; the others, BLOBs, sort after every number).
func (x *index) countRange(ctx context.Context, id, lo, hi int64) (int64, error) {
	var n int64
	if err := x.tx.QueryRowContext(ctx, `SELECT count(*) FROM ibex_keys WHERE t = ? AND k BETWEEN ? AND ?`, id, lo, hi).Scan(&n); err != nil {
		return 0, fmt.Errorf("key index: counting a range of keys: %w", err)
	}
	return n, nil
}

// addRange records every integer key from lo to hi of table id as present.
func (x *index) addRange(ctx context.Context, id, lo, hi int64) error {
	_, err := x.tx.ExecContext(ctx, `WITH RECURSIVE r(k) AS (SELECT ?2 UNION ALL SELECT k + 1 FROM r WHERE k < ?3)
		INSERT OR IGNORE INTO ibex_keys (t, k) SELECT ?1, k FROM r`, id, lo, hi)
	if err != nil {
		return fmt.Errorf("key index: adding a range of keys: %w", err)
	}
	return nil
}

// clear removes every key of table id and returns how many there were.
func (x *index) clear(ctx context.Context, id int64) (int64, error) {
	res, err := x.tx.ExecContext(ctx, `DELETE FROM ibex_keys WHERE t = ?`, id)
	if err != nil {
		return 0, fmt.Errorf("key index: clearing: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("key index: %w", err)
	}
	return n, nil
}

// empty reports whether the index holds no key of table id.
func (x *index) empty(ctx context.Context, id int64) (bool, error) {
	var has bool
	if err := x.tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM ibex_keys WHERE t = ?)`, id).Scan(&has); err != nil {
		return false, fmt.Errorf("key index: %w", err)
	}
	return !has, nil
}

// Seed records in dir's key index that the target holds rows (COPY text, fields in
// t.Cols order, key fields first), as when the system the files are replayed into was
// loaded by other means than these files: a later batch then counts those keys as
// deleted or replaced, and ReplaceTable with ifEmpty leaves the table alone. It writes no
// file. The directory and the index are created when missing.
func Seed(ctx context.Context, dir string, t *sinks.Table, rows []string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("flatfile: %w", err)
	}
	x, err := openIndex(ctx, dir, true)
	if err != nil {
		return fmt.Errorf("flatfile: %w", err)
	}
	defer x.close()
	if err := x.begin(ctx); err != nil {
		return fmt.Errorf("flatfile: %w", err)
	}
	defer x.rollback()
	id, err := x.table(ctx, t)
	if err != nil {
		return fmt.Errorf("flatfile: %w", err)
	}
	nk := len(t.Key)
	var keys []key
	for i, line := range rows {
		f, err := conflict.DecodeCopyLine(line)
		if err != nil {
			return fmt.Errorf("flatfile: seeding %s: row %d: %w", t.Label(), i+1, err)
		}
		if len(f) < nk {
			return fmt.Errorf("flatfile: seeding %s: row %d has %d fields, the key %d", t.Label(), i+1, len(f), nk)
		}
		keys = append(keys, indexKey(f[:nk]))
	}
	if _, err := x.add(ctx, id, keys); err != nil {
		return fmt.Errorf("flatfile: seeding %s: %w", t.Label(), err)
	}
	return x.commit()
}

// indexer adds chunks of keys of one table to the index from a goroutine of its own, so
// that SQLite's work overlaps the writing of the rows. Until wait returns, only it uses
// the index's transaction.
type indexer struct {
	ch    chan []key
	done  chan struct{}
	sent  int64 // keys sent (the sender's)
	added int64 // keys the index did not hold (the goroutine's, read after done)
	err   error // its first error (likewise); later chunks are not added
}

// startIndexer starts an indexer of table id in the index's transaction.
func (x *index) startIndexer(ctx context.Context, id int64) *indexer {
	ix := &indexer{ch: make(chan []key, 8), done: make(chan struct{})}
	go func() {
		defer close(ix.done)
		for keys := range ix.ch {
			if ix.err != nil {
				continue
			}
			n, err := x.add(ctx, id, keys)
			ix.added += n
			ix.err = err
		}
	}()
	return ix
}

// send hands a chunk of keys over (the indexer keeps the slice); at most a few chunks
// wait. An error of the index comes at wait.
func (ix *indexer) send(keys []key) {
	ix.sent += int64(len(keys))
	ix.ch <- keys
}

// wait waits for every chunk sent to be added and returns the keys the index did not
// hold, the keys sent, and the first error.
func (ix *indexer) wait() (added, sent int64, err error) {
	close(ix.ch)
	<-ix.done
	return ix.added, ix.sent, ix.err
}
