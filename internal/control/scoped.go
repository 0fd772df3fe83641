package control

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Scoped is a table option that applies to one receiving db, one sync, both, or every
// receiver and sync ("" any): customcols (ibex.customcols) and scoped row filters
// (ibex.rowfilter). Where several apply, the most specific wins (PickScoped).
type Scoped struct {
	ID    int64  `json:"id"`
	Table string `json:"table"` // the replicated table, schema.table
	// Text is the option: a customcols select list ("SELECT a, b, upper(c) AS c"), or a
	// row filter's condition.
	Text string `json:"text"`
	DB   string `json:"db,omitempty"`
	Sync string `json:"sync,omitempty"`
}

// ScopedKind names the control table of a kind of scoped option.
type ScopedKind struct {
	table, col string
	// Name is the kind as the CLI says it.
	Name string
}

// The kinds of scoped options.
var (
	CustomCols = ScopedKind{table: "ibex.customcols", col: "clause", Name: "customcols"}
	RowFilters = ScopedKind{table: "ibex.rowfilter", col: "condition", Name: "rowfilter"}
)

// AddScoped records s (its Table must be a known table) and returns its id. One of the
// same table and scope is replaced.
func AddScoped(ctx context.Context, q Querier, k ScopedKind, s *Scoped) (int64, error) {
	var id int64
	err := q.QueryRow(ctx, fmt.Sprintf(`INSERT INTO %s (relation, %s, db, sync)
SELECT r.id, $2, nullif($3, ''), nullif($4, '') FROM ibex.relation r WHERE r.schemaname || '.' || r.tablename = $1
ON CONFLICT (relation, db, sync) DO UPDATE SET %s = excluded.%s, created = now()
RETURNING id`, k.table, k.col, k.col, k.col), s.Table, s.Text, s.DB, s.Sync).Scan(&id)
	if err == pgx.ErrNoRows {
		return 0, notFound("table", s.Table)
	}
	return id, translate(err, k.Name, s.Table)
}

// ListScoped lists every option of kind k, by table then id.
func ListScoped(ctx context.Context, q Querier, k ScopedKind) ([]Scoped, error) {
	rows, err := q.Query(ctx, listScopedSQL(k))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanScoped)
}

// QueueListScoped queues ListScoped's query (see Batcher).
func QueueListScoped(b *pgx.Batch, k ScopedKind, out *[]Scoped, err *error) {
	b.Queue(listScopedSQL(k)).Query(func(rows pgx.Rows) error {
		*out, *err = pgx.CollectRows(rows, scanScoped)
		return nil
	})
}

func listScopedSQL(k ScopedKind) string {
	return fmt.Sprintf(`SELECT c.id, r.schemaname || '.' || r.tablename, c.%s, coalesce(c.db, ''), coalesce(c.sync, '')
FROM %s c JOIN ibex.relation r ON r.id = c.relation ORDER BY 2, 1`, k.col, k.table)
}

func scanScoped(r pgx.CollectableRow) (Scoped, error) {
	var s Scoped
	err := r.Scan(&s.ID, &s.Table, &s.Text, &s.DB, &s.Sync)
	return s, err
}

// RemoveScoped deletes option id of kind k.
func RemoveScoped(ctx context.Context, q Querier, k ScopedKind, id int64) error {
	tag, err := q.Exec(ctx, fmt.Sprintf(`DELETE FROM %s WHERE id = $1`, k.table), id)
	if err == nil && tag.RowsAffected() == 0 {
		return notFound(k.Name, fmt.Sprint(id))
	}
	return err
}

// ReplaceScoped makes ss the options of kind k of table (schema.table).
func ReplaceScoped(ctx context.Context, q Querier, k ScopedKind, table string, ss []Scoped) error {
	if _, err := q.Exec(ctx, fmt.Sprintf(`DELETE FROM %s c USING ibex.relation r WHERE r.id = c.relation AND r.schemaname || '.' || r.tablename = $1`, k.table), table); err != nil {
		return err
	}
	for i := range ss {
		ss[i].Table = table
		if _, err := AddScoped(ctx, q, k, &ss[i]); err != nil {
			return err
		}
	}
	return nil
}

// PickScoped returns the option of table on db in sync: the most specific of those that
// apply (db and sync named, then db, then sync, then neither), or nil.
func PickScoped(ss []Scoped, table, db, sync string) *Scoped {
	var best *Scoped
	score := -1
	for i := range ss {
		s := &ss[i]
		if s.Table != table || (s.DB != "" && s.DB != db) || (s.Sync != "" && s.Sync != sync) {
			continue
		}
		n := 0
		if s.DB != "" {
			n += 2
		}
		if s.Sync != "" {
			n++
		}
		if n > score {
			best, score = s, n
		}
	}
	return best
}

// Scope says where an option applies, for listings: "" everywhere.
func (s Scoped) Scope() string {
	switch {
	case s.DB != "" && s.Sync != "":
		return "db " + s.DB + ", sync " + s.Sync
	case s.DB != "":
		return "db " + s.DB
	case s.Sync != "":
		return "sync " + s.Sync
	}
	return ""
}

// ErrCustomCols is wrapped by the errors of a customcols select list that cannot work.
var ErrCustomCols = errors.New("invalid customcols")

// NormalizeCustomCols returns the select list of a customcols clause, as the control
// database keeps it: "SELECT a, b, upper(c) AS c" (SELECT may be left out) gives "a, b,
// upper(c) AS c".
func NormalizeCustomCols(clause string) (string, error) {
	s := strings.TrimSpace(clause)
	s = strings.TrimSpace(strings.TrimSuffix(s, ";"))
	if len(s) >= 6 && strings.EqualFold(s[:6], "select") && (len(s) == 6 || strings.ContainsRune(" \t\n\r", rune(s[6]))) {
		s = strings.TrimSpace(s[6:])
	}
	if s == "" {
		return "", fmt.Errorf("%w: the select list is empty", ErrCustomCols)
	}
	return s, nil
}
