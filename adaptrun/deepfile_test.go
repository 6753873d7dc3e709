package adaptrun

import (
	"bytes"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/cluster"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/train"
)

// TestDeepAdapterFile checks the inference path of updates inside the
// decoder against the training path: a deep adapter with random non-zero
// parameters scores a batch through train.Model with its DeepNet (the
// path the benchmark measured); its file form (standardisation folded in),
// written and read back, loaded by adapt.Runtime, must give the same logits
// through model.ForwardAdapted on the reference backend and on WebGPU, for
// generated sites, the paper's v3 (static sites, generated head) and
// static LoRA, with rows of two clusters and an unadapted row in one batch.
// On WebGPU the sites run with their update's expand fused into the
// matmul (the default) and apart (checkSeparateExpand).
//
// (Over 80 lines: one file round trip per placement, each checked on both
// backends against the in-memory net.)
func TestDeepAdapterFile(t *testing.T) {
	m, _, set, tm := deepFixture(t)
	base, err := adapt.BaseOfModel(m)
	if err != nil {
		t.Fatal(err)
	}
	wm, _ := fixtureOn(t, gputest.Backend(t))
	for _, meth := range []Method{
		{Name: "gen", Kind: KindHyper, Rank: 2, Features: adapt.FeatureHidden, Hidden: []int{5, 3}, Deep: []string{train.SiteQKV, train.SiteFC2}},
		{Name: "v3", Kind: KindHyper, Rank: 3, Features: adapt.FeatureBoth, Hidden: []int{3}, Deep: []string{train.SiteProj, train.SiteFC}, DeepStatic: true},
		{Name: "lora", Kind: KindLoRA, Rank: 2, Deep: []string{train.SiteQKV, train.SiteProj, train.SiteFC, train.SiteFC2}},
	} {
		t.Run(meth.Name, func(t *testing.T) {
			net, err := NewDeepNet(tm.B, tm.Cfg, meth, 0.7, 5)
			if err != nil {
				t.Fatal(err)
			}
			defer net.Free()
			rng := rand.New(rand.NewPCG(9, 9))
			for _, p := range net.Params() {
				d := make([]float32, gpu.Numel(p.Shape()))
				for i := range d {
					d[i] = float32(0.3 * rng.NormFloat64())
				}
				if err := tm.B.Write(p, d); err != nil {
					t.Fatal(err)
				}
			}
			meta := adapt.Meta{Kind: adapt.KindLoRA, Experts: 1, Rank: meth.Rank, Alpha: 0.7, Base: base}
			g := group{Members: []int{0, 1, 2}, Cluster: []int{0, -1, 0}, K: 1}
			var raw []float32
			var mu, sd []float64
			var cents *cluster.Centroids
			if meth.Kind == KindHyper {
				in, _ := adapt.FeatureDim(meth.Features, tm.Cfg.NEmbd)
				g.Cluster, g.K = []int{1, -1, 0}, 2
				raw = make([]float32, 2*in)
				for i := range raw {
					raw[i] = float32(rng.NormFloat64())
				}
				mu, sd = make([]float64, in), make([]float64, in)
				for i := range mu {
					mu[i], sd[i] = 0.3*rng.NormFloat64(), 0.5+rng.Float64()
				}
				g.Means = append(Standardize(raw[:in], mu, sd), Standardize(raw[in:], mu, sd)...)
				cents = &cluster.Centroids{K: 2, C: in, Data: raw}
				meta = adapt.Meta{Kind: adapt.KindHyper, Rank: meth.Rank, Alpha: 0.7, Hidden: meth.Hidden, Features: meth.Features, Centroids: 2, Base: base}
			}
			// The training path.
			bt, cl := set.deepBatch(g)
			if err := net.begin(cl, g.K, g.Means); err != nil {
				t.Fatal(err)
			}
			tm.Delta = net
			err = tm.Forward(bt)
			tm.Delta = nil
			if err != nil {
				t.Fatal(err)
			}
			want, err := tm.B.ReadF32(tm.Logits())
			if err != nil {
				t.Fatal(err)
			}
			// The file form, through a file.
			a, err := net.Adapter(meth, meta, mu, sd, cents)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := a.Write(&buf); err != nil {
				t.Fatal(err)
			}
			a, err = adapt.Read(bytes.NewReader(buf.Bytes()), int64(buf.Len()), base)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(a.Meta.Sites, meth.Deep) || a.Meta.StaticSites != meth.DeepStatic {
				t.Fatalf("file says sites %v static %v, method %v static %v", a.Meta.Sites, a.Meta.StaticSites, meth.Deep, meth.DeepStatic)
			}
			for _, mb := range []*model.Model{m, wm} {
				rt, err := adapt.NewRuntime(mb, a)
				if err != nil {
					t.Fatal(err)
				}
				var means []float32
				if meth.Kind == KindHyper {
					means = raw
				}
				p, err := rt.PlanMeans(len(bt.Tokens), means)
				if err != nil {
					t.Fatal(err)
				}
				copy(p.Cluster, g.Cluster)
				got := logitsWith(t, mb, bt.Tokens, p.Adapter(nil))
				if mb == wm {
					checkSeparateExpand(t, mb, rt, p, bt.Tokens, got)
				}
				p.Free()
				rt.Free()
				var worst, moved float64
				for i := range want {
					worst = max(worst, math.Abs(float64(got[i]-want[i])))
				}
				// The update must matter: the adapted rows move away from the base logits.
				bl := baseLogits(t, mb, bt.Tokens)
				for i := range want {
					moved = max(moved, math.Abs(float64(want[i]-bl[i])))
				}
				t.Logf("%s: largest difference %.2e, largest update %.2e", mb.B.Name(), worst, moved)
				if worst > 2e-4*(1+moved) || moved < 1e-2 {
					t.Errorf("%s: inference logits differ from training's by up to %.2e (update %.2e)", mb.B.Name(), worst, moved)
				}
			}
		})
	}
	// An adapter with decoder updates refuses a model of another shape,
	// naming the difference.
	a := &adapt.Adapter{Meta: adapt.Meta{Kind: adapt.KindLoRA, Experts: 1, Rank: 1, Alpha: 1, Base: base, Sites: []string{train.SiteQKV}}}
	a.Tensors = a.Meta.Spec()
	for i := range a.Tensors {
		a.Tensors[i].Data = make([]float32, gpu.Numel(a.Tensors[i].Shape))
	}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	other := base
	other.Config.NLayer++
	a.Meta.Base = other
	if _, err := adapt.NewRuntime(m, a); err == nil || !strings.Contains(err.Error(), "n_layer") {
		t.Errorf("a 2-layer adapter on a 1-layer model: %v", err)
	}
}

// baseLogits is the unadapted forward of toks on mb.
func baseLogits(t *testing.T, mb *model.Model, toks [][]int32) []float32 {
	return logitsWith(t, mb, toks, nil)
}

// logitsWith is the forward of toks on mb adapted by ad (nil: none), every
// position's logits.
func logitsWith(t *testing.T, mb *model.Model, toks [][]int32, ad model.Adapter) []float32 {
	t.Helper()
	c, err := mb.NewCache(len(toks), len(toks[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer mb.FreeCache(c)
	lt, err := mb.ForwardAdapted(c, toks, false, ad)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.B.Free(lt)
	d, err := mb.B.ReadF32(lt)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// checkSeparateExpand runs plan p's forward of toks on WebGPU again with
// the sites' matmul and expand apart (Runtime.SeparateSiteExpand): the
// logits must be fused's (got), bit for bit, and the fused forward must
// have recorded fewer dispatches (one expand fewer per adapted site).
func checkSeparateExpand(t *testing.T, mb *model.Model, rt *adapt.Runtime, p *adapt.Plan, toks [][]int32, got []float32) {
	t.Helper()
	counts := func(sep bool) ([]float32, uint64) {
		rt.SeparateSiteExpand = sep
		defer func() { rt.SeparateSiteExpand = false }()
		c := mb.B.(gpu.Counter)
		n0 := c.Counts().Dispatches
		out := logitsWith(t, mb, toks, p.Adapter(nil))
		return out, c.Counts().Dispatches - n0
	}
	fused, nf := counts(false)
	sep, ns := counts(true)
	t.Logf("dispatches of the forward: fused %d, separate %d", nf, ns)
	if !slices.Equal(fused, got) {
		t.Errorf("the fused forward is not deterministic")
	}
	if !slices.Equal(sep, fused) {
		t.Errorf("logits with the sites' expand apart differ from the fused forward's")
	}
	if nf >= ns {
		t.Errorf("the fused forward recorded %d dispatches, the separate one %d: the fused kernels did not run", nf, ns)
	}
}
