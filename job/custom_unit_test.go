package job

import "testing"

func TestViewApply(t *testing.T) {
	line := []byte("1\ta\\tb\t\\N\tt\tX")
	for _, c := range []struct {
		v    view
		want string
		drop bool
	}{
		{view{proj: []int{0, 1, 2}, flag: -1}, "1\ta\\tb\t\\N", false},
		{view{proj: []int{0, 4}, flag: 3}, "1\tX", false},
		{view{proj: []int{0, 1}, flag: 2}, "", true}, // NULL is not true
	} {
		got := c.v.apply(line)
		if (got == nil) != c.drop || (!c.drop && string(got) != c.want) {
			t.Errorf("%+v: %q, want %q (dropped %v)", c.v, got, c.want, c.drop)
		}
	}
}
