package cli

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/dbconn"
	"github.com/ibexrepl/ibex/internal/schedule"
	"github.com/ibexrepl/ibex/job"
)

const objectsHelp = `Objects: db, table (tables), sequence (sequences), herd (relgroup), dbgroup, sync.`

func (a *app) addCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "add OBJECT NAME [key=value ...]",
		Short: "Add a db, table, sequence, herd, dbgroup or sync",
		Long: objectsHelp + `

  ibex add db t1 dbname=btest1 [host= port= user= pass=env:VAR|file:PATH sslmode= ...]
  ibex add db t1 service=t1   (pg_service.conf's [t1] gives dbname, host, port, user, ...)
  ibex add db m1 type=mariadb host= port=3306 dbname= user= [pass=env:VAR] [tls=off|on|skip-verify]   (type=mysql: the same)
  ibex add db s1 type=sqlite path=FILE [journal=wal|delete] [busy_timeout=MS]
  ibex add db r1 type=redis host= port=6379 [db=N] [user=] [pass=env:VAR] [prefix=P] [tls=on]
  ibex add db f1 type=flatfile path=DIR [dialect=postgres|mysql] [fsync=on|off]
  ibex add table pgbench_accounts pgbench_branches db=t1 herd=therd   (also: all, public.*, public.pgbench_%)
  ibex add all tables db=t1 herd=therd [-t PATTERN] [-T PATTERN] [-n SCHEMA] [-N SCHEMA]   (Bucardo's selection)
  ibex add sequence orders_id_seq db=t1 herd=therd   (also: all, public.*)
  ibex add herd therd [table ...]
  ibex add dbgroup tgroup t1:source t2:source t3:target
  ibex add customname pgbench_accounts public.accounts_copy [db=t5] [sync=foobar]   (targets write the rows there)
  ibex add customcols pgbench_accounts "SELECT aid, bid, abalance * 100 AS cents" [db=t5] [sync=foobar]
       (PostgreSQL targets get the key and these columns, computed on the sender; their other columns are left alone)
  ibex add sync foobar herd=therd dbs=tgroup [conflict_strategy=latest|source|abort|skip|"t2 t1"]
       [autokick=false] [onetimecopy=0|1|2] [schedule=30s|"*/5 * * * *"] [status=active] [batch_size=N] [compare_every=1h]
       [single_transaction=off] [on_error=stop|skip] [on_orphan=delete|restore|keep]
       [unique_clash_loser=delete|park]

add db tests the connection first (--force skips that). A password is never stored: give
pass=env:VAR or pass=file:PATH, or use PGPASSWORD or ~/.pgpass. add table reads each
table's primary key (or a unique index over NOT NULL columns) from db=; a table with
neither is refused unless keyless=fullcopy is given (it can then only be in fullcopy
syncs). add sequence checks that each sequence exists in db= and ascends; every run of a
sync whose herd holds it brings it, on every PostgreSQL db of the sync, up to the highest
value any source has (never down). add sync installs change capture (triggers) on the
sync's sources.

A db of type mariadb, mysql, sqlite, redis or flatfile is a target only (never a source); its
settings are its sink's (docs/sinks/TYPE.md); 'ibex validate SYNC --create-targets' creates
the tables it lacks.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Bucardo's 'add all tables' / 'add all sequences'.
			if args[0] == "all" {
				args = append([]string{args[1], "all"}, args[2:]...)
			}
			if !a.filter.Empty() {
				if k, _ := normKind(args[0]); k != "table" && k != "sequence" {
					return usageErr("-t, -T, -n and -N select tables or sequences: add %s does not take them", args[0])
				}
			}
			return a.objectCmd(cmd.Context(), "add", args, force)
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "add db: do not test the connection")
	fl := cmd.Flags()
	fl.StringArrayVarP(&a.filter.Names, "table", "t", nil, "with all or a pattern: only names matching this (schema.name, or name in any schema; % and * match any run, ? one character); repeatable")
	fl.StringArrayVarP(&a.filter.ExcludeNames, "exclude-table", "T", nil, "with all or a pattern: leave out names matching this; repeatable")
	fl.StringArrayVarP(&a.filter.Schemas, "schema", "n", nil, "with all or a pattern: only schemas matching this; repeatable")
	fl.StringArrayVarP(&a.filter.ExcludeSchemas, "exclude-schema", "N", nil, "with all or a pattern: leave out schemas matching this; repeatable")
	return cmd
}

func (a *app) updateCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "update OBJECT NAME key=value ...",
		Short: "Change a db, table, sequence, herd, dbgroup or sync",
		Long: objectsHelp + `

  ibex update db t1 host=db1.example.com sslmode=verify-full   (key= removes a key)
  ibex update table public.t db=t2 [herd=h2]      (re-reads the key; herd= adds to a herd)
  ibex update table pgbench_accounts counters=abalance  (changes to abalance add up across sources; counters= clears)
  ibex update table pgbench_accounts where="bid = 1"   (only matching rows move; where= clears)
  ibex update table pgbench_accounts where="bid = 2" db=t5 [sync=foobar]   (a filter for one target, or a sync's targets)
  ibex update table pgbench_accounts makedelta=on     (rows other syncs apply are captured: cascades)
  ibex update db t2 makedelta=on                       (the same for every table of t2's syncs)
  ibex update sequence public.s db=t2 [herd=h2]   (herd= adds to a herd)
  ibex update sequence public.s interleave=on|off
  ibex update herd therd t1 t2 ...                 (sets its tables; its sequences stay)
  ibex update dbgroup tgroup t1:source t2:target   (sets its members)
  ibex update sync foobar conflict_strategy="t2 t1" status=inactive ...

update sync, update herd, update dbgroup and update db re-validate the syncs they touch
and update their capture (a db whose settings now reach another database gets it there);
when that fails, nothing changes.

update sequence NAME interleave=on gives the n sources of the syncs of the sequence's herds
interleaved values, so that two sources never hand out the same one: on source i (in sync
name, then dbgroup order) INCREMENT BY n and RESTART WITH the first value above the highest
last_value on any db of those syncs that is i modulo n. Every source's sequence is locked
(blocking nextval for a moment) before any is read, and none moves back. Run it again after
changing the sources. interleave=off sets INCREMENT BY 1 on the sources; their values stay.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.objectCmd(cmd.Context(), "update", args, force)
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "update db: do not test the connection, nor re-validate the syncs using the db (run 'ibex validate SYNC' later)")
	return cmd
}

func (a *app) removeCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "remove OBJECT NAME ...",
		Short: "Remove dbs, tables, sequences, herds, dbgroups or syncs",
		Long: objectsHelp + `

Objects still used are refused (remove the sync first); a sequence has no capture and may
be removed while a sync uses it (runs stop setting it). remove sync also removes its
triggers, functions and change tables from every db; --force skips dbs that cannot be
reached (their capture is left behind).`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.objectCmd(cmd.Context(), "remove", args, force)
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "remove sync: skip unreachable dbs")
	return cmd
}

func normKind(k string) (string, error) {
	switch strings.ToLower(k) {
	case "db", "dbs", "database", "databases":
		return "db", nil
	case "table", "tables", "relation", "relations":
		return "table", nil
	case "sequence", "sequences":
		return "sequence", nil
	case "herd", "herds", "relgroup", "relgroups":
		return "herd", nil
	case "dbgroup", "dbgroups":
		return "dbgroup", nil
	case "sync", "syncs":
		return "sync", nil
	case "customname", "customnames":
		return "customname", nil
	case "customcols", "customcol":
		return "customcols", nil
	case "rowfilter", "rowfilters":
		return "rowfilter", nil
	}
	return "", usageErr("unknown object %q: use db, table, sequence, herd (relgroup), dbgroup, sync, customname, customcols or rowfilter", k)
}

func (a *app) objectCmd(ctx context.Context, verb string, args []string, force bool) error {
	kind, err := normKind(args[0])
	if err != nil {
		return err
	}
	store, err := a.open(ctx, true)
	if err != nil {
		return err
	}
	p := parseKV(args[1:])
	if len(p.words) == 0 && kind != "table" && kind != "sequence" {
		return usageErr("%s %s: give the %s's name", verb, kind, kind)
	}
	switch verb + " " + kind {
	case "add db", "update db":
		return a.putDB(ctx, store, verb == "add", p, force)
	case "add table":
		return a.addTables(ctx, store, p)
	case "update table":
		return a.updateTables(ctx, store, p)
	case "add sequence":
		return a.addSequences(ctx, store, p)
	case "update sequence":
		if len(p.words) == 0 {
			return usageErr("update sequence: give the sequence's name")
		}
		return a.updateSequences(ctx, store, p)
	case "add herd", "update herd":
		return a.putHerd(ctx, store, verb == "add", p)
	case "add dbgroup", "update dbgroup":
		return a.putDBGroup(ctx, store, verb == "add", p)
	case "add sync", "update sync":
		return a.putSync(ctx, store, verb == "add", p)
	case "add customname":
		return a.addCustomName(ctx, store, p)
	case "update customname":
		return usageErr("update customname: remove it and add it again")
	case "remove customname":
		return a.removeCustomNames(ctx, store, p.words)
	case "add customcols":
		return a.addCustomCols(ctx, store, p)
	case "update customcols":
		return usageErr("update customcols: add it again with the same table, db= and sync= (it replaces the one there)")
	case "remove customcols":
		return a.removeScoped(ctx, store, control.CustomCols, p.words)
	case "add rowfilter", "update rowfilter":
		return usageErr("%s rowfilter: use 'ibex update table TABLE where=COND [db=DB] [sync=SYNC]'", verb)
	case "remove rowfilter":
		return a.removeScoped(ctx, store, control.RowFilters, p.words)
	}
	// remove
	if len(p.words) == 0 && kind == "sequence" {
		return usageErr("remove %s: give the %s's name", kind, kind)
	}
	if rest := p.rest(); len(rest) > 0 {
		return usageErr("remove %s takes only names, not %s=", kind, rest[0])
	}
	return a.remove(ctx, store, kind, p.words, force)
}

// ---- db

var dbAliases = map[string]string{"dbhost": "host", "dbport": "port", "dbuser": "user", "dbpass": "pass", "db": "dbname", "dbservice": "service", "password": "pass"}

func (a *app) putDB(ctx context.Context, store *control.Store, create bool, p kv, force bool) error {
	if len(p.words) != 1 {
		return usageErr("give one db name, then key=value settings (got %q)", strings.Join(p.words, " "))
	}
	name := p.words[0]
	d := &control.DB{Name: name, Conn: map[string]string{}, Status: control.StatusActive}
	if !create {
		cur, err := control.GetDB(ctx, store.Q(), name)
		if err != nil {
			return err
		}
		d = cur
	}
	if typ, ok := p.take("type", "dbtype"); ok {
		t := control.DBType(strings.ToLower(typ))
		if !t.Valid() {
			return usageErr("db %s: unknown type %q (use %s)", name, typ, joinTypes())
		}
		if !create && t != d.Type && !(t.Postgres() && d.Type.Postgres()) {
			return usageErr("db %s: its type is %s and cannot be changed: remove the db and add it again", name, d.Type)
		}
		d.Type = t
	}
	if !d.Type.Postgres() {
		return a.putTargetDB(ctx, store, create, d, p, force)
	}
	for _, k := range p.keys {
		v, ok := p.vals[k]
		if !ok {
			continue // taken above
		}
		if al, ok := dbAliases[k]; ok {
			k = al
		}
		switch {
		case k == "pass":
			if err := dbconn.CheckPass(v); err != nil {
				return usageErr("db %s: %v", name, err)
			}
			d.Pass = v
		case k == "status":
			if !control.Status(v).Valid() {
				return usageErr("db %s: status must be active or inactive, not %q", name, v)
			}
			d.Status = control.Status(v)
		case k == "makedelta":
			// The syncs using the db reinstall their triggers (ENABLE ALWAYS or not) in
			// the validation below.
			on, err := parseBool(name, k, v)
			if err != nil {
				return err
			}
			d.MakeDelta = on
		case dbconn.ValidKey(k):
			if v == "" {
				delete(d.Conn, k)
			} else {
				d.Conn[k] = v
			}
		default:
			return usageErr("db %s: unknown setting %q (use %s, pass, status or makedelta)", name, k, strings.Join(dbconn.Keys, ", "))
		}
	}
	if !dbconn.NamesDB(d.Conn) {
		return usageErr("db %s: %v", name, dbconn.ErrNoDBName)
	}
	if !force {
		conn, err := dbconn.Connect(ctx, name, d.Conn, d.Pass)
		if err != nil {
			return fmt.Errorf("%w; fix the settings, or add --force to save them untested", err)
		}
		_ = conn.Close(ctx)
	}
	err := store.InTx(ctx, func(q control.Querier) error {
		if err := control.PutDB(ctx, q, d, create); err != nil {
			return err
		}
		if create || force {
			return nil
		}
		// Its settings may now reach another database, which needs the capture of the
		// syncs using it; when that fails, nothing changes.
		return a.revalidateUsers(ctx, store, q, "db", name)
	})
	if err != nil {
		return err
	}
	if create {
		a.say("Added db %s", name)
	} else {
		a.say("Updated db %s", name)
	}
	return nil
}

// ---- tables

func (a *app) readDB(ctx context.Context, store *control.Store, name string) (*control.DB, error) {
	if name == "" {
		all, err := control.DBs(ctx, store.Q())
		if err != nil {
			return nil, err
		}
		var dbs []control.DB
		for _, d := range all {
			if d.Type.Postgres() {
				dbs = append(dbs, d)
			}
		}
		if len(dbs) != 1 {
			return nil, usageErr("say which db to read the tables from with db=NAME")
		}
		return &dbs[0], nil
	}
	d, err := control.GetDB(ctx, store.Q(), name)
	if err != nil {
		return nil, err
	}
	return d, needPostgres(d, "reading its tables")
}

// connectReadDB finds the db tables or sequences are read from (readDB) and connects to it.
func (a *app) connectReadDB(ctx context.Context, store *control.Store, name string) (*control.DB, *pgx.Conn, error) {
	d, err := a.readDB(ctx, store, name)
	if err != nil {
		return nil, nil, err
	}
	conn, err := dbconn.Connect(ctx, d.Name, d.Conn, d.Pass)
	if err != nil {
		return nil, nil, err
	}
	return d, conn, nil
}

func keylessMsg(t string) error {
	return fmt.Errorf("table %s has no primary key and no unique index over NOT NULL columns, so its rows cannot be identified: add a primary key, or add it with keyless=fullcopy to use it only in fullcopy syncs", t)
}

func (a *app) addTables(ctx context.Context, store *control.Store, p kv) error {
	dbName, _ := p.take("db")
	herd, hasHerd := p.take("herd", "relgroup")
	keyless, _ := p.take("keyless")
	if rest := p.rest(); len(rest) > 0 {
		return usageErr("add table: unknown setting %q (use db=, herd= or keyless=fullcopy)", rest[0])
	}
	if keyless != "" && keyless != control.RoleFullcopy {
		return usageErr("add table: keyless takes only the value fullcopy")
	}
	if len(p.words) == 0 {
		return usageErr("add table: name the tables (or all, or a pattern such as public.*)")
	}
	d, conn, err := a.connectReadDB(ctx, store, dbName)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var rels []*control.Relation
	var skipped []string
	fromPattern := map[*control.Relation]bool{} // found by all or a pattern, not named
	for _, w := range p.words {
		names, err := catalog.Resolve(ctx, conn, w, a.filter)
		if err != nil {
			return err
		}
		pattern := len(names) != 1 || catalog.IsPattern(w)
		for _, n := range names {
			t, err := catalog.Describe(ctx, conn, n)
			if errors.Is(err, catalog.ErrNoTable) {
				return fmt.Errorf("table %s does not exist in db %s (dbname %s): check the name or say db=", n, d.Name, conn.Config().Database)
			}
			if err != nil {
				return err
			}
			if t.KeyKind == catalog.KeyNone && keyless == "" {
				if pattern {
					skipped = append(skipped, n.String())
					continue
				}
				return keylessMsg(n.String())
			}
			r := &control.Relation{Schema: n.Schema, Name: n.Name, DB: d.Name, KeyCols: t.KeyCols, KeyKind: t.KeyKind}
			fromPattern[r] = pattern
			rels = append(rels, r)
		}
	}
	var added, known []*control.Relation
	err = store.InTx(ctx, func(q control.Querier) error {
		if hasHerd {
			if herd == "" {
				return usageErr("herd= needs a name")
			}
			if err := control.EnsureHerd(ctx, q, herd); err != nil {
				return err
			}
		}
		for _, r := range rels {
			if cur, err := control.GetRelation(ctx, q, r.Schema, r.Name); err == nil {
				if !fromPattern[r] {
					return fmt.Errorf("table %s %w: use 'ibex update table %s herd=...' to put it in a herd", r.QualName(), control.ErrExists, r.QualName())
				}
				// all and patterns add what is new: a table added before (by an earlier
				// pattern, or twice in this one) keeps its settings and herds.
				same := func(k *control.Relation) bool { return k.QualName() == cur.QualName() }
				if !slices.ContainsFunc(added, same) && !slices.ContainsFunc(known, same) {
					known = append(known, cur)
				}
				continue
			} else if !errors.Is(err, control.ErrNotFound) {
				return err
			}
			added = append(added, r)
			id, err := control.PutRelation(ctx, q, r)
			if err != nil {
				return err
			}
			if hasHerd {
				if err := control.AddToHerd(ctx, q, herd, id); err != nil {
					return err
				}
			}
		}
		if hasHerd && len(added) > 0 {
			// The syncs of the herd capture the new tables at once (their next run copies
			// them to the targets, then replicates them).
			return a.revalidateUsers(ctx, store, q, "herd", herd)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, r := range added {
		key := r.KeyKind
		if len(r.KeyCols) > 0 {
			key += " (" + strings.Join(r.KeyCols, ", ") + ")"
		}
		a.say("Added table %s: %s", r.QualName(), key)
	}
	var prior []addedBefore
	for _, r := range known {
		prior = append(prior, addedBefore{r.Schema, r.Name, r.DB, r.Herds})
	}
	a.sayAddRest("table", prior, skipped, "no primary key or unique index", hasHerd, herd)
	return nil
}

// addedBefore is a table or sequence an add found added before.
type addedBefore struct {
	schema, name, db string
	herds            []string
}

// sayAddRest says what an add of tables or sequences (kind) left out: those added before
// (with how to put them in herd), those skipped (why), and the herd that has them.
func (a *app) sayAddRest(kind string, prior []addedBefore, skipped []string, why string, hasHerd bool, herd string) {
	for _, p := range prior {
		hint := ""
		if hasHerd && !slices.Contains(p.herds, herd) {
			hint = fmt.Sprintf(" (use 'ibex update %s %s herd=%s' to put it in herd %s)", kind, tableArg(p.schema, p.name), herd, herd)
		}
		a.say("Skipped %s %s.%s: already added (db %s)%s", kind, p.schema, p.name, p.db, hint)
	}
	for _, s := range skipped {
		a.say("Skipped %s %s: %s", kind, s, why)
	}
	if hasHerd {
		a.say("Herd %s has the %ss", herd, kind)
	}
}

// tableArg writes a table's name as the table commands read it back: schema.table, a
// part double-quoted when it holds a dot or a double quote.
func tableArg(schema, name string) string {
	part := func(s string) string {
		if strings.ContainsAny(s, `."`) {
			return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
		}
		return s
	}
	return part(schema) + "." + part(name)
}

func (a *app) updateTables(ctx context.Context, store *control.Store, p kv) error {
	dbName, hasDB := p.take("db")
	herd, hasHerd := p.take("herd", "relgroup")
	where, hasWhere := p.take("where", "row_filter")
	counters, hasCounters := p.take("counters")
	makeDelta, hasMakeDelta := p.take("makedelta")
	filterSync, hasFilterSync := p.take("sync")
	detect, hasDetect := p.take("conflict_detect")
	if rest := p.rest(); len(rest) > 0 {
		return usageErr("update table: unknown setting %q (use db=, herd=, where=, counters=, conflict_detect=, makedelta= or sync=)", rest[0])
	}
	if hasDetect && detect != control.DetectRows && detect != control.DetectColumns {
		return usageErr("update table: conflict_detect must be rows or columns, not %q", detect)
	}
	if hasFilterSync && !hasWhere {
		return usageErr("update table: sync= scopes a row filter: give where= too")
	}
	if hasWhere && (hasFilterSync || hasDB) {
		// A row filter for one receiving db, one sync or both (ibex.rowfilter).
		return a.scopeRowFilter(ctx, store, p.words, where, dbName, filterSync)
	}
	return store.InTx(ctx, func(q control.Querier) error {
		for _, w := range p.words {
			n, err := catalog.ParseName(w)
			if err != nil {
				return err
			}
			rel, err := control.GetRelation(ctx, q, n.Schema, n.Name)
			if err != nil {
				return err
			}
			if hasDB || rel.DB != "" {
				if !hasDB {
					dbName = rel.DB
				}
				d, err := control.GetDB(ctx, q, dbName)
				if err != nil {
					return err
				}
				if err := needPostgres(d, "reading its tables"); err != nil {
					return err
				}
				conn, err := dbconn.Connect(ctx, d.Name, d.Conn, d.Pass)
				if err != nil {
					return err
				}
				t, err := catalog.Describe(ctx, conn, n)
				_ = conn.Close(ctx)
				if err != nil {
					return err
				}
				if t.KeyKind == catalog.KeyNone && rel.KeyKind != catalog.KeyNone {
					return keylessMsg(n.String())
				}
				rel.DB, rel.KeyCols, rel.KeyKind = d.Name, t.KeyCols, t.KeyKind
			}
			if hasWhere {
				// Checked on every db of the syncs using the table by the validation below.
				rel.Where = strings.TrimSpace(where)
			}
			if hasMakeDelta {
				if rel.MakeDelta, err = parseBool(rel.QualName(), "makedelta", makeDelta); err != nil {
					return err
				}
			}
			if hasDetect {
				rel.Detect = detect
			}
			if hasCounters {
				// Checked against the table (numeric columns, not the key) by the validation
				// below, which also puts the delta columns into capture.
				rel.Counters = nil
				for _, c := range splitList(counters) {
					if !slices.Contains(rel.Counters, c) {
						rel.Counters = append(rel.Counters, c)
					}
				}
			}
			id, err := control.PutRelation(ctx, q, rel)
			if err != nil {
				return err
			}
			if hasHerd {
				if err := control.EnsureHerd(ctx, q, herd); err != nil {
					return err
				}
				if err := control.AddToHerd(ctx, q, herd, id); err != nil {
					return err
				}
				rel.Herds = append(rel.Herds, herd)
			}
			// The syncs of its herds capture the table (by its key): update their capture.
			for _, h := range rel.Herds {
				if err := a.revalidateUsers(ctx, store, q, "herd", h); err != nil {
					return err
				}
			}
			a.say("Updated table %s", rel.QualName())
		}
		return nil
	})
}

// ---- herds

func (a *app) putHerd(ctx context.Context, store *control.Store, create bool, p kv) error {
	name := p.words[0]
	tables := p.words[1:]
	if v, ok := p.take("tables"); ok {
		tables = append(tables, splitList(v)...)
	}
	if rest := p.rest(); len(rest) > 0 {
		return usageErr("%s herd: unknown setting %q (list the tables after the name)", map[bool]string{true: "add", false: "update"}[create], rest[0])
	}
	return store.InTx(ctx, func(q control.Querier) error {
		if create {
			if err := control.CreateHerd(ctx, q, name); err != nil {
				return err
			}
		} else {
			ok, err := control.HerdExists(ctx, q, name)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("herd %q %w: see 'ibex list herds'", name, control.ErrNotFound)
			}
			if err := control.ClearHerd(ctx, q, name); err != nil {
				return err
			}
		}
		for _, t := range tables {
			n, err := catalog.ParseName(t)
			if err != nil {
				return err
			}
			rel, err := control.GetRelation(ctx, q, n.Schema, n.Name)
			if err != nil {
				return fmt.Errorf("%w (add it first with 'ibex add table %s db=...')", err, t)
			}
			if err := control.AddToHerd(ctx, q, name, rel.ID); err != nil {
				return err
			}
		}
		if !create {
			// The syncs of this herd capture its tables: move their capture along.
			if err := a.revalidateUsers(ctx, store, q, "herd", name); err != nil {
				return err
			}
		}
		a.say("%s herd %s (%d tables)", map[bool]string{true: "Added", false: "Updated"}[create], name, len(tables))
		return nil
	})
}

func splitList(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' })
}

// ---- dbgroups

var roleAliases = map[string]string{
	control.RoleSource: control.RoleSource, "master": control.RoleSource, "primary": control.RoleSource,
	control.RoleTarget: control.RoleTarget, "slave": control.RoleTarget, "replica": control.RoleTarget, "standby": control.RoleTarget,
	control.RoleFullcopy: control.RoleFullcopy,
}

// parseMembers reads db:role words; a db without a role is a source when first, else a target.
func parseMembers(group string, words []string) ([]control.Member, error) {
	var ms []control.Member
	for i, w := range words {
		for _, part := range splitList(w) {
			db, role, ok := strings.Cut(part, ":")
			if !ok {
				role = control.RoleTarget
				if i == 0 && len(ms) == 0 {
					role = control.RoleSource
				}
			}
			r, known := roleAliases[strings.ToLower(role)]
			if !known {
				return nil, usageErr("dbgroup %s: unknown role %q for db %s: use source, target or fullcopy", group, role, db)
			}
			ms = append(ms, control.Member{DB: db, Role: r})
		}
	}
	return ms, checkMembers(group, ms)
}

// checkMembers applies the dbgroup rules (control's, which ibex apply uses too); a dbgroup
// that breaks one is a usage error.
func checkMembers(group string, ms []control.Member) error {
	if err := (&control.DBGroup{Name: group, Members: ms}).Check(); err != nil {
		return usageErr("%w", err)
	}
	return nil
}

func (a *app) putDBGroup(ctx context.Context, store *control.Store, create bool, p kv) error {
	name := p.words[0]
	if rest := p.rest(); len(rest) > 0 {
		return usageErr("dbgroup %s: unknown setting %q (list dbs as name:role)", name, rest[0])
	}
	ms, err := parseMembers(name, p.words[1:])
	if err != nil {
		return err
	}
	return store.InTx(ctx, func(q control.Querier) error {
		if err := control.PutDBGroup(ctx, q, &control.DBGroup{Name: name, Members: ms}, create); err != nil {
			return err
		}
		if !create {
			if err := a.revalidateUsers(ctx, store, q, "dbgroup", name); err != nil {
				return err
			}
		}
		a.say("%s dbgroup %s: %s", map[bool]string{true: "Added", false: "Updated"}[create], name, describeMembers(ms))
		return nil
	})
}

func describeMembers(ms []control.Member) string {
	var parts []string
	for _, m := range ms {
		parts = append(parts, m.DB+":"+m.Role)
	}
	return strings.Join(parts, " ")
}

// revalidateUsers re-validates the syncs using a changed herd, dbgroup or db.
func (a *app) revalidateUsers(ctx context.Context, store *control.Store, q control.Querier, kind, name string) error {
	syncs, err := control.Syncs(ctx, q)
	if err != nil {
		return err
	}
	for _, s := range syncs {
		uses := (kind == "dbgroup" && s.DBGroup == name) || (kind == "herd" && s.Herd == name)
		if kind == "db" {
			g, err := control.GetDBGroup(ctx, q, s.DBGroup)
			if err != nil {
				return err
			}
			uses = slices.ContainsFunc(g.Members, func(m control.Member) bool { return m.DB == name })
		}
		if uses {
			if err := a.checkSync(ctx, q, &s); err != nil {
				return err
			}
			res, err := job.ValidateWith(ctx, store, q, s.Name, a.logger, job.ValidateOptions{MissingTargetsOK: true})
			if err != nil {
				return syncErr(s.Name, err)
			}
			a.sayMissing(res)
		}
	}
	return nil
}

// ---- syncs

func parseBool(name, k, v string) (bool, error) {
	switch strings.ToLower(v) {
	case "1", "t", "true", "yes", "on":
		return true, nil
	case "0", "f", "false", "no", "off":
		return false, nil
	}
	return false, usageErr("sync %s: %s must be true or false, not %q", name, k, v)
}

// applySyncOptions sets options from key=value pairs.
func applySyncOptions(s *control.Sync, p *kv) error {
	for _, k := range p.keys {
		v, ok := p.vals[k]
		if !ok {
			continue
		}
		var err error
		switch k {
		case "conflict_strategy", "standard_conflict", "conflict":
			s.ConflictStrategy = conflict.Normalize(v)
		case "autokick", "ping":
			s.Autokick, err = parseBool(s.Name, k, v)
		case "onetimecopy":
			n, e := strconv.Atoi(v)
			if e != nil || n < 0 || n > 2 {
				return usageErr("sync %s: onetimecopy must be 0, 1 or 2, not %q", s.Name, v)
			}
			s.Onetimecopy = n
		case "schedule", "checktime":
			if err := schedule.Check(v); err != nil {
				return usageErr("sync %s: %v", s.Name, err)
			}
			s.Schedule = v
		case "status":
			if !control.Status(v).Valid() {
				return usageErr("sync %s: status must be active or inactive, not %q", s.Name, v)
			}
			s.Status = control.Status(v)
		case "batch_size":
			n, e := strconv.Atoi(v)
			if e != nil || n < 0 {
				return usageErr("sync %s: batch_size must be a whole number of rows, not %q", s.Name, v)
			}
			s.BatchSize = n
		case "single_transaction":
			s.SingleTransaction, err = parseBool(s.Name, k, v)
		case "compare_every":
			if v == "0" || v == "off" || v == "never" {
				v = ""
			}
			if d, e := time.ParseDuration(v); v != "" && (e != nil || d <= 0) {
				return usageErr("sync %s: compare_every must be a duration such as 1h or 30m (or off), not %q", s.Name, v)
			}
			s.CompareEvery = v
		case "on_error":
			if v != control.OnErrorStop && v != control.OnErrorSkip {
				return usageErr("sync %s: on_error must be stop or skip, not %q", s.Name, v)
			}
			s.OnError = v
		case "on_orphan":
			if v != control.OnOrphanDelete && v != control.OnOrphanKeep && v != control.OnOrphanRestore {
				return usageErr("sync %s: on_orphan must be delete, restore or keep, not %q", s.Name, v)
			}
			s.OnOrphan = v
		case "unique_clash_loser":
			if v != control.UniqueLoserDelete && v != control.UniqueLoserPark {
				return usageErr("sync %s: unique_clash_loser must be delete or park, not %q", s.Name, v)
			}
			s.UniqueClashLoser = v
		case "herd", "relgroup", "dbs", "dbgroup", "tables":
			continue
		default:
			typ, ok := strings.CutPrefix(k, "on_")
			if !ok || conflict.CheckType(typ) != nil {
				return usageErr("sync %s: unknown option %q (use herd, tables, dbs, conflict_strategy, on_%s, on_error, on_orphan, unique_clash_loser, autokick, onetimecopy, schedule, status, batch_size, single_transaction, compare_every)",
					s.Name, k, strings.Join(conflict.Types, ", on_"))
			}
			// A strategy for one conflict type; "default" goes back to conflict_strategy.
			s.ConflictByType = maps.Clone(s.ConflictByType)
			if s.ConflictByType == nil {
				s.ConflictByType = map[string]string{}
			}
			if v == "" || v == "default" {
				delete(s.ConflictByType, typ)
			} else {
				s.ConflictByType[typ] = conflict.Normalize(v)
			}
		}
		if err != nil {
			return err
		}
		delete(p.vals, k)
	}
	return nil
}

// checkSync validates a sync's definition against its dbgroup and herd.
func (a *app) checkSync(ctx context.Context, q control.Querier, s *control.Sync) error {
	g, err := control.GetDBGroup(ctx, q, s.DBGroup)
	if err != nil {
		return err
	}
	if err := checkMembers(g.Name, g.Members); err != nil {
		return err
	}
	ss, err := conflict.ParseAll(s.ConflictStrategy, s.ConflictByType, g.DBs(), g.Sources())
	if err != nil {
		return usageErr("sync %s: %v", s.Name, err)
	}
	for _, fn := range ss.Functions() {
		if err := control.CheckConflictFunction(ctx, q, fn); err != nil {
			return usageErr("sync %s: %v", s.Name, err)
		}
	}
	return nil
}

func (a *app) putSync(ctx context.Context, store *control.Store, create bool, p kv) error {
	if len(p.words) != 1 {
		return usageErr("give one sync name, then key=value options (got %q)", strings.Join(p.words, " "))
	}
	name := p.words[0]
	s := &control.Sync{Name: name, ConflictStrategy: conflict.Latest, Status: control.StatusActive}
	if !create {
		cur, err := control.GetSync(ctx, store.Q(), name)
		if err != nil {
			return err
		}
		s = cur
	}
	herd, hasHerd := p.take("herd", "relgroup")
	tables, hasTables := p.take("tables")
	dbs, hasDBs := p.take("dbs", "dbgroup")
	if err := applySyncOptions(s, &p); err != nil {
		return err
	}
	if rest := p.rest(); len(rest) > 0 {
		return usageErr("sync %s: unknown option %q", name, rest[0])
	}
	if hasHerd && hasTables {
		return usageErr("sync %s: give herd= or tables=, not both", name)
	}
	if create && !hasHerd && !hasTables {
		return usageErr("sync %s: say which tables with herd=NAME or tables=a,b", name)
	}
	if create && !hasDBs {
		return usageErr("sync %s: say which dbs with dbs=DBGROUP or dbs=t1:source,t2:target", name)
	}
	var res *job.ValidateResult
	err := store.InTx(ctx, func(q control.Querier) error {
		if hasTables {
			// Bucardo: tables= makes a herd named after the sync.
			if err := notSharedWith(ctx, q, name, "herd", "tables="+tables); err != nil {
				return err
			}
			if err := control.EnsureHerd(ctx, q, name); err != nil {
				return err
			}
			if err := control.ClearHerd(ctx, q, name); err != nil {
				return err
			}
			for _, t := range splitList(tables) {
				n, err := catalog.ParseName(t)
				if err != nil {
					return err
				}
				rel, err := control.GetRelation(ctx, q, n.Schema, n.Name)
				if err != nil {
					return fmt.Errorf("sync %s: %w (add it first with 'ibex add table %s db=...')", name, err, t)
				}
				if err := control.AddToHerd(ctx, q, name, rel.ID); err != nil {
					return err
				}
			}
			herd = name
		}
		if herd != "" {
			ok, err := control.HerdExists(ctx, q, herd)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("sync %s: herd %q %w: add it with 'ibex add herd %s' or use tables=", name, herd, control.ErrNotFound, herd)
			}
			s.Herd = herd
		}
		if hasDBs {
			if strings.ContainsAny(dbs, ":,") || len(strings.Fields(dbs)) > 1 {
				ms, err := parseMembers(name, []string{dbs})
				if err != nil {
					return err
				}
				if err := notSharedWith(ctx, q, name, "dbgroup", "dbs="+dbs); err != nil {
					return err
				}
				g := &control.DBGroup{Name: name, Members: ms}
				_, gerr := control.GetDBGroup(ctx, q, name)
				if err := control.PutDBGroup(ctx, q, g, gerr != nil); err != nil {
					return err
				}
				dbs = name
			} else if _, err := control.GetDBGroup(ctx, q, dbs); err != nil {
				return fmt.Errorf("sync %s: %w", name, err)
			}
			s.DBGroup = dbs
		}
		if err := a.checkSync(ctx, q, s); err != nil {
			return err
		}
		if err := control.PutSync(ctx, q, s, create); err != nil {
			return err
		}
		var err error
		res, err = job.ValidateWith(ctx, store, q, name, a.logger, job.ValidateOptions{MissingTargetsOK: true})
		return err
	})
	if err != nil {
		// The control change rolls back with the transaction, and Validate removes the
		// capture it installed before failing: nothing is left behind.
		return err
	}
	verb := map[bool]string{true: "Added", false: "Updated"}[create]
	a.say("%s sync %s: herd %s, dbgroup %s, conflict_strategy %s, capture on %d tables", verb, name, s.Herd, s.DBGroup, s.ConflictStrategy, len(res.Installed))
	a.sayMissing(res)
	return nil
}

// notSharedWith refuses to replace the herd or dbgroup named after sync name (what
// tables= and an inline dbs= do) when another sync uses it: that sync's capture would no
// longer match its definition.
func notSharedWith(ctx context.Context, q control.Querier, name, kind, arg string) error {
	syncs, err := control.Syncs(ctx, q)
	if err != nil {
		return err
	}
	var others []string
	for _, s := range syncs {
		if s.Name != name && ((kind == "herd" && s.Herd == name) || (kind == "dbgroup" && s.DBGroup == name)) {
			others = append(others, s.Name)
		}
	}
	if len(others) > 0 {
		return fmt.Errorf("sync %s: %s would replace %s %s, which sync %s uses: give the sync another name or name a %s", name, arg, kind, name, strings.Join(others, ", "), kind)
	}
	return nil
}

// ---- remove

func (a *app) remove(ctx context.Context, store *control.Store, kind string, names []string, force bool) error {
	if kind == "sync" {
		// Every name must be a sync, and every sync's capture removable, before any goes.
		for _, n := range names {
			if _, err := control.GetSync(ctx, store.Q(), n); err != nil {
				return err
			}
		}
		if len(names) > 1 {
			for _, n := range names {
				if err := job.CheckRemoveCapture(ctx, store, n, force, a.logger); err != nil {
					return err
				}
			}
		}
		for _, n := range names {
			removed, err := job.RemoveCapture(ctx, store, n, force, a.logger)
			if err == nil {
				err = control.RemoveSync(ctx, store.Q(), n)
			}
			if err != nil {
				return err
			}
			a.logger.Info("removed capture", "sync", n, "tables", len(removed))
			a.say("Removed %s %s", kind, n)
		}
		return nil
	}
	// One transaction: when one name is refused (unknown or in use), none is removed.
	err := store.InTx(ctx, func(q control.Querier) error {
		for _, n := range names {
			var err error
			switch kind {
			case "db":
				err = control.RemoveDB(ctx, q, n)
			case "table":
				var qn catalog.QualName
				if qn, err = catalog.ParseName(n); err == nil {
					err = control.RemoveRelation(ctx, q, qn.Schema, qn.Name)
				}
			case "sequence":
				var qn catalog.QualName
				if qn, err = catalog.ParseName(n); err == nil {
					err = control.RemoveSequence(ctx, q, qn.Schema, qn.Name)
				}
			case "herd":
				err = control.RemoveHerd(ctx, q, n)
			case "dbgroup":
				err = control.RemoveDBGroup(ctx, q, n)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, n := range names {
		a.say("Removed %s %s", kind, n)
	}
	return nil
}

// ---- list

func (a *app) listCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list dbs|tables|sequences|herds|dbgroups|syncs [NAME ...]",
		Short: "List dbs, tables, sequences, herds, dbgroups or syncs",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, err := normKind(args[0])
			if err != nil {
				return err
			}
			store, err := a.open(cmd.Context(), true)
			if err != nil {
				return err
			}
			return a.list(cmd.Context(), store, kind, args[1:])
		},
	}
	cmd.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON")
	return cmd
}

func want(names []string, n string) bool { return len(names) == 0 || slices.Contains(names, n) }

func (a *app) list(ctx context.Context, store *control.Store, kind string, names []string) error {
	q := store.Q()
	var headers []string
	var rows [][]string
	var data any
	switch kind {
	case "db":
		dbs, err := control.DBs(ctx, q)
		if err != nil {
			return err
		}
		var out []control.DB
		headers = []string{"Name", "Type", "Status", "Connection", "Password"}
		for _, d := range dbs {
			if !want(names, d.Name) {
				continue
			}
			out = append(out, d)
			pass := d.Pass
			switch {
			case pass == "" && !d.Type.Postgres():
				pass = "(none)"
			case pass == "" && d.Conn["service"] != "":
				pass = "(service/PGPASSWORD/.pgpass)"
			case pass == "":
				pass = "(PGPASSWORD/.pgpass)"
			}
			rows = append(rows, []string{d.Name, d.Type.String(), string(d.Status), dbconn.ConnString(d.Conn), pass})
		}
		data = out
	case "table":
		rels, err := control.Relations(ctx, q)
		if err != nil {
			return err
		}
		var out []control.Relation
		headers = []string{"Table", "Key", "DB", "Herds"}
		for _, r := range rels {
			if !want(names, r.QualName()) && !want(names, r.Name) {
				continue
			}
			out = append(out, r)
			key := r.KeyKind
			if len(r.KeyCols) > 0 {
				key += " (" + strings.Join(r.KeyCols, ", ") + ")"
			}
			rows = append(rows, []string{r.QualName(), key, r.DB, strings.Join(r.Herds, ", ")})
		}
		// Row filters and customnames, in a column of their own when some table has one.
		cns, err := control.CustomNames(ctx, q)
		if err != nil {
			return err
		}
		ccs, err := control.ListScoped(ctx, q, control.CustomCols)
		if err != nil {
			return err
		}
		rfs, err := control.ListScoped(ctx, q, control.RowFilters)
		if err != nil {
			return err
		}
		opts := make([]string, len(out))
		for i, r := range out {
			var o []string
			if r.Where != "" {
				o = append(o, "where="+r.Where)
			}
			if r.Detect == control.DetectColumns {
				o = append(o, "conflict_detect=columns")
			}
			if r.MakeDelta {
				o = append(o, "makedelta=on")
			}
			for _, f := range rfs {
				if f.Table == r.QualName() {
					o = append(o, "where="+f.Text+" ("+f.Scope()+")")
				}
			}
			for _, c := range ccs {
				if c.Table == r.QualName() {
					sc := ""
					if c.Scope() != "" {
						sc = " (" + c.Scope() + ")"
					}
					o = append(o, "customcols SELECT "+c.Text+sc)
				}
			}
			if len(r.Counters) > 0 {
				o = append(o, "counters="+strings.Join(r.Counters, ","))
			}
			for _, c := range cns {
				if c.Table == r.QualName() {
					o = append(o, "customname "+c.QualName()+customScope(c))
				}
			}
			opts[i] = strings.Join(o, "; ")
		}
		if slices.ContainsFunc(opts, func(o string) bool { return o != "" }) {
			headers = append(headers, "Options")
			for i := range rows {
				rows[i] = append(rows[i], opts[i])
			}
		}
		data = out
	case "sequence":
		var err error
		if headers, rows, data, err = listSequences(ctx, q, names); err != nil {
			return err
		}
	case "herd":
		hs, err := control.Herds(ctx, q)
		if err != nil {
			return err
		}
		var out []control.Herd
		headers = []string{"Herd", "Tables"}
		for _, h := range hs {
			if want(names, h.Name) {
				out = append(out, h)
				rows = append(rows, []string{h.Name, strings.Join(h.Tables, ", ")})
			}
		}
		data = out
	case "dbgroup":
		gs, err := control.DBGroups(ctx, q)
		if err != nil {
			return err
		}
		var out []control.DBGroup
		headers = []string{"Dbgroup", "Members"}
		for _, g := range gs {
			if want(names, g.Name) {
				out = append(out, g)
				rows = append(rows, []string{g.Name, describeMembers(g.Members)})
			}
		}
		data = out
	case "sync":
		ss, err := control.Syncs(ctx, q)
		if err != nil {
			return err
		}
		var out []control.Sync
		headers = []string{"Sync", "Status", "Herd", "Dbgroup", "Conflict", "Autokick", "Onetimecopy", "Schedule"}
		for _, s := range ss {
			if want(names, s.Name) {
				out = append(out, s)
				sched := s.Schedule
				if sched == "" {
					sched = "none"
				}
				rows = append(rows, []string{s.Name, string(s.Status), s.Herd, s.DBGroup, s.ConflictStrategy, yesNo(s.Autokick), strconv.Itoa(s.Onetimecopy), sched})
			}
		}
		data = out
	case "customcols", "rowfilter":
		k := control.CustomCols
		if kind == "rowfilter" {
			k = control.RowFilters
		}
		ss, err := control.ListScoped(ctx, q, k)
		if err != nil {
			return err
		}
		headers, rows, data = listScoped(k, ss, names)
	case "customname":
		cs, err := control.CustomNames(ctx, q)
		if err != nil {
			return err
		}
		headers, rows, data = listCustomNames(cs, names)
	}
	if a.jsonOut {
		return a.printJSON(data)
	}
	if len(rows) == 0 {
		plural := kind + "s"
		if strings.HasSuffix(kind, "s") {
			plural = kind // customcols
		}
		if len(names) > 0 {
			return fmt.Errorf("no %s named %s: see 'ibex list %s'", kind, strings.Join(names, ", "), plural)
		}
		a.say("No %s", plural)
		return nil
	}
	printTable(a.stdout, headers, rows)
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
