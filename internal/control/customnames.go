package control

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// CustomName makes targets write a table's rows into another table (Bucardo's
// customname): on db DB ("" any target), in sync Sync ("" any sync).
type CustomName struct {
	ID     int64  `json:"id"`
	Table  string `json:"table"` // the replicated table, schema.table
	Schema string `json:"schema"`
	Name   string `json:"name"`
	DB     string `json:"db,omitempty"`
	Sync   string `json:"sync,omitempty"`
}

// QualName is the custom table as schema.table.
func (c *CustomName) QualName() string { return c.Schema + "." + c.Name }

// AddCustomName records c (its Table must be a known table) and returns its id.
func AddCustomName(ctx context.Context, q Querier, c *CustomName) (int64, error) {
	var id int64
	err := q.QueryRow(ctx, `INSERT INTO ibex.customname (relation, schemaname, tablename, db, sync)
SELECT r.id, $2, $3, nullif($4, ''), nullif($5, '') FROM ibex.relation r WHERE r.schemaname || '.' || r.tablename = $1
RETURNING id`, c.Table, c.Schema, c.Name, c.DB, c.Sync).Scan(&id)
	if err == pgx.ErrNoRows {
		return 0, notFound("table", c.Table)
	}
	return id, translate(err, "customname", c.Table)
}

// CustomNames lists every customname, by table then id.
func CustomNames(ctx context.Context, q Querier) ([]CustomName, error) {
	rows, err := q.Query(ctx, customNamesSQL)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanCustomName)
}

// QueueCustomNames queues CustomNames' query (see Batcher).
func QueueCustomNames(b *pgx.Batch, out *[]CustomName, err *error) {
	b.Queue(customNamesSQL).Query(func(rows pgx.Rows) error {
		*out, *err = pgx.CollectRows(rows, scanCustomName)
		return nil
	})
}

const customNamesSQL = `SELECT c.id, r.schemaname || '.' || r.tablename, c.schemaname, c.tablename, coalesce(c.db, ''), coalesce(c.sync, '')
FROM ibex.customname c JOIN ibex.relation r ON r.id = c.relation ORDER BY 2, 1`

func scanCustomName(r pgx.CollectableRow) (CustomName, error) {
	var c CustomName
	err := r.Scan(&c.ID, &c.Table, &c.Schema, &c.Name, &c.DB, &c.Sync)
	return c, err
}

// RemoveCustomName deletes customname id.
func RemoveCustomName(ctx context.Context, q Querier, id int64) error {
	tag, err := q.Exec(ctx, `DELETE FROM ibex.customname WHERE id = $1`, id)
	if err == nil && tag.RowsAffected() == 0 {
		return notFound("customname", fmt.Sprint(id))
	}
	return err
}

// PickCustomName returns the customname of table on db in sync: the most specific of those
// that apply (db and sync named, then db, then sync, then neither), or nil.
func PickCustomName(cs []CustomName, table, db, sync string) *CustomName {
	var best *CustomName
	score := -1
	for i := range cs {
		c := &cs[i]
		if c.Table != table || (c.DB != "" && c.DB != db) || (c.Sync != "" && c.Sync != sync) {
			continue
		}
		s := 0
		if c.DB != "" {
			s += 2
		}
		if c.Sync != "" {
			s++
		}
		if s > score {
			best, score = c, s
		}
	}
	return best
}

// ReplaceCustomNames makes cs the customnames of table (schema.table).
func ReplaceCustomNames(ctx context.Context, q Querier, table string, cs []CustomName) error {
	if _, err := q.Exec(ctx, `DELETE FROM ibex.customname c USING ibex.relation r WHERE r.id = c.relation AND r.schemaname || '.' || r.tablename = $1`, table); err != nil {
		return err
	}
	for i := range cs {
		if _, err := AddCustomName(ctx, q, &cs[i]); err != nil {
			return err
		}
	}
	return nil
}
