package catalog

import (
	"context"
	"fmt"

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
func ForeignKeys(ctx context.Context, q Querier, tables []QualName) ([]ForeignKey, error) {
	rows, err := q.Query(ctx, foreignKeysSQL, fkNames(tables))
	if err != nil {
		return nil, fmt.Errorf("reading foreign keys: %w", err)
	}
	return pgx.CollectRows(rows, scanForeignKey)
}

// QueueForeignKeys queues ForeignKeys's query on b (with other statements, in one round
// trip). Once the batch's results are read, *fks holds the foreign keys or *err the error.
func QueueForeignKeys(b *pgx.Batch, tables []QualName, fks *[]ForeignKey, err *error) {
	b.Queue(foreignKeysSQL, fkNames(tables)).Query(func(rows pgx.Rows) error {
		*fks, *err = pgx.CollectRows(rows, scanForeignKey)
		if *err != nil {
			*err = fmt.Errorf("reading foreign keys: %w", *err)
		}
		return nil
	})
}

func fkNames(tables []QualName) []string {
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = pgx.Identifier{t.Schema, t.Name}.Sanitize()
	}
	return names
}

func scanForeignKey(r pgx.CollectableRow) (ForeignKey, error) {
	var fk ForeignKey
	err := r.Scan(&fk.Name, &fk.Child.Schema, &fk.Child.Name, &fk.ChildCols, &fk.Parent.Schema, &fk.Parent.Name, &fk.ParentCols)
	return fk, err
}

const foreignKeysSQL = `
SELECT c.conname::text, cn.nspname::text, cl.relname::text,
       array(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, o) JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o),
       pn.nspname::text, pl.relname::text,
       array(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, o) JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o)
FROM pg_constraint c
JOIN pg_class cl ON cl.oid = c.conrelid JOIN pg_namespace cn ON cn.oid = cl.relnamespace
JOIN pg_class pl ON pl.oid = c.confrelid JOIN pg_namespace pn ON pn.oid = pl.relnamespace
WHERE c.contype = 'f' AND c.conparentid = 0
  AND c.conrelid = ANY (SELECT to_regclass(x) FROM unnest($1::text[]) x)
  AND c.confrelid = ANY (SELECT to_regclass(x) FROM unnest($1::text[]) x)
ORDER BY c.conname, cn.nspname, cl.relname`
