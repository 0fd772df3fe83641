package mariadb

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/pgtext"
)

// keySet is a batch's keys, in the stream's text, and which of them a row came for: the
// rows replace their keys' rows as they load (LOAD DATA ... REPLACE), and FinishBatch
// deletes the keys no row came for. The run routes every row by its key fields' text, so
// a row's key is the very text of one of the batch's keys.
type keySet struct {
	nk   int             // key fields at the start of a row
	came map[string]bool // every key of the batch: whether its row came
	dups int64           // rows whose key had come already
}

func newKeySet(nk int, keys []string) *keySet {
	k := &keySet{nk: nk, came: make(map[string]bool, len(keys))}
	for _, key := range keys {
		k.came[key] = false
	}
	return k
}

// take records the key of a row (a COPY text line). A key outside the batch is an error:
// its row would replace a row the batch does not own, and a key that the target holds
// equal to a batch key but spelled otherwise would then be deleted as one without a row.
// A key that came already is counted in dups (the stream held it twice: the later row
// replaces the earlier, which the caller reports as a *sinks.RowCountError).
func (k *keySet) take(line string) error {
	end, seen := 0, 0
	for ; end < len(line); end++ {
		if line[end] == '\t' {
			if seen++; seen == k.nk {
				break
			}
		}
	}
	key := line[:end]
	came, ok := k.came[key]
	switch {
	case !ok:
		return fmt.Errorf("the row's key %q is not among the batch's keys", clip(key))
	case came:
		k.dups++
	default:
		k.came[key] = true
	}
	return nil
}

// missing returns the keys no row came for.
func (k *keySet) missing() []string {
	var out []string
	for key, came := range k.came {
		if !came {
			out = append(out, key)
		}
	}
	return out
}

func clip(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}

// keyTable is the session's temporary table of a batch's keys.
const keyTable = "`ibex_k`"

// keysDo runs, for keys of t, the statement that stmt makes of a table reference and a
// condition naming t's rows of those keys as `t` (e.g. "DELETE t FROM %s WHERE %s"),
// and returns the sum of what each statement gives: rows affected, or the COUNT(*) a
// query returns. A key of one integer column goes as IN lists of literals, inChunk keys
// a statement (faster than a temporary table's load and join); any other key is loaded
// into a temporary table (LOAD DATA) that the statement joins to t.
func (s *Sink) keysDo(ctx context.Context, t *sinks.Table, keys []string, stmt keyStmt) (int64, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	if intKey(t) {
		var sum int64
		conds, err := intConds(t.Key[0], keys)
		if err != nil {
			return 0, err
		}
		for _, cond := range conds {
			n, err := s.keyStmt(ctx, stmt, fmt.Sprintf(stmt.sql, ident(s.schema, t)+" AS t", cond))
			if err != nil {
				return 0, err
			}
			sum += n
		}
		return sum, nil
	}
	for _, q := range []string{
		`DROP TEMPORARY TABLE IF EXISTS ` + keyTable,
		fmt.Sprintf(`CREATE TEMPORARY TABLE %s ENGINE=InnoDB AS SELECT %s FROM %s LIMIT 0`, keyTable, quoteCols("", t.Key), ident(s.schema, t)),
	} {
		if _, err := s.conn.ExecContext(ctx, q); err != nil {
			s.drop(err)
			return 0, err
		}
	}
	taken, written, err := s.load(ctx, keyTable, newConverter(t, t.Key), nil, sinks.LinesReader(keys))
	if err != nil {
		return 0, fmt.Errorf("loading the keys: %w", err)
	}
	if taken != int64(len(keys)) || written != taken {
		return 0, fmt.Errorf("loading the keys: %d keys, %d read, %d written", len(keys), taken, written)
	}
	n, err := s.keyStmt(ctx, stmt, fmt.Sprintf(stmt.sql,
		fmt.Sprintf("%s AS k STRAIGHT_JOIN %s AS t ON %s", keyTable, ident(s.schema, t), keyJoin("t", "k", t.Key)), "TRUE"))
	if err != nil {
		return 0, err
	}
	if _, err := s.conn.ExecContext(ctx, `DROP TEMPORARY TABLE `+keyTable); err != nil {
		s.drop(err)
		return 0, err
	}
	return n, nil
}

// keyStmt is a statement keysDo runs: sql has two %s, the table reference and the
// condition; query says it returns a count (else its rows affected are the count).
type keyStmt struct {
	sql   string
	query bool
}

var (
	deleteKeys = keyStmt{sql: `DELETE t FROM %s WHERE %s`}
	countKeys  = keyStmt{sql: `SELECT COUNT(*) FROM %s WHERE %s`, query: true}
)

func (s *Sink) keyStmt(ctx context.Context, stmt keyStmt, q string) (int64, error) {
	if stmt.query {
		var n int64
		if err := s.conn.QueryRowContext(ctx, q).Scan(&n); err != nil {
			s.drop(err)
			return 0, err
		}
		return n, nil
	}
	res, err := s.conn.ExecContext(ctx, q)
	if err != nil {
		s.drop(err)
		return 0, err
	}
	return res.RowsAffected()
}

// intKey tells whether t's key is one integer column, whose keys go as IN lists.
func intKey(t *sinks.Table) bool {
	if len(t.Key) != 1 {
		return false
	}
	c, ok := column(t, t.Key[0])
	if !ok {
		return false
	}
	typ := pgtext.ParseType(c.Type)
	return !typ.Array && (typ.Kind == pgtext.Int16 || typ.Kind == pgtext.Int32 || typ.Kind == pgtext.Int64)
}

// inChunk is how many terms (a key, or a run of consecutive keys) one statement holds.
const inChunk = 5000

// intConds returns the conditions (on t's column col) that name keys, integers checked: the keys
// sorted, a run of at least 3 consecutive ones as a BETWEEN (a range the index reads in
// one pass: several times faster than as many lookups, and batches of new or bulk-changed
// rows are often such runs), the others in an IN list; inChunk terms a condition.
func intConds(col string, keys []string) ([]string, error) {
	ks := make([]int64, len(keys))
	for i, k := range keys {
		n, err := strconv.ParseInt(k, 10, 64)
		if err != nil {
			return nil, &valueError{col: col, typ: "integer key", value: k, err: err}
		}
		ks[i] = n
	}
	slices.Sort(ks)
	ks = slices.Compact(ks)
	col = quote(col)
	var conds []string
	var in, ranges []string
	flush := func() {
		var terms []string
		if len(in) > 0 {
			terms = append(terms, "t."+col+" IN ("+strings.Join(in, ",")+")")
		}
		terms = append(terms, ranges...)
		conds = append(conds, strings.Join(terms, " OR "))
		in, ranges = in[:0], ranges[:0]
	}
	for i := 0; i < len(ks); {
		j := i + 1
		for j < len(ks) && ks[j] == ks[j-1]+1 {
			j++
		}
		if j-i >= 3 {
			ranges = append(ranges, fmt.Sprintf("t.%s BETWEEN %d AND %d", col, ks[i], ks[j-1]))
		} else {
			for _, k := range ks[i:j] {
				in = append(in, strconv.FormatInt(k, 10))
			}
		}
		if len(in)+len(ranges) >= inChunk {
			flush()
		}
		i = j
	}
	if len(in)+len(ranges) > 0 {
		flush()
	}
	return conds, nil
}
