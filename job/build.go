package job

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/ibexrepl/ibex/internal/control"

	"github.com/ibexrepl/ibex/internal/conflict"
)

// The one place where a receiver's row is computed instead of forwarded: a conflict
// decision that is not a whole row (conflict.Decision with Columns or Values) makes every
// db it names send its version of the row; fanout collects them and buildRows builds the
// row every receiver of the key gets, the winner included.
//
// A version a db did not send is a row it no longer has. When the winner's is missing
// the key is deleted everywhere (no row is sent); when another named db's is missing the
// row cannot be built and the batch fails loudly, never applying part of it.

// senders is the members that send the key's row: its winner, or for a built row every
// db it is built from.
func (ks *keyState) senders() uint64 {
	if ks.dropRow {
		return 0 // deleted everywhere (a unique clash's losing row)
	}
	if ks.built {
		return ks.more.from
	}
	if ks.winner < 0 {
		return 0
	}
	return bit(ks.winner)
}

// buildRows builds the rows of the collected keys from their versions (key -> sender idx
// -> COPY text line) and routes each to its key's receivers. Rows decided by a conflict
// function (conflict.Decision.Func) are built from what one call per row returned, all
// calls of the batch in one statement on the control database.
func (r *runner) buildRows(ctx context.Context, t *table, keys map[string]*keyState, versions map[string]map[int][]byte) ([]routedLine, error) {
	var out []routedLine
	calls := map[string][]funcCall{} // function -> its calls
	for k, byIdx := range versions {
		ks := keys[k]
		if ks == nil || !ks.built {
			continue
		}
		d := *ks.more.decision
		if _, ok := byIdx[ks.winner]; !ok && d.Func == "" {
			continue // the winner deleted the row: deleted everywhere
		}
		vs := map[string][]conflict.Field{}
		var extras []conflict.Field // the winner's customcols and filter fields (custom.go)
		for idx, line := range byIdx {
			f, err := conflict.DecodeCopyLine(string(line))
			if err != nil {
				return nil, fmt.Errorf("key %s, version of db %s: %w", keyText(t, k), r.members[idx].name, err)
			}
			if len(f) > len(t.cols) {
				if idx == ks.winner {
					extras = f[len(t.cols):]
				}
				f = f[:len(t.cols)]
			}
			vs[r.members[idx].name] = f
		}
		if d.Func != "" {
			c, ok, err := r.funcCall(t, k, ks, vs)
			if err != nil {
				return nil, err
			}
			if ok {
				calls[d.Func] = append(calls[d.Func], c)
			}
			continue
		}
		row, err := d.Build(t.cols, vs)
		if err != nil {
			return nil, fmt.Errorf("building the row of key %s: %w", keyText(t, k), err)
		}
		row = append(row, extras...)
		out = append(out, routedLine{line: []byte(conflict.EncodeCopyLine(row)), to: ks.recv})
	}
	for _, fn := range slices.Sorted(maps.Keys(calls)) {
		lines, err := r.callFunc(ctx, t, fn, calls[fn])
		if err != nil {
			return nil, err
		}
		out = append(out, lines...)
	}
	return out, nil
}

// funcCall is one row to build with a conflict function: its input and what the result
// completes.
type funcCall struct {
	key      string
	ks       *keyState
	input    []byte
	versions map[string][]conflict.Field
	base     string // the db whose version gives the columns the function leaves out
}

// funcVersion is one competing version of a row as a conflict function receives it.
type funcVersion struct {
	DB   string             `json:"db"`
	At   string             `json:"at"`   // the time of the source's latest change of the row
	Kind string             `json:"kind"` // what its changes did: insert, update or delete
	Row  map[string]*string `json:"row"`  // its row now, column -> value text; null when deleted
	// Old is the row as the source's first pending change of it found it (column -> value
	// text); null when that change inserted it.
	Old json.RawMessage `json:"old"`
}

// funcCall prepares the call for key k; ok is false when no source has the row any more
// (deleted everywhere, nothing to ask).
func (r *runner) funcCall(t *table, k string, ks *keyState, vs map[string][]conflict.Field) (funcCall, bool, error) {
	c := funcCall{key: k, ks: ks, versions: vs}
	in := struct {
		Table    string            `json:"table"`
		Key      map[string]string `json:"key"`
		Versions []funcVersion     `json:"versions"`
	}{Table: t.name, Key: map[string]string{}}
	kf, err := conflict.DecodeCopyLine(k)
	if err != nil || len(kf) != len(t.keyCols) {
		return c, false, fmt.Errorf("key %s: cannot decode it for conflict function %s", keyText(t, k), ks.more.decision.Func)
	}
	for i, f := range kf {
		in.Key[t.keyCols[i]] = f.Text
	}
	if _, ok := vs[r.members[ks.winner].name]; ok {
		c.base = r.members[ks.winner].name
	}
	for _, ch := range ks.changes {
		v := funcVersion{DB: ch.DB, At: time.UnixMicro(ch.At).UTC().Format(time.RFC3339Nano), Kind: kindName(ch.Kind), Old: json.RawMessage("null")}
		if old := ks.old()[r.memberByName(ch.DB).idx]; old != "" {
			v.Old = json.RawMessage(old)
		}
		if row, ok := vs[ch.DB]; ok {
			v.Row = make(map[string]*string, len(t.cols))
			for i, col := range t.cols {
				if !row[i].Null {
					v.Row[col] = &row[i].Text
				} else {
					v.Row[col] = nil
				}
			}
			if c.base == "" {
				c.base = ch.DB
			}
		}
		in.Versions = append(in.Versions, v)
	}
	if c.base == "" {
		return c, false, nil
	}
	if c.input, err = json.Marshal(in); err != nil {
		return c, false, fmt.Errorf("key %s: %w", keyText(t, k), err)
	}
	return c, true, nil
}

func kindName(k conflict.Kind) string {
	switch k {
	case conflict.KindInsert:
		return "insert"
	case conflict.KindDelete:
		return "delete"
	}
	return "update"
}

// callFunc calls conflict function fn for calls and builds their rows: the columns it
// returned, the base version's for the others.
func (r *runner) callFunc(ctx context.Context, t *table, fn string, calls []funcCall) ([]routedLine, error) {
	inputs := make([][]byte, len(calls))
	for i, c := range calls {
		inputs[i] = c.input
	}
	res, err := control.CallConflictFunction(ctx, r.ctlQ(), fn, inputs)
	if err != nil {
		return nil, fmt.Errorf("table %s: %w", t.name, err)
	}
	out := make([]routedLine, 0, len(calls))
	for i, c := range calls {
		d := conflict.Decision{Winner: c.base, Values: map[string]conflict.Field{}}
		for col, v := range res[i] {
			if !slices.Contains(t.cols, col) {
				return nil, fmt.Errorf("table %s, key %s: %w %s returned column %q, which the table does not have", t.name, keyText(t, c.key), control.ErrConflictFunction, fn, col)
			}
			if v == nil {
				d.Values[col] = conflict.Field{Null: true}
			} else {
				d.Values[col] = conflict.Field{Text: *v}
			}
		}
		row, err := d.Build(t.cols, c.versions)
		if err != nil {
			return nil, fmt.Errorf("building the row of key %s: %w", keyText(t, c.key), err)
		}
		out = append(out, routedLine{line: []byte(conflict.EncodeCopyLine(row)), to: c.ks.recv})
	}
	return out, nil
}
