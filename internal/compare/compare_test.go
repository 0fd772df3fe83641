package compare_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/compare"
	"github.com/ibexrepl/ibex/internal/conflict"
	"github.com/ibexrepl/ibex/internal/pgtest"
)

// TestPortableSchemeMatchesPostgres: a row read as a COPY line and digested here gets the
// same key text, block and md5 as PostgreSQL computes for the same row (the portable
// scheme, used when a target that is not PostgreSQL takes part).
func TestPortableSchemeMatchesPostgres(t *testing.T) {
	db := pgtest.NewDB(t, "")
	conn := pgtest.Conn(t, db.DSN)
	ctx := context.Background()
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; SET extra_float_digits = 3; SET bytea_output = 'hex';
CREATE TABLE t (a text, b int, v text, w text[], x bytea, y timestamptz, z boolean, PRIMARY KEY (a, b));
INSERT INTO t VALUES ('', 1, NULL, NULL, NULL, NULL, NULL), ('a b', 2, 'q"uote', '{x,"y z",NULL}', '\x00ff', '2024-01-02 03:04:05.5+02', true),
 ('(p)', 3, 'back\slash', '{}', '', 'infinity', false), (E'tab\there', 4, E'nl\nhere', '{"a,b"}', NULL, NULL, NULL),
 ('é✓', 5, ',', NULL, NULL, NULL, NULL), ('NULL', 6, '', NULL, NULL, NULL, NULL)`); err != nil {
		t.Fatal(err)
	}
	sch := compare.Scheme{Blocks: 7}
	cols := []string{"a", "b", "v", "w", "x", "y", "z"}
	keys := []string{"a", "b"}
	// PostgreSQL's view: block, key text, md5, every block.
	rows, err := conn.Query(ctx, sch.Rows("t", keys, cols), pgx.QueryResultFormats{pgx.TextFormatCode}, []int32{0, 1, 2, 3, 4, 5, 6})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for rows.Next() {
		v := rows.RawValues()
		want = append(want, string(v[0])+"|"+string(v[1])+"|"+string(v[len(v)-1]))
	}
	if rows.Err() != nil || len(want) != 6 {
		t.Fatalf("%v %v", want, rows.Err())
	}
	// The COPY lines, digested here.
	var got []string
	var buf strings.Builder
	if _, err := conn.PgConn().CopyTo(ctx, &buf, `COPY t (a, b, v, w, x, y, z) TO STDOUT`); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
		l, err := compare.DecodeLine(line, 2, 7)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, strings.Join([]string{strconv.Itoa(int(l.Block)), l.KeyText, l.Hash}, "|"))
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(want, got) {
		t.Fatalf("PostgreSQL:\n%s\nhere:\n%s", strings.Join(want, "\n"), strings.Join(got, "\n"))
	}
	// The digests agree too.
	pg := make([]compare.BlockDigest, 7)
	drows, err := conn.Query(ctx, sch.Digest("t", keys, cols))
	if err != nil {
		t.Fatal(err)
	}
	for drows.Next() {
		var b int32
		var d compare.BlockDigest
		if err := drows.Scan(&b, &d.Rows, &d.S1, &d.S2); err != nil {
			t.Fatal(err)
		}
		pg[b] = d
	}
	here := make([]compare.BlockDigest, 7)
	for _, line := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
		l, _ := compare.DecodeLine(line, 2, 7)
		if err := here[l.Block].Add(l.Hash); err != nil {
			t.Fatal(err)
		}
	}
	if d := compare.DifferingBlocks([][]compare.BlockDigest{pg, here}); len(d) != 0 {
		t.Fatalf("digests differ in blocks %v: %v vs %v", d, pg, here)
	}
}

func TestRecordText(t *testing.T) {
	for _, c := range []struct {
		in   []conflict.Field
		want string
	}{
		{[]conflict.Field{{Text: "1"}}, "(1)"},
		{[]conflict.Field{{Text: ""}, {Null: true}}, `("",)`},
		{[]conflict.Field{{Text: `a"b\c`}, {Text: "x y"}}, `("a""b\\c","x y")`},
	} {
		if got := compare.RecordText(c.in); got != c.want {
			t.Errorf("RecordText(%v) = %s, want %s", c.in, got, c.want)
		}
	}
}

// TestMerge: keys missing, extra, different and in flight, from sorted streams.
func TestMerge(t *testing.T) {
	e := func(b int32, k, h string) compare.Entry {
		return compare.Entry{Block: b, KeyText: "(" + k + ")", Key: []string{k}, Hash: h}
	}
	a := []compare.Entry{e(0, "1", "x"), e(0, "2", "x"), e(1, "3", "x"), e(1, "4", "x")}
	b := []compare.Entry{e(0, "1", "x"), e(1, "3", "y"), e(1, "4", "x")}
	c := []compare.Entry{e(0, "1", "x"), e(0, "2", "x"), e(1, "3", "x"), e(1, "4", "x"), e(1, "5", "z")}
	pending := []compare.Entry{e(1, "3", "")}
	var got []string
	err := compare.Merge([]string{"a", "b", "c"}, []compare.Stream{compare.SliceStream(a), compare.SliceStream(b), compare.SliceStream(c)},
		[]compare.Stream{compare.SliceStream(pending)}, false, func(d compare.Diff) error {
			s := d.Label() + " " + d.Kind + " " + d.Where([]string{"a", "b", "c"})
			if d.InFlight {
				s += " in-flight"
			}
			got = append(got, s)
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"2 missing missing on b", "3 different differs: a,c | b in-flight", "5 extra only on c"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}
