package adapt

import (
	"math"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
)

// hostHidden is the FeatureHidden feature of every prompt from a capture
// of the tied forward: the mean of each sequence's ln_f rows, normalised.
func hostHidden(t *testing.T, m *model.Model, prompts [][]int32) [][]float64 {
	t.Helper()
	h, seq, _ := capture(t, m, prompts)
	c := rtCfg.NEmbd
	out := make([][]float64, len(prompts))
	for i := range out {
		out[i] = make([]float64, c)
	}
	for r, s := range seq {
		if s < 0 {
			continue
		}
		for j := range c {
			out[s][j] += float64(h[r*c+j])
		}
	}
	for _, x := range out {
		var n float64
		for _, v := range x {
			n += v * v
		}
		for j := range x {
			x[j] /= math.Sqrt(n)
		}
	}
	return out
}

// TestRuntimeHiddenFeatures checks a hyper adapter that conditions on mean
// embeddings and mean final hidden states: the plan's features against a
// host computation on both backends, online assignment, a cluster per
// sequence, and the edge cases (empty and one-token prompts, a prompt
// longer than the context, non-finite hidden states).
//
// (Over 80 lines: one model and adapter; the features, the assignments and each
// edge case checked in turn.)
func TestRuntimeHiddenFeatures(t *testing.T) {
	f := newRTFixture(t)
	prompts, _ := f.prompts(9, 3)
	c := rtCfg.NEmbd
	hc := rtHyper
	hc.In = 2 * c
	cents := make([]float32, 3*2*c)
	for i := range cents {
		cents[i] = float32(f.rng.NormFloat64() * 0.2)
	}
	a := &Adapter{
		Meta: Meta{Kind: KindHyper, Rank: hc.Rank, Alpha: hc.Alpha, Hidden: hc.Hidden, Dropout: hc.Dropout, Base: f.base,
			Features: FeatureBoth, Centroids: 3},
		Tensors: append(InitHyper(hc, 3), model.HostTensor{Name: CentroidsTensor, Shape: []int{3, 2 * c}, Data: cents}),
	}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	wantHid := hostHidden(t, f.models["ref"], prompts)
	for name, m := range f.models {
		rt, err := NewRuntime(m, a)
		if err != nil {
			t.Fatal(err)
		}
		if rt.FeatureWidth() != 2*c {
			t.Fatalf("%s: feature width %d, want %d", name, rt.FeatureWidth(), 2*c)
		}
		p, err := rt.Plan(prompts, PlanOptions{Mode: ModeBatch, K: len(prompts)}) // a cluster per sequence
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for i, s := range prompts {
			closeTo(t, name+" embedding feature", p.Features[i*2*c:i*2*c+c], f.hostFeature(s), 1e-5, 1e-4)
			closeTo(t, name+" hidden feature", p.Features[i*2*c+c:(i+1)*2*c], wantHid[i], 1e-4, 1e-3)
		}
		if p.K != len(prompts) || len(p.Means) != len(prompts)*2*c {
			t.Fatalf("%s: %d clusters with %d mean values", name, p.K, len(p.Means))
		}
		p.Free()
		po, err := rt.Plan(prompts, PlanOptions{Mode: ModeOnline})
		if err != nil {
			t.Fatalf("%s online: %v", name, err)
		}
		for i := range prompts {
			best, bd := -1, math.Inf(1)
			for k := range 3 {
				var d float64
				for j := range 2 * c {
					e := float64(po.Features[i*2*c+j]) - float64(cents[k*2*c+j])
					d += e * e
				}
				if d < bd {
					best, bd = k, d
				}
			}
			if po.Cluster[i] != best {
				t.Errorf("%s online: sequence %d in cluster %d, nearest centroid %d", name, i, po.Cluster[i], best)
			}
		}
		po.Free()
		rt.Free()
		// Edge cases of the feature itself.
		hm, err := HiddenMeans(m, [][]int32{{}, {5}, prompts[3]})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, v := range hm[:c] {
			if v != 0 {
				t.Fatalf("%s: an empty prompt's hidden feature should be zero, got %v", name, hm[:c])
			}
		}
		closeTo(t, name+" one-token hidden feature", hm[c:2*c], hostHidden(t, f.models["ref"], [][]int32{{5}})[0], 1e-4, 1e-3)
		long := make([]int32, rtCfg.NCtx+1)
		if _, err := HiddenMeans(m, [][]int32{long}); err == nil || !strings.Contains(err.Error(), "context") {
			t.Errorf("%s: a prompt longer than the context: err = %v", name, err)
		}
	}
	// Non-finite hidden states: NaN in the final layernorm's gain.
	host := make([]model.HostTensor, len(f.host))
	copy(host, f.host)
	for i := range host {
		if host[i].Name == "ln_f.weight" {
			d := make([]float32, len(host[i].Data))
			copy(d, host[i].Data)
			d[0] = float32(math.NaN())
			host[i].Data = d
		}
	}
	b := f.models["ref"].B
	w, err := model.Upload(b, rtCfg, host, gpu.F32)
	if err != nil {
		t.Fatal(err)
	}
	bad := &model.Model{Cfg: rtCfg, W: w, B: b}
	if _, err := HiddenMeans(bad, prompts[:2]); err == nil || !strings.Contains(err.Error(), "non-finite") {
		t.Errorf("NaN hidden states: err = %v", err)
	}
}
