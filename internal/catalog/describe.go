package catalog

import (
	"cmp"
	"context"

	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

// Batcher sends statements in one round trip (*pgx.Conn, pgx.Tx, *pgxpool.Pool).
type Batcher interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// Reading the catalogs: each statement below reads one catalog by an index of its own,
// for every table at once, and the run joins the rows. A new session pays for every
// catalog relation, index and function a statement's planning touches the first time
// (loading their cache entries): one query joining the catalogs cost a fresh session
// about twice as much as these together, and a warm one three times as much.

// regclasses is the SQL array of the oids of the tables named in the text array param
// (NULL for a name that resolves to none).
func regclasses(param string) string {
	return `ARRAY(SELECT to_regclass(n) FROM unnest(` + param + `::text[]) n)`
}

// classesSQL resolves each name of $1 (in order): its oid (NULL when no such table) and
// whether it is a partitioned table.
const classesSQL = `SELECT to_regclass(n.name)::oid, (SELECT c.relkind = 'p' FROM pg_class c WHERE c.oid = to_regclass(n.name))
FROM unnest($1::text[]) WITH ORDINALITY AS n(name, ord) ORDER BY n.ord`

// columnsSQL reads the columns of the tables of $1, in order, generated ones flagged.
var columnsSQL = `SELECT attrelid, attnum, attname::text, format_type(atttypid, atttypmod), attnotnull, attidentity = 'a', attgenerated <> ''
FROM pg_attribute WHERE attrelid = ANY (` + regclasses("$1") + `) AND attnum > 0 AND NOT attisdropped
ORDER BY attrelid, attnum`

// uniquesSQL reads the unique indexes of the tables of $1 that can identify rows: valid,
// immediate, not partial, on plain columns.
var uniquesSQL = `SELECT indrelid, indexrelid, indisprimary, indkey::int2[], indnkeyatts
FROM pg_index WHERE indrelid = ANY (` + regclasses("$1") + `)
  AND indisunique AND indisvalid AND indimmediate AND indpred IS NULL AND indexprs IS NULL
ORDER BY indexrelid`

type attr struct {
	num int16
	col Column
	gen bool // a generated column: not among the table's columns, but an index may use it
}

type uniqueIndex struct {
	rel, index uint32
	primary    bool
	keys       []int16 // the key columns' attnums (not the INCLUDE ones)
}

// description gathers the rows of the describing statements of one batch.
type description struct {
	oids    []*uint32 // by name; nil: no such table
	parted  []bool
	cols    map[uint32][]attr
	uniques []uniqueIndex
}

// queueDescribe queues the describing statements of names on b; done runs in the last
// one's callback, once every statement has answered (when one fails, the batch's Close
// returns its error and done does not run).
func queueDescribe(b *pgx.Batch, names []QualName, done func(d *description) error) {
	d := &description{cols: map[uint32][]attr{}}
	arg := describeArg(names)
	b.Queue(classesSQL, arg).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var oid *uint32
			var parted *bool
			if err := rows.Scan(&oid, &parted); err != nil {
				return err
			}
			d.oids, d.parted = append(d.oids, oid), append(d.parted, parted != nil && *parted)
		}
		return rows.Err()
	})
	b.Queue(columnsSQL, arg).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var rel uint32
			var a attr
			if err := rows.Scan(&rel, &a.num, &a.col.Name, &a.col.Type, &a.col.NotNull, &a.col.IdentityAlways, &a.gen); err != nil {
				return err
			}
			d.cols[rel] = append(d.cols[rel], a)
		}
		return rows.Err()
	})
	b.Queue(uniquesSQL, arg).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var u uniqueIndex
			var keyAtts int16
			if err := rows.Scan(&u.rel, &u.index, &u.primary, &u.keys, &keyAtts); err != nil {
				return err
			}
			u.keys = u.keys[:min(max(int(keyAtts), 0), len(u.keys))]
			d.uniques = append(d.uniques, u)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if len(d.oids) != len(names) {
			return fmt.Errorf("describing %d tables: %d answers", len(names), len(d.oids))
		}
		return done(d)
	})
}

// tables builds the description of each of names (ts[i], or errs[i]: ErrNoTable).
func (d *description) tables(names []QualName, ts []*Table, errs []error) {
	for i, name := range names {
		if d.oids[i] == nil {
			ts[i], errs[i] = nil, fmt.Errorf("table %s: %w", name, ErrNoTable)
			continue
		}
		ts[i], errs[i] = d.table(*d.oids[i], name, d.parted[i]), nil
	}
}

// table is the description of the table of oid rel: its columns (generated ones left
// out), its preferred key (the primary key, else the narrowest unique index on NOT NULL
// columns, the lowest oid first among equals: its key columns, not its INCLUDE ones), and
// the columns of its other unique indexes.
func (d *description) table(rel uint32, name QualName, parted bool) *Table {
	t := &Table{Schema: name.Schema, Name: name.Name, KeyKind: KeyNone, Partitioned: parted}
	byNum := map[int16]attr{}
	for _, a := range d.cols[rel] {
		byNum[a.num] = a
		if !a.gen {
			t.Columns = append(t.Columns, a.col)
		}
	}
	var key *uniqueIndex
	var all [][]string
	for i := range d.uniques {
		u := &d.uniques[i]
		if u.rel != rel {
			continue
		}
		cols, notNull, ok := make([]string, len(u.keys)), true, true
		for j, n := range u.keys {
			a, found := byNum[n]
			if !found {
				ok = false // not a user column: such an index cannot identify rows here
				break
			}
			cols[j], notNull = a.col.Name, notNull && a.col.NotNull
		}
		if !ok {
			continue
		}
		all = append(all, cols)
		if notNull && (key == nil || better(u, key)) {
			key = u
			t.KeyCols = cols
		}
	}
	if key != nil {
		t.KeyKind = KeyUnique
		if key.primary {
			t.KeyKind = KeyPrimary
		}
	}
	for _, u := range all {
		if !slices.Equal(u, t.KeyCols) {
			t.Uniques = append(t.Uniques, u)
		}
	}
	return t
}

// better reports whether u is preferred to v as a table's key: a primary key, then fewer
// columns, then the lower index oid.
func better(u, v *uniqueIndex) bool {
	if u.primary != v.primary {
		return u.primary
	}
	return cmp.Or(cmp.Compare(len(u.keys), len(v.keys)), cmp.Compare(u.index, v.index)) < 0
}

// Describe reads a table's columns and key: its primary key, or failing that the
// narrowest valid, non-partial unique index over NOT NULL columns.
func Describe(ctx context.Context, q Batcher, name QualName) (*Table, error) {
	names, ts, errs := []QualName{name}, make([]*Table, 1), make([]error, 1)
	b := &pgx.Batch{}
	QueueDescribeAll(b, names, ts, errs)
	if err := q.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("describing table %s: %w", name, err)
	}
	return ts[0], errs[0]
}

// QueueDescribeAll queues on b the statements that describe every table of names (see
// Describe), so that the tables of a db are described in one round trip. Once the
// batch's results are read without error, ts[i] holds the description of names[i] or
// errs[i] the error (ErrNoTable when the table does not exist).
func QueueDescribeAll(b *pgx.Batch, names []QualName, ts []*Table, errs []error) {
	queueDescribe(b, names, func(d *description) error {
		d.tables(names, ts, errs)
		return nil
	})
}

func describeArg(names []QualName) []string {
	idents := make([]string, len(names))
	for i, n := range names {
		idents[i] = pgx.Identifier{n.Schema, n.Name}.Sanitize()
	}
	return idents
}
