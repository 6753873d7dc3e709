package adapt

import (
	"math"
	"testing"
)

// TestCacheMemoryNonFiniteFeature checks that an input whose feature holds
// a NaN or Inf is refused: such a feature is at no distance from any
// run-time centroid, so it would start a pool of its own that evicts the
// live one (here the memory keeps one run-time cluster and joins any
// input to it, Radius 0) and that no later input can ever join.
func TestCacheMemoryNonFiniteFeature(t *testing.T) {
	m, err := NewCacheMemory(UniformCache(16), MemoryConfig{Clusters: 1})
	if err != nil {
		t.Fatal(err)
	}
	prompt, lp := []int32{1, 2, 3}, []float32{1, 1}
	if _, err := m.Admit(-1, []float32{1, 0}, prompt, lp); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1))} {
		if _, err := m.Admit(-1, []float32{bad, 0}, prompt, lp); err == nil {
			t.Errorf("feature (%g, 0) admitted", bad)
		}
	}
	snap, err := m.Admit(-1, []float32{0, 1}, prompt, lp)
	if err != nil {
		t.Fatal(err)
	}
	if s := m.Stats(); snap.Key.Run != 0 || snap.Prompts != 1 || s.Evicted != 0 || s.RunClusters != 1 {
		t.Errorf("after non-finite features: joined %v with %d prompts, stats %+v; want run-time cluster 0 with 1, nothing evicted",
			snap.Key, snap.Prompts, s)
	}
}

// TestPlanMeansNonFinite checks that PlanMeans refuses a NaN or Inf
// cluster mean, as PlanGates refuses such gates: the hyper-network would
// turn it into NaN factors, and every logit of every row given that
// cluster into NaN.
func TestPlanMeansNonFinite(t *testing.T) {
	f := newRTFixture(t)
	rt, err := NewRuntime(f.models["ref"], f.hyperAdapter(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Free()
	c := rt.FeatureWidth()
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(-1))} {
		means := make([]float32, 2*c)
		means[c+3] = bad
		if p, err := rt.PlanMeans(4, means); err == nil {
			p.Free()
			t.Errorf("a cluster mean holding %g accepted", bad)
		}
	}
}
