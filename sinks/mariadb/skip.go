package mariadb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/go-sql-driver/mysql"

	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/pgtext"
)

var _ sinks.RowSkipper = (*Sink)(nil)

// SkipRejected switches on_error=skip on (sinks.RowSkipper). A batch then runs under a
// savepoint, deletes its keys and loads its rows with plain LOAD DATA LOCAL (which, unlike
// REPLACE, turns a refused row into a warning instead of an error: the driver closes the
// connection after an error of LOAD DATA LOCAL, which would lose the unit), and keeps
// each row in a spool file on the way. When the server refused a row (a warning, a row
// skipped) or the converter a value, the batch is rolled back to its savepoint and written
// again from the spool (writeAgain) by ranges, leaving out only the rows refused. A table
// with triggers (whose SIGNAL is an error even under LOAD DATA LOCAL) is always written
// that way.
func (s *Sink) SkipRejected() { s.skip = true }

// Rejected returns the rows the last FinishBatch left out (sinks.RowSkipper).
func (s *Sink) Rejected() []sinks.Rejected { return s.rejected }

// skipBatch is what a batch under on_error=skip keeps besides the plain batch's.
type skipBatch struct {
	keys *keySet // every key of the batch and which got a row
	// direct: the keys are deleted and the rows loaded straight into the table (it has
	// no triggers); else they are only spooled and FinishBatch writes them (writeAgain).
	direct bool
	// failed: the server refused a row or a delete of the direct write; the rest of the
	// stream is only spooled and FinishBatch writes the batch again.
	failed bool
	cause  error // what failed it, for the log
}

// Savepoints: the batch's, and that of each range writeAgain tries.
const (
	batchSavepoint = "ibex_batch"
	trySavepoint   = "ibex_try"
)

// stageTable is the session's temporary table of a batch's rows that writeAgain writes:
// the row's number in the spool, then every column as LONGBLOB, so that loading it
// refuses nothing; the table's own types check the values as they are inserted.
const stageTable = "`ibex_s`"

// stageNum is the column of stageTable numbering the rows.
const stageNum = "`$n`"

func (s *Sink) exec(ctx context.Context, q string) error {
	if _, err := s.conn.ExecContext(ctx, q); err != nil {
		s.drop(err)
		return err
	}
	return nil
}

// prepareSkipping starts a batch of t under on_error=skip: the batch's savepoint, the
// spool emptied, and, for a table without triggers, its keys deleted (a delete the server
// refuses leaves the batch to writeAgain).
func (s *Sink) prepareSkipping(ctx context.Context, t *sinks.Table, b *batch, keys []string) error {
	trig, err := s.hasTriggers(ctx, t)
	if err != nil {
		return s.errf(t, "reading the triggers of", err)
	}
	if err := s.exec(ctx, `SAVEPOINT `+batchSavepoint); err != nil {
		return s.errf(t, "preparing a batch of", err)
	}
	if err := s.spool.Reset(); err != nil {
		return s.errf(t, "preparing a batch of", err)
	}
	b.skip = &skipBatch{keys: newKeySet(len(t.Key), keys), direct: !trig}
	if !b.skip.direct {
		return nil
	}
	n, err := s.keysDo(ctx, t, keys, deleteKeys)
	switch {
	case err == nil:
		b.deleted = n
	case isRowError(err):
		b.skip.failed, b.skip.cause = true, err
	default:
		return s.errf(t, "deleting the keys of", err)
	}
	return nil
}

// hasTriggers tells whether t has triggers, looked up once per sink (a run).
func (s *Sink) hasTriggers(ctx context.Context, t *sinks.Table) (bool, error) {
	id := ident(s.schema, t)
	if v, ok := s.triggers[id]; ok {
		return v, nil
	}
	// information_schema compares names without regard to case: compare them exactly here.
	name := TableName(t.Schema, t.Name)
	rows, err := s.conn.QueryContext(ctx, `SELECT EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = `+
		literal(s.schema)+` AND EVENT_OBJECT_TABLE = `+literal(name))
	if err != nil {
		s.drop(err)
		return false, err
	}
	defer rows.Close()
	has := false
	for rows.Next() {
		var tn string
		if err := rows.Scan(&tn); err != nil {
			return false, err
		}
		has = has || tn == name
	}
	if err := rows.Err(); err != nil {
		return false, err
	}
	if s.triggers == nil {
		s.triggers = map[string]bool{}
	}
	s.triggers[id] = has
	return has, nil
}

// writeSkipping is WriteRows under on_error=skip: the rows load as in a batch that deletes
// its keys first, each line kept in the spool on the way. When the server refuses a row
// (it warns or skips it) or the converter a value, the rest of the stream goes to the
// spool only, and FinishBatch writes the batch again. It returns the rows taken.
func (s *Sink) writeSkipping(ctx context.Context, t *sinks.Table, b *batch, r io.Reader) (int64, error) {
	sk := b.skip
	start := s.spool.Len()
	taken := func() int64 { return int64(s.spool.Len() - start) }
	src := sinks.NewLineReader(r)
	if sk.direct && !sk.failed {
		rr := &rowReader{src: src, conv: b.conv, keys: sk.keys, spool: &s.spool}
		loaded, affected, err := s.loadFrom(ctx, ident(s.schema, t), rr, false)
		var me *mysql.MySQLError
		switch {
		case errors.As(err, &me):
			// An error of the server (not a warning): the driver closed the connection
			// after it, and the unit is lost; the batch fails as under on_error=stop.
			b.sent += taken()
			return taken(), s.errf(t, "writing rows of", err)
		case err != nil && !isRowError(err):
			b.sent += taken()
			return taken(), s.errf(t, "writing rows of", err)
		case err != nil:
			sk.failed, sk.cause = true, err
		case affected != loaded:
			sk.failed, sk.cause = true, fmt.Errorf("LOAD DATA wrote %d of %d rows", affected, loaded)
		default:
			b.written += affected
		}
	}
	// The rest of the stream: all of it unless the rows load directly.
	for {
		line, err := src.Next()
		if err == io.EOF {
			break
		}
		if err == nil {
			if err = s.spool.Add(line); err == nil {
				err = sk.keys.take(line)
			}
		}
		if err != nil {
			b.sent += taken()
			return taken(), s.errf(t, "writing rows of", err)
		}
	}
	n := taken()
	b.sent += n
	if sk.keys.dups > 0 {
		// A key twice in the stream: the run never sends that.
		return n, s.errf(t, "writing rows of", &sinks.RowCountError{DB: s.db, Written: b.sent - sk.keys.dups, Sent: b.sent})
	}
	return n, nil
}

// finishSkipping is FinishBatch under on_error=skip: the batch's savepoint is released,
// after writing the batch again (writeAgain) when it was not written directly or the
// server refused some of it. Rows taken must be rows written plus rows refused.
func (s *Sink) finishSkipping(ctx context.Context, t *sinks.Table, b *batch) (sinks.Counts, error) {
	sk := b.skip
	if !sk.direct || sk.failed {
		if sk.failed {
			s.log.Debug("a row refused: the batch is written again by ranges", "db", s.db, "table", t.Label(), "rows", b.sent, "err", sk.cause)
		}
		if err := s.writeAgain(ctx, t, b, sk.failed); err != nil {
			return sinks.Counts{}, err
		}
	}
	refused := int64(0)
	for _, r := range s.rejected {
		if r.Row != "" {
			refused++
		}
	}
	if b.written+refused != b.sent {
		return sinks.Counts{}, s.errf(t, "writing rows of", fmt.Errorf("%w (%d other rows refused)",
			&sinks.RowCountError{DB: s.db, Written: b.written, Sent: b.sent - refused}, refused))
	}
	if err := s.exec(ctx, `RELEASE SAVEPOINT `+batchSavepoint); err != nil {
		return sinks.Counts{}, s.errf(t, "finishing the batch of", err)
	}
	return sinks.Counts{Written: b.written, Deleted: b.deleted}, nil
}

// writeAgain rolls the batch back to its savepoint and writes it from the spool: the rows
// are loaded into the stage table, then written by ranges (the keys' rows deleted, the
// range's rows inserted from the stage table), then the keys no row came for are deleted
// by ranges. Each range runs under a savepoint; a range the server refuses is rolled back
// and halved, down to single rows (or keys), which are left out and recorded in
// s.rejected: the target keeps what it had for them. A batch with a few refused rows costs
// a few statements per refused row (about log2 of the batch's size). With split, the
// whole batch is known to fail: halving starts at once.
func (s *Sink) writeAgain(ctx context.Context, t *sinks.Table, b *batch, split bool) error {
	sk := b.skip
	if err := s.exec(ctx, `ROLLBACK TO SAVEPOINT `+batchSavepoint); err != nil {
		if sk.cause != nil {
			err = fmt.Errorf("%w (after a row was refused: %v)", err, sk.cause)
		}
		return s.errf(t, "rolling back the batch of", err)
	}
	b.written, b.deleted = 0, 0
	keys, err := s.stage(ctx, t, b)
	if err != nil {
		return s.errf(t, "staging the rows of", err)
	}
	// The INSERT of a range: JSON columns converted as the plain load does.
	sel := make([]string, len(t.Cols))
	for i, c := range t.Cols {
		sel[i] = quote(c)
		if k := pgtext.ParseType(b.conv.kinds[i]); !k.Array && (k.Kind == pgtext.JSON || k.Kind == pgtext.JSONB) {
			sel[i] = "CONVERT(" + quote(c) + " USING utf8mb4)"
		}
	}
	insert := fmt.Sprintf(`INSERT INTO %s (%s) SELECT %s FROM %s WHERE %s >= %%d AND %s < %%d ORDER BY %s`,
		ident(s.schema, t), quoteCols("", t.Cols), strings.Join(sel, ", "), stageTable, stageNum, stageNum, stageNum)
	rows := func(lo, hi int) error {
		var ks []string
		for _, k := range keys[lo:hi] {
			if k != "" {
				ks = append(ks, k)
			}
		}
		if len(ks) == 0 {
			return nil // every row of the range refused already (by the converter)
		}
		deleted, err := s.keysDo(ctx, t, ks, deleteKeys)
		if err != nil {
			return err
		}
		res, err := s.conn.ExecContext(ctx, fmt.Sprintf(insert, lo, hi))
		if err != nil {
			s.drop(err)
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n != int64(len(ks)) {
			return &sinks.RowCountError{DB: s.db, Written: n, Sent: int64(len(ks))}
		}
		if err := s.warnings(ctx); err != nil {
			return err // a value clipped or rounded: refused
		}
		b.written += n
		b.deleted += deleted
		return nil
	}
	nk := len(t.Key)
	rejectRow := func(i int, cause error) error {
		line, err := s.spool.Line(i)
		if err != nil {
			return err
		}
		s.rejected = append(s.rejected, sinks.Rejected{Key: rowKey(line, nk), Row: line, Error: refusal(cause)})
		return nil
	}
	if err := s.bisect(ctx, 0, len(keys), split, rows, rejectRow); err != nil {
		return s.errf(t, "writing rows of", err)
	}
	missing := sk.keys.missing()
	dels := func(lo, hi int) error {
		n, err := s.keysDo(ctx, t, missing[lo:hi], deleteKeys)
		b.deleted += n
		return err
	}
	rejectDel := func(i int, cause error) error {
		s.rejected = append(s.rejected, sinks.Rejected{Key: missing[i], Error: refusal(cause)})
		return nil
	}
	if err := s.bisect(ctx, 0, len(missing), false, dels, rejectDel); err != nil {
		return s.errf(t, "deleting the keys of", err)
	}
	if err := s.exec(ctx, `DROP TEMPORARY TABLE `+stageTable); err != nil {
		return s.errf(t, "writing rows of", err)
	}
	return nil
}

// stage loads the spooled rows into the stage table and returns each row's key ("" for a
// row the converter refused: it is recorded in s.rejected and not staged).
func (s *Sink) stage(ctx context.Context, t *sinks.Table, b *batch) ([]string, error) {
	cols := make([]string, len(t.Cols))
	for i, c := range t.Cols {
		cols[i] = quote(c) + " LONGBLOB"
	}
	for _, q := range []string{
		`DROP TEMPORARY TABLE IF EXISTS ` + stageTable,
		fmt.Sprintf(`CREATE TEMPORARY TABLE %s (%s BIGINT NOT NULL PRIMARY KEY, %s) ENGINE=InnoDB`, stageTable, stageNum, strings.Join(cols, ", ")),
	} {
		if err := s.exec(ctx, q); err != nil {
			return nil, err
		}
	}
	src, err := s.spool.Reader(0, s.spool.Len())
	if err != nil {
		return nil, err
	}
	sr := &stageReader{src: sinks.NewLineReader(src), conv: b.conv, nk: len(t.Key), keys: make([]string, 0, s.spool.Len())}
	s.loads++
	name := fmt.Sprintf("ibex-%p-%d", s, s.loads)
	mysql.RegisterReaderHandler(name, func() io.Reader { return sr })
	defer mysql.DeregisterReaderHandler(name)
	res, err := s.conn.ExecContext(ctx, fmt.Sprintf("LOAD DATA LOCAL INFILE %s INTO TABLE %s CHARACTER SET binary "+
		"FIELDS TERMINATED BY '\\t' ENCLOSED BY '' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' STARTING BY '' (%s, %s)",
		literal("Reader::"+name), stageTable, stageNum, quoteCols("", t.Cols)))
	if err != nil {
		s.drop(err)
		return nil, err
	}
	if sr.err != nil {
		return nil, sr.err
	}
	if len(sr.keys) != s.spool.Len() {
		return nil, fmt.Errorf("%d rows read of the %d spooled", len(sr.keys), s.spool.Len())
	}
	n, err := res.RowsAffected()
	if err != nil {
		return nil, err
	}
	if n != sr.staged {
		return nil, fmt.Errorf("%d rows staged of %d", n, sr.staged)
	}
	if err := s.warnings(ctx); err != nil {
		return nil, err
	}
	s.rejected = append(s.rejected, sr.refused...)
	return sr.keys, nil
}

// stageReader serves the spooled rows in LOAD DATA's format for the stage table, each
// row's number first; a row the converter refuses is left out and recorded in refused.
type stageReader struct {
	src     *sinks.LineReader
	conv    *converter
	nk      int
	keys    []string // each row's key; "" for a row refused
	refused []sinks.Rejected
	staged  int64
	chunks
	err error
}

func (r *stageReader) Read(p []byte) (int, error) { return r.read(p, r.next) }

func (r *stageReader) next() {
	line, err := r.src.Next()
	if err == io.EOF {
		r.done = true
		return
	}
	if err != nil {
		r.err, r.done = fmt.Errorf("reading the spool: %w", err), true
		return
	}
	i := len(r.keys)
	key := strings.Clone(rowKey(line, r.nk))
	start := len(r.out)
	out := strconv.AppendInt(r.out, int64(i), 10)
	out = append(out, '\t')
	out, err = r.conv.appendRow(out, line)
	var ve *valueError
	switch {
	case errors.As(err, &ve):
		r.out = r.out[:start]
		r.keys = append(r.keys, "")
		r.refused = append(r.refused, sinks.Rejected{Key: key, Row: line, Error: ve.Error()})
	case err != nil:
		r.err, r.done = fmt.Errorf("row %d: %w", i+1, err), true
	default:
		r.out = out
		r.keys = append(r.keys, key)
		r.staged++
	}
}

// bisect runs try on the range lo to hi-1 under a savepoint; when the server refuses a row
// of it (isRowError), the range is rolled back and halved, down to single items, which
// reject records. Any other error ends it. With split, the range is halved at once.
func (s *Sink) bisect(ctx context.Context, lo, hi int, split bool, try func(lo, hi int) error, reject func(i int, cause error) error) error {
	if lo >= hi {
		return nil
	}
	if !split || hi-lo == 1 {
		if err := s.exec(ctx, `SAVEPOINT `+trySavepoint); err != nil {
			return err
		}
		err := try(lo, hi)
		if err != nil && !isRowError(err) {
			return err
		}
		if err != nil {
			if rerr := s.exec(ctx, `ROLLBACK TO SAVEPOINT `+trySavepoint); rerr != nil {
				return fmt.Errorf("%w (rolling back after: %v)", rerr, err)
			}
		}
		if rerr := s.exec(ctx, `RELEASE SAVEPOINT `+trySavepoint); rerr != nil {
			return rerr
		}
		if err == nil {
			return nil
		}
		if hi-lo == 1 {
			return reject(lo, err)
		}
	}
	mid := lo + (hi-lo)/2
	if err := s.bisect(ctx, lo, mid, false, try, reject); err != nil {
		return err
	}
	return s.bisect(ctx, mid, hi, false, try, reject)
}

// rowKey is the key fields of a row (COPY text): the line up to its nk-th tab.
func rowKey(line string, nk int) string {
	seen := 0
	for i := 0; i < len(line); i++ {
		if line[i] == '\t' {
			if seen++; seen == nk {
				return line[:i]
			}
		}
	}
	return line
}

// refusal is what the server (or the converter) said about a refused row.
func refusal(err error) string {
	var ve *valueError
	if errors.As(err, &ve) {
		return ve.Error()
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Error()
	}
	return err.Error()
}

// isRowError reports whether err is the target refusing a row (on_error=skip leaves such a
// row out): a value the converter cannot write, LOAD DATA's warnings, or a server error
// about the row's data: a CHECK, NOT NULL or unique constraint, a value too long, out of
// range or incorrect for its type, a trigger's SIGNAL, a foreign key. A lost connection, a
// deadlock or a lock wait timeout is not (the batch fails).
func isRowError(err error) bool {
	var ve *valueError
	var we *warnedError
	if errors.As(err, &ve) || errors.As(err, &we) {
		return true
	}
	if errors.Is(err, conflict.ErrCopyText) {
		return false // a malformed stream
	}
	var me *mysql.MySQLError
	if !errors.As(err, &me) {
		return false
	}
	switch me.Number {
	case 1205, 1213: // lock wait timeout, deadlock
		return false
	case 1048, // column cannot be null
		1062,       // duplicate entry
		1216, 1217, // foreign key (old codes)
		1263,       // NULL supplied to NOT NULL column
		1264,       // out of range value
		1265,       // data truncated
		1292,       // incorrect (datetime...) value
		1300,       // invalid character string
		1365,       // division by 0
		1366,       // incorrect integer/string value
		1367,       // illegal value
		1406,       // data too long
		1411,       // incorrect value for function
		1451, 1452, // foreign key
		1644, // SIGNAL (a trigger's)
		1690, // value out of range
		3140, // invalid JSON text (MySQL)
		3819, // CHECK constraint violated (MySQL)
		4025: // CONSTRAINT failed (MariaDB's CHECK)
		return true
	}
	switch string(me.SQLState[:2]) {
	case "22", "23": // data exception, integrity constraint
		return true
	}
	return false
}
