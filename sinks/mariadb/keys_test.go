package mariadb

import (
	"slices"
	"testing"
)

// Integer keys go as ranges (runs of 3 or more) and an IN list of the others, sorted,
// duplicates folded; a key that is not an integer is refused.
func TestIntConds(t *testing.T) {
	got, err := intConds("k", []string{"9", "1", "2", "3", "3", "5", "6", "-1", "9223372036854775807"})
	want := []string{"t.`k` IN (-1,5,6,9,9223372036854775807) OR t.`k` BETWEEN 1 AND 3"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("intConds = %q, %v\nwant %q", got, err, want)
	}
	if _, err := intConds("k", []string{"1", "x"}); err == nil {
		t.Error("a key that is not an integer was taken")
	}
}
