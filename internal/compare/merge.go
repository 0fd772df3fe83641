package compare

import (
	"sort"
	"strings"
)

// Entry is one row of one db in the row phase: its block, key text, key columns and md5.
type Entry struct {
	Block   int32
	KeyText string
	Key     []string
	Hash    string
}

// less orders entries as Rows does: by block, then key text bytewise.
func less(a, b *Entry) bool {
	if a.Block != b.Block {
		return a.Block < b.Block
	}
	return a.KeyText < b.KeyText
}

// Stream yields the entries of one db in Rows' order; ok is false after the last.
type Stream interface {
	Next() (e Entry, ok bool, err error)
}

// SliceStream is a Stream over entries, which it sorts.
func SliceStream(es []Entry) Stream {
	sort.Slice(es, func(i, j int) bool { return less(&es[i], &es[j]) })
	return &sliceStream{es: es}
}

type sliceStream struct {
	es []Entry
	i  int
}

func (s *sliceStream) Next() (Entry, bool, error) {
	if s.i >= len(s.es) {
		return Entry{}, false, nil
	}
	s.i++
	return s.es[s.i-1], true, nil
}

// Kinds of difference.
const (
	KindMissing   = "missing"   // absent on a minority of the dbs (Lacks)
	KindExtra     = "extra"     // present on a minority of the dbs (its Versions)
	KindDifferent = "different" // present everywhere, not the same everywhere
)

// Diff is one key in which the dbs differ.
type Diff struct {
	// Key is the key's text (PostgreSQL's record output of the key columns).
	Key string `json:"key"`
	// KeyFields are the key columns' text, in key order.
	KeyFields []string `json:"key_fields"`
	Kind      string   `json:"kind"`
	// Versions maps each db that has the key to its row's md5; Lacks lists the others.
	Versions map[string]string `json:"versions"`
	Lacks    []string          `json:"lacks,omitempty"`
	// InFlight: a source has captured changes of this key still pending: the next run
	// settles it.
	InFlight bool `json:"in_flight"`
}

// Merge walks the streams of the dbs named names (rows, one per db) and the pending keys
// (pending, one per source, any number) in step and calls fn with every key in which the
// dbs differ. allPending marks every difference in flight (a pending TRUNCATE).
func Merge(names []string, rows []Stream, pending []Stream, allPending bool, fn func(Diff) error) error {
	heads := make([]*Entry, len(rows))
	advance := func(i int) error {
		e, ok, err := rows[i].Next()
		if err != nil {
			return err
		}
		if ok {
			heads[i] = &e
		} else {
			heads[i] = nil
		}
		return nil
	}
	for i := range rows {
		if err := advance(i); err != nil {
			return err
		}
	}
	pheads := make([]*Entry, len(pending))
	padvance := func(i int) error {
		e, ok, err := pending[i].Next()
		if err != nil {
			return err
		}
		if ok {
			pheads[i] = &e
		} else {
			pheads[i] = nil
		}
		return nil
	}
	for i := range pending {
		if err := padvance(i); err != nil {
			return err
		}
	}
	for {
		var low *Entry
		for _, h := range heads {
			if h != nil && (low == nil || less(h, low)) {
				low = h
			}
		}
		if low == nil {
			return nil
		}
		cur := *low
		d := Diff{Key: cur.KeyText, KeyFields: cur.Key, Versions: map[string]string{}}
		same := true
		first := ""
		for i, h := range heads {
			if h == nil || h.Block != cur.Block || h.KeyText != cur.KeyText {
				d.Lacks = append(d.Lacks, names[i])
				same = false
				continue
			}
			d.Versions[names[i]] = h.Hash
			if first == "" {
				first = h.Hash
			} else if h.Hash != first {
				same = false
			}
			if err := advance(i); err != nil {
				return err
			}
		}
		if same {
			continue
		}
		d.InFlight = allPending
		for i := range pheads {
			for pheads[i] != nil && less(pheads[i], &cur) {
				if err := padvance(i); err != nil {
					return err
				}
			}
			if p := pheads[i]; p != nil && p.Block == cur.Block && p.KeyText == cur.KeyText {
				d.InFlight = true
			}
		}
		switch {
		case len(d.Lacks) == 0:
			d.Kind = KindDifferent
		case len(d.Lacks) <= len(d.Versions):
			d.Kind = KindMissing
		default:
			d.Kind = KindExtra
		}
		if err := fn(d); err != nil {
			return err
		}
	}
}

// Label is a key's text for people: the record without its parentheses when the key has
// one column.
func (d *Diff) Label() string {
	if len(d.KeyFields) == 1 {
		return d.KeyFields[0]
	}
	return d.Key
}

// Where says, for people, where the key is and is not.
func (d *Diff) Where(order []string) string {
	var has []string
	for _, n := range order {
		if _, ok := d.Versions[n]; ok {
			has = append(has, n)
		}
	}
	switch d.Kind {
	case KindMissing:
		return "missing on " + strings.Join(d.Lacks, ",")
	case KindExtra:
		return "only on " + strings.Join(has, ",")
	}
	// Group the dbs by version.
	var groups []string
	seen := map[string]bool{}
	for _, n := range has {
		h := d.Versions[n]
		if seen[h] {
			continue
		}
		seen[h] = true
		var g []string
		for _, m := range has {
			if d.Versions[m] == h {
				g = append(g, m)
			}
		}
		groups = append(groups, strings.Join(g, ","))
	}
	return "differs: " + strings.Join(groups, " | ")
}
