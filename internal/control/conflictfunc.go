package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// ErrConflictFunction is wrapped by errors about a conflict_strategy=function:schema.fn
// function: missing, of the wrong type, failing, or returning something that is not a row.
var ErrConflictFunction = errors.New("conflict function")

// CheckConflictFunction reports an error unless fn (schema.fn) is a function of the control
// database taking one jsonb argument and returning jsonb.
func CheckConflictFunction(ctx context.Context, q Querier, fn string) error {
	sig := funcIdent(fn) + "(jsonb)"
	var ok *bool
	err := q.QueryRow(ctx, `SELECT (SELECT p.prorettype = 'jsonb'::regtype FROM pg_proc p WHERE p.oid = to_regprocedure($1))`, sig).Scan(&ok)
	if err != nil {
		return fmt.Errorf("looking up conflict function %s: %w", fn, err)
	}
	if ok == nil {
		return fmt.Errorf("%w %s(jsonb) does not exist in the control database: create it there, e.g. CREATE FUNCTION %s(versions jsonb) RETURNS jsonb LANGUAGE sql AS $$ ... $$", ErrConflictFunction, fn, fn)
	}
	if !*ok {
		return fmt.Errorf("%w %s(jsonb) must return jsonb (the row to keep, an object of column names and values)", ErrConflictFunction, fn)
	}
	return nil
}

// CallConflictFunction calls fn once per input (a JSON document of the competing
// versions of one row), all in one statement, and returns what each call returned: the
// row to keep, column name -> value text (nil for NULL).
func CallConflictFunction(ctx context.Context, q Querier, fn string, inputs [][]byte) ([]map[string]*string, error) {
	arr := make([]json.RawMessage, len(inputs))
	for i, in := range inputs {
		arr[i] = in
	}
	all, err := json.Marshal(arr)
	if err != nil {
		return nil, err
	}
	rows, err := q.Query(ctx, fmt.Sprintf(`SELECT %s(a.v) FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS a(v, i) ORDER BY a.i`, funcIdent(fn)), string(all))
	if err != nil {
		return nil, fmt.Errorf("%w %s failed: %w", ErrConflictFunction, fn, err)
	}
	outs, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, fmt.Errorf("%w %s failed: %w", ErrConflictFunction, fn, err)
	}
	if len(outs) != len(inputs) {
		return nil, fmt.Errorf("%w %s: %d results for %d rows", ErrConflictFunction, fn, len(outs), len(inputs))
	}
	res := make([]map[string]*string, len(outs))
	for i, out := range outs {
		var obj map[string]json.RawMessage
		if out == nil || json.Unmarshal(out, &obj) != nil || obj == nil {
			return nil, fmt.Errorf("%w %s returned %s for %s: it must return the row to keep, a JSON object of column names and values", ErrConflictFunction, fn, shown(out), inputs[i])
		}
		row := make(map[string]*string, len(obj))
		for col, raw := range obj {
			switch {
			case string(raw) == "null":
				row[col] = nil
			case strings.HasPrefix(string(raw), `"`):
				var s string
				if err := json.Unmarshal(raw, &s); err != nil {
					return nil, fmt.Errorf("%w %s: column %q: %w", ErrConflictFunction, fn, col, err)
				}
				row[col] = &s
			default: // a number, true/false, or JSON for a json column
				s := string(raw)
				row[col] = &s
			}
		}
		res[i] = row
	}
	return res, nil
}

func shown(b []byte) string {
	if b == nil {
		return "NULL"
	}
	return string(b)
}

// funcIdent quotes a schema.fn name (plain identifiers, folded to lower case as
// PostgreSQL folds them unquoted).
func funcIdent(fn string) string {
	schema, name, _ := strings.Cut(fn, ".")
	return pgx.Identifier{strings.ToLower(schema), strings.ToLower(name)}.Sanitize()
}
