package cluster

import (
	"fmt"
	"math"
	"slices"
	"testing"
)

// TestKMeansExtremeScale clusters two well-separated pairs of points whose
// coordinates are so large that their f32 squared distances overflow
// (+Inf: every point tied with centroid 0 on the device) or so small that
// they underflow (0: every point tied again): both backends must still
// find the two pairs, with centroids at the pairs' means and a finite,
// positive inertia.
func TestKMeansExtremeScale(t *testing.T) {
	for _, s := range []float32{1e20, 1e-24} {
		xs := []float32{0, 0.03 * s, 10 * s, 10.3 * s} // (4, 1): pairs {0, 1}, {2, 3}
		want := []float64{0.015 * float64(s), 10.15 * float64(s)}
		for _, ops := range bothOps(t) {
			for seed := uint64(0); seed < 4; seed++ {
				name := fmt.Sprintf("%s/scale=%g/seed=%d", ops.Name(), s, seed)
				x := upload(t, ops, xs, 4, 1)
				res, err := KMeans(ops, x, Config{K: 2, Seed: seed})
				ops.Free(x)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if !samePartition(res.Assign, []int{0, 0, 1, 1}) {
					t.Errorf("%s: assign %v, want the pairs {0, 1} and {2, 3}", name, res.Assign)
					continue
				}
				for p, k := range []int{res.Assign[0], res.Assign[2]} {
					if got := float64(res.Centroids.Data[k]); math.Abs(got-want[p]) > 1e-5*math.Abs(want[p]) {
						t.Errorf("%s: centroid %d = %g, want %g", name, k, got, want[p])
					}
				}
				if in := res.Inertia; !(in > 0) || math.IsInf(in, 0) || in != res.Centroids.Meta.Inertia {
					t.Errorf("%s: inertia %g (meta %g), want finite and positive", name, in, res.Centroids.Meta.Inertia)
				}
			}
		}
	}
}

// TestAssignOnExtremeScale checks that the device assignment to stored
// centroids agrees with the host's float64 Assign where f32 squared
// distances overflow or underflow.
func TestAssignOnExtremeScale(t *testing.T) {
	for _, s := range []float32{1e20, 1e-24} {
		c := &Centroids{K: 2, C: 1, Data: []float32{0, 10 * s}}
		feats := []float32{0.03 * s, 9 * s, 12 * s, -1 * s, 4 * s, 6 * s}
		want, err := c.Assign(feats)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(want, []int{0, 1, 1, 0, 0, 1}) {
			t.Fatalf("scale %g: host Assign %v", s, want)
		}
		for _, ops := range bothOps(t) {
			x := upload(t, ops, feats, len(feats), 1)
			got, err := c.AssignOn(ops, x)
			ops.Free(x)
			if err != nil || !slices.Equal(got, want) {
				t.Errorf("%s: scale %g: AssignOn = %v, %v; want %v", ops.Name(), s, got, err, want)
			}
		}
	}
}
