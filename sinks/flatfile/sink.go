// Package flatfile is the flat-file sink: it writes a receiver as SQL files that a user
// replays on another system, one file per unit, in the postgres or the mysql dialect.
//
// A unit's statements go to a temp file in the directory (.<sync>.<run>.<seq>.sql.tmp,
// which never matches *.sql); Commit fsyncs it and renames it to
// <sync>.<run, 12 digits>.<unit, 4 digits>.sql, so that
//
//	cat DIR/*.sql | psql -v ON_ERROR_STOP=1 DB      (dialect postgres)
//	cat DIR/*.sql | mysql DB                        (dialect mysql)
//
// replays everything in order. The sync's name is sanitized for a file name: every
// character but ASCII letters, digits, - and _ becomes _ ("" becomes "ibex"). Each file
// is one transaction (BEGIN; ... COMMIT; or START TRANSACTION; ... COMMIT;); Rollback
// removes the temp file, and a unit that wrote nothing writes no file.
//
// A batch is DELETE statements of its keys (1,000 keys a statement; a composite key as
// row values, (a, b) IN ((..), (..))) followed by multi-row INSERTs (1,000 rows or about
// 1 MB a statement). A whole-table copy starts with DELETE FROM t; a captured TRUNCATE is
// TRUNCATE t (postgres) or DELETE FROM t (mysql, where TRUNCATE would commit).
//
// What the target holds, which a batch's counts and ReplaceTable's ifEmpty need, is kept
// in a key index beside the files (IndexFile, SQLite): per table, the keys the files leave
// in the target. Its changes of a unit are committed right after the unit's file is
// renamed into place. A process that dies between the two leaves the file without the
// index's changes: the run did not record the unit, so the next run sends the same
// batches again, and replaying both files leaves the same rows (a batch deletes its keys
// before it inserts).
//
// The sink does not create tables: a file has no schema. CheckTable passes and
// CreateTable does nothing; the user creates the tables on the system the files are
// replayed into (see TableName for the mysql dialect's table names).
package flatfile

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/pgtext"
)

var (
	_ sinks.Sink      = (*Sink)(nil)
	_ sinks.Truncater = (*Sink)(nil)
	_ sinks.Checker   = (*Sink)(nil)
	_ sinks.Closer    = (*Sink)(nil)
)

// maxSeq is the last unit number of a run (4 digits keep the files in order).
const maxSeq = 9999

// maxRun is the last run id (12 digits).
const maxRun = 999_999_999_999

// Sink is the flat-file sink. It is not safe for concurrent use.
type Sink struct {
	db      string
	p       params
	log     *slog.Logger
	prefix  string // <sync>.<run>.
	nextSeq int
	idx     *index

	tx    bool     // a unit is open
	f     *os.File // the unit's temp file, once a statement was written
	w     *bufio.Writer
	cw    *countingWriter
	spare *bufio.Writer // the last unit's file's writer (1 MB), for the next one's
	tmp   string
	batch *batch
}

// batch is the state of the batch (or whole-table copy) under way.
type batch struct {
	t       *sinks.Table
	id      int64 // the table's id in the index
	types   []pgtext.Type
	skipped bool
	written int64
	deleted int64
	// pending holds the keys of a batch no row came for yet: FinishBatch deletes them
	// from the index. It is nil in a whole-table copy.
	pending *keySet
	// ix adds the keys of a batch's rows to the index while the rows are written (nil
	// before the first chunk of keys, and in a copy).
	ix *indexer
	// held counts, for a batch of every integer of a range (keySet.full), the keys the
	// index held in that range, while the rows are written (the index has nothing else
	// to do then): finishSpan takes it. nil when none is under way.
	held chan heldCount
}

// heldCount is a count of keys the index held, or its error.
type heldCount struct {
	n   int64
	err error
}

// countHeld starts counting the keys the index holds from lo to hi.
func (s *Sink) countHeld(ctx context.Context, b *batch, lo, hi int64) {
	ch := make(chan heldCount, 1)
	b.held = ch
	go func() {
		n, err := s.idx.countRange(ctx, b.id, lo, hi)
		ch <- heldCount{n, err}
	}()
}

// takeHeld waits for the count countHeld started, if any.
func (b *batch) takeHeld() (heldCount, bool) {
	if b.held == nil {
		return heldCount{}, false
	}
	c := <-b.held
	b.held = nil
	return c, true
}

// drop abandons the batch under way (a new one starts, or the unit ends), waiting for its
// indexer: the index's transaction is used by one goroutine at a time.
func (s *Sink) drop() {
	if b := s.batch; b != nil {
		if b.ix != nil {
			_, _, _ = b.ix.wait()
			b.ix = nil
		}
		b.takeHeld()
	}
	s.batch = nil
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_-]`)

// FileSync is the sync's name as the files carry it.
func FileSync(sync string) string {
	if sync == "" {
		return "ibex"
	}
	return unsafeName.ReplaceAllString(sync, "_")
}

// Open checks c's params, creates the directory when missing (mode 0700) and opens its
// key index. Files are named by c.Sync and c.Run.
func Open(ctx context.Context, c sinks.Config) (*Sink, error) {
	p, err := parseParams(c.Params)
	if err != nil {
		return nil, fmt.Errorf("db %s: %w", c.DB, err)
	}
	if c.Password != "" {
		return nil, fmt.Errorf("db %s: flatfile: a flat file takes no password (remove it from the db)", c.DB)
	}
	if c.Run < 0 || c.Run > maxRun {
		return nil, fmt.Errorf("db %s: flatfile: run id %d out of range 0..%d", c.DB, c.Run, maxRun)
	}
	if err := os.MkdirAll(p.path, 0o700); err != nil {
		return nil, fmt.Errorf("db %s: flatfile: %w", c.DB, err)
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sink{db: c.DB, p: p, log: log, prefix: fmt.Sprintf("%s.%012d.", FileSync(c.Sync), c.Run)}
	if s.nextSeq, err = s.scan(); err != nil {
		return nil, fmt.Errorf("db %s: flatfile: %w", c.DB, err)
	}
	if s.idx, err = openIndex(ctx, p.path, p.fsync); err != nil {
		return nil, fmt.Errorf("db %s: flatfile: %w", c.DB, err)
	}
	return s, nil
}

// scan returns the unit number after the last file of this sync and run in the directory
// (1 when there is none), and removes the temp files a dead process of this sync left.
func (s *Sink) scan() (int, error) {
	ents, err := os.ReadDir(s.p.path)
	if err != nil {
		return 0, err
	}
	next := 1
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, s.prefix) && strings.HasSuffix(n, ".sql") {
			if seq, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(n, s.prefix), ".sql")); err == nil && seq >= next {
				next = seq + 1
			}
		}
		sync := s.prefix[:strings.IndexByte(s.prefix, '.')+1]
		if strings.HasPrefix(n, "."+sync) && strings.HasSuffix(n, ".sql.tmp") {
			s.log.Warn("flatfile: removing the temp file of an unfinished unit", "db", s.db, "file", n)
			if err := os.Remove(filepath.Join(s.p.path, n)); err != nil {
				return 0, err
			}
		}
	}
	return next, nil
}

// Close rolls back an open unit and closes the key index.
func (s *Sink) Close() error {
	s.Rollback(context.Background())
	if err := s.idx.close(); err != nil {
		return fmt.Errorf("db %s: flatfile: %w", s.db, err)
	}
	return nil
}

// Begin opens a unit; it is a no-op when one is open.
func (s *Sink) Begin(ctx context.Context) error {
	if s.tx {
		return nil
	}
	if err := s.idx.begin(ctx); err != nil {
		return fmt.Errorf("db %s: flatfile: %w", s.db, err)
	}
	s.tx = true
	return nil
}

// Commit writes the end of the unit's file, fsyncs it, renames it into place (and
// fsyncs the directory), then commits the key index. It is a no-op when no unit is open;
// a unit that wrote nothing leaves no file.
func (s *Sink) Commit(ctx context.Context) error {
	if !s.tx {
		return nil
	}
	if err := s.settle(); err != nil {
		s.Rollback(ctx)
		return fmt.Errorf("db %s: flatfile: committing: %w", s.db, err)
	}
	s.drop()
	if s.f != nil {
		final := filepath.Join(s.p.path, fmt.Sprintf("%s%04d.sql", s.prefix, s.nextSeq))
		if err := s.finishFile(final); err != nil {
			s.Rollback(ctx)
			return fmt.Errorf("db %s: flatfile: committing: %w", s.db, err)
		}
		s.nextSeq++
		s.log.Debug("flatfile: unit written", "db", s.db, "file", final)
	}
	s.tx = false
	if err := s.idx.commit(); err != nil {
		return fmt.Errorf("db %s: flatfile: the unit's file is written but %w (the next run sends its batches again)", s.db, err)
	}
	return nil
}

// finishFile ends, flushes, fsyncs, closes and renames the temp file to final.
func (s *Sink) finishFile(final string) error {
	s.w.WriteString(s.p.dialect.footer())
	if err := s.w.Flush(); err != nil {
		return err
	}
	if s.p.fsync {
		if err := s.f.Sync(); err != nil {
			return err
		}
	}
	f := s.f
	s.f, s.w, s.cw, s.spare = nil, nil, nil, s.w
	if err := f.Close(); err != nil {
		_ = os.Remove(s.tmp)
		return err
	}
	if err := os.Rename(s.tmp, final); err != nil {
		_ = os.Remove(s.tmp)
		return err
	}
	if s.p.fsync {
		return syncDir(s.p.path)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Rollback removes the unit's temp file and rolls the key index back; it is a no-op
// when no unit is open.
func (s *Sink) Rollback(context.Context) {
	if !s.tx {
		return
	}
	s.drop()
	s.tx = false
	if s.f != nil {
		_ = s.f.Close()
		_ = os.Remove(s.tmp)
		s.f, s.w, s.cw, s.spare = nil, nil, nil, s.w
	}
	s.idx.rollback()
}

// out returns the writer of the unit's file, creating the temp file (and writing the
// file's header) on first use.
func (s *Sink) out() (*bufio.Writer, error) {
	if s.f != nil {
		return s.w, nil
	}
	if s.nextSeq > maxSeq {
		return nil, fmt.Errorf("a run writes at most %d files (units) to a directory", maxSeq)
	}
	s.tmp = filepath.Join(s.p.path, fmt.Sprintf(".%s%04d.sql.tmp", s.prefix, s.nextSeq))
	f, err := os.OpenFile(s.tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	s.f = f
	s.cw = &countingWriter{w: f}
	if s.w, s.spare = s.spare, nil; s.w != nil {
		s.w.Reset(s.cw) // what a unit rolled back left in it is dropped
	} else {
		s.w = bufio.NewWriterSize(s.cw, 1<<20)
	}
	s.w.WriteString(s.p.dialect.header())
	return s.w, nil
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// written is how many bytes of the unit's file are written so far (buffered ones too).
func (s *Sink) written() int64 { return s.cw.n + int64(s.w.Buffered()) }

// inTx returns ErrNoTransaction, naming db and t, when no unit is open.
func (s *Sink) inTx(t *sinks.Table) error {
	if s.tx {
		return nil
	}
	return s.errf(t, "", sinks.ErrNoTransaction)
}

// errf wraps err with the db, what was done, and t.
func (s *Sink) errf(t *sinks.Table, doing string, err error) error {
	return sinks.TableErr(s.db, t, doing, err)
}

// current returns the batch of t under way.
func (s *Sink) current(t *sinks.Table) (*batch, error) {
	b := s.batch
	if b == nil || !t.Same(b.t) {
		return nil, sinks.ErrNoBatch
	}
	return b, nil
}

// CheckTable passes: a file has no schema. In the mysql dialect, a name MySQL/MariaDB
// cannot take (longer than 64 characters, ending with a space) is an error.
func (s *Sink) CheckTable(_ context.Context, t *sinks.Table) error {
	if err := s.p.dialect.checkNames(t); err != nil {
		return s.errf(t, "", err)
	}
	return nil
}

// CreateTable does nothing: the user creates the tables on the system the files are
// replayed into.
func (s *Sink) CreateTable(context.Context, *sinks.Table) error { return nil }
