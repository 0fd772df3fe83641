package redis

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/pgtext"
)

var _ sinks.Reader = (*Sink)(nil)

// ReadRows calls fn with every row of t the database holds (committed units only: the
// sink's own queued writes are not read), as a COPY text line in PostgreSQL's text output:
// the stored text as it is, bytea back to \x hex, timestamptz from UTC ISO 8601 back to
// 2024-01-02 03:04:05.5+00 (BC from the astronomical year). Every value the mapping keeps
// is its source's exact text (docs/sinks/redis.md: nothing is lost).
//
// It SCANs the table's keys and reads each page of keys with pipelined HGETALLs: memory
// holds one page of rows, plus a 16-byte digest per key read (SCAN may return a key
// twice; each row is given once). A key deleted between SCAN and HGETALL is skipped; a
// hash with a field that is not a column of t is an error naming the key.
func (s *Sink) ReadRows(ctx context.Context, t *sinks.Table, fn func(line string) error) error {
	l, err := newLayout(s.prefix, t)
	if err != nil {
		return fmt.Errorf("db %s: %w", s.db, err)
	}
	col := make(map[string]int, len(t.Cols))
	for i, c := range t.Cols {
		col[c] = i
	}
	seen := make(map[[16]byte]struct{})
	fields := make([]conflict.Field, len(t.Cols))
	err = scanKeys(ctx, s.client, l.base, func(keys []string) error {
		pipe := s.client.Pipeline()
		cmds := make([]interface {
			Result() (map[string]string, error)
		}, 0, len(keys))
		var read []string
		for _, k := range keys {
			d := sha256.Sum256([]byte(k))
			var id [16]byte
			copy(id[:], d[:16])
			if _, ok := seen[id]; ok {
				continue
			}
			seen[id] = struct{}{}
			cmds = append(cmds, pipe.HGetAll(ctx, k))
			read = append(read, k)
		}
		if len(read) == 0 {
			return nil
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("HGETALL: %w", err)
		}
		for j, c := range cmds {
			m, err := c.Result()
			if err != nil {
				return fmt.Errorf("HGETALL %q: %w", read[j], err)
			}
			if len(m) == 0 {
				continue // deleted since the SCAN
			}
			for i := range fields {
				fields[i] = conflict.Field{Null: true}
			}
			for name, v := range m {
				i, ok := col[name]
				if !ok {
					return fmt.Errorf("key %q: field %q is not a column of %s", read[j], name, t.Label())
				}
				text, err := l.text(i, v)
				if err != nil {
					return fmt.Errorf("key %q: %w", read[j], err)
				}
				fields[i] = conflict.Field{Text: text}
			}
			if err := fn(conflict.EncodeCopyLine(fields)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("db %s: reading %s: %w", s.db, t.Label(), err)
	}
	return nil
}

// text is the inverse of value: PostgreSQL's text of field i as stored.
func (l *layout) text(i int, stored string) (string, error) {
	ty := l.types[i]
	if ty.Array {
		return stored, nil
	}
	switch ty.Kind {
	case pgtext.Bytes:
		return `\x` + hex.EncodeToString([]byte(stored)), nil
	case pgtext.TimestampTZ:
		if stored == "infinity" || stored == "-infinity" {
			return stored, nil
		}
		u, err := parseISOUTC(stored)
		if err != nil {
			return "", fmt.Errorf("column %s (%s): stored %q: %w", l.t.Cols[i], ty.Name, stored, err)
		}
		return pgtext.FormatTimestampTZ(u), nil
	}
	return stored, nil
}

// parseISOUTC reads what isoUTC writes: [-|+]YYYY-MM-DDTHH:MM:SS[.f]Z, the year
// astronomical (0 is 1 BC).
func parseISOUTC(s string) (time.Time, error) {
	sign := 1
	body := s
	switch {
	case strings.HasPrefix(body, "-"):
		sign, body = -1, body[1:]
	case strings.HasPrefix(body, "+"):
		body = body[1:]
	}
	ys, rest, ok := strings.Cut(body, "-")
	if !ok || len(ys) < 4 {
		return time.Time{}, errors.New("not ISO 8601 UTC")
	}
	y, err := strconv.Atoi(ys)
	if err != nil {
		return time.Time{}, errors.New("not ISO 8601 UTC")
	}
	// Year 2000 is a leap year: 02-29 parses.
	w, err := time.Parse("2006-01-02T15:04:05.999999999Z", "2000-"+rest)
	if err != nil {
		return time.Time{}, err
	}
	return time.Date(sign*y, w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), w.Nanosecond(), time.UTC), nil
}
