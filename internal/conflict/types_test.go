package conflict_test

import (
	"testing"

	"github.com/ibexrepl/ibex/internal/conflict"
)

func TestClassify(t *testing.T) {
	ch := func(kinds ...conflict.Kind) []conflict.Change {
		var out []conflict.Change
		for _, k := range kinds {
			out = append(out, conflict.Change{Kind: k})
		}
		return out
	}
	for _, c := range []struct {
		changes []conflict.Change
		want    string
	}{
		{ch(conflict.KindUpdate, conflict.KindUpdate), conflict.TypeUpdateUpdate},
		{ch(conflict.KindInsert, conflict.KindInsert), conflict.TypeInsertExists},
		{ch(conflict.KindInsert, conflict.KindUpdate), conflict.TypeInsertExists},
		{ch(conflict.KindUpdate, conflict.KindDelete), conflict.TypeUpdateDelete},
		{ch(conflict.KindInsert, conflict.KindDelete, conflict.KindUpdate), conflict.TypeUpdateDelete},
		{ch(conflict.KindDelete, conflict.KindDelete), conflict.TypeDeleteDelete},
	} {
		if got := conflict.Classify(c.changes); got != c.want {
			t.Errorf("Classify(%v) = %s, want %s", c.changes, got, c.want)
		}
	}
}
