package capture_test

import (
	"strings"
	"testing"

	"github.com/ibexrepl/ibex/internal/capture"
)

// The statements as package job built them before they moved here: the same conditions
// in the same order (the planner keeps the order of equally cheap conditions).
const (
	ct    = `"ibex"."s.public.t"`
	snap  = `10:20:12,15`
	wm1   = `5:9:6`
	wm2   = `8:8:`
	inRng = `d."id" >= 100 AND d."id" < 200`
)

func TestPendingCond(t *testing.T) {
	for _, c := range []struct {
		name string
		wms  []string
		want string
	}{
		{"no receivers", nil, `false`},
		{"one without watermark", []string{wm1, ""}, `pg_visible_in_snapshot(d."$txid", '10:20:12,15')`},
		{"watermarks", []string{wm1, wm2}, `pg_visible_in_snapshot(d."$txid", '10:20:12,15') AND NOT (pg_visible_in_snapshot(d."$txid", '5:9:6') AND pg_visible_in_snapshot(d."$txid", '8:8:'))`},
		{"shared watermark said once", []string{wm1, wm1}, `pg_visible_in_snapshot(d."$txid", '10:20:12,15') AND NOT (pg_visible_in_snapshot(d."$txid", '5:9:6'))`},
	} {
		if got := capture.PendingCond(snap, c.wms); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
	}
}

func TestStatements(t *testing.T) {
	pending := `pg_visible_in_snapshot(d."$txid", '10:20:12,15') AND NOT (pg_visible_in_snapshot(d."$txid", '5:9:6'))`
	for _, c := range []struct{ name, got, want string }{
		{"CountPending", capture.CountPending(ct, snap, []string{wm1}),
			`SELECT count(*) FROM "ibex"."s.public.t" d WHERE ` + pending},
		{"SnapshotAndCounts", capture.SnapshotAndCounts([]string{ct, `"ibex"."s.public.u"`}, []string{wm1}),
			`SELECT x.s::text, ARRAY[c0.n, c1.n]::int8[], ARRAY[c0.t, c1.t]::int8[] FROM (SELECT pg_current_snapshot() AS s) x, ` +
				`LATERAL (SELECT count(*) AS n, count(*) FILTER (WHERE d."$op" = 't') AS t FROM "ibex"."s.public.t" d WHERE pg_visible_in_snapshot(d."$txid", x.s) AND NOT (pg_visible_in_snapshot(d."$txid", '5:9:6'))) c0, ` +
				`LATERAL (SELECT count(*) AS n, count(*) FILTER (WHERE d."$op" = 't') AS t FROM "ibex"."s.public.u" d WHERE pg_visible_in_snapshot(d."$txid", x.s) AND NOT (pg_visible_in_snapshot(d."$txid", '5:9:6'))) c1`},
		{"SnapshotAndCounts none", capture.SnapshotAndCounts(nil, nil),
			`SELECT x.s::text, ARRAY[]::int8[], ARRAY[]::int8[] FROM (SELECT pg_current_snapshot() AS s) x`},
		{"KeyQuantiles", capture.KeyQuantiles(ct, "id", 4, snap, []string{wm1}),
			`SELECT count(*), percentile_disc(ARRAY[0.25,0.5,0.75,1]::float8[]) WITHIN GROUP (ORDER BY d."id")::text[] FROM "ibex"."s.public.t" d WHERE ` + pending + ` AND d."$op" <> 't'`},
		{"KeyQuantiles thirds", capture.KeyQuantiles(ct, `we"ird`, 3, snap, []string{""}),
			`SELECT count(*), percentile_disc(ARRAY[0.3333333333333333,0.6666666666666666,1]::float8[]) WITHIN GROUP (ORDER BY d."we""ird")::text[] FROM "ibex"."s.public.t" d WHERE pg_visible_in_snapshot(d."$txid", '10:20:12,15') AND d."$op" <> 't'`},
		{"KeyRead hash bucket", capture.KeyRead(ct, []string{"a", "b"}, snap, []string{wm1, ""}, `(hashtextextended(ROW(d."a", d."b")::text, 0) & 9223372036854775807) % 4 = 1`, false, nil, false),
			`COPY (SELECT (array_agg(d."a"))[1], (array_agg(d."b"))[1], (extract(epoch FROM max(d."$at")) * 1000000)::bigint, coalesce(min(d."$at") FILTER (WHERE d."$op" = 'i') = min(d."$at"), false), coalesce(max(d."$at") FILTER (WHERE d."$op" = 'd') = max(d."$at"), false), bool_or(NOT pg_visible_in_snapshot(d."$txid", '5:9:6')), true FROM "ibex"."s.public.t" d ` +
				`WHERE pg_visible_in_snapshot(d."$txid", '10:20:12,15') AND (hashtextextended(ROW(d."a", d."b")::text, 0) & 9223372036854775807) % 4 = 1 AND d."$op" <> 't' GROUP BY d."a"::text, d."b"::text) TO STDOUT`},
		{"KeyRead one batch", capture.KeyRead(ct, []string{"id"}, snap, []string{wm1, wm2}, "true", false, nil, false),
			`COPY (SELECT (array_agg(d."id"))[1], (extract(epoch FROM max(d."$at")) * 1000000)::bigint, coalesce(min(d."$at") FILTER (WHERE d."$op" = 'i') = min(d."$at"), false), coalesce(max(d."$at") FILTER (WHERE d."$op" = 'd') = max(d."$at"), false), bool_or(NOT pg_visible_in_snapshot(d."$txid", '5:9:6')), bool_or(NOT pg_visible_in_snapshot(d."$txid", '8:8:')) FROM "ibex"."s.public.t" d ` +
				`WHERE pg_visible_in_snapshot(d."$txid", '10:20:12,15') AND NOT (pg_visible_in_snapshot(d."$txid", '5:9:6') AND pg_visible_in_snapshot(d."$txid", '8:8:')) AND true AND d."$op" <> 't' GROUP BY d."id"::text) TO STDOUT`},
		{"KeyRead key range first", capture.KeyRead(ct, []string{"id"}, snap, []string{wm1}, inRng, true, nil, false),
			`COPY (SELECT d."id", (extract(epoch FROM max(d."$at")) * 1000000)::bigint, coalesce(min(d."$at") FILTER (WHERE d."$op" = 'i') = min(d."$at"), false), coalesce(max(d."$at") FILTER (WHERE d."$op" = 'd') = max(d."$at"), false), bool_or(NOT pg_visible_in_snapshot(d."$txid", '5:9:6')) FROM "ibex"."s.public.t" d ` +
				`WHERE d."id" >= 100 AND d."id" < 200 AND ` + pending + ` AND d."$op" <> 't' GROUP BY d."id") TO STDOUT`},
		{"KeyRead counters", capture.KeyRead(ct, []string{"id"}, snap, []string{wm1, ""}, "true", false, []string{"bal"}, false),
			`COPY (SELECT (array_agg(d."id"))[1], (extract(epoch FROM max(d."$at")) * 1000000)::bigint, coalesce(min(d."$at") FILTER (WHERE d."$op" = 'i') = min(d."$at"), false), coalesce(max(d."$at") FILTER (WHERE d."$op" = 'd') = max(d."$at"), false), bool_or(NOT pg_visible_in_snapshot(d."$txid", '5:9:6')), true, ` +
				`CASE WHEN count(*) FILTER (WHERE NOT pg_visible_in_snapshot(d."$txid", '5:9:6') AND d."$d.bal" IS NULL) = 0 THEN coalesce(sum(d."$d.bal") FILTER (WHERE NOT pg_visible_in_snapshot(d."$txid", '5:9:6')), 0) END, ` +
				`CASE WHEN count(*) FILTER (WHERE true AND d."$d.bal" IS NULL) = 0 THEN coalesce(sum(d."$d.bal") FILTER (WHERE true), 0) END FROM "ibex"."s.public.t" d ` +
				`WHERE pg_visible_in_snapshot(d."$txid", '10:20:12,15') AND true AND d."$op" <> 't' GROUP BY d."id"::text) TO STDOUT`},
		{"TruncateRead", capture.TruncateRead(ct, snap, []string{wm1, ""}),
			`SELECT (extract(epoch FROM max(d."$at") FILTER (WHERE NOT pg_visible_in_snapshot(d."$txid", '5:9:6'))) * 1000000)::bigint, (extract(epoch FROM max(d."$at")) * 1000000)::bigint, (extract(epoch FROM max(d."$at")) * 1000000)::bigint ` +
				`FROM "ibex"."s.public.t" d WHERE d."$op" = 't' AND pg_visible_in_snapshot(d."$txid", '10:20:12,15')`},
		{"ConsumeTruncated", capture.ConsumeTruncated(ct, snap, 1700000000000001),
			`DELETE FROM "ibex"."s.public.t" d WHERE (d."$op" = 't' OR d."$at" <= ('epoch'::timestamptz + 1700000000000001 * interval '1 microsecond')) AND pg_visible_in_snapshot(d."$txid", '10:20:12,15')`},
		{"ConsumeTruncated none void", capture.ConsumeTruncated(ct, snap, 0),
			`DELETE FROM "ibex"."s.public.t" d WHERE d."$op" = 't' AND pg_visible_in_snapshot(d."$txid", '10:20:12,15')`},
		{"ChangedAfter", capture.ChangedAfter(ct, "k", []string{"id"}, 5),
			`EXISTS (SELECT 1 FROM "ibex"."s.public.t" d WHERE d."$op" <> 't' AND d."$at" > ('epoch'::timestamptz + 5 * interval '1 microsecond') AND k."id" = d."id")`},
		{"Consume", capture.Consume(ct, inRng, snap),
			`DELETE FROM "ibex"."s.public.t" d WHERE d."id" >= 100 AND d."id" < 200 AND pg_visible_in_snapshot(d."$txid", '10:20:12,15')`},
		{"Consume all", capture.Consume(ct, "true", snap),
			`DELETE FROM "ibex"."s.public.t" d WHERE true AND pg_visible_in_snapshot(d."$txid", '10:20:12,15')`},
		{"Purge", capture.Purge(ct, []string{wm1, wm2, wm1}),
			`DELETE FROM "ibex"."s.public.t" WHERE pg_visible_in_snapshot("$txid", '5:9:6') AND pg_visible_in_snapshot("$txid", '8:8:')`},
		{"Purge without watermark", capture.Purge(ct, []string{wm1, ""}), ``},
		{"Purge without receivers", capture.Purge(ct, nil), ``},
		{"DropLateKeys", capture.DropLateKeys("pg_temp.ibex_k", ct, []string{"a", "b"}, snap),
			`COPY (DELETE FROM pg_temp.ibex_k k USING "ibex"."s.public.t" d WHERE k."a" = d."a" AND k."b" = d."b" AND NOT pg_visible_in_snapshot(d."$txid", '10:20:12,15') RETURNING k."a", k."b") TO STDOUT`},
		{"CountLateChanges", capture.CountLateChanges("pg_temp.ibex_k", ct, []string{"id"}, snap),
			`SELECT count(*) FROM pg_temp.ibex_k k JOIN "ibex"."s.public.t" d ON k."id" = d."id" WHERE NOT pg_visible_in_snapshot(d."$txid", '10:20:12,15')`},
	} {
		if c.got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, c.got, c.want)
		}
	}
}

func TestReserved(t *testing.T) {
	for _, c := range []struct {
		name string
		want bool
	}{{"$txid", true}, {"$at", true}, {"$op", true}, {"id", false}, {"txid", false}} {
		if got := capture.Reserved(c.name); got != c.want {
			t.Errorf("Reserved(%q) = %v", c.name, got)
		}
	}
}

// TestKeyReadRows checks the columns of a key read of change rows: the key, the time,
// the operation, then one need-flag per watermark, constant where the pending condition
// already decides it (no watermark; every watermark the same).
func TestKeyReadRows(t *testing.T) {
	const from = ` FROM "ibex"."s.public.t" d WHERE `
	vis := func(wm string) string { return `pg_visible_in_snapshot(d."$txid", '` + wm + `')` }
	for _, c := range []struct {
		wms   []string
		flags string
	}{
		{[]string{"5:9:6"}, `true`},
		{[]string{"5:9:6", "5:9:6"}, `true, true`},
		{[]string{"5:9:6", "8:8:"}, `NOT ` + vis("5:9:6") + `, NOT ` + vis("8:8:")},
		{[]string{"", "8:8:"}, `true, NOT ` + vis("8:8:")},
	} {
		got := capture.KeyReadRows(`"ibex"."s.public.t"`, "id", "10:10:", c.wms, "true", false)
		want := `COPY (SELECT d."id", d."$at", d."$op", ` + c.flags + from
		if !strings.HasPrefix(got, want) || !strings.HasSuffix(got, `) TO STDOUT (FORMAT binary)`) {
			t.Errorf("watermarks %q:\n%s\nwant it to start with\n%s", c.wms, got, want)
		}
	}
}
