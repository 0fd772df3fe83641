// Package sinks is the seam through which a run writes every receiving database.
//
// A run (package job) turns each batch of changed keys into, for every receiver, the list
// of keys it gets and a stream of the winning rows in PostgreSQL's COPY text format (one
// row per line, fields tab-separated in Table.Cols order, keys first). A Sink applies that
// in one transaction per unit of batches:
//
//	Begin
//	  PrepareBatch(t, keys)   every key is replaced by the row the stream brings, or deleted
//	  WriteRows(t, rows)      the rows, until the reader ends
//	  FinishBatch(t)          what the batch wrote
//	  ... more batches, of any table ...
//	Commit (or Rollback: nothing of the unit stays)
//
// A whole-table copy (fullcopy, onetimecopy) is Begin, ReplaceTable, WriteRows,
// FinishBatch, Commit. A sink must be idempotent: applying the same batch twice leaves the
// same rows as once, because a run killed between a receiver's commit and its watermark
// update applies the batch again. Package sinktest is the conformance suite every sink
// passes; package postgres is the PostgreSQL sink.
//
// What a sink can do beyond that is asked by type assertion on small interfaces
// (Truncater, SequenceSetter), as PeerDB's connectors do.
package sinks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/ibexrepl/ibex/internal/catalog"
)

// Table is a replicated table as a sink writes it.
type Table struct {
	Schema, Name string
	// Key is the key columns, in key order.
	Key []string
	// Cols is every column, key columns first: the order of a row's fields in the stream.
	Cols []string
	// Columns describes the columns (types, identity) as the source's catalog has them.
	Columns []catalog.Column
	// Partitioned is set when the receiver's table is a partitioned parent (PostgreSQL):
	// its rows are in its partitions.
	Partitioned bool
	// Partial is set when Cols are some of the receiver's columns (customcols): a batch
	// updates the rows it gets in place, so the columns not in Cols keep their values
	// (PostgreSQL targets only; a whole-table copy inserts, the others taking defaults).
	Partial bool
	// InPlace is set when rows applied to this receiver are captured for other syncs
	// (makedelta): a target's batch then updates the rows it gets in place, as Partial
	// does, instead of deleting and inserting them, so that a row that arrives unchanged
	// (it came back around a cycle of syncs) is not captured again (PostgreSQL targets).
	InPlace bool
}

// Label is schema.name, for messages.
func (t *Table) Label() string { return t.Schema + "." + t.Name }

// Prepared is what PrepareBatch did.
type Prepared struct {
	// Skipped lists the keys the sink leaves out of the batch, in the stream's text: the
	// receiver's own application changed them since the run began, and that newer change
	// goes the other way next run. Their rows must not be sent.
	Skipped []string
}

// Counts is what a batch (or a whole-table copy) wrote on a receiver.
type Counts struct {
	Written int64 // rows inserted or replaced
	Deleted int64 // rows deleted, or replaced by a written row
}

// Sink writes one receiving database. Its methods are called from one goroutine at a time.
type Sink interface {
	// Begin opens the transaction a unit is written in (a no-op when one is open).
	Begin(ctx context.Context) error
	// PrepareBatch readies a batch of t: keys, in the stream's text (key fields
	// tab-separated), are the keys this receiver gets; each is replaced by the row the
	// stream brings for it, or deleted when none comes.
	PrepareBatch(ctx context.Context, t *Table, keys []string) (Prepared, error)
	// WriteRows takes the batch's rows until r ends and returns how many it took.
	WriteRows(ctx context.Context, t *Table, r io.Reader) (int64, error)
	// FinishBatch completes the batch of t and returns what it wrote. A sink that wrote
	// another number of rows than it took returns a *RowCountError.
	FinishBatch(ctx context.Context, t *Table) (Counts, error)
	// ReplaceTable starts a whole-table copy of t: it empties the table, whose rows
	// WriteRows then takes. With ifEmpty, a table holding rows is left alone and skipped
	// is true (WriteRows is not called).
	ReplaceTable(ctx context.Context, t *Table, ifEmpty bool) (skipped bool, err error)
	// Commit commits the unit's transaction (a no-op when none is open).
	Commit(ctx context.Context) error
	// Rollback rolls the unit's transaction back, best effort; nothing of it stays.
	Rollback(ctx context.Context)
}

// Truncation is one table a receiver empties for a captured TRUNCATE.
type Truncation struct {
	Table *Table
	// KeepAfter, on a receiver that is itself a source (PostgreSQL in source mode), keeps
	// the rows its own application changed after this time (microseconds since the epoch,
	// as capture records it; 0: none): those changes are newer than the TRUNCATE. A
	// receiver that is only a target has no changes of its own and ignores it.
	KeepAfter int64
}

// Truncater is a sink that can empty tables fast (a captured TRUNCATE), in the unit: every
// table given is emptied in one step, so that tables referencing each other by foreign
// keys can be emptied together, without a delete per row where the system allows it.
type Truncater interface {
	Truncate(ctx context.Context, ts []Truncation) error
}

// EachTruncated calls fn with each table of ts in turn, until one fails: Truncate for a
// sink that empties its tables one by one.
func EachTruncated(ts []Truncation, fn func(t *Table) error) error {
	for _, tr := range ts {
		if err := fn(tr.Table); err != nil {
			return err
		}
	}
	return nil
}

// BeginPreparer is a sink that can open a unit's transaction with the first statements
// of its first batch, one round trip fewer than Begin then PrepareBatch.
type BeginPreparer interface {
	// BeginAndPrepare is Begin then PrepareBatch. After an error the transaction may be
	// open: the caller rolls it back as after a failed PrepareBatch.
	BeginAndPrepare(ctx context.Context, t *Table, keys []string) (Prepared, error)
}

// SkippedAdder is a sink that skips keys (a receiver that is itself a source, see
// Prepared.Skipped) and can still add to counter columns of those rows the deltas the
// other sources made: a skipped row keeps its own newer change, which is sent to the others
// next run as a whole row, so without the deltas it would carry a counter value missing
// them. Only the PostgreSQL sink in source mode skips keys.
type SkippedAdder interface {
	// AddToSkipped is called after PrepareBatch with the counter columns cols and, per key
	// of the batch, a line of the key fields and one delta per column (COPY text,
	// tab-separated; decimal numbers). FinishBatch adds each key's deltas to its row when
	// the sink skipped it (at PrepareBatch or later), and leaves the others alone: they
	// get the row the stream brings.
	AddToSkipped(ctx context.Context, t *Table, cols []string, lines []string) error
}

// Sequence is a sequence's state on a source: last_value and is_called.
type Sequence struct {
	Schema, Name string
	Last         int64
	Called       bool
}

// SequenceSetter is a sink that can bring sequences up to a source's state (only
// PostgreSQL receivers have sequences; other sinks do not implement it). It raises each
// sequence that is behind its state in seqs, never lowers one, and returns how many it
// set. Outside the run's units: it commits what it sets.
type SequenceSetter interface {
	SetSequences(ctx context.Context, seqs []Sequence) (int, error)
}

// RowCountError is a receiver that wrote another number of rows than it was given: a
// trigger or a rule there dropped some. The receiver's transaction must be rolled back.
type RowCountError struct {
	DB, From      string // the receiver; the one sender, when there is one
	Written, Sent int64
}

func (e *RowCountError) Error() string {
	from := ""
	if e.From != "" {
		from = " from db " + e.From
	}
	return fmt.Sprintf("%d rows written, %d read%s (a trigger or rule on db %s dropped rows?): rolled back", e.Written, e.Sent, from, e.DB)
}

// ErrNoTransaction is returned by a batch method called outside a transaction.
var ErrNoTransaction = errors.New("sink: no transaction open (call Begin first)")

// Checker is a sink whose receiver is not PostgreSQL: before a run writes, the run asks it
// whether the receiver has every table and column it will write, and `ibex validate SYNC
// --create-targets` asks it to create them. (PostgreSQL receivers are checked through
// their catalog, for drift, by package job.)
type Checker interface {
	// CheckTable returns a *MissingError when the receiver lacks t or some of t.Cols.
	CheckTable(ctx context.Context, t *Table) error
	// CreateTable creates t on the receiver, or adds the columns it lacks, with the
	// DDL of the type mapping (outside any unit); a table already complete is left alone.
	CreateTable(ctx context.Context, t *Table) error
}

// MissingError is a receiver that lacks a table, or some of its columns, that a run writes.
type MissingError struct {
	DB, Table string
	// Columns lists the missing columns; nil when the whole table is missing.
	Columns []string
	// DDL is the statement that would create what is missing on that receiver.
	DDL string
	// Sync names the sync in the advice, when the caller knows it.
	Sync string
}

func (e *MissingError) Error() string {
	what := "table " + e.Table + " is missing"
	if e.Columns != nil {
		what = fmt.Sprintf("table %s lacks column(s) %s", e.Table, strings.Join(e.Columns, ", "))
	}
	sync := e.Sync
	if sync == "" {
		sync = "SYNC"
	}
	return fmt.Sprintf("db %s: %s: create it with\n  %s\nor run 'ibex validate %s --create-targets'", e.DB, what, e.DDL, sync)
}

// Closer is a sink that owns its connection (every sink that is not PostgreSQL: a
// PostgreSQL sink writes on the run's session). The run closes it when it ends.
type Closer interface {
	Close() error
}

// Config is what opens a sink that is not PostgreSQL (each such package has
// Open(ctx, Config) and CheckParams(map[string]string) error).
type Config struct {
	// DB is the db's name in ibex, for messages.
	DB string
	// Params are the db's settings as added (host, port, dbname, user, path, db, prefix,
	// dialect, ...: each package documents its own), never a password.
	Params map[string]string
	// Password is the resolved password ("" for none). It is never printed.
	Password string
	// Sync and Run name the run writing (flatfile names its files by them); empty and 0
	// outside a run (a connection test).
	Sync string
	Run  int64
	// Logger takes the sink's log lines; nil discards them.
	Logger *slog.Logger
}

// Reader is a sink that can list what a receiver holds, rendered back through its type
// mapping (ibex compare, the demo's check, tests).
type Reader interface {
	// ReadRows calls fn with every row of t on the receiver, in no particular order, as a
	// COPY text line: fields in t.Cols order, each value as PostgreSQL prints it for its
	// type in t.Columns (with ibex's session settings: DateStyle ISO, TimeZone UTC,
	// bytea_output hex, extra_float_digits 3), so that it equals the source's line for
	// the same row wherever the mapping keeps the value exactly.
	ReadRows(ctx context.Context, t *Table, fn func(line string) error) error
}

// ErrNoBatch is returned by WriteRows or FinishBatch for a table without a batch under way.
var ErrNoBatch = errors.New("no batch of this table is under way (PrepareBatch or ReplaceTable first)")

// Same says whether t and o are the same table.
func (t *Table) Same(o *Table) bool { return o != nil && t.Schema == o.Schema && t.Name == o.Name }

// TableErr wraps err with the receiving db, what was being done ("" for nothing in
// particular) and the table: "db D: loading the rows of s.t: ...".
func TableErr(db string, t *Table, doing string, err error) error {
	if doing == "" {
		return fmt.Errorf("db %s: table %s: %w", db, t.Label(), err)
	}
	return fmt.Errorf("db %s: %s %s: %w", db, doing, t.Label(), err)
}

// Rejected is a row a receiver refused under on_error=skip: the receiver keeps what it had
// for that key, and the run parks the row in the exception log.
type Rejected struct {
	Key   string // the key's fields, COPY text, tab-separated
	Row   string // the row refused (a COPY text line); "" when the refused change is a delete
	Error string // what the database said
}

// RowSkipper is a sink that can leave out the rows its database refuses (a CHECK, foreign
// key or unique constraint, a trigger, a value its type rejects) instead of failing the
// batch (a sync's on_error=skip). Every other row of the batch is applied. The PostgreSQL,
// MariaDB/MySQL and SQLite sinks are; Redis and flatfile refuse no row.
type RowSkipper interface {
	// SkipRejected switches skipping on, before the first batch.
	SkipRejected()
	// Rejected returns the rows the last FinishBatch left out.
	Rejected() []Rejected
}
