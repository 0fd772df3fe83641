package control

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ibexrepl/ibex/internal/sqlstate"
)

// DB is a named connection to a database.
type DB struct {
	Name string
	// Type is the kind of database (DBTypePostgres when empty): only PostgreSQL dbs can
	// be sources; the others are targets written through their sink.
	Type   DBType
	Conn   map[string]string // libpq keywords (a PostgreSQL db) or the sink's settings; never a password
	Pass   string            // "", env:VAR or file:PATH
	Status Status
	// MakeDelta (makedelta=on): rows ibex applies on this db are captured for the other
	// syncs it is a source of, so their changes cascade (A -> B -> C).
	MakeDelta bool
}

// Relation is a replicated table (Bucardo's goat).
type Relation struct {
	ID      int64
	Schema  string
	Name    string
	DB      string
	KeyCols []string
	KeyKind string
	Herds   []string
	// Where is the row filter (where=): an SQL condition on the table's columns; "" for
	// every row.
	Where string
	// Counters are the counter columns (counters=): a change to them is applied on the
	// other dbs as a delta (new value minus old), so increments made on several sources
	// all count; nil for none.
	Counters []string
	// MakeDelta (makedelta=on): rows ibex applies to this table, on any db, are captured
	// for the other syncs that db is a source of (see DB.MakeDelta).
	MakeDelta bool
	// Detect is conflict_detect: DetectRows (the default: a row changed on several sources
	// is a conflict) or DetectColumns (only a column changed on several is).
	Detect string
}

// QualName is schema.table as users type it.
func (r *Relation) QualName() string { return r.Schema + "." + r.Name }

// Herd is a named group of tables.
type Herd struct {
	Name   string
	Tables []string // schema.table, in priority then id order
}

// Member is a db with its role in a dbgroup.
type Member struct {
	DB   string
	Role string
}

// DBGroup is a named list of dbs with roles.
type DBGroup struct {
	Name    string
	Members []Member
}

// Sync is a herd replicated across a dbgroup.
type Sync struct {
	ID               int32 // given by the control database, never reused; keys the run lock
	Name             string
	Herd             string
	DBGroup          string
	ConflictStrategy string
	// ConflictByType overrides ConflictStrategy for some conflict types (type -> strategy).
	ConflictByType map[string]string
	Autokick       bool
	Onetimecopy    int
	Schedule       string
	Status         Status
	BatchSize      int
	// CompareEvery is how often the scheduler compares the sync's dbs (a Go duration;
	// "": never, unless the scheduler's -compare-every says otherwise).
	CompareEvery string
	// SingleTransaction makes a run write each receiver in one transaction however large
	// the backlog; otherwise a run commits every BatchSize changed keys.
	SingleTransaction bool
	// OnError is what a run does with a row a receiver refuses (a constraint, a trigger, a
	// type): OnErrorStop (the batch fails) or OnErrorSkip (the row is parked).
	OnError string
	// OnOrphan is what a run does with a child row whose parent row (a foreign key between
	// two tables of the sync) is gone: OnOrphanDelete or OnOrphanKeep.
	OnOrphan string
	// UniqueClashLoser is what happens to the losing row of a unique clash:
	// UniqueLoserDelete (deleted everywhere, logged) or UniqueLoserPark (deleted everywhere
	// and parked in the exception log with its row).
	UniqueClashLoser string
}

// Querier is satisfied by *pgxpool.Pool, *pgx.Conn and pgx.Tx.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Batcher sends a batch of queries in one round trip: the pool, a session, a transaction
// have SendBatch. The Queue functions (QueueHerds, ...) queue the query of the function of
// the same name, whose result is in their out argument once the batch's results are read.
type Batcher interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// Q is the store's default querier (the pool).
func (s *Store) Q() Querier { return s.Pool }

// InTx runs fn in a transaction.
func (s *Store) InTx(ctx context.Context, fn func(q Querier) error) error {
	return pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error { return fn(tx) })
}

func notFound(kind, name string) error {
	return fmt.Errorf("%s %q %w: see 'ibex list %ss'", kind, name, ErrNotFound, kind)
}

func translate(err error, kind, name string) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case sqlstate.UniqueViolation:
			return fmt.Errorf("%s %q %w: use 'ibex update %s %s ...' to change it", kind, name, ErrExists, kind, name)
		case sqlstate.ForeignKeyViolation:
			return fmt.Errorf("%s %q is %w (%s): remove what uses it first", kind, name, ErrInUse, pe.Detail)
		case sqlstate.CheckViolation:
			return fmt.Errorf("%s %q: invalid value (%s)", kind, name, pe.ConstraintName)
		}
	}
	return err
}

// ---- dbs

// DBs lists dbs by name.
func DBs(ctx context.Context, q Querier) ([]DB, error) {
	rows, err := q.Query(ctx, `SELECT name, dbtype, conn, coalesce(pass, ''), status, makedelta FROM ibex.db ORDER BY name`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (DB, error) {
		var d DB
		err := r.Scan(&d.Name, &d.Type, &d.Conn, &d.Pass, &d.Status, &d.MakeDelta)
		return d, err
	})
}

// groupDBsSQL reads the dbs of dbgroup $1.
const groupDBsSQL = `SELECT d.name, d.dbtype, d.conn, coalesce(d.pass, ''), d.status, d.makedelta FROM ibex.db d
WHERE d.name IN (SELECT m.db FROM ibex.dbmap m WHERE m.dbgroup = $1)`

// syncDBsSQL is groupDBsSQL for the dbgroup of sync $1.
const syncDBsSQL = `SELECT d.name, d.dbtype, d.conn, coalesce(d.pass, ''), d.status, d.makedelta FROM ibex.db d
WHERE d.name IN (SELECT m.db FROM ibex.dbmap m JOIN ibex.sync s ON s.dbgroup = m.dbgroup WHERE s.name = $1)`

// QueueGroupDBs queues the reading of the dbs of dbgroup group into *out, by name.
func QueueGroupDBs(b *pgx.Batch, group string, out *map[string]*DB, err *error) {
	queueDBs(b, groupDBsSQL, group, out, err)
}

func queueDBs(b *pgx.Batch, sql, arg string, out *map[string]*DB, err *error) {
	b.Queue(sql, arg).Query(func(rows pgx.Rows) error {
		var ds []*DB
		ds, *err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*DB, error) {
			d := &DB{}
			err := r.Scan(&d.Name, &d.Type, &d.Conn, &d.Pass, &d.Status, &d.MakeDelta)
			return d, err
		})
		*out = map[string]*DB{}
		for _, d := range ds {
			(*out)[d.Name] = d
		}
		return nil
	})
}

// GetDB returns one db.
func GetDB(ctx context.Context, q Querier, name string) (*DB, error) {
	d := DB{Name: name}
	err := q.QueryRow(ctx, `SELECT dbtype, conn, coalesce(pass, ''), status, makedelta FROM ibex.db WHERE name = $1`, name).Scan(&d.Type, &d.Conn, &d.Pass, &d.Status, &d.MakeDelta)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound("db", name)
	}
	return &d, err
}

// PutDB inserts (create) or replaces a db.
func PutDB(ctx context.Context, q Querier, d *DB, create bool) error {
	var pass any
	if d.Pass != "" {
		pass = d.Pass
	}
	status := d.Status
	if status == "" {
		status = StatusActive
	}
	typ := d.Type
	if typ == "" {
		typ = DBTypePostgres
	}
	var err error
	if create {
		_, err = q.Exec(ctx, `INSERT INTO ibex.db (name, conn, pass, status, dbtype, makedelta) VALUES ($1, $2, $3, $4, $5, $6)`, d.Name, d.Conn, pass, status, typ, d.MakeDelta)
	} else {
		var tag pgconn.CommandTag
		tag, err = q.Exec(ctx, `UPDATE ibex.db SET conn = $2, pass = $3, status = $4, makedelta = $6 WHERE name = $1 AND dbtype = $5`, d.Name, d.Conn, pass, status, typ, d.MakeDelta)
		if err == nil && tag.RowsAffected() == 0 {
			var cur DBType
			if err := q.QueryRow(ctx, `SELECT dbtype FROM ibex.db WHERE name = $1`, d.Name).Scan(&cur); errors.Is(err, pgx.ErrNoRows) {
				return notFound("db", d.Name)
			} else if err != nil {
				return err
			}
			return fmt.Errorf("db %q is of type %s and cannot become %s: remove the db and add it again", d.Name, cur, typ)
		}
	}
	return translate(err, "db", d.Name)
}

// dbTypes returns the types of the named dbs that exist.
func dbTypes(ctx context.Context, q Querier, names []string) (map[string]DBType, error) {
	rows, err := q.Query(ctx, `SELECT name, dbtype FROM ibex.db WHERE name = ANY($1)`, names)
	if err != nil {
		return nil, err
	}
	out := map[string]DBType{}
	var name string
	var t DBType
	_, err = pgx.ForEachRow(rows, []any{&name, &t}, func() error { out[name] = t; return nil })
	return out, err
}

// RemoveDB deletes a db that no dbgroup uses.
func RemoveDB(ctx context.Context, q Querier, name string) error {
	var groups []string
	if err := q.QueryRow(ctx, `SELECT coalesce(array_agg(dbgroup ORDER BY dbgroup), '{}') FROM ibex.dbmap WHERE db = $1`, name).Scan(&groups); err != nil {
		return err
	}
	if len(groups) > 0 {
		return fmt.Errorf("db %q is %w by dbgroup %s: remove it from the dbgroup first", name, ErrInUse, strings.Join(groups, ", "))
	}
	tag, err := q.Exec(ctx, `DELETE FROM ibex.db WHERE name = $1`, name)
	if err == nil && tag.RowsAffected() == 0 {
		return notFound("db", name)
	}
	return translate(err, "db", name)
}

// ---- tables

// Relations lists tables with their herds.
func Relations(ctx context.Context, q Querier) ([]Relation, error) {
	rows, err := q.Query(ctx, relationsSQL)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanRelation)
}

// QueueRelations queues Relations' query (see Batcher).
func QueueRelations(b *pgx.Batch, out *[]Relation, err *error) {
	b.Queue(relationsSQL).Query(func(rows pgx.Rows) error {
		*out, *err = pgx.CollectRows(rows, scanRelation)
		return nil
	})
}

const relationsSQL = `
SELECT r.id, r.schemaname, r.tablename, coalesce(r.db, ''), r.keycols, r.keykind,
       coalesce((SELECT array_agg(m.herd ORDER BY m.herd) FROM ibex.herdmap m WHERE m.relation = r.id), '{}'), r.row_filter, r.counters, r.conflict_detect, r.makedelta
FROM ibex.relation r ORDER BY r.schemaname, r.tablename`

func scanRelation(r pgx.CollectableRow) (Relation, error) {
	var x Relation
	err := r.Scan(&x.ID, &x.Schema, &x.Name, &x.DB, &x.KeyCols, &x.KeyKind, &x.Herds, &x.Where, &x.Counters, &x.Detect, &x.MakeDelta)
	if len(x.Counters) == 0 {
		x.Counters = nil // none: the same as a Relation built without counters
	}
	return x, err
}

// GetRelation returns one table.
func GetRelation(ctx context.Context, q Querier, schema, name string) (*Relation, error) {
	rows, err := q.Query(ctx, `
SELECT r.id, r.schemaname, r.tablename, coalesce(r.db, ''), r.keycols, r.keykind,
       coalesce((SELECT array_agg(m.herd ORDER BY m.herd) FROM ibex.herdmap m WHERE m.relation = r.id), '{}'), r.row_filter, r.counters, r.conflict_detect, r.makedelta
FROM ibex.relation r WHERE r.schemaname = $1 AND r.tablename = $2`, schema, name)
	if err != nil {
		return nil, err
	}
	x, err := pgx.CollectExactlyOneRow(rows, scanRelation)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound("table", schema+"."+name)
	}
	return &x, err
}

// PutRelation inserts or updates a table by schema and name; returns its id.
func PutRelation(ctx context.Context, q Querier, r *Relation) (int64, error) {
	var db any
	if r.DB != "" {
		db = r.DB
	}
	keys := r.KeyCols
	if keys == nil {
		keys = []string{}
	}
	counters := r.Counters
	if counters == nil {
		counters = []string{}
	}
	detect := r.Detect
	if detect == "" {
		detect = DetectRows
	}
	var id int64
	err := q.QueryRow(ctx, `
INSERT INTO ibex.relation (schemaname, tablename, db, keycols, keykind, row_filter, counters, conflict_detect, makedelta) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (schemaname, tablename) DO UPDATE SET db = excluded.db, keycols = excluded.keycols, keykind = excluded.keykind, row_filter = excluded.row_filter, counters = excluded.counters,
  conflict_detect = excluded.conflict_detect, makedelta = excluded.makedelta
RETURNING id`, r.Schema, r.Name, db, keys, r.KeyKind, r.Where, counters, detect, r.MakeDelta).Scan(&id)
	return id, translate(err, "table", r.QualName())
}

// RemoveRelation deletes a table no sync uses.
func RemoveRelation(ctx context.Context, q Querier, schema, name string) error {
	var syncs []string
	if err := q.QueryRow(ctx, `
SELECT coalesce(array_agg(DISTINCT s.name ORDER BY s.name), '{}') FROM ibex.sync s JOIN ibex.herdmap m ON m.herd = s.herd
JOIN ibex.relation r ON r.id = m.relation WHERE r.schemaname = $1 AND r.tablename = $2`, schema, name).Scan(&syncs); err != nil {
		return err
	}
	if len(syncs) > 0 {
		return fmt.Errorf("table %s.%s is %w by sync %s: remove it from the herd or remove the sync first", schema, name, ErrInUse, strings.Join(syncs, ", "))
	}
	tag, err := q.Exec(ctx, `DELETE FROM ibex.relation WHERE schemaname = $1 AND tablename = $2`, schema, name)
	if err == nil && tag.RowsAffected() == 0 {
		return notFound("table", schema+"."+name)
	}
	return err
}

// ---- herds

// Herds lists herds with their tables.
func Herds(ctx context.Context, q Querier) ([]Herd, error) {
	rows, err := q.Query(ctx, herdsSQL)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanHerd)
}

// QueueHerds queues Herds' query (see Batcher).
func QueueHerds(b *pgx.Batch, out *[]Herd, err *error) {
	b.Queue(herdsSQL).Query(func(rows pgx.Rows) error {
		*out, *err = pgx.CollectRows(rows, scanHerd)
		return nil
	})
}

const herdsSQL = `
SELECT h.name, coalesce(array_agg(r.schemaname || '.' || r.tablename ORDER BY m.priority DESC, r.id) FILTER (WHERE r.id IS NOT NULL), '{}')
FROM ibex.herd h LEFT JOIN ibex.herdmap m ON m.herd = h.name LEFT JOIN ibex.relation r ON r.id = m.relation
GROUP BY h.name ORDER BY h.name`

func scanHerd(r pgx.CollectableRow) (Herd, error) {
	var h Herd
	err := r.Scan(&h.Name, &h.Tables)
	return h, err
}

// EnsureHerd creates a herd if missing.
func EnsureHerd(ctx context.Context, q Querier, name string) error {
	_, err := q.Exec(ctx, `INSERT INTO ibex.herd (name) VALUES ($1) ON CONFLICT DO NOTHING`, name)
	return translate(err, "herd", name)
}

// CreateHerd creates a herd, refusing an existing one.
func CreateHerd(ctx context.Context, q Querier, name string) error {
	_, err := q.Exec(ctx, `INSERT INTO ibex.herd (name) VALUES ($1)`, name)
	return translate(err, "herd", name)
}

// HerdExists reports whether a herd exists.
func HerdExists(ctx context.Context, q Querier, name string) (bool, error) {
	var ok bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM ibex.herd WHERE name = $1)`, name).Scan(&ok)
	return ok, err
}

// AddToHerd adds a table to a herd (no-op if present).
func AddToHerd(ctx context.Context, q Querier, herd string, relID int64) error {
	_, err := q.Exec(ctx, `INSERT INTO ibex.herdmap (herd, relation) VALUES ($1, $2) ON CONFLICT DO NOTHING`, herd, relID)
	return translate(err, "herd", herd)
}

// ClearHerd removes every table from a herd.
func ClearHerd(ctx context.Context, q Querier, herd string) error {
	_, err := q.Exec(ctx, `DELETE FROM ibex.herdmap WHERE herd = $1`, herd)
	return err
}

// RemoveFromHerd removes a table from a herd.
func RemoveFromHerd(ctx context.Context, q Querier, herd string, relID int64) error {
	_, err := q.Exec(ctx, `DELETE FROM ibex.herdmap WHERE herd = $1 AND relation = $2`, herd, relID)
	return err
}

// RemoveHerd deletes a herd no sync uses.
func RemoveHerd(ctx context.Context, q Querier, name string) error {
	var syncs []string
	if err := q.QueryRow(ctx, `SELECT coalesce(array_agg(name ORDER BY name), '{}') FROM ibex.sync WHERE herd = $1`, name).Scan(&syncs); err != nil {
		return err
	}
	if len(syncs) > 0 {
		return fmt.Errorf("herd %q is %w by sync %s: remove the sync first", name, ErrInUse, strings.Join(syncs, ", "))
	}
	tag, err := q.Exec(ctx, `DELETE FROM ibex.herd WHERE name = $1`, name)
	if err == nil && tag.RowsAffected() == 0 {
		return notFound("herd", name)
	}
	return err
}

// ---- dbgroups

// DBGroups lists dbgroups with members in order.
func DBGroups(ctx context.Context, q Querier) ([]DBGroup, error) {
	rows, err := q.Query(ctx, dbGroupsSQL)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanDBGroup)
}

const dbGroupsSQL = `
SELECT g.name, coalesce(array_agg(m.db ORDER BY m.position) FILTER (WHERE m.db IS NOT NULL), '{}'),
       coalesce(array_agg(m.role ORDER BY m.position) FILTER (WHERE m.db IS NOT NULL), '{}')
FROM ibex.dbgroup g LEFT JOIN ibex.dbmap m ON m.dbgroup = g.name GROUP BY g.name ORDER BY g.name`

func scanDBGroup(r pgx.CollectableRow) (DBGroup, error) {
	var g DBGroup
	var dbs, roles []string
	err := r.Scan(&g.Name, &dbs, &roles)
	for i := range dbs {
		g.Members = append(g.Members, Member{DB: dbs[i], Role: roles[i]})
	}
	return g, err
}

// GetDBGroup returns one dbgroup.
func GetDBGroup(ctx context.Context, q Querier, name string) (*DBGroup, error) {
	all, err := DBGroups(ctx, q)
	if err != nil {
		return nil, err
	}
	return pickDBGroup(all, name)
}

// QueueGetDBGroup queues GetDBGroup's query (see Batcher).
func QueueGetDBGroup(b *pgx.Batch, name string, out **DBGroup, err *error) {
	b.Queue(dbGroupsSQL).Query(func(rows pgx.Rows) error {
		var all []DBGroup
		if all, *err = pgx.CollectRows(rows, scanDBGroup); *err == nil {
			*out, *err = pickDBGroup(all, name)
		}
		return nil
	})
}

func pickDBGroup(all []DBGroup, name string) (*DBGroup, error) {
	for i := range all {
		if all[i].Name == name {
			return &all[i], nil
		}
	}
	return nil, notFound("dbgroup", name)
}

// PutDBGroup creates or replaces a dbgroup's members, refusing a dbgroup that breaks the
// rules of DBGroup.Check.
func PutDBGroup(ctx context.Context, q Querier, g *DBGroup, create bool) error {
	if !create {
		var ok bool
		if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM ibex.dbgroup WHERE name = $1)`, g.Name).Scan(&ok); err != nil {
			return err
		}
		if !ok {
			return notFound("dbgroup", g.Name)
		}
	}
	if err := g.Check(); err != nil {
		return err
	}
	types, err := dbTypes(ctx, q, g.DBs())
	if err != nil {
		return err
	}
	if err := g.CheckTypes(func(db string) DBType { return types[db] }); err != nil {
		return err
	}
	if create {
		if _, err := q.Exec(ctx, `INSERT INTO ibex.dbgroup (name) VALUES ($1)`, g.Name); err != nil {
			return translate(err, "dbgroup", g.Name)
		}
	} else {
		if _, err := q.Exec(ctx, `DELETE FROM ibex.dbmap WHERE dbgroup = $1`, g.Name); err != nil {
			return err
		}
	}
	for i, m := range g.Members {
		if _, err := q.Exec(ctx, `INSERT INTO ibex.dbmap (dbgroup, db, role, position) VALUES ($1, $2, $3, $4)`, g.Name, m.DB, m.Role, i+1); err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == sqlstate.ForeignKeyViolation {
				return fmt.Errorf("dbgroup %q: %w", g.Name, notFound("db", m.DB))
			}
			if errors.As(err, &pe) && pe.Code == sqlstate.UniqueViolation {
				return fmt.Errorf("dbgroup %q: db %q is listed twice", g.Name, m.DB)
			}
			return err
		}
	}
	return nil
}

// RemoveDBGroup deletes a dbgroup no sync uses.
func RemoveDBGroup(ctx context.Context, q Querier, name string) error {
	var syncs []string
	if err := q.QueryRow(ctx, `SELECT coalesce(array_agg(name ORDER BY name), '{}') FROM ibex.sync WHERE dbgroup = $1`, name).Scan(&syncs); err != nil {
		return err
	}
	if len(syncs) > 0 {
		return fmt.Errorf("dbgroup %q is %w by sync %s: remove the sync first", name, ErrInUse, strings.Join(syncs, ", "))
	}
	tag, err := q.Exec(ctx, `DELETE FROM ibex.dbgroup WHERE name = $1`, name)
	if err == nil && tag.RowsAffected() == 0 {
		return notFound("dbgroup", name)
	}
	return err
}

// ---- syncs

const syncCols = `name, herd, dbgroup, conflict_strategy, autokick, onetimecopy, schedule, status, batch_size, single_transaction, conflict_by_type, on_error, on_orphan, compare_every, unique_clash_loser`

func scanSync(r pgx.CollectableRow) (Sync, error) {
	var s Sync
	err := r.Scan(&s.ID, &s.Name, &s.Herd, &s.DBGroup, &s.ConflictStrategy, &s.Autokick, &s.Onetimecopy, &s.Schedule, &s.Status, &s.BatchSize, &s.SingleTransaction, &s.ConflictByType, &s.OnError, &s.OnOrphan, &s.CompareEvery, &s.UniqueClashLoser)
	return s, err
}

// Syncs lists syncs by name.
func Syncs(ctx context.Context, q Querier) ([]Sync, error) {
	rows, err := q.Query(ctx, `SELECT id, `+syncCols+` FROM ibex.sync ORDER BY name`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanSync)
}

// GetSync returns one sync.
func GetSync(ctx context.Context, q Querier, name string) (*Sync, error) {
	rows, err := q.Query(ctx, `SELECT id, `+syncCols+` FROM ibex.sync WHERE name = $1`, name)
	if err != nil {
		return nil, err
	}
	s, err := pgx.CollectExactlyOneRow(rows, scanSync)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound("sync", name)
	}
	return &s, err
}

// PutSync inserts (create) or replaces a sync (s.ID is the control database's to give).
func PutSync(ctx context.Context, q Querier, s *Sync, create bool) error {
	byType := s.ConflictByType
	if byType == nil {
		byType = map[string]string{}
	}
	onError := s.OnError
	if onError == "" {
		onError = OnErrorStop
	}
	onOrphan := s.OnOrphan
	if onOrphan == "" {
		onOrphan = OnOrphanDelete
	}
	loser := s.UniqueClashLoser
	if loser == "" {
		loser = UniqueLoserDelete
	}
	args := []any{s.Name, s.Herd, s.DBGroup, s.ConflictStrategy, s.Autokick, s.Onetimecopy, s.Schedule, s.Status, s.BatchSize, s.SingleTransaction, byType, onError, onOrphan, s.CompareEvery, loser}
	var err error
	if create {
		err = q.QueryRow(ctx, `INSERT INTO ibex.sync (`+syncCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING id`, args...).Scan(&s.ID)
		if err == nil {
			// A new sync takes its herd as it is: its onetimecopy says whether to copy.
			_, err = q.Exec(ctx, `INSERT INTO ibex.synctable (sync, relation) SELECT $1, relation FROM ibex.herdmap WHERE herd = $2`, s.Name, s.Herd)
		}
	} else {
		var tag pgconn.CommandTag
		tag, err = q.Exec(ctx, `UPDATE ibex.sync SET herd = $2, dbgroup = $3, conflict_strategy = $4, autokick = $5,
onetimecopy = $6, schedule = $7, status = $8, batch_size = $9, single_transaction = $10, conflict_by_type = $11, on_error = $12, on_orphan = $13, compare_every = $14, unique_clash_loser = $15 WHERE name = $1`, args...)
		if err == nil && tag.RowsAffected() == 0 {
			return notFound("sync", s.Name)
		}
	}
	return translate(err, "sync", s.Name)
}

// RemoveSync deletes a sync and its watermarks; its run history stays.
func RemoveSync(ctx context.Context, q Querier, name string) error {
	tag, err := q.Exec(ctx, `DELETE FROM ibex.sync WHERE name = $1`, name)
	if err == nil && tag.RowsAffected() == 0 {
		return notFound("sync", name)
	}
	if err != nil {
		return err
	}
	_, err = q.Exec(ctx, `DELETE FROM ibex.watermark WHERE sync = $1`, name)
	return err
}

// SetOnetimecopy sets a sync's onetimecopy flag.
func SetOnetimecopy(ctx context.Context, q Querier, name string, v int) error {
	_, err := q.Exec(ctx, `UPDATE ibex.sync SET onetimecopy = $2 WHERE name = $1`, name, v)
	return err
}

// AddedTables returns the tables of sync's herd (schema.table) that the sync has not taken
// in yet: added to the herd since the sync was created (or since the sync moved to this
// herd).
func AddedTables(ctx context.Context, q Querier, sync string) ([]string, error) {
	var out []string
	err := q.QueryRow(ctx, addedTablesSQL, sync).Scan(&out)
	return out, err
}

// QueueAddedTables queues AddedTables' query (see Batcher).
func QueueAddedTables(b *pgx.Batch, sync string, out *[]string, err *error) {
	b.Queue(addedTablesSQL, sync).QueryRow(func(row pgx.Row) error {
		*err = row.Scan(out)
		return nil
	})
}

const addedTablesSQL = `SELECT coalesce(array_agg(r.schemaname || '.' || r.tablename ORDER BY r.id), '{}')
FROM ibex.sync s JOIN ibex.herdmap h ON h.herd = s.herd JOIN ibex.relation r ON r.id = h.relation
WHERE s.name = $1 AND NOT EXISTS (SELECT 1 FROM ibex.synctable st WHERE st.sync = s.name AND st.relation = h.relation)`

// TakeInTables records that sync has taken in the tables of its herd named (schema.table),
// and forgets the tables no longer in its herd (added back later, they are copied again).
func TakeInTables(ctx context.Context, q Querier, sync string, tables []string) error {
	if _, err := q.Exec(ctx, `INSERT INTO ibex.synctable (sync, relation)
SELECT s.name, h.relation FROM ibex.sync s JOIN ibex.herdmap h ON h.herd = s.herd JOIN ibex.relation r ON r.id = h.relation
WHERE s.name = $1 AND r.schemaname || '.' || r.tablename = ANY ($2::text[]) ON CONFLICT DO NOTHING`, sync, tables); err != nil {
		return err
	}
	_, err := q.Exec(ctx, `DELETE FROM ibex.synctable st WHERE st.sync = $1
AND NOT EXISTS (SELECT 1 FROM ibex.sync s JOIN ibex.herdmap h ON h.herd = s.herd WHERE s.name = st.sync AND h.relation = st.relation)`, sync)
	return err
}

// conflict_detect values.
const (
	DetectRows    = "rows"    // a row changed on several sources is a conflict (the default)
	DetectColumns = "columns" // only a column changed on several sources is
)
