package capture

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/catalog"
)

// What a db has of a sync's capture on its tables, read as catalog.QueueDescribeAll
// reads the tables: one statement per catalog, by its own index, for every table at
// once, joined by the run (a query joining them cost a new session twice as much).

// installedRelsSQL resolves, for each table of $1 and its change table (the same place of
// $2), their oids (NULL: none).
const installedRelsSQL = `SELECT to_regclass(x.tbl)::oid, to_regclass(x.chg)::oid
FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS x(tbl, chg, ord) ORDER BY x.ord`

// installedTriggersSQL reads the triggers named $2 (the row trigger) or $3 (the TRUNCATE
// trigger) of the tables of $1: whether each is the row trigger, the table's own (not the
// clone PostgreSQL puts on a partition of a table carrying it, which DDL cannot replace),
// enabled, enabled always (makedelta), and whether a clone of it is disabled on a
// partition (changes written there would not be captured).
const installedTriggersSQL = `SELECT p.tgrelid, p.tgname = $2, p.tgparentid = 0, p.tgenabled <> 'D', p.tgenabled = 'A',
  EXISTS (SELECT 1 FROM pg_trigger d WHERE d.tgparentid = p.oid AND d.tgenabled = 'D')
FROM pg_trigger p WHERE p.tgrelid = ANY (ARRAY(SELECT to_regclass(n) FROM unnest($1::text[]) n)) AND p.tgname IN ($2, $3)`

// installedColumnsSQL reads the columns of the change tables of $1, in order.
const installedColumnsSQL = `SELECT attrelid, attname::text FROM pg_attribute
WHERE attrelid = ANY (ARRAY(SELECT to_regclass(n) FROM unnest($1::text[]) n)) AND attnum > 0 AND NOT attisdropped
ORDER BY attrelid, attnum`

// installedCommentsSQL reads the comments of the change tables of $1 (their format).
const installedCommentsSQL = `SELECT objoid, description FROM pg_description
WHERE objoid = ANY (ARRAY(SELECT to_regclass(n) FROM unnest($1::text[]) n)) AND classoid = 'pg_class'::regclass AND objsubid = 0`

// formatOf is the format version a change table's comment records: 1 when it records
// none (the first format had no comment).
func formatOf(comment string) int {
	m := formatPattern.FindStringSubmatch(comment)
	if m == nil {
		return 1
	}
	v, err := strconv.Atoi(m[1])
	if err != nil {
		return 1
	}
	return v
}

var formatPattern = regexp.MustCompile(formatRe)

type installedTrigger struct {
	row, own, enabled, always, disabledClone bool
}

// installed gathers the rows of the statements QueueInstalled queues.
type installed struct {
	tables, changes []*uint32
	triggers        map[uint32][]installedTrigger
	cols            map[uint32][]string
	comments        map[uint32]string
}

// QueueInstalled queues on b the statements that read what the db has of sync's capture
// on every table of names, so that they go in the same round trip as the tables'
// description (catalog.QueueDescribeAll). The states, in the order of names, are filled
// once the batch's results are read without error (when a statement fails, or a row does
// not scan, the batch's Close returns the error).
func QueueInstalled(b *pgx.Batch, sync string, names []catalog.QualName) []*State {
	states := make([]*State, len(names))
	for i := range states {
		states[i] = &State{}
	}
	in := &installed{triggers: map[uint32][]installedTrigger{}, cols: map[uint32][]string{}, comments: map[uint32]string{}}
	tables, changes := installedArgs(names, sync)
	var rel uint32
	var t, c *uint32
	b.Queue(installedRelsSQL, tables, changes).Query(func(rows pgx.Rows) error {
		_, err := pgx.ForEachRow(rows, []any{&t, &c}, func() error {
			in.tables, in.changes = append(in.tables, t), append(in.changes, c)
			return nil
		})
		return err
	})
	var tg installedTrigger
	b.Queue(installedTriggersSQL, tables, TriggerName(sync), TruncTriggerName(sync)).Query(func(rows pgx.Rows) error {
		_, err := pgx.ForEachRow(rows, []any{&rel, &tg.row, &tg.own, &tg.enabled, &tg.always, &tg.disabledClone}, func() error {
			in.triggers[rel] = append(in.triggers[rel], tg)
			return nil
		})
		return err
	})
	var name string
	b.Queue(installedColumnsSQL, changes).Query(func(rows pgx.Rows) error {
		_, err := pgx.ForEachRow(rows, []any{&rel, &name}, func() error {
			in.cols[rel] = append(in.cols[rel], name)
			return nil
		})
		return err
	})
	b.Queue(installedCommentsSQL, changes).Query(func(rows pgx.Rows) error {
		_, err := pgx.ForEachRow(rows, []any{&rel, &name}, func() error {
			in.comments[rel] = name
			return nil
		})
		if err != nil {
			return err
		}
		if len(in.tables) != len(names) {
			return fmt.Errorf("checking capture: %d rows for %d tables", len(in.tables), len(names))
		}
		for i := range names {
			in.state(i, states[i])
		}
		return nil
	})
	return states
}

// state fills s with what the db has for the i-th table.
func (in *installed) state(i int, s *State) {
	if t := in.tables[i]; t != nil {
		rowOK, truncOK, always, own := false, false, true, false
		for _, tg := range in.triggers[*t] {
			if tg.row && tg.own && tg.enabled && !tg.disabledClone {
				rowOK = true
			}
			if !tg.row && tg.enabled {
				truncOK = true
			}
			if tg.own {
				own = true
				always = always && tg.always
			}
		}
		s.trigger, s.always = rowOK && truncOK, own && always
	}
	c := in.changes[i]
	s.table = c != nil
	s.format, s.cols, s.deltas = 1, []string{}, []string{}
	if c == nil {
		return
	}
	if text, ok := in.comments[*c]; ok {
		s.format = formatOf(text)
	}
	book := append(columnNames(), ColsCol, OldCol)
	for _, name := range in.cols[*c] {
		switch {
		case strings.HasPrefix(name, DeltaPrefix):
			s.deltas = append(s.deltas, name[len(DeltaPrefix):])
		case !slices.Contains(book, name):
			s.cols = append(s.cols, name)
		}
		s.columns = s.columns || name == ColsCol
		s.old = s.old || name == OldCol
	}
	slices.Sort(s.deltas) // by column name (bytes, as PostgreSQL orders names)
}

// Inspect reads what a db has of sync's capture on table schema.name.
func Inspect(ctx context.Context, q catalog.Batcher, sync, schema, name string) (*State, error) {
	b := &pgx.Batch{}
	states := QueueInstalled(b, sync, []catalog.QualName{{Schema: schema, Name: name}})
	if err := q.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("checking capture of %s: %w", pgx.Identifier{schema, name}.Sanitize(), err)
	}
	if states[0].Err != nil {
		return nil, states[0].Err
	}
	return states[0], nil
}

// installedArgs are the quoted names of the tables and of their change tables of sync.
func installedArgs(names []catalog.QualName, sync string) (tables, changes []string) {
	tables, changes = make([]string, len(names)), make([]string, len(names))
	for i, n := range names {
		tables[i] = pgx.Identifier{n.Schema, n.Name}.Sanitize()
		changes[i] = ChangeTable(sync, n.Schema, n.Name).Sanitize()
	}
	return tables, changes
}
