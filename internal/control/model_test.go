package control_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/pgtest"
)

// group is dbgroup g of dbs d1..dn with the roles given, then targets.
func group(n int, roles ...string) *control.DBGroup {
	g := &control.DBGroup{Name: "g"}
	for i := 1; i <= n; i++ {
		role := control.RoleTarget
		if i <= len(roles) {
			role = roles[i-1]
		}
		g.Members = append(g.Members, control.Member{DB: fmt.Sprintf("d%d", i), Role: role})
	}
	return g
}

func TestDBGroupCheck(t *testing.T) {
	t.Parallel()
	const (
		src, tgt, full = control.RoleSource, control.RoleTarget, control.RoleFullcopy
		fullcopyRule   = "dbgroup g: a fullcopy dbgroup has exactly one source and only fullcopy dbs besides"
	)
	for _, tc := range []struct {
		name string
		g    *control.DBGroup
		want string // "" when valid
	}{
		{"one source", group(1, src), ""},
		{"sources and targets", group(5, src, src, src, src, tgt), ""},
		{"fullcopy", group(3, src, full, full), ""},
		{"64 dbs", group(64, src, src), ""},
		{"no dbs", group(0), "dbgroup g: list its dbs as name:role (source, target or fullcopy)"},
		{"no source", group(2, tgt, full), "dbgroup g has no source: give at least one db the role source"},
		{"fullcopy with two sources", group(3, src, src, full), fullcopyRule},
		{"fullcopy with a target", group(3, src, full, tgt), fullcopyRule},
		{"unknown role", group(2, src, "master"), `dbgroup g: unknown role "master" for db d2: use source, target or fullcopy`},
		{"65 dbs", group(65, src), `dbgroup "g" has 65 dbs: a dbgroup has at most 64`},
		{"100 fullcopy dbs", group(100, src, full), `dbgroup "g" has 100 dbs: a dbgroup has at most 64`},
	} {
		err := tc.g.Check()
		if got := fmt.Sprint(err); (err == nil) != (tc.want == "") || (err != nil && got != tc.want) {
			t.Errorf("%s: Check() = %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestPutDBGroupChecks: the store refuses a dbgroup that breaks the rules, whoever asks.
func TestPutDBGroupChecks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t, pgtest.NewDB(t, "").DSN)
	if _, err := s.Migrate(ctx, true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pool.Exec(ctx, `INSERT INTO ibex.db (name) SELECT 'd' || i FROM generate_series(1, 65) i`); err != nil {
		t.Fatal(err)
	}
	for _, g := range []*control.DBGroup{group(3, control.RoleSource, control.RoleSource, control.RoleFullcopy), group(65, control.RoleSource)} {
		want := g.Check()
		err := s.InTx(ctx, func(q control.Querier) error { return control.PutDBGroup(ctx, q, g, true) })
		if err == nil || want == nil || err.Error() != want.Error() {
			t.Errorf("PutDBGroup of %d dbs: %v, want %v", len(g.Members), err, want)
		}
	}
	if gs, err := control.DBGroups(ctx, s.Q()); err != nil || len(gs) != 0 {
		t.Errorf("dbgroups after the refusals: %v, %v", gs, err)
	}
	if err := control.PutDBGroup(ctx, s.Q(), group(64, control.RoleSource), true); err != nil {
		t.Errorf("PutDBGroup of 64 dbs: %v", err)
	}
}
