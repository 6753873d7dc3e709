package adapt

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/conformance"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/gpu/ref"
	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/model/tokenizer"
)

// rtCfg is a small GPT-2 whose sizes are not multiples of 4.
var rtCfg = model.Config{VocabSize: 83, NCtx: 23, NEmbd: 30, NHead: 5, NLayer: 2, LNEps: 1e-5}

// rtHyper is the hyper-network of the runtime tests.
var rtHyper = HyperConfig{C: 30, V: 83, Rank: 3, Alpha: 0.7, Hidden: []int{13, 7}, Dropout: 0.5}

// rtFixture is one random model on both backends, with its host weights.
type rtFixture struct {
	host   []model.HostTensor
	wte    []float32 // (V, C)
	models map[string]*model.Model
	base   Base
	rng    *rand.Rand
}

func newRTFixture(t *testing.T) *rtFixture {
	t.Helper()
	seed := conformance.Seed()
	t.Logf("seed %d", seed)
	f := &rtFixture{host: model.RandomInit(rtCfg, seed), models: map[string]*model.Model{}, rng: rand.New(rand.NewPCG(seed, 11))}
	for i := range f.host {
		if f.host[i].Name == "wte.weight" {
			f.wte = f.host[i].Data
		}
		if strings.HasSuffix(f.host[i].Name, ".bias") { // RandomInit zeroes biases: make them count
			for j := range f.host[i].Data {
				f.host[i].Data[j] = float32(f.rng.NormFloat64() * 0.05)
			}
		}
	}
	for name, b := range map[string]gpu.Backend{"ref": ref.New(), "webgpu": gputest.Backend(t)} {
		w, err := model.Upload(b, rtCfg, f.host, gpu.F32)
		if err != nil {
			t.Fatal(err)
		}
		f.models[name] = &model.Model{Cfg: rtCfg, W: w, B: b}
	}
	var err error
	if f.base, err = BaseOfModel(f.models["ref"]); err != nil {
		t.Fatal(err)
	}
	if g, err := BaseOfModel(f.models["webgpu"]); err != nil || g != f.base {
		t.Fatalf("the model's identity differs between backends (%v)", err)
	}
	return f
}

// prompts draws n prompts in groups: group g's tokens come from its own
// three ids, so the groups are far apart in feature space (random
// embeddings are nearly orthogonal). Lengths vary from 1 to 12.
func (f *rtFixture) prompts(n, groups int) ([][]int32, []int) {
	v := 3
	out := make([][]int32, n)
	grp := make([]int, n)
	for i := range out {
		g := i % groups
		grp[i] = g
		l := 1 + f.rng.IntN(12)
		if i == 0 {
			l = 1
		}
		for j := 0; j < l; j++ {
			out[i] = append(out[i], int32(g*v+f.rng.IntN(v)))
		}
	}
	return out, grp
}

// hostFeature is a sequence's feature computed on the host: the mean of its
// wte rows, L2-normalised.
func (f *rtFixture) hostFeature(seq []int32) []float64 {
	c := rtCfg.NEmbd
	x := make([]float64, c)
	for _, id := range seq {
		for j := 0; j < c; j++ {
			x[j] += float64(f.wte[int(id)*c+j]) / float64(len(seq))
		}
	}
	var n float64
	for _, v := range x {
		n += v * v
	}
	for j := range x {
		x[j] /= math.Sqrt(n)
	}
	return x
}

// hyperAdapter is a hyper adapter for f's model with centroids stored.
// plan is a runtime of a on backend name's model and its plan of prompts
// (K 3, seed 2), both freed when the test ends.
func (f *rtFixture) plan(t *testing.T, name string, a *Adapter, prompts [][]int32) *Plan {
	t.Helper()
	rt, err := NewRuntime(f.models[name], a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rt.Free)
	p, err := rt.Plan(prompts, PlanOptions{K: 3, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Free)
	return p
}

func (f *rtFixture) hyperAdapter(t *testing.T, cents []float32) *Adapter {
	t.Helper()
	a := &Adapter{
		Meta:    Meta{Kind: KindHyper, Rank: rtHyper.Rank, Alpha: rtHyper.Alpha, Hidden: rtHyper.Hidden, Dropout: rtHyper.Dropout, Base: f.base},
		Tensors: InitHyper(rtHyper, f.rng.Uint64()),
	}
	if cents != nil {
		a.Meta.Centroids = len(cents) / rtCfg.NEmbd
		a.Tensors = append(a.Tensors, model.HostTensor{Name: CentroidsTensor, Shape: []int{a.Meta.Centroids, rtCfg.NEmbd}, Data: cents})
	}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	return a
}

// hostHyper runs the hyper-network on one input on the host (float64):
// the packed factors [A (R, C) | B (V, R)].
func hostHyper(a *Adapter, in []float32) []float64 {
	x := make([]float64, len(in))
	for i, v := range in {
		x[i] = float64(v)
	}
	layers := len(a.Meta.Hidden) + 1
	for l := 0; l < layers; l++ {
		w, b := a.Tensors[2*l], a.Tensors[2*l+1]
		out, inDim := w.Shape[0], w.Shape[1]
		y := make([]float64, out)
		for o := 0; o < out; o++ {
			s := float64(b.Data[o])
			for i := 0; i < inDim; i++ {
				s += float64(w.Data[o*inDim+i]) * x[i]
			}
			if l < layers-1 {
				s = max(s, 0)
			}
			y[o] = s
		}
		x = y
	}
	return x
}

// capture runs prompts through m with the tied projection, returning the
// final layernorm's output of every row (M, C), each row's sequence, and
// the logits (M, V).
func capture(t *testing.T, m *model.Model, prompts [][]int32) (h []float32, seq []int32, logits []float32) {
	t.Helper()
	head := model.HeadFunc(func(dst, ht gpu.Tensor, s []int32) error {
		m.B.MatMul(dst, ht, m.W.Wte, nil)
		var err error
		h, err = m.B.ReadF32(ht)
		seq = slices.Clone(s)
		return err
	})
	return h, seq, forwardWith(t, m, prompts, head)
}

// forwardWith is the logits of every position of prompts with head.
func forwardWith(t *testing.T, m *model.Model, prompts [][]int32, head model.Adapter) []float32 {
	t.Helper()
	return readForward(t, m, prompts, false, head)
}

// adaptedForward runs seqs from an empty cache, one slot each, adapted by
// ad, and returns the logits of every position or of the last ones only;
// the caller frees them.
func adaptedForward(t *testing.T, m *model.Model, seqs [][]int32, last bool, ad model.Adapter) gpu.Tensor {
	t.Helper()
	c, err := m.NewCache(len(seqs), m.Cfg.NCtx)
	if err != nil {
		t.Fatal(err)
	}
	defer m.FreeCache(c)
	lg, err := m.ForwardAdapted(c, seqs, last, ad)
	if err != nil {
		t.Fatal(err)
	}
	return lg
}

// readForward is adaptedForward's logits on the host.
func readForward(t *testing.T, m *model.Model, seqs [][]int32, last bool, ad model.Adapter) []float32 {
	t.Helper()
	lg := adaptedForward(t, m, seqs, last, ad)
	defer m.B.Free(lg)
	out, err := m.B.ReadF32(lg)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// expectLogits is the adapted logits on the host: row r gets wte·h_r plus
// alpha * B_k (A_k h_r) with k = factorOf(seq[r]) (nil: none).
func expectLogits(f *rtFixture, h []float32, seq []int32, alpha float64, r int, factorOf func(s int) []float64) []float64 {
	c, v := rtCfg.NEmbd, rtCfg.VocabSize
	out := make([]float64, len(seq)*v)
	for row, s := range seq {
		hr := h[row*c : (row+1)*c]
		var fac []float64
		if s >= 0 {
			fac = factorOf(int(s))
		}
		u := make([]float64, r)
		if fac != nil {
			for j := 0; j < r; j++ {
				for i := 0; i < c; i++ {
					u[j] += fac[j*c+i] * float64(hr[i])
				}
			}
		}
		for o := 0; o < v; o++ {
			var s float64
			for i := 0; i < c; i++ {
				s += float64(f.wte[o*c+i]) * float64(hr[i])
			}
			if fac != nil {
				for j := 0; j < r; j++ {
					s += alpha * fac[r*c+o*r+j] * u[j]
				}
			}
			out[row*v+o] = s
		}
	}
	return out
}

// closeTo fails t unless |got-want| <= atol + rtol*|want| everywhere.
func closeTo(t *testing.T, what string, got []float32, want []float64, atol, rtol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	bad, worst, at := 0, 0.0, -1
	for i := range got {
		d := math.Abs(float64(got[i]) - want[i])
		if !(d <= atol+rtol*math.Abs(want[i])) {
			bad++
			if d > worst || math.IsNaN(d) {
				worst, at = d, i
			}
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d values off, worst %g at %d (got %g, want %g)", what, bad, len(got), worst, at, got[at], want[at])
	}
}

func f64(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

// maxDiff is the largest |a-b|.
func maxDiff(a, b []float32) float64 {
	m := 0.0
	for i := range a {
		m = max(m, math.Abs(float64(a[i]-b[i])))
	}
	return m
}

// TestRuntimeBatchPlan clusters grouped prompts on both backends and checks
// the features, the clusters, and the adapted logits of every position
// against a host computation of wte·h + alpha * B_c (A_c h) with the
// hyper-network run on the host on each cluster's mean feature.
//
// (Over 80 lines: one plan on both backends checked step by step against its
// host computation.)
func TestRuntimeBatchPlan(t *testing.T) {
	f := newRTFixture(t)
	a := f.hyperAdapter(t, nil)
	prompts, grp := f.prompts(10, 3)
	var clusters [][]int
	// webgpu-device: k-means on the device (WGSL) instead of the host path
	// that batches this small take.
	for _, name := range []string{"ref", "webgpu", "webgpu-device"} {
		m := f.models[strings.TrimSuffix(name, "-device")]
		rt, err := NewRuntime(m, a)
		if err != nil {
			t.Fatal(err)
		}
		rt.DeviceKMeans = strings.HasSuffix(name, "-device")
		p, err := rt.Plan(prompts, PlanOptions{Mode: ModeBatch, K: 3, Seed: 5})
		if err != nil {
			t.Fatal(err)
		}
		if p.K != 3 || len(p.Cluster) != len(prompts) {
			t.Fatalf("%s: plan K=%d with %d assignments", name, p.K, len(p.Cluster))
		}
		c := rtCfg.NEmbd
		for i, s := range prompts {
			closeTo(t, fmt.Sprintf("%s feature %d", name, i), p.Features[i*c:(i+1)*c], f.hostFeature(s), 1e-5, 1e-4)
		}
		// k-means ends at a fixed point of Lloyd's iteration: every prompt
		// is nearest to its own cluster's mean (the hyper-network's input).
		for i := range prompts {
			x := f.hostFeature(prompts[i])
			dist := make([]float64, p.K)
			for k := range dist {
				for j := 0; j < c; j++ {
					e := x[j] - float64(p.Means[k*c+j])
					dist[k] += e * e
				}
			}
			if own := dist[p.Cluster[i]]; own > slices.Min(dist)+1e-6 {
				t.Errorf("%s: prompt %d (group %d) in cluster %d at distance %g, another mean is at %g", name, i, grp[i], p.Cluster[i], own, slices.Min(dist))
			}
		}
		clusters = append(clusters, p.Cluster)
		h, seq, base := capture(t, m, prompts)
		got := forwardWith(t, m, prompts, p.Adapter(nil))
		fac := make([][]float64, p.K)
		for k := range fac {
			mean := make([]float32, c)
			n := 0
			for i, ci := range p.Cluster {
				if ci == k {
					n++
					for j := 0; j < c; j++ {
						mean[j] += p.Features[i*c+j]
					}
				}
			}
			for j := range mean {
				mean[j] /= float32(n)
			}
			closeTo(t, fmt.Sprintf("%s mean feature of cluster %d", name, k), p.Means[k*c:(k+1)*c], f64(mean), 1e-6, 1e-5)
			fac[k] = hostHyper(a, mean)
		}
		want := expectLogits(f, h, seq, float64(a.Meta.Alpha), a.Meta.Rank, func(s int) []float64 { return fac[p.Cluster[s]] })
		// Padding rows (seq -1) hold no meaning: compare real rows only.
		v := rtCfg.VocabSize
		for row, s := range seq {
			if s < 0 {
				for o := 0; o < v; o++ {
					got[row*v+o], want[row*v+o] = 0, 0
				}
			}
		}
		closeTo(t, name+" adapted logits", got, want, 1e-4, 1e-4)
		if d := maxDiff(got, base); d < 0.1 {
			t.Errorf("%s: the update changes the logits by at most %g: the test would not see a missing update", name, d)
		}
		p.Free()
		rt.Free()
	}
	if !slices.Equal(clusters[0], clusters[1]) || !slices.Equal(clusters[0], clusters[2]) {
		t.Errorf("clusters differ: ref %v, webgpu %v, webgpu with device k-means %v", clusters[0], clusters[1], clusters[2])
	}
}

// TestRuntimeGenerate checks that greedy generation of several prompts in
// one batch, each with its own cluster's update, equals generating each
// prompt alone with the same cluster's head, and that the update moves the
// logits away from the base model's.
//
// (Over 80 lines: one batch generated, then each prompt generated alone and
// compared with it.)
func TestRuntimeGenerate(t *testing.T) {
	f := newRTFixture(t)
	a := f.hyperAdapter(t, nil)
	prompts, _ := f.prompts(7, 3)
	tok, err := tokenizer.NewGPT2()
	if err != nil {
		t.Fatal(err)
	}
	opt := model.GenerateOptions{MaxTokens: 6}
	var outs [][][]int32
	for _, name := range []string{"ref", "webgpu"} {
		m := f.models[name]
		rt, err := NewRuntime(m, a)
		if err != nil {
			t.Fatal(err)
		}
		p, err := rt.Plan(prompts, PlanOptions{K: 3, Seed: 2})
		if err != nil {
			t.Fatal(err)
		}
		o := opt
		o.Adapter = p.Adapter(nil)
		batch, err := m.Generate(tok, prompts, o)
		if err != nil {
			t.Fatal(err)
		}
		base, err := m.Generate(tok, prompts, opt)
		if err != nil {
			t.Fatal(err)
		}
		var toks [][]int32
		same := 0
		for i, g := range batch {
			o.Adapter = p.AdapterFrom(i, nil) // this prompt alone is the plan's sequence i
			one, err := m.Generate(tok, prompts[i:i+1], o)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(g.Tokens, one[0].Tokens) {
				t.Errorf("%s prompt %d (cluster %d): in the batch %v, alone %v", name, i, p.Cluster[i], g.Tokens, one[0].Tokens)
			}
			if slices.Equal(g.Tokens, base[i].Tokens) {
				same++
			}
			toks = append(toks, g.Tokens)
		}
		// The update must reach the logits; whether a random adapter flips
		// a greedy token over six steps depends on the seed (it did not for
		// 1796408394154462264), so generations are only logged.
		if same == len(prompts) {
			t.Logf("%s: adaptation changed no greedy token of these prompts", name)
		}
		al, bl := forwardWith(t, m, prompts, p.Adapter(nil)), forwardWith(t, m, prompts, nil)
		var moved float64
		for j := range al {
			moved = max(moved, math.Abs(float64(al[j]-bl[j])))
		}
		if moved < 1e-3 {
			t.Errorf("%s: the plan's update moves no logit by more than %.2g", name, moved)
		}
		// Adaptation switched off for a sequence gives its base generation.
		on := make([]bool, len(prompts))
		on[1] = true
		o.Adapter = p.Adapter(on)
		mixed, err := m.Generate(tok, prompts, o)
		if err != nil {
			t.Fatal(err)
		}
		for i := range prompts {
			want := base[i].Tokens
			if on[i] {
				want = batch[i].Tokens
			}
			if !slices.Equal(mixed[i].Tokens, want) {
				t.Errorf("%s: Head(on) prompt %d (on %v): %v, want %v", name, i, on[i], mixed[i].Tokens, want)
			}
		}
		outs = append(outs, toks)
		p.Free()
		rt.Free()
	}
	for i := range outs[0] {
		if !slices.Equal(outs[0][i], outs[1][i]) {
			t.Errorf("prompt %d: ref %v, webgpu %v", i, outs[0][i], outs[1][i])
		}
	}
}

// TestRuntimeOnlineAndOne checks assignment to stored training centroids
// (the nearest one, on the host) and the single-cluster mode.
//
// (Over 80 lines: one adapter with stored centroids; the online and
// single-cluster modes checked in turn.)
func TestRuntimeOnlineAndOne(t *testing.T) {
	f := newRTFixture(t)
	c := rtCfg.NEmbd
	// Four centroids: three near the groups' mean features, one far off.
	prompts, grp := f.prompts(9, 3)
	cents := make([]float32, 4*c)
	for g := 0; g < 3; g++ {
		for i := range prompts {
			if grp[i] == g {
				for j, x := range f.hostFeature(prompts[i]) {
					cents[g*c+j] += float32(x) / 3
				}
			}
		}
	}
	for j := 0; j < c; j++ {
		cents[3*c+j] = float32(f.rng.NormFloat64())
	}
	a := f.hyperAdapter(t, cents)
	for _, name := range []string{"ref", "webgpu"} {
		m := f.models[name]
		rt, err := NewRuntime(m, a)
		if err != nil {
			t.Fatal(err)
		}
		if rt.Centroids == nil || rt.Centroids.K != 4 {
			t.Fatalf("%s: runtime centroids %+v", name, rt.Centroids)
		}
		p, err := rt.Plan(prompts, PlanOptions{Mode: ModeOnline})
		if err != nil {
			t.Fatal(err)
		}
		if p.K != 4 || !slices.Equal(p.Means, cents) {
			t.Errorf("%s: online plan K=%d; its hyper inputs must be the centroids", name, p.K)
		}
		for i, s := range prompts {
			x := f.hostFeature(s)
			best, bi := math.Inf(1), -1
			for k := 0; k < 4; k++ {
				d := 0.0
				for j := 0; j < c; j++ {
					e := x[j] - float64(cents[k*c+j])
					d += e * e
				}
				if d < best {
					best, bi = d, k
				}
			}
			// The nearest centroid is usually the prompt's group's, but a
			// short prompt of random tokens can land nearer another group's
			// mean: the runtime must pick the nearest either way.
			if p.Cluster[i] != bi {
				t.Errorf("%s: prompt %d (group %d) assigned to %d, nearest centroid %d", name, i, grp[i], p.Cluster[i], bi)
			}
		}
		if used := slices.Compact(slices.Sorted(slices.Values(p.Cluster))); len(used) < 2 {
			t.Fatalf("%s: every prompt went to cluster %v: the fixture no longer tells the centroids apart", name, used)
		}
		h, seq, _ := capture(t, m, prompts)
		got := forwardWith(t, m, prompts, p.Adapter(nil))
		want := expectLogits(f, h, seq, float64(a.Meta.Alpha), a.Meta.Rank, func(s int) []float64 {
			return hostHyper(a, cents[p.Cluster[s]*c:(p.Cluster[s]+1)*c])
		})
		zeroPadding(seq, got, want)
		closeTo(t, name+" online logits", got, want, 1e-4, 1e-4)
		p.Free()

		// ModeOne: one cluster whose input is the mean of all features.
		p, err = rt.Plan(prompts, PlanOptions{Mode: ModeOne})
		if err != nil {
			t.Fatal(err)
		}
		mean := make([]float64, c)
		for _, s := range prompts {
			for j, x := range f.hostFeature(s) {
				mean[j] += x / float64(len(prompts))
			}
		}
		if p.K != 1 || slices.ContainsFunc(p.Cluster, func(k int) bool { return k != 0 }) {
			t.Errorf("%s: mode one gave K=%d clusters %v", name, p.K, p.Cluster)
		}
		closeTo(t, name+" mode one mean", p.Means, mean, 1e-5, 1e-4)
		p.Free()
		rt.Free()
	}
	// A hyper adapter without centroids cannot assign online.
	b := f.hyperAdapter(t, nil)
	rt, err := NewRuntime(f.models["ref"], b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Plan(prompts, PlanOptions{Mode: ModeOnline}); err == nil || !strings.Contains(err.Error(), "centroids") {
		t.Errorf("online without centroids: %v", err)
	}
	if _, err := rt.Plan(prompts, PlanOptions{Mode: "nearest"}); err == nil || !strings.Contains(err.Error(), "nearest") {
		t.Errorf("unknown mode: %v", err)
	}
}

func zeroPadding(seq []int32, got []float32, want []float64) {
	v := rtCfg.VocabSize
	for row, s := range seq {
		if s < 0 {
			for o := 0; o < v; o++ {
				got[row*v+o], want[row*v+o] = 0, 0
			}
		}
	}
}

// TestRuntimeStatic checks static LoRA (every sequence, one pair) and
// per-domain experts (each sequence its expert, -1 none) against the host.
func TestRuntimeStatic(t *testing.T) {
	f := newRTFixture(t)
	c, v, r := rtCfg.NEmbd, rtCfg.VocabSize, 2
	prompts, _ := f.prompts(5, 2)
	for _, k := range []int{1, 3} {
		kind, experts := KindLoRA, []int(nil)
		if k > 1 {
			kind, experts = KindExperts, []int{2, -1, 0, 2, 1}
		}
		ts := InitStatic(k, r, c, v, f.rng.Uint64())
		for j := range ts[1].Data { // a trained B is not zero
			ts[1].Data[j] = float32(f.rng.NormFloat64())
		}
		a := &Adapter{Meta: Meta{Kind: kind, Rank: r, Alpha: 1.5, Experts: k, Base: f.base}, Tensors: ts}
		if err := a.Validate(); err != nil {
			t.Fatal(err)
		}
		// factor k packed as [A_k | B_k] for expectLogits.
		fac := func(e int) []float64 {
			return append(f64(ts[0].Data[e*r*c:(e+1)*r*c]), f64(ts[1].Data[e*v*r:(e+1)*v*r])...)
		}
		for _, name := range []string{"ref", "webgpu"} {
			m := f.models[name]
			rt, err := NewRuntime(m, a)
			if err != nil {
				t.Fatal(err)
			}
			p, err := rt.Plan(prompts, PlanOptions{Experts: experts})
			if err != nil {
				t.Fatal(err)
			}
			if p.K != k {
				t.Errorf("%s %s: K=%d", name, kind, p.K)
			}
			h, seq, _ := capture(t, m, prompts)
			got := forwardWith(t, m, prompts, p.Adapter(nil))
			want := expectLogits(f, h, seq, 1.5, r, func(s int) []float64 {
				if experts == nil {
					return fac(0)
				}
				if experts[s] < 0 {
					return nil
				}
				return fac(experts[s])
			})
			zeroPadding(seq, got, want)
			closeTo(t, name+" "+string(kind)+" logits", got, want, 1e-4, 1e-4)
			p.Free()
			if kind == KindExperts {
				for _, bad := range [][]int{nil, {0, 1}, {0, 1, 3, 0, 0}, {0, 1, -2, 0, 0}} {
					if _, err := rt.Plan(prompts, PlanOptions{Experts: bad}); err == nil {
						t.Errorf("%s: experts %v accepted", name, bad)
					}
				}
			}
			rt.Free()
		}
	}
}

// TestRuntimeBadInput: adapters for other models are refused naming the
// difference; a batch of one, identical prompts and K over the batch plan
// without dividing by zero or looping.
//
// (Over 80 lines: a sequence of refused and degenerate inputs against one
// runtime.)
func TestRuntimeBadInput(t *testing.T) {
	f := newRTFixture(t)
	a := f.hyperAdapter(t, nil)
	m := f.models["webgpu"]

	other := *a
	other.Meta.Base.Wte = strings.Repeat("ab", 32)
	if _, err := NewRuntime(m, &other); err == nil || !strings.Contains(err.Error(), "wte fingerprint") {
		t.Errorf("adapter for other weights: %v", err)
	}
	other.Meta = a.Meta
	other.Meta.Base.Config.NLayer = 3
	if _, err := NewRuntime(m, &other); err == nil || !strings.Contains(err.Error(), "n_layer 3") {
		t.Errorf("adapter for another architecture: %v", err)
	}
	// Through a file: Load refuses it for a model with other weights.
	path := filepath.Join(t.TempDir(), "hyper.safetensors")
	if err := Save(path, a); err != nil {
		t.Fatal(err)
	}
	otherHost := model.RandomInit(rtCfg, 12345)
	ob, err := BaseOf(rtCfg, otherHost)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, ob); err == nil || !strings.Contains(err.Error(), "fingerprint") {
		t.Errorf("loading for another model: %v", err)
	}
	if back, err := Load(path, f.base); err != nil || back.Meta.Kind != KindHyper {
		t.Fatalf("loading for its own model: %v", err)
	}

	rt, err := NewRuntime(m, a)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Free()
	if _, err := rt.Plan(nil, PlanOptions{}); err == nil {
		t.Error("a plan of no sequences accepted")
	}
	if _, err := rt.Plan([][]int32{{1, int32(rtCfg.VocabSize)}}, PlanOptions{}); err == nil {
		t.Error("a token outside the vocabulary accepted")
	}
	finite := func(what string, x []float32) {
		for i, v := range x {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("%s: value %d is %g", what, i, v)
			}
		}
	}
	// A batch of one.
	one := [][]int32{{4, 9, 20}}
	p, err := rt.Plan(one, PlanOptions{K: 2})
	if err != nil {
		t.Fatal(err)
	}
	if p.K != 1 || p.Cluster[0] != 0 {
		t.Errorf("batch of one: K=%d cluster %v", p.K, p.Cluster)
	}
	finite("batch of one", forwardWith(t, m, one, p.Adapter(nil)))
	p.Free()
	// Identical prompts (and an empty one) with more clusters than
	// distinct inputs: every copy lands in the same cluster.
	same := [][]int32{{7, 8, 9}, {7, 8, 9}, {7, 8, 9}, {7, 8, 9}, {7, 8, 9}}
	p, err = rt.Plan(same, PlanOptions{K: 3, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(p.Cluster, func(k int) bool { return k != p.Cluster[0] }) {
		t.Errorf("identical prompts split into clusters %v", p.Cluster)
	}
	lg := forwardWith(t, m, same, p.Adapter(nil))
	finite("identical prompts", lg)
	if n := len(lg) / len(same); maxDiff(lg[:n], lg[n:2*n]) != 0 {
		t.Error("identical prompts got different logits")
	}
	p.Free()
	// K over the batch: capped at N, one prompt per cluster.
	prompts, _ := f.prompts(4, 4)
	p, err = rt.Plan(prompts, PlanOptions{K: 10})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, k := range p.Cluster {
		seen[k] = true
	}
	if p.K != 4 || len(seen) != 4 {
		t.Errorf("K=10 over 4 prompts: K=%d clusters %v", p.K, p.Cluster)
	}
	p.Free()
}
