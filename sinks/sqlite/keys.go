package sqlite

import (
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"github.com/ibexrepl/ibex/sinks"
)

// keySet is a batch's keys and whether a row came for each. Keys are told apart by the
// values bound for them (keyID), not by their text: two texts of one value (a
// timestamptz at two offsets) are one row in the file, and a row must find its key
// however it was printed.
type keySet struct {
	index map[string]int // keyID -> position in text and got
	text  []string       // each key once, as PrepareBatch got it
	got   []bool         // a row came for the key
}

func newKeySet(n int) *keySet {
	return &keySet{index: make(map[string]int, n), text: make([]string, 0, n), got: make([]bool, 0, n)}
}

// add adds a key (its text and its keyID) and says whether it was new to the set.
func (ks *keySet) add(text string, id []byte) bool {
	if _, ok := ks.index[string(id)]; ok {
		return false
	}
	ks.index[string(id)] = len(ks.text)
	ks.text = append(ks.text, text)
	ks.got = append(ks.got, false)
	return true
}

// take marks the key of id as having got its row. It fails for a key outside the set
// (its row would replace a row the batch did not count) and for a key that already got
// one (the second row would silently replace the first: a plain INSERT refused it).
func (ks *keySet) take(id []byte) error {
	i, ok := ks.index[string(id)]
	switch {
	case !ok:
		return fmt.Errorf("its key is not one of the batch's keys")
	case ks.got[i]:
		return fmt.Errorf("a second row for the same key in one batch")
	}
	ks.got[i] = true
	return nil
}

// missing returns the keys no row came for.
func (ks *keySet) missing() []string {
	var out []string
	for i, got := range ks.got {
		if !got {
			out = append(out, ks.text[i])
		}
	}
	return out
}

// appendKeyID appends to dst a byte string that identifies vals (a key's bound values)
// as SQLite compares them: one per value, its type and its bytes (0.0 and -0.0 are one
// REAL to SQLite).
func appendKeyID(dst []byte, vals []any) []byte {
	for _, v := range vals {
		switch v := v.(type) {
		case nil:
			dst = append(dst, 'n')
		case int64:
			dst = binary.BigEndian.AppendUint64(append(dst, 'i'), uint64(v))
		case float64:
			if v == 0 {
				v = 0
			}
			dst = binary.BigEndian.AppendUint64(append(dst, 'f'), math.Float64bits(v))
		case string:
			dst = append(binary.AppendUvarint(append(dst, 's'), uint64(len(v))), v...)
		case []byte:
			dst = append(binary.AppendUvarint(append(dst, 'b'), uint64(len(v))), v...)
		default:
			panic(fmt.Sprintf("sqlite: key value of type %T", v))
		}
	}
	return dst
}

// keyChunk is how many keys one statement over keys (a DELETE) takes: one
// statement per key costs the driver's per-statement work 100,000 times in a batch of
// 100,000 keys.
const keyChunk = 200

// overKeys runs the statement of stmtSQL(t, n) over keys, keyChunk keys a statement
// (key IN (?, ...), or (k1, k2) IN (VALUES (?, ?), ...)), and returns the sum of what run
// returns for each. each, when not nil, is called with every key's text and bound
// values first, and a key it returns false for is left out.
func (s *Sink) overKeys(ctx context.Context, b *batch, keys []string, stmtSQL func(t *sinks.Table, n int) string,
	each func(text string, vals []any) bool, run func(st *sql.Stmt, args []any) (int64, error)) (int64, error) {
	key := b.cols[:len(b.t.Key)]
	stmts := map[int]*sql.Stmt{}
	defer func() {
		for _, st := range stmts {
			st.Close()
		}
	}()
	args := make([]any, 0, keyChunk*len(key))
	var sum int64
	flush := func() error {
		if len(args) == 0 {
			return nil
		}
		n := len(args) / len(key)
		st := stmts[n]
		if st == nil {
			var err error
			if st, err = s.conn.PrepareContext(ctx, stmtSQL(b.t, n)); err != nil {
				return err
			}
			stmts[n] = st
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		r, err := run(st, args)
		sum += r
		args = args[:0]
		return err
	}
	for _, k := range keys {
		vals := args[len(args) : len(args)+len(key)]
		if err := s.args(b.t, key, k, vals); err != nil {
			return 0, fmt.Errorf("key %q: %w", clip(k), err)
		}
		if each != nil && !each(k, vals) {
			continue
		}
		args = args[:len(args)+len(key)]
		if len(args) == cap(args) {
			if err := flush(); err != nil {
				return 0, err
			}
		}
	}
	if err := flush(); err != nil {
		return 0, err
	}
	return sum, nil
}

// execRows is the run of a DELETE over keys: the rows it deleted.
func execRows(st *sql.Stmt, args []any) (int64, error) {
	res, err := st.ExecContext(noCancel, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// deleteSQL is the DELETE of n keys of t.
func deleteSQL(t *sinks.Table, n int) string {
	return fmt.Sprintf("DELETE FROM %s WHERE %s", ident(t), keysIn(t, n))
}

// keysIn is the condition matching n keys of t, bound as ?1, ?2 ...
func keysIn(t *sinks.Table, n int) string {
	var b strings.Builder
	if len(t.Key) == 1 {
		b.WriteString(quote(t.Key[0]) + " IN (")
		for i := range n {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "?%d", i+1)
		}
		b.WriteString(")")
		return b.String()
	}
	fmt.Fprintf(&b, "(%s) IN (VALUES ", quoteCols(t.Key))
	p := 0
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(")
		for j := range t.Key {
			if j > 0 {
				b.WriteString(", ")
			}
			p++
			fmt.Fprintf(&b, "?%d", p)
		}
		b.WriteString(")")
	}
	b.WriteString(")")
	return b.String()
}

// keyText is the key fields of a row's line (its first n fields), for messages.
func keyText(line string, n int) string {
	end := 0
	for range n {
		i := strings.IndexByte(line[end:], '\t')
		if i < 0 {
			return line
		}
		end += i + 1
	}
	return line[:end-1]
}
