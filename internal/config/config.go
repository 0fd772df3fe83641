// Package config reads and writes ibex's configuration as YAML: the same dbs, tables,
// sequences, herds, dbgroups and syncs the command line manages. Reading is strict: unknown keys and
// wrong types are refused with their line.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/dbconn"
	"github.com/ibexrepl/ibex/internal/schedule"
	"github.com/ibexrepl/ibex/sinks/targets"
)

// File is a whole configuration.
type File struct {
	DBs    map[string]DB    `yaml:"dbs,omitempty"`
	Tables map[string]Table `yaml:"tables,omitempty"`
	// Sequences are in herds as tables are; their herds are listed with them.
	Sequences map[string]Sequence `yaml:"sequences,omitempty"`
	Herds     map[string][]string `yaml:"herds,omitempty"`
	DBGroups  map[string][]string `yaml:"dbgroups,omitempty"` // "db:role", in order
	Syncs     map[string]Sync     `yaml:"syncs,omitempty"`
}

// DB is a db's libpq keywords plus pass (a reference) and status.
type DB map[string]string

// UnmarshalYAML refuses unknown keys with their line.
func (d *DB) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: a db is a mapping of connection settings", n.Line)
	}
	out := DB{}
	// A db that is not PostgreSQL takes its sink's settings (checked in check).
	typed := false
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k, v := n.Content[i], n.Content[i+1]; k.Value == "type" && !control.DBType(v.Value).Postgres() {
			typed = true
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !typed && !dbconn.ValidKey(k.Value) && k.Value != "pass" && k.Value != "status" && k.Value != "type" && k.Value != "makedelta" {
			return fmt.Errorf("line %d: unknown db setting %q (known: %s, pass, status, makedelta)", k.Line, k.Value, strings.Join(dbconn.Keys, ", "))
		}
		if v.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: db setting %q must be a single value", v.Line, k.Value)
		}
		if k.Value == "pass" {
			if err := dbconn.CheckPass(v.Value); err != nil {
				return fmt.Errorf("line %d: %v", v.Line, err)
			}
		}
		out[k.Value] = v.Value
	}
	*d = out
	return nil
}

// Type is the db's type (control.DBTypePostgres when not given).
func (d DB) Type() control.DBType {
	if t := d["type"]; t != "" {
		return control.DBType(t)
	}
	return control.DBTypePostgres
}

// Params are the db's settings without type, pass, status and makedelta.
func (d DB) Params() map[string]string {
	out := map[string]string{}
	for k, v := range d {
		if k != "pass" && k != "status" && k != "type" && k != "makedelta" {
			out[k] = v
		}
	}
	return out
}

// Table is a replicated table.
type Table struct {
	DB      string   `yaml:"db,omitempty"`
	Key     []string `yaml:"key,flow"`
	KeyKind string   `yaml:"keykind"`
	// Where is the row filter: only rows matching this SQL condition move.
	Where string `yaml:"where,omitempty"`
	// Counters are the counter columns: changes to them are applied as deltas.
	Counters []string `yaml:"counters,flow,omitempty"`
	// ConflictDetect: rows (default) or columns.
	ConflictDetect string `yaml:"conflict_detect,omitempty"`
	// CustomNames are the tables targets write its rows into instead (customname).
	CustomNames []CustomName `yaml:"customnames,omitempty"`
	// CustomCols are the select lists targets get instead of the table's columns.
	CustomCols []CustomCols `yaml:"customcols,omitempty"`
	// RowFilters are row filters for some targets, or the targets of some sync.
	RowFilters []RowFilter `yaml:"rowfilters,omitempty"`
	// MakeDelta: rows ibex applies to the table are captured for the other syncs of the
	// db (cascades).
	MakeDelta bool `yaml:"makedelta,omitempty"`
}

// CustomCols is a select list ("SELECT a, upper(c) AS c") a target gets of a table's
// rows: on db DB (any target when empty), in sync Sync (any sync when empty).
type CustomCols struct {
	Select string `yaml:"select"`
	DB     string `yaml:"db,omitempty"`
	Sync   string `yaml:"sync,omitempty"`
}

// RowFilter is a condition the rows a target gets must match: on db DB, in sync Sync
// (at least one of them).
type RowFilter struct {
	Where string `yaml:"where"`
	DB    string `yaml:"db,omitempty"`
	Sync  string `yaml:"sync,omitempty"`
}

// CustomName is a table a target writes a table's rows into: on db DB (any target when
// empty), in sync Sync (any sync when empty).
type CustomName struct {
	Name string `yaml:"name"`
	DB   string `yaml:"db,omitempty"`
	Sync string `yaml:"sync,omitempty"`
}

// Sequence is a replicated sequence: the db it was found in, its herds, and whether its
// sources were given interleaved increments ('ibex update sequence NAME interleave=on' sets
// them on the dbs; a file only records it).
type Sequence struct {
	DB         string   `yaml:"db,omitempty"`
	Herds      []string `yaml:"herds,flow,omitempty"`
	Interleave bool     `yaml:"interleave,omitempty"`
}

// Sync is a sync's definition.
type Sync struct {
	Herd             string `yaml:"herd"`
	DBs              string `yaml:"dbs"`
	ConflictStrategy string `yaml:"conflict_strategy"`
	// ConflictByType sets a strategy for some conflict types instead (update_delete: skip).
	ConflictByType map[string]string `yaml:"conflict_by_type,omitempty"`
	Autokick       bool              `yaml:"autokick"`
	Onetimecopy    int               `yaml:"onetimecopy"`
	Schedule       string            `yaml:"schedule,omitempty"`
	Status         string            `yaml:"status"`
	BatchSize      int               `yaml:"batch_size,omitempty"`
	// SingleTransaction: one transaction per receiver whatever the backlog.
	SingleTransaction bool `yaml:"single_transaction,omitempty"`
	// OnError: stop (default) or skip (rows a receiver refuses are parked).
	OnError string `yaml:"on_error,omitempty"`
	// OnOrphan: delete (default), restore or keep.
	OnOrphan string `yaml:"on_orphan,omitempty"`
	// UniqueClashLoser: delete (default) or park.
	UniqueClashLoser string `yaml:"unique_clash_loser,omitempty"`
	// CompareEvery: how often the scheduler compares the sync's dbs (a duration).
	CompareEvery string `yaml:"compare_every,omitempty"`
}

// Parse reads a configuration strictly and checks that its objects refer to each other
// correctly. name is used in messages.
func Parse(name string, r io.Reader) (*File, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var f File
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			// An empty document would remove every object: say {} to mean that.
			return nil, fmt.Errorf("%s is empty: refusing to remove the whole configuration (write {} if that is what you want)", name)
		}
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return nil, fmt.Errorf("%s: %s", name, strings.Join(withKeys(b, te.Errors), "; "))
		}
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		msg = strings.ReplaceAll(msg, "unmarshal errors:\n  ", "")
		return nil, fmt.Errorf("%s: %s", name, msg)
	}
	if err := f.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &f, nil
}

// withKeys puts the key a decoding error is about after its line number:
// "line 69: syncs.foobar.autokick: cannot unmarshal !!str `maybe` into bool".
func withKeys(src []byte, msgs []string) []string {
	var root yaml.Node
	_ = yaml.Unmarshal(src, &root)
	paths := map[int]string{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		if _, ok := paths[n.Line]; !ok && path != "" && n.Style&yaml.FlowStyle != 0 {
			paths[n.Line] = path // a flow collection: {a: 1} or [a, b] is one value
		}
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := strings.TrimPrefix(path+"."+k.Value, ".")
				if _, ok := paths[k.Line]; !ok {
					paths[k.Line] = p
				}
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, fmt.Sprintf("%s[%d]", path, i))
			}
		default:
			if _, ok := paths[n.Line]; !ok && path != "" {
				paths[n.Line] = path
			}
		}
	}
	walk(&root, "")
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m
		var line int
		if _, err := fmt.Sscanf(m, "line %d:", &line); err != nil {
			continue
		}
		p, ok := paths[line]
		if !ok {
			continue
		}
		_, rest, _ := strings.Cut(m, ": ")
		if f, _, ok := strings.Cut(strings.TrimPrefix(rest, "field "), " not found in type "); ok && strings.HasPrefix(rest, "field ") {
			rest = fmt.Sprintf("unknown key %q", f)
		}
		out[i] = fmt.Sprintf("line %d: %s: %s", line, p, rest)
	}
	return out
}

var keyKinds = []string{catalog.KeyPrimary, catalog.KeyUnique, catalog.KeyNone}

func (f *File) check() error {
	for n, d := range f.DBs {
		t := control.DBType(d["type"])
		if !t.Valid() && d["type"] != "" {
			return fmt.Errorf("db %s: unknown type %q", n, d["type"])
		}
		if !t.Postgres() {
			if err := targets.CheckParams(t, d.Params()); err != nil {
				return fmt.Errorf("db %s (type %s): %w", n, t, err)
			}
		} else if !dbconn.NamesDB(d) {
			return fmt.Errorf("db %s: dbname or service is required", n)
		}
		if s := d["status"]; s != "" && !control.Status(s).Valid() {
			return fmt.Errorf("db %s: status must be active or inactive, not %q", n, s)
		}
	}
	for n, t := range f.Tables {
		if _, err := catalog.ParseName(n); err != nil {
			return err
		}
		if !slices.Contains(keyKinds, t.KeyKind) {
			return fmt.Errorf("table %s: keykind must be one of %s", n, strings.Join(keyKinds, ", "))
		}
		if (t.KeyKind == catalog.KeyNone) != (len(t.Key) == 0) {
			return fmt.Errorf("table %s: key and keykind disagree", n)
		}
		if t.ConflictDetect != "" && t.ConflictDetect != control.DetectRows && t.ConflictDetect != control.DetectColumns {
			return fmt.Errorf("table %s: conflict_detect must be rows or columns, not %q", n, t.ConflictDetect)
		}
		if t.DB != "" {
			if _, ok := f.DBs[t.DB]; !ok {
				return fmt.Errorf("table %s: db %q is not among the dbs", n, t.DB)
			}
		}
		for _, c := range t.CustomCols {
			if strings.TrimSpace(c.Select) == "" {
				return fmt.Errorf("table %s: customcols: select is empty", n)
			}
			if _, ok := f.DBs[c.DB]; c.DB != "" && !ok {
				return fmt.Errorf("table %s: customcols: db %q is not among the dbs", n, c.DB)
			}
			if _, ok := f.Syncs[c.Sync]; c.Sync != "" && !ok {
				return fmt.Errorf("table %s: customcols: sync %q is not among the syncs", n, c.Sync)
			}
		}
		for _, r := range t.RowFilters {
			if strings.TrimSpace(r.Where) == "" {
				return fmt.Errorf("table %s: rowfilters: where is empty", n)
			}
			if r.DB == "" && r.Sync == "" {
				return fmt.Errorf("table %s: rowfilters: give db or sync (a filter for every db is the table's where:)", n)
			}
			if _, ok := f.DBs[r.DB]; r.DB != "" && !ok {
				return fmt.Errorf("table %s: rowfilters: db %q is not among the dbs", n, r.DB)
			}
			if _, ok := f.Syncs[r.Sync]; r.Sync != "" && !ok {
				return fmt.Errorf("table %s: rowfilters: sync %q is not among the syncs", n, r.Sync)
			}
		}
		for _, c := range t.CustomNames {
			if _, err := catalog.ParseName(c.Name); err != nil || c.Name == "" {
				return fmt.Errorf("table %s: customname %q is not a table name", n, c.Name)
			}
			if _, ok := f.DBs[c.DB]; c.DB != "" && !ok {
				return fmt.Errorf("table %s: customname %s: db %q is not among the dbs", n, c.Name, c.DB)
			}
			if _, ok := f.Syncs[c.Sync]; c.Sync != "" && !ok {
				return fmt.Errorf("table %s: customname %s: sync %q is not among the syncs", n, c.Name, c.Sync)
			}
		}
	}
	for n, q := range f.Sequences {
		if _, err := catalog.ParseName(n); err != nil {
			return fmt.Errorf("sequence %s: %w", n, err)
		}
		if q.DB != "" {
			if _, ok := f.DBs[q.DB]; !ok {
				return fmt.Errorf("sequence %s: db %q is not among the dbs", n, q.DB)
			}
		}
		for _, h := range q.Herds {
			if _, ok := f.Herds[h]; !ok {
				return fmt.Errorf("sequence %s: herd %q is not among the herds", n, h)
			}
		}
	}
	for h, ts := range f.Herds {
		for _, t := range ts {
			if _, ok := f.Tables[t]; !ok {
				return fmt.Errorf("herd %s: table %q is not among the tables", h, t)
			}
		}
	}
	for g, ms := range f.DBGroups {
		for _, m := range ms {
			db, role, ok := strings.Cut(m, ":")
			if !ok || !slices.Contains(control.Roles, role) {
				return fmt.Errorf("dbgroup %s: member %q must be db:source, db:target or db:fullcopy", g, m)
			}
			if _, ok := f.DBs[db]; !ok {
				return fmt.Errorf("dbgroup %s: db %q is not among the dbs", g, db)
			}
		}
		// The rules of a dbgroup are control's, as for 'ibex add dbgroup'.
		dg := dbGroup(g, ms)
		if err := dg.Check(); err != nil {
			return err
		}
		if err := dg.CheckTypes(func(db string) control.DBType { return f.DBs[db].Type() }); err != nil {
			return err
		}
	}
	for n, s := range f.Syncs {
		if _, ok := f.Herds[s.Herd]; !ok {
			return fmt.Errorf("sync %s: herd %q is not among the herds", n, s.Herd)
		}
		ms, ok := f.DBGroups[s.DBs]
		if !ok {
			return fmt.Errorf("sync %s: dbgroup %q is not among the dbgroups", n, s.DBs)
		}
		g := dbGroup(s.DBs, ms)
		if _, err := conflict.ParseAll(s.ConflictStrategy, s.ConflictByType, g.DBs(), g.Sources()); err != nil {
			return fmt.Errorf("sync %s: %w", n, err)
		}
		if err := schedule.Check(s.Schedule); err != nil {
			return fmt.Errorf("sync %s: %w", n, err)
		}
		if s.Status != "" && !control.Status(s.Status).Valid() {
			return fmt.Errorf("sync %s: status must be active or inactive", n)
		}
		if s.UniqueClashLoser != "" && s.UniqueClashLoser != control.UniqueLoserDelete && s.UniqueClashLoser != control.UniqueLoserPark {
			return fmt.Errorf("sync %s: unique_clash_loser must be delete or park, not %q", n, s.UniqueClashLoser)
		}
		if s.OnOrphan != "" && s.OnOrphan != control.OnOrphanDelete && s.OnOrphan != control.OnOrphanKeep && s.OnOrphan != control.OnOrphanRestore {
			return fmt.Errorf("sync %s: on_orphan must be delete, restore or keep, not %q", n, s.OnOrphan)
		}
		if d, err := time.ParseDuration(s.CompareEvery); s.CompareEvery != "" && (err != nil || d <= 0) {
			return fmt.Errorf("sync %s: compare_every must be a duration such as 1h or 30m, not %q", n, s.CompareEvery)
		}
		if s.OnError != "" && s.OnError != control.OnErrorStop && s.OnError != control.OnErrorSkip {
			return fmt.Errorf("sync %s: on_error must be stop or skip, not %q", n, s.OnError)
		}
		if s.Onetimecopy < 0 || s.Onetimecopy > 2 {
			return fmt.Errorf("sync %s: onetimecopy must be 0, 1 or 2", n)
		}
	}
	return nil
}

// dbGroup is a dbgroup of the file ("db:role" members, in order) as control has it.
func dbGroup(name string, members []string) *control.DBGroup {
	g := &control.DBGroup{Name: name}
	for _, m := range members {
		db, role, _ := strings.Cut(m, ":")
		g.Members = append(g.Members, control.Member{DB: db, Role: role})
	}
	return g
}

// Marshal renders a configuration as YAML (keys sorted, so the text is stable).
func Marshal(f *File) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("# ibex configuration: apply with 'ibex apply -f FILE'\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(f); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// sortedKeys returns a map's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
