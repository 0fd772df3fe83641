package config

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/internal/control"
)

// Export reads the whole configuration from the control database.
func Export(ctx context.Context, q control.Querier) (*File, error) {
	f := &File{DBs: map[string]DB{}, Tables: map[string]Table{}, Herds: map[string][]string{}, DBGroups: map[string][]string{}, Syncs: map[string]Sync{}}
	dbs, err := control.DBs(ctx, q)
	if err != nil {
		return nil, err
	}
	for _, d := range dbs {
		m := DB(maps.Clone(d.Conn))
		if m == nil {
			m = DB{}
		}
		if d.Pass != "" {
			m["pass"] = d.Pass
		}
		if d.Status != control.StatusActive {
			m["status"] = string(d.Status)
		}
		if !d.Type.Postgres() {
			m["type"] = string(d.Type)
		}
		if d.MakeDelta {
			m["makedelta"] = "on"
		}
		f.DBs[d.Name] = m
	}
	rels, err := control.Relations(ctx, q)
	if err != nil {
		return nil, err
	}
	names := map[string]string{} // schema.table as control.Herds spells it -> as the file spells it
	for _, r := range rels {
		key := r.KeyCols
		if key == nil {
			key = []string{}
		}
		names[r.QualName()] = TableName(r.Schema, r.Name)
		var counters []string // none: nil, as a file without counters: reads
		if len(r.Counters) > 0 {
			counters = r.Counters
		}
		f.Tables[TableName(r.Schema, r.Name)] = Table{DB: r.DB, Key: key, KeyKind: r.KeyKind, Where: r.Where, Counters: counters, ConflictDetect: detectOut(r.Detect), MakeDelta: r.MakeDelta}
	}
	cns, err := control.CustomNames(ctx, q)
	if err != nil {
		return nil, err
	}
	for _, c := range cns {
		n := names[c.Table]
		t := f.Tables[n]
		t.CustomNames = append(t.CustomNames, CustomName{Name: TableName(c.Schema, c.Name), DB: c.DB, Sync: c.Sync})
		f.Tables[n] = t
	}
	ccs, err := control.ListScoped(ctx, q, control.CustomCols)
	if err != nil {
		return nil, err
	}
	for _, c := range ccs {
		n := names[c.Table]
		t := f.Tables[n]
		t.CustomCols = append(t.CustomCols, CustomCols{Select: "SELECT " + c.Text, DB: c.DB, Sync: c.Sync})
		f.Tables[n] = t
	}
	rfs, err := control.ListScoped(ctx, q, control.RowFilters)
	if err != nil {
		return nil, err
	}
	for _, r := range rfs {
		n := names[r.Table]
		t := f.Tables[n]
		t.RowFilters = append(t.RowFilters, RowFilter{Where: r.Text, DB: r.DB, Sync: r.Sync})
		f.Tables[n] = t
	}
	seqs, err := control.Sequences(ctx, q)
	if err != nil {
		return nil, err
	}
	if len(seqs) > 0 {
		f.Sequences = map[string]Sequence{}
	}
	for _, s := range seqs {
		f.Sequences[TableName(s.Schema, s.Name)] = Sequence{DB: s.DB, Herds: herdList(s.Herds), Interleave: s.Interleave}
	}
	herds, err := control.Herds(ctx, q)
	if err != nil {
		return nil, err
	}
	for _, h := range herds {
		ts := []string{}
		for _, t := range h.Tables {
			if n, ok := names[t]; ok {
				t = n
			}
			ts = append(ts, t)
		}
		f.Herds[h.Name] = ts
	}
	groups, err := control.DBGroups(ctx, q)
	if err != nil {
		return nil, err
	}
	for _, g := range groups {
		ms := []string{}
		for _, m := range g.Members {
			ms = append(ms, m.DB+":"+m.Role)
		}
		f.DBGroups[g.Name] = ms
	}
	syncs, err := control.Syncs(ctx, q)
	if err != nil {
		return nil, err
	}
	for _, s := range syncs {
		var byType map[string]string
		if len(s.ConflictByType) > 0 {
			byType = s.ConflictByType
		}
		f.Syncs[s.Name] = Sync{Herd: s.Herd, DBs: s.DBGroup, ConflictStrategy: s.ConflictStrategy, ConflictByType: byType, Autokick: s.Autokick,
			Onetimecopy: s.Onetimecopy, Schedule: s.Schedule, Status: string(s.Status), BatchSize: s.BatchSize,
			SingleTransaction: s.SingleTransaction, OnError: onErrorOut(s.OnError), OnOrphan: onOrphanOut(s.OnOrphan), CompareEvery: s.CompareEvery,
			UniqueClashLoser: uniqueLoserOut(s.UniqueClashLoser)}
	}
	return f, nil
}

// herdList is a sequence's herds as a file has them: sorted, nil for none.
func herdList(hs []string) []string {
	if len(hs) == 0 {
		return nil
	}
	out := slices.Clone(hs)
	slices.Sort(out)
	return slices.Compact(out)
}

// TableName spells schema.table so that catalog.ParseName reads it back: a part with a
// dot or a double quote is double-quoted.
func TableName(schema, name string) string {
	quote := func(s string) string {
		if strings.ContainsAny(s, `."`) {
			return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
		}
		return s
	}
	return quote(schema) + "." + quote(name)
}

// Change is one difference between the control database and a file.
type Change struct {
	Op   string // add, update, remove
	Kind string // db, table, sequence, herd, dbgroup, sync
	Name string
}

func (c Change) String() string { return fmt.Sprintf("%s %s %s", c.Op, c.Kind, c.Name) }

func diffMap[V any](kind string, cur, want map[string]V, out *[]Change) {
	for _, n := range sortedKeys(want) {
		old, ok := cur[n]
		switch {
		case !ok:
			*out = append(*out, Change{"add", kind, n})
		case !reflect.DeepEqual(old, want[n]):
			*out = append(*out, Change{"update", kind, n})
		}
	}
	for _, n := range sortedKeys(cur) {
		if _, ok := want[n]; !ok {
			*out = append(*out, Change{"remove", kind, n})
		}
	}
}

func normalize(f *File) {
	for n, s := range f.Syncs {
		s.ConflictStrategy = conflict.Normalize(s.ConflictStrategy)
		if len(s.ConflictByType) == 0 {
			s.ConflictByType = nil
		}
		for typ, v := range s.ConflictByType {
			s.ConflictByType[typ] = conflict.Normalize(v)
		}
		if s.Status == "" {
			s.Status = string(control.StatusActive)
		}
		f.Syncs[n] = s
	}
	for n, d := range f.DBs {
		if d["status"] == string(control.StatusActive) {
			delete(d, "status")
		}
		f.DBs[n] = d
	}
	for n, t := range f.Tables {
		if t.Key == nil {
			t.Key = []string{}
		}
		f.Tables[n] = t
	}
	for n, q := range f.Sequences {
		q.Herds = herdList(q.Herds)
		f.Sequences[n] = q
	}
}

// Diff lists what applying want to the control database would change.
func Diff(cur, want *File) []Change {
	normalize(want)
	var out []Change
	diffMap("db", cur.DBs, want.DBs, &out)
	diffMap("table", cur.Tables, want.Tables, &out)
	diffMap("sequence", cur.Sequences, want.Sequences, &out)
	diffMap("herd", cur.Herds, want.Herds, &out)
	diffMap("dbgroup", cur.DBGroups, want.DBGroups, &out)
	diffMap("sync", cur.Syncs, want.Syncs, &out)
	return out
}

// Apply makes the control database match want, in the transaction q. changes is Diff's
// result; syncs that are added or updated are returned so the caller can validate them
// (install capture) inside the same transaction, and removed syncs so it can remove theirs.
func Apply(ctx context.Context, q control.Querier, cur, want *File, changes []Change) error {
	has := func(op, kind, name string) bool {
		return slices.Contains(changes, Change{op, kind, name})
	}
	// Removals, users first.
	for _, c := range changes {
		if c.Op == "remove" && c.Kind == "sync" {
			if err := control.RemoveSync(ctx, q, c.Name); err != nil {
				return err
			}
		}
	}
	// Dbs and tables first (others refer to them).
	for _, n := range sortedKeys(want.DBs) {
		if !has("add", "db", n) && !has("update", "db", n) {
			continue
		}
		d := &control.DB{Name: n, Conn: map[string]string{}, Status: control.StatusActive}
		for k, v := range want.DBs[n] {
			switch k {
			case "pass":
				d.Pass = v
			case "status":
				d.Status = control.Status(v)
			case "type":
				d.Type = control.DBType(v)
			case "makedelta":
				on, err := parseOnOff(v)
				if err != nil {
					return fmt.Errorf("db %s: makedelta: %w", n, err)
				}
				d.MakeDelta = on
			default:
				d.Conn[k] = v
			}
		}
		if err := control.PutDB(ctx, q, d, has("add", "db", n)); err != nil {
			return err
		}
	}
	relIDs := map[string]int64{}
	for _, n := range sortedKeys(want.Tables) {
		t := want.Tables[n]
		qn, _ := catalog.ParseName(n)
		id, err := control.PutRelation(ctx, q, &control.Relation{Schema: qn.Schema, Name: qn.Name, DB: t.DB, KeyCols: t.Key, KeyKind: t.KeyKind, Where: t.Where, Counters: t.Counters, Detect: t.ConflictDetect, MakeDelta: t.MakeDelta})
		if err != nil {
			return err
		}
		relIDs[n] = id
	}
	for _, n := range sortedKeys(want.Herds) {
		if !has("add", "herd", n) && !has("update", "herd", n) {
			continue
		}
		if err := control.EnsureHerd(ctx, q, n); err != nil {
			return err
		}
		if err := control.ClearHerd(ctx, q, n); err != nil {
			return err
		}
		for i, t := range want.Herds[n] {
			if _, err := q.Exec(ctx, `INSERT INTO ibex.herdmap (herd, relation, priority) VALUES ($1, $2, $3)`, n, relIDs[t], len(want.Herds[n])-i); err != nil {
				return err
			}
		}
	}
	for _, n := range sortedKeys(want.Sequences) {
		if !has("add", "sequence", n) && !has("update", "sequence", n) {
			continue
		}
		s := want.Sequences[n]
		qn, _ := catalog.ParseName(n)
		id, err := control.PutSequence(ctx, q, &control.Sequence{Schema: qn.Schema, Name: qn.Name, DB: s.DB, Interleave: s.Interleave})
		if err != nil {
			return err
		}
		if err := control.SetSequenceHerds(ctx, q, id, s.Herds); err != nil {
			return err
		}
	}
	for _, n := range sortedKeys(want.DBGroups) {
		if !has("add", "dbgroup", n) && !has("update", "dbgroup", n) {
			continue
		}
		if err := control.PutDBGroup(ctx, q, dbGroup(n, want.DBGroups[n]), has("add", "dbgroup", n)); err != nil {
			return err
		}
	}
	for _, n := range sortedKeys(want.Syncs) {
		if !has("add", "sync", n) && !has("update", "sync", n) {
			continue
		}
		s := want.Syncs[n]
		if err := control.PutSync(ctx, q, &control.Sync{Name: n, Herd: s.Herd, DBGroup: s.DBs, ConflictStrategy: s.ConflictStrategy, ConflictByType: s.ConflictByType,
			Autokick: s.Autokick, Onetimecopy: s.Onetimecopy, Schedule: s.Schedule, Status: control.Status(s.Status), BatchSize: s.BatchSize,
			SingleTransaction: s.SingleTransaction, OnError: s.OnError, OnOrphan: s.OnOrphan, CompareEvery: s.CompareEvery, UniqueClashLoser: s.UniqueClashLoser}, has("add", "sync", n)); err != nil {
			return err
		}
	}
	// Customnames after the syncs they may name: a table's are replaced as a whole.
	for _, n := range sortedKeys(want.Tables) {
		if !has("add", "table", n) && !has("update", "table", n) {
			continue
		}
		qn, err := catalog.ParseName(n)
		if err != nil {
			return err
		}
		var cs []control.CustomName
		for _, c := range want.Tables[n].CustomNames {
			cn, err := catalog.ParseName(c.Name)
			if err != nil {
				return fmt.Errorf("table %s: customname %q: %w", n, c.Name, err)
			}
			cs = append(cs, control.CustomName{Table: qn.String(), Schema: cn.Schema, Name: cn.Name, DB: c.DB, Sync: c.Sync})
		}
		if err := control.ReplaceCustomNames(ctx, q, qn.String(), cs); err != nil {
			return err
		}
		var ccs, rfs []control.Scoped
		for _, c := range want.Tables[n].CustomCols {
			sel, err := control.NormalizeCustomCols(c.Select)
			if err != nil {
				return fmt.Errorf("table %s: customcols: %w", n, err)
			}
			ccs = append(ccs, control.Scoped{Text: sel, DB: c.DB, Sync: c.Sync})
		}
		for _, r := range want.Tables[n].RowFilters {
			rfs = append(rfs, control.Scoped{Text: strings.TrimSpace(r.Where), DB: r.DB, Sync: r.Sync})
		}
		if err := control.ReplaceScoped(ctx, q, control.CustomCols, qn.String(), ccs); err != nil {
			return err
		}
		if err := control.ReplaceScoped(ctx, q, control.RowFilters, qn.String(), rfs); err != nil {
			return err
		}
	}
	// Remaining removals, users before what they use.
	for _, kind := range []string{"dbgroup", "sequence", "herd", "table", "db"} {
		for _, c := range changes {
			if c.Op != "remove" || c.Kind != kind {
				continue
			}
			var err error
			switch kind {
			case "dbgroup":
				err = control.RemoveDBGroup(ctx, q, c.Name)
			case "sequence":
				qn, _ := catalog.ParseName(c.Name)
				err = control.RemoveSequence(ctx, q, qn.Schema, qn.Name)
			case "herd":
				err = control.RemoveHerd(ctx, q, c.Name)
			case "table":
				qn, _ := catalog.ParseName(c.Name)
				err = control.RemoveRelation(ctx, q, qn.Schema, qn.Name)
			case "db":
				err = control.RemoveDB(ctx, q, c.Name)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// parseOnOff reads a boolean setting of a file.
func parseOnOff(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "1", "t", "true", "yes", "on":
		return true, nil
	case "0", "f", "false", "no", "off", "":
		return false, nil
	}
	return false, fmt.Errorf("%q is not on or off", v)
}

// onErrorOut is a sync's on_error as an export writes it: left out when it is the default.
func onErrorOut(v string) string {
	if v == control.OnErrorStop {
		return ""
	}
	return v
}

// detectOut is a table's conflict_detect as an export writes it: left out when it is the
// default.
func detectOut(v string) string {
	if v == control.DetectRows {
		return ""
	}
	return v
}

// onOrphanOut is a sync's on_orphan as an export writes it: left out when it is the default.
func onOrphanOut(v string) string {
	if v == control.OnOrphanDelete {
		return ""
	}
	return v
}

// uniqueLoserOut is a sync's unique_clash_loser as an export writes it: left out when it
// is the default.
func uniqueLoserOut(v string) string {
	if v == control.UniqueLoserDelete {
		return ""
	}
	return v
}
