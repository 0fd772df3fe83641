package catalog

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

// ForeignKey is a foreign key from a child table's columns to a parent table's.
type ForeignKey struct {
	Name       string
	Child      QualName
	ChildCols  []string
	Parent     QualName
	ParentCols []string
}

// ForeignKeys returns the foreign keys between tables (both ends among them), in the
// order of their names.
func ForeignKeys(ctx context.Context, q Batcher, tables []QualName) ([]ForeignKey, error) {
	var fks []ForeignKey
	var err error
	b := &pgx.Batch{}
	QueueForeignKeys(b, tables, &fks, &err)
	if e := q.SendBatch(ctx, b).Close(); e != nil {
		return nil, fmt.Errorf("reading foreign keys: %w", e)
	}
	return fks, err
}

// The foreign keys are read as the tables are described (describe.go): one statement per
// catalog, joined by the run.

// constraintsSQL reads the foreign keys (not the clones PostgreSQL puts on partitions)
// from a table of $1 to a table of $1.
var constraintsSQL = `SELECT conname::text, conrelid, conkey, confrelid, confkey FROM pg_constraint
WHERE contype = 'f' AND conparentid = 0 AND conrelid = ANY (` + regclasses("$1") + `) AND confrelid = ANY (` + regclasses("$1") + `)`

// relsSQL resolves the names of $1 (in order) to their oids (NULL: no such table).
const relsSQL = `SELECT to_regclass(x.n)::oid FROM unnest($1::text[]) WITH ORDINALITY AS x(n, ord) ORDER BY x.ord`

// attnamesSQL reads the column names of the tables of $1 by number.
var attnamesSQL = `SELECT attrelid, attnum, attname::text FROM pg_attribute WHERE attrelid = ANY (` + regclasses("$1") + `) AND attnum > 0`

type constraintRow struct {
	name                string
	child, parent       uint32
	childKey, parentKey []int16
}

// QueueForeignKeys queues ForeignKeys's statements on b (with other statements, in one
// round trip). Once the batch's results are read, *fks holds the foreign keys or *err the
// error.
func QueueForeignKeys(b *pgx.Batch, tables []QualName, fks *[]ForeignKey, err *error) {
	arg := describeArg(tables)
	var cons []constraintRow
	names := map[uint32]QualName{}
	cols := map[uint32]map[int16]string{}
	b.Queue(constraintsSQL, arg).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var c constraintRow
			if e := rows.Scan(&c.name, &c.child, &c.childKey, &c.parent, &c.parentKey); e != nil {
				return e
			}
			cons = append(cons, c)
		}
		return rows.Err()
	})
	b.Queue(relsSQL, arg).Query(func(rows pgx.Rows) error {
		for i := 0; rows.Next(); i++ {
			var oid *uint32
			if e := rows.Scan(&oid); e != nil {
				return e
			}
			if oid != nil && i < len(tables) {
				names[*oid] = tables[i]
			}
		}
		return rows.Err()
	})
	b.Queue(attnamesSQL, arg).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var rel uint32
			var num int16
			var name string
			if e := rows.Scan(&rel, &num, &name); e != nil {
				return e
			}
			if cols[rel] == nil {
				cols[rel] = map[int16]string{}
			}
			cols[rel][num] = name
		}
		if e := rows.Err(); e != nil {
			return e
		}
		*fks, *err = joinForeignKeys(cons, names, cols)
		return nil
	})
}

// joinForeignKeys names the tables and columns of cons, ordered by constraint name, then
// child table.
func joinForeignKeys(cons []constraintRow, names map[uint32]QualName, cols map[uint32]map[int16]string) ([]ForeignKey, error) {
	out := make([]ForeignKey, 0, len(cons))
	for _, c := range cons {
		child, ok1 := names[c.child]
		parent, ok2 := names[c.parent]
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("reading foreign keys: %s: a table changed while it was read", c.name)
		}
		fk := ForeignKey{Name: c.name, Child: child, Parent: parent}
		for _, side := range []struct {
			rel  uint32
			key  []int16
			into *[]string
		}{{c.child, c.childKey, &fk.ChildCols}, {c.parent, c.parentKey, &fk.ParentCols}} {
			for _, n := range side.key {
				name, ok := cols[side.rel][n]
				if !ok {
					return nil, fmt.Errorf("reading foreign keys: %s: column %d of a table changed while it was read", c.name, n)
				}
				*side.into = append(*side.into, name)
			}
		}
		out = append(out, fk)
	}
	slices.SortFunc(out, func(a, b ForeignKey) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Child.Schema, b.Child.Schema), cmp.Compare(a.Child.Name, b.Child.Name))
	})
	return out, nil
}
