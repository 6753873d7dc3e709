package adapt

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/cluster"
	"github.com/chameleon-llm/chameleon/model"
)

// TestGateFile stores a gate, reads it back through a file, and refuses
// malformed ones.
func TestGateFile(t *testing.T) {
	f := newRTFixture(t)
	c := rtCfg.NEmbd
	cents := make([]float32, 2*c)
	cents[0], cents[c+1] = 1, 1
	a := f.hyperAdapter(t, cents)
	side := func(k int, v float32) *cluster.Centroids {
		d := make([]float32, k*c)
		for i := range d {
			d[i] = v * float32(i%7)
		}
		return &cluster.Centroids{K: k, C: c, Data: d}
	}
	g := &Gate{Radius: 0.5, Adapt: side(3, 0.1), Pretrain: side(2, -0.1)}
	if err := a.SetGate(g); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "gated.safetensors")
	if err := Save(path, a); err != nil {
		t.Fatal(err)
	}
	b, err := Load(path, f.base)
	if err != nil {
		t.Fatal(err)
	}
	got := b.Gate()
	if got == nil || got.Radius != 0.5 || got.Adapt.K != 3 || got.Pretrain.K != 2 || got.Pretrain.Data[5] != g.Pretrain.Data[5] {
		t.Fatalf("gate after a round trip: %+v", got)
	}
	if tc := b.TrainingCentroids(); tc == nil || tc.K != 2 || tc.Data[c+1] != 1 {
		t.Fatalf("training centroids after the gate was added: %+v", tc)
	}
	if len(b.HyperTensors()) != len(HyperSpec(b.Meta.Hyper())) {
		t.Fatalf("HyperTensors: %d tensors", len(b.HyperTensors()))
	}
	// Replacing the gate keeps one copy; a radius-only gate stores no centroids.
	if err := b.SetGate(&Gate{Radius: 0.25}); err != nil || b.Meta.GateAdapt != 0 || len(b.Tensors) != len(HyperSpec(b.Meta.Hyper()))+1 {
		t.Fatalf("a radius-only gate: err %v, %d tensors, meta %+v", err, len(b.Tensors), b.Meta)
	}
	for _, bad := range []struct {
		g    *Gate
		want string
	}{
		{&Gate{Radius: 1, Adapt: side(2, 1)}, "both"},
		{&Gate{Adapt: &cluster.Centroids{K: 1, C: c + 1, Data: make([]float32, c+1)}, Pretrain: side(1, 1)}, "width"},
		{&Gate{Radius: -1}, "radius"},
	} {
		if err := b.SetGate(bad.g); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("gate %+v: err %v, want %q", bad.g, err, bad.want)
		}
	}
	noCents := f.hyperAdapter(t, nil)
	if err := noCents.SetGate(&Gate{Radius: 1}); err == nil {
		t.Error("a gate on an adapter without training centroids was accepted")
	}
	st := &Adapter{Meta: Meta{Kind: KindLoRA, Rank: 1, Alpha: 1, Experts: 1, Base: f.base}, Tensors: InitStatic(1, 1, c, rtCfg.VocabSize, 1)}
	if err := st.SetGate(&Gate{Radius: 1}); err == nil {
		t.Error("a gate on a LoRA without training centroids was accepted")
	}
	ex := &Adapter{Meta: Meta{Kind: KindExperts, Rank: 1, Alpha: 1, Experts: 2, Base: f.base}, Tensors: InitStatic(2, 1, c, rtCfg.VocabSize, 1)}
	if err := ex.SetGate(&Gate{Radius: 1}); err == nil {
		t.Error("a gate on an experts adapter was accepted")
	}
}

// TestRuntimeGate checks that plans and online assignment keep the
// sequences a gate closes on at the base model (cluster -1), and that
// Ungated adapts them all.
func TestRuntimeGate(t *testing.T) {
	f := newRTFixture(t)
	prompts, grp := f.prompts(8, 2)
	c := rtCfg.NEmbd
	// Training centroids at group 0's prompts only: group 1 lies far away.
	var cents []float32
	for i, p := range prompts {
		if grp[i] == 0 {
			for _, v := range f.hostFeature(p) {
				cents = append(cents, float32(v))
			}
			break
		}
	}
	a := f.hyperAdapter(t, cents)
	if err := a.SetGate(&Gate{Radius: 0.5}); err != nil {
		t.Fatal(err)
	}
	for name, m := range f.models {
		rt, err := NewRuntime(m, a)
		if err != nil {
			t.Fatal(err)
		}
		p, err := rt.Plan(prompts, PlanOptions{Mode: ModeOnline})
		if err != nil {
			t.Fatal(err)
		}
		var closed int
		for i := range prompts {
			d := NearestDist(rt.Centroids, p.Features[i*c:(i+1)*c])
			if (p.Cluster[i] < 0) != (d > 0.5) {
				t.Errorf("%s: prompt %d (group %d) at distance %.3f has cluster %d", name, i, grp[i], d, p.Cluster[i])
			}
			if p.Cluster[i] < 0 {
				closed++
			}
		}
		if closed == 0 || closed == len(prompts) {
			t.Errorf("%s: the gate closed on %d of %d prompts; the fixture wants some of each", name, closed, len(prompts))
		}
		p.Free()
		pu, err := rt.Plan(prompts, PlanOptions{Mode: ModeOnline, Ungated: true})
		if err != nil {
			t.Fatal(err)
		}
		for i, cl := range pu.Cluster {
			if cl < 0 {
				t.Errorf("%s: ungated plan left prompt %d unadapted", name, i)
			}
		}
		pu.Free()
		as, err := rt.AssignCentroids(prompts)
		if err != nil {
			t.Fatal(err)
		}
		for i := range prompts {
			if (as[i] < 0) != (grp[i] == 1) && closed == len(prompts)/2 {
				t.Errorf("%s: online assignment of prompt %d (group %d): %d", name, i, grp[i], as[i])
			}
		}
		rt.Free()
	}
}

// TestRuntimeSelfCheck: with the adapter's self-check on, a plan keeps a
// prompt's update only where it lowers the prompt's own loss (checked
// here against scores of an ungated plan), one-token prompts keep the
// base model, and online assignment applies the same rule.
func TestRuntimeSelfCheck(t *testing.T) {
	f := newRTFixture(t)
	prompts, _ := f.prompts(10, 2)
	a := f.hyperAdapter(t, nil)
	a.Meta.SelfCheck = true
	for name, m := range f.models {
		rt, err := NewRuntime(m, a)
		if err != nil {
			t.Fatal(err)
		}
		o := PlanOptions{Mode: ModeBatch, K: 2, Seed: 3}
		free, err := rt.Plan(prompts, PlanOptions{Mode: ModeBatch, K: 2, Seed: 3, Ungated: true})
		if err != nil {
			t.Fatal(err)
		}
		checked, err := rt.Plan(prompts, o)
		if err != nil {
			t.Fatal(err)
		}
		kept, dropped := 0, 0
		for i, s := range prompts {
			want := free.Cluster[i]
			if !updateHelps(t, m, s, free.AdapterFrom(i, nil)) {
				want = -1
			}
			if checked.Cluster[i] != want {
				t.Errorf("%s: prompt %d (%d tokens): cluster %d, want %d", name, i, len(s), checked.Cluster[i], want)
			}
			if want >= 0 {
				kept++
			} else {
				dropped++
			}
		}
		if len(prompts[0]) != 1 || dropped == 0 {
			t.Errorf("%s: the fixture should hold a one-token prompt and drop some: kept %d, dropped %d", name, kept, dropped)
		}
		t.Logf("%s: self-check kept %d updates, dropped %d", name, kept, dropped)
		free.Free()
		checked.Free()
		rt.Free()
	}
	// Online assignment applies it too: a one-token prompt keeps the base model.
	c := rtCfg.NEmbd
	cents := make([]float32, 2*c)
	for i := range cents {
		cents[i] = float32(f.rng.NormFloat64() * 0.1)
	}
	b := f.hyperAdapter(t, cents)
	b.Meta.SelfCheck = true
	rt, err := NewRuntime(f.models["ref"], b)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Free()
	as, err := rt.AssignCentroids(prompts)
	if err != nil {
		t.Fatal(err)
	}
	if as[0] != -1 {
		t.Errorf("online assignment of a one-token prompt under the self-check: cluster %d, want -1", as[0])
	}
}

// TestRuntimeGatedLoRA: a LoRA adapter that stores training centroids, a
// gate and the self-check keeps the base model (cluster -1) for the
// prompts its gate closes on and for those whose own loss its update does
// not lower, in plans and in StaticClusters (the server's static mode), on
// both backends; the file round-trips; Ungated adapts every prompt.
//
// (Over 80 lines: one gated adapter; plans, static clusters, the file round
// trip and the ungated mode checked in turn.)
func TestRuntimeGatedLoRA(t *testing.T) {
	f := newRTFixture(t)
	prompts, grp := f.prompts(10, 2)
	c, v := rtCfg.NEmbd, rtCfg.VocabSize
	// One training centroid, the mean of group 0's features; the radius
	// takes in all of group 0, and group 1 lies far away.
	cents := make([]float32, c)
	n0 := 0
	for i, p := range prompts {
		if grp[i] == 0 {
			for j, x := range f.hostFeature(p) {
				cents[j] += float32(x)
			}
			n0++
		}
	}
	for j := range cents {
		cents[j] /= float32(n0)
	}
	radius := 0.0
	for i, p := range prompts {
		if grp[i] == 0 {
			radius = max(radius, NearestDist(&cluster.Centroids{K: 1, C: c, Data: cents}, f.hostFeatureF32(p))*1.01)
		}
	}
	ts := InitStatic(1, 3, c, v, 5)
	for i := range ts[1].Data { // B: a non-zero update, which helps some prompts and hurts others
		ts[1].Data[i] = float32(f.rng.NormFloat64() * 0.2)
	}
	a := &Adapter{Meta: Meta{Kind: KindLoRA, Experts: 1, Rank: 3, Alpha: 1, Base: f.base, Features: FeatureEmbed, Centroids: 1},
		Tensors: append(ts, model.HostTensor{Name: CentroidsTensor, Shape: []int{1, c}, Data: cents})}
	if err := a.SetGate(&Gate{Radius: radius}); err != nil {
		t.Fatal(err)
	}
	a.Meta.SelfCheck = true
	path := filepath.Join(t.TempDir(), "gated-lora.safetensors")
	if err := Save(path, a); err != nil {
		t.Fatal(err)
	}
	back, err := Load(path, f.base)
	if err != nil || back.Gate() == nil || back.TrainingCentroids() == nil || !back.Meta.SelfCheck {
		t.Fatalf("gated LoRA round trip: %v", err)
	}
	for name, m := range f.models {
		rt, err := NewRuntime(m, back)
		if err != nil {
			t.Fatal(err)
		}
		free, err := rt.Plan(prompts, PlanOptions{Ungated: true})
		if err != nil {
			t.Fatal(err)
		}
		p, err := rt.Plan(prompts, PlanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sc, err := rt.StaticClusters(prompts)
		if err != nil {
			t.Fatal(err)
		}
		// The gated plan keeps the features its gate read (a cache's
		// clusters come from them); the ungated one computes none.
		if fw := rt.FeatureWidth(); len(p.Features) != len(prompts)*fw || len(free.Features) != 0 {
			t.Fatalf("%s: plan features %d, ungated %d; want %d x %d and none", name, len(p.Features), len(free.Features), len(prompts), fw)
		}
		for i, s := range prompts {
			if got, want := p.Features[i*rt.FeatureWidth():(i+1)*rt.FeatureWidth()], f.hostFeatureF32(s); maxDiff(got, want) > 1e-4 {
				t.Fatalf("%s: prompt %d: plan feature differs from the host's", name, i)
			}
		}
		closed, dropped := 0, 0
		for i, s := range prompts {
			if free.Cluster[i] != 0 {
				t.Fatalf("%s: ungated, prompt %d has cluster %d", name, i, free.Cluster[i])
			}
			want := 0
			if NearestDist(rt.Centroids, f.hostFeatureF32(s)) > radius {
				want = -1
				closed++
			} else if !updateHelps(t, m, s, free.AdapterFrom(i, nil)) {
				want = -1
				if len(s) >= 2 {
					dropped++
				}
			}
			if p.Cluster[i] != want || sc[i] != want {
				t.Errorf("%s: prompt %d (group %d, %d tokens): plan %d, StaticClusters %d, want %d", name, i, grp[i], len(s), p.Cluster[i], sc[i], want)
			}
		}
		if closed == 0 || closed == len(prompts) {
			t.Errorf("%s: the gate closed on %d of %d prompts; the fixture wants some of each", name, closed, len(prompts))
		}
		t.Logf("%s: gate closed on %d prompts, self-check dropped %d", name, closed, dropped)
		free.Free()
		p.Free()
		rt.Free()
	}
}

// hostFeatureF32 is hostFeature as float32.
func (f *rtFixture) hostFeatureF32(seq []int32) []float32 {
	x := f.hostFeature(seq)
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32(v)
	}
	return out
}

// updateHelps is the self-check's rule computed apart: sequence s (of 2
// tokens or more) scores a lower summed loss with ad than without it.
func updateHelps(t *testing.T, m *model.Model, s []int32, ad model.Adapter) bool {
	t.Helper()
	if len(s) < 2 {
		return false
	}
	base, err := m.Score([][]int32{s}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.Score([][]int32{s}, nil, ad)
	if err != nil {
		t.Fatal(err)
	}
	return got[0].NLL < base[0].NLL
}
