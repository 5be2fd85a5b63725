package main

import "testing"

func TestSpread(t *testing.T) {
	for _, tc := range []struct {
		vs   []float64
		want string
	}{
		{[]float64{7}, "7"},
		{[]float64{3, 1, 2}, "2 [1–3]"},
		{[]float64{4, 1, 3, 2}, "2 [1–4]"}, // the median of an even count is the mean of the middle two: 2.5, printed as %.0f
		{[]float64{10, 30}, "20 [10–30]"},
	} {
		if got := spread(tc.vs, count); got != tc.want {
			t.Errorf("spread(%v) = %q, want %q", tc.vs, got, tc.want)
		}
	}
	vs := []float64{3, 1, 2}
	spread(vs, count)
	if vs[0] != 3 || vs[1] != 1 || vs[2] != 2 {
		t.Errorf("spread reordered its argument: %v", vs)
	}
}
