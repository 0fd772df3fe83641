package main

import "testing"

func TestSpread(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want string
	}{
		{nil, "-"},
		{[]float64{0.9}, "[0.90]"},
		{[]float64{1.2, 0.8, 1.0}, "0.80 [1.00] 1.20"},
		{[]float64{1.54, 0.56, 0.9, 0.95, 0.88, 1.07, 0.7}, "0.56 0.70 [0.88 0.90 0.95] 1.07 1.54"},
		{[]float64{4, 3, 2, 1}, "1.00 [2.00 3.00] 4.00"},
		{[]float64{5, 4, 3, 2, 1}, "1.00 [2.00 3.00 4.00] 5.00"},
	} {
		if got := spread(c.in); got != c.want {
			t.Errorf("spread(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestQuantile(t *testing.T) {
	v := []float64{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	for _, c := range []struct{ q, want float64 }{{0, 1}, {0.1, 1}, {0.11, 2}, {0.5, 5}, {0.9, 9}, {1, 10}} {
		if got := quantile(v, c.q); got != c.want {
			t.Errorf("quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
}
