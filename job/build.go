package job

import (
	"fmt"

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
	if ks.built {
		return ks.from
	}
	if ks.winner < 0 {
		return 0
	}
	return bit(ks.winner)
}

// buildRows builds the rows of the collected keys from their versions (key -> sender idx
// -> COPY text line) and routes each to its key's receivers.
func (r *runner) buildRows(t *table, keys map[string]*keyState, versions map[string]map[int][]byte) ([]routedLine, error) {
	var out []routedLine
	for k, byIdx := range versions {
		ks := keys[k]
		if ks == nil || !ks.built {
			continue
		}
		if _, ok := byIdx[ks.winner]; !ok {
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
		row, err := ks.decision.Build(t.cols, vs)
		if err != nil {
			return nil, fmt.Errorf("building the row of key %s: %w", keyText(t, k), err)
		}
		row = append(row, extras...)
		out = append(out, routedLine{line: []byte(conflict.EncodeCopyLine(row)), to: ks.recv})
	}
	return out, nil
}
