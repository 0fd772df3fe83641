package catalog_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ibexrepl/ibex/internal/catalog"
)

// TestForeignKeys: the foreign keys between the tables asked for (both ends among them),
// by name, with their columns in key order; not those reaching a table outside, nor the
// clones on partitions.
func TestForeignKeys(t *testing.T) {
	t.Parallel()
	c := connect(t, `
CREATE SCHEMA "S x";
CREATE TABLE "S x"."Parent" ("A" int, b int, PRIMARY KEY (b, "A"));
CREATE TABLE child (id int PRIMARY KEY, pa int, pb int, up int REFERENCES child,
  CONSTRAINT "Fk Two" FOREIGN KEY (pb, pa) REFERENCES "S x"."Parent" (b, "A"));
CREATE TABLE outside (id int PRIMARY KEY);
CREATE TABLE other (id int PRIMARY KEY, o int REFERENCES outside, c int REFERENCES child);
CREATE TABLE parted (id int, k int, c int REFERENCES child, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (10);
`)
	ctx := context.Background()
	tables := []catalog.QualName{{Schema: "public", Name: "child"}, {Schema: "S x", Name: "Parent"}, {Schema: "public", Name: "other"},
		{Schema: "public", Name: "parted"}, {Schema: "public", Name: "parted_1"}, {Schema: "public", Name: "nosuch"}}
	fks, err := catalog.ForeignKeys(ctx, c, tables)
	if err != nil {
		t.Fatal(err)
	}
	want := []catalog.ForeignKey{
		{Name: "Fk Two", Child: tables[0], ChildCols: []string{"pb", "pa"}, Parent: tables[1], ParentCols: []string{"b", "A"}},
		{Name: "child_up_fkey", Child: tables[0], ChildCols: []string{"up"}, Parent: tables[0], ParentCols: []string{"id"}},
		{Name: "other_c_fkey", Child: tables[2], ChildCols: []string{"c"}, Parent: tables[0], ParentCols: []string{"id"}},
		{Name: "parted_c_fkey", Child: tables[3], ChildCols: []string{"c"}, Parent: tables[0], ParentCols: []string{"id"}},
	}
	if diff := cmp.Diff(want, fks); diff != "" {
		t.Errorf("foreign keys (-want +got):\n%s", diff)
	}
}
