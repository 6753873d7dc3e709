package adapt

import (
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/cluster"
	"github.com/chameleon-llm/chameleon/model"
)

// TestGateFeaturesFile stores a gate of its own features (embed+hidden
// beside an adapter of embed features), reads it back through a file, and
// refuses the malformed ones.
func TestGateFeaturesFile(t *testing.T) {
	f := newRTFixture(t)
	c := rtCfg.NEmbd
	a := f.hyperAdapter(t, make([]float32, 2*c))
	side := func(k, w int) *cluster.Centroids {
		d := make([]float32, k*w)
		for i := range d {
			d[i] = 0.1 * float32(i%5)
		}
		return &cluster.Centroids{K: k, C: w, Data: d}
	}
	g := &Gate{Radius: 0.7, Adapt: side(3, 2*c), Pretrain: side(2, 2*c), Features: FeatureBoth, ClusterRadius: 0.3}
	if err := a.SetGate(g); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "gate-features.safetensors")
	if err := Save(path, a); err != nil {
		t.Fatal(err)
	}
	b, err := Load(path, f.base)
	if err != nil {
		t.Fatal(err)
	}
	got := b.Gate()
	if got == nil || got.Features != FeatureBoth || got.Radius != 0.7 || got.ClusterRadius != 0.3 || got.Adapt.C != 2*c || got.Pretrain.K != 2 {
		t.Fatalf("gate after a round trip: %+v", got)
	}
	if r := b.Meta.MemoryRadius(); r != 0.3 {
		t.Errorf("memory radius beside a gate of other features: %g, want its cluster radius 0.3", r)
	}
	// A gate of the adapter's own features drops the cluster radius: its
	// own radius is the memory's.
	if err := b.SetGate(&Gate{Radius: 0.25, ClusterRadius: 9}); err != nil || b.Meta.GateFeatures != "" || b.Meta.MemoryRadius() != 0.25 {
		t.Fatalf("replacing the gate: err %v, meta %+v", err, b.Meta)
	}
	for _, bad := range []struct {
		g    *Gate
		want string
	}{
		{&Gate{Radius: 1, Adapt: side(2, 2*c), Pretrain: side(1, 2*c), Features: "tokens"}, "tokens"},
		{&Gate{Radius: 1, Adapt: side(2, c), Pretrain: side(1, c), Features: FeatureBoth}, "width"},
		{&Gate{Radius: 1, Features: FeatureHidden}, "needs its adaptation"},
		{&Gate{Radius: 1, Adapt: side(2, 2*c), Pretrain: side(1, 2*c), Features: FeatureBoth, ClusterRadius: math.NaN()}, "cluster radius"},
	} {
		if err := b.SetGate(bad.g); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("gate %+v: err %v, want %q", bad.g, err, bad.want)
		}
	}
	// A file whose metadata names gate features its tensors do not have.
	c2 := f.hyperAdapter(t, make([]float32, 2*c))
	if err := c2.SetGate(&Gate{Radius: 1, Adapt: side(2, c), Pretrain: side(1, c)}); err != nil {
		t.Fatal(err)
	}
	c2.Meta.GateFeatures = FeatureBoth
	if err := c2.Validate(); err == nil {
		t.Error("gate tensors of the adapter's width under gate features embed+hidden were accepted")
	}
}

// TestRuntimeGateFeatures: a gate of its own features (embed+hidden, the
// adapter's embed) decides on those features, with its radius around its
// adaptation centroids, in plans, online assignment and NearestOpen, on
// both backends; the expected decisions are computed here from the host
// embedding means and each backend's hidden-state means.
//
// (Over 80 lines: two gates (the pretraining side, the radius) on two
// backends, each decision checked on three serving paths.)
func TestRuntimeGateFeatures(t *testing.T) {
	f := newRTFixture(t)
	prompts, grp := f.prompts(10, 2)
	c := rtCfg.NEmbd
	// One training centroid per group, so that every prompt has a nearest.
	var cents []float32
	for g := range 2 {
		cents = append(cents, f.hostFeatureF32(prompts[slices.Index(grp, g)])...)
	}
	hidRef, err := HiddenMeans(f.models["ref"], prompts)
	if err != nil {
		t.Fatal(err)
	}
	both := func(hid []float32) [][]float32 {
		out := make([][]float32, len(prompts))
		for i, p := range prompts {
			out[i] = append(f.hostFeatureF32(p), hid[i*c:(i+1)*c]...)
		}
		return out
	}
	ref := both(hidRef)
	mean := func(g int) []float32 { // group g's mean gate feature
		m := make([]float32, 2*c)
		var n float32
		for i, x := range ref {
			if grp[i] == g {
				for j, v := range x {
					m[j] += v
				}
				n++
			}
		}
		for j := range m {
			m[j] /= n
		}
		return m
	}
	// Case 1: group 1's mean is the pretraining side, the radius open: the
	// gate closes exactly group 1 (nearer the pretraining centroid).
	// Case 2: a far pretraining side and a radius between the prompts'
	// distances to group 0's mean: it closes exactly those beyond it.
	far := make([]float32, 2*c)
	for j := range far {
		far[j] = 100
	}
	dist := make([]float64, len(ref))
	for i, x := range ref {
		dist[i] = NearestDist(&cluster.Centroids{K: 1, C: 2 * c, Data: mean(0)}, x)
	}
	sorted := slices.Sorted(slices.Values(dist))
	mid := len(sorted) / 2
	cut := (sorted[mid-1] + sorted[mid]) / 2
	for ci, g := range []*Gate{
		{Radius: 1e9, Adapt: &cluster.Centroids{K: 1, C: 2 * c, Data: mean(0)}, Pretrain: &cluster.Centroids{K: 1, C: 2 * c, Data: mean(1)}, Features: FeatureBoth},
		{Radius: cut, Adapt: &cluster.Centroids{K: 1, C: 2 * c, Data: mean(0)}, Pretrain: &cluster.Centroids{K: 1, C: 2 * c, Data: far}, Features: FeatureBoth},
	} {
		a := f.hyperAdapter(t, slices.Clone(cents))
		if err := a.SetGate(g); err != nil {
			t.Fatal(err)
		}
		for name, m := range f.models {
			hid, err := HiddenMeans(m, prompts)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]bool, len(prompts))
			for i, x := range both(hid) {
				dA := NearestDist(g.Adapt, x)
				want[i] = dA > g.Radius || NearestDist(g.Pretrain, x) < dA
			}
			if ci == 0 {
				for i := range want {
					if want[i] != (grp[i] == 1) {
						t.Fatalf("%s: the fixture's groups do not split on the pretraining side (prompt %d)", name, i)
					}
				}
			}
			rt, err := NewRuntime(m, a)
			if err != nil {
				t.Fatal(err)
			}
			p, err := rt.Plan(prompts, PlanOptions{Mode: ModeOnline})
			if err != nil {
				t.Fatal(err)
			}
			as, err := rt.AssignCentroids(prompts)
			if err != nil {
				t.Fatal(err)
			}
			gx, err := rt.GateFeatures(prompts, p.Features)
			if err != nil {
				t.Fatal(err)
			}
			var closed int
			for i := range prompts {
				if (p.Cluster[i] < 0) != want[i] || (as[i] < 0) != want[i] {
					t.Errorf("case %d, %s: prompt %d (group %d): plan cluster %d, assignment %d, want closed %v", ci, name, i, grp[i], p.Cluster[i], as[i], want[i])
				}
				if open := rt.NearestOpen(p.Features[i*c:(i+1)*c], gx[i*2*c:(i+1)*2*c]); (open < 0) != want[i] {
					t.Errorf("case %d, %s: NearestOpen of prompt %d: %d, want closed %v", ci, name, i, open, want[i])
				}
				if want[i] {
					closed++
				}
			}
			if closed == 0 || closed == len(prompts) {
				t.Errorf("case %d, %s: the gate closes %d of %d prompts; the fixture wants some of each", ci, name, closed, len(prompts))
			}
			p.Free()
			rt.Free()
		}
	}
}

// TestHiddenOf: the hidden-state means a gate of its own features reuses
// from the adapter's features: all of hidden ones, the second half of each
// embed+hidden row, none of embedding means.
func TestHiddenOf(t *testing.T) {
	const c, n = 3, 2
	base := Base{Config: model.Config{NEmbd: c}}
	both := []float32{1, 2, 3, 10, 20, 30, 4, 5, 6, 40, 50, 60}
	for _, tc := range []struct {
		kind  string
		feats []float32
		want  []float32
	}{
		{FeatureHidden, both[:n*c], both[:n*c]},
		{FeatureBoth, both, []float32{10, 20, 30, 40, 50, 60}},
		{FeatureEmbed, both[:n*c], nil},
		{FeatureBoth, nil, nil},
	} {
		r := &Runtime{Meta: Meta{Features: tc.kind, Base: base}}
		if got := r.hiddenOf(tc.feats, n); !slices.Equal(got, tc.want) {
			t.Errorf("%s: hiddenOf = %v, want %v", tc.kind, got, tc.want)
		}
	}
}
