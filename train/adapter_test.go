package train

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/gpu/ref"
	"github.com/chameleon-llm/chameleon/model"
)

// adapterFixture is a tiny random model on b with windows of two
// "domains" whose next tokens follow different rules.
func adapterFixture(t *testing.T, b gpu.TrainBackend, seed uint64) (*model.Model, *AdapterData) {
	t.Helper()
	cfg := model.Config{VocabSize: 13, NCtx: 8, NEmbd: 6, NHead: 2, NLayer: 1, LNEps: 1e-5}
	w, err := model.Upload(b, cfg, model.RandomInit(cfg, seed), gpu.F32)
	if err != nil {
		t.Fatal(err)
	}
	m := &model.Model{Cfg: cfg, W: w, B: b}
	rng := rand.New(rand.NewPCG(seed, 5))
	var ws []Window
	for i := 0; i < 24; i++ {
		dom := i % 2
		s := make([]int32, 9)
		s[0] = int32(rng.IntN(6) + 6*dom)
		for j := 1; j < len(s); j++ {
			if dom == 0 {
				s[j] = (s[j-1] + 1) % 6 // domain 0 counts up in 0..5
			} else {
				s[j] = 6 + (s[j-1]-6+5)%6 // domain 1 counts down in 6..11
			}
		}
		ws = append(ws, Window{Tokens: s[:8], Targets: s[1:], Domain: dom})
	}
	d, err := NewAdapterData(m, ws, []string{"up", "down"}, 5, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m, d
}

func hyperMeta(t *testing.T, m *model.Model, rank int) adapt.Meta {
	t.Helper()
	base, err := adapt.BaseOfModel(m)
	if err != nil {
		t.Fatal(err)
	}
	return adapt.Meta{Kind: adapt.KindHyper, Rank: rank, Alpha: 0.8, Hidden: []int{5, 4}, Dropout: 0, Base: base}
}

// TestAdapterGradientsFD checks the whole adapter backward (cross-entropy,
// the low-rank update, the hyper-network's layers and ReLUs) against
// central finite differences of the mean loss, on the reference backend.
func TestAdapterGradientsFD(t *testing.T) {
	b := ref.New()
	m, d := adapterFixture(t, b, 3)
	for _, kind := range []adapt.Kind{adapt.KindHyper, adapt.KindExperts} {
		meta := hyperMeta(t, m, 2)
		var host []model.HostTensor
		if kind == adapt.KindHyper {
			host = adapt.InitHyper(meta.Hyper(), 9) // non-zero B: every gradient is live
		} else {
			meta = adapt.Meta{Kind: kind, Rank: 2, Alpha: 0.8, Experts: 3, Base: meta.Base}
			host = adapt.InitStatic(3, 2, m.Cfg.NEmbd, m.Cfg.VocabSize, 9)
			r := rand.New(rand.NewPCG(1, 1))
			for i := range host[1].Data {
				host[1].Data[i] = float32(r.NormFloat64())
			}
		}
		n, err := NewAdapterNet(b, m.W.Wte, meta, host)
		if err != nil {
			t.Fatal(err)
		}
		g := Group{Members: []int{0, 1, 2, 5}, Cluster: []int{0, 2, -1, 0}, K: 3, Means: make([]float32, 3*d.C)}
		for i := range g.Means {
			g.Means[i] = float32(math.Sin(float64(i)))
		}
		bt := d.batch(g)
		meanLoss := func() float64 {
			ls, err := n.Losses(bt)
			if err != nil {
				t.Fatal(err)
			}
			var s float64
			for _, l := range ls {
				s += float64(l)
			}
			return s / float64(len(ls))
		}
		s, err := n.forward(bt, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.backward(bt.Cluster); err != nil {
			t.Fatal(err)
		}
		s.free()
		for pi, p := range n.Params() {
			grad, _ := b.ReadF32(n.Grads()[pi])
			val, _ := b.ReadF32(p)
			for _, i := range rand.New(rand.NewPCG(uint64(pi), 2)).Perm(len(val))[:min(12, len(val))] {
				old := val[i]
				const eps = 1e-3
				val[i] = old + eps
				b.Write(p, val)
				lp := meanLoss()
				val[i] = old - eps
				b.Write(p, val)
				lm := meanLoss()
				val[i] = old
				b.Write(p, val)
				fd := (lp - lm) / (2 * eps)
				if math.Abs(fd-float64(grad[i])) > 2e-3+2e-2*math.Abs(fd) {
					t.Fatalf("%s: %s[%d]: analytic %g, finite difference %g", kind, n.names[pi], i, grad[i], fd)
				}
			}
		}
		n.Free()
	}
}

// TestAdapterStepWebGPU runs the same training steps on WebGPU and on the
// reference: losses and trained parameters agree.
func TestAdapterStepWebGPU(t *testing.T) {
	w := gputest.Backend(t)
	for _, kind := range []adapt.Kind{adapt.KindHyper, adapt.KindLoRA, adapt.KindExperts} {
		var losses [2][]float64
		var params [2][]model.HostTensor
		for i, b := range []gpu.TrainBackend{ref.New(), w} {
			m, d := adapterFixture(t, b, 4)
			meta := hyperMeta(t, m, 3)
			meta.Kind = kind
			if kind != adapt.KindHyper {
				meta.Hidden = nil
			}
			cfg := AdapterConfig{Meta: meta, Batch: 4, Epochs: 2, LR: 1e-2, MinLR: 1e-3, Warmup: 2, ClipNorm: 1, Seed: 5}
			a, ls, err := TrainAdapter(b, m.W.Wte, cfg, d, nil)
			if err != nil {
				t.Fatalf("%s on %s: %v", kind, b.Name(), err)
			}
			losses[i], params[i] = ls, a.Tensors
		}
		for s := range losses[0] {
			if math.Abs(losses[0][s]-losses[1][s]) > 1e-3*(1+math.Abs(losses[0][s])) {
				t.Fatalf("%s: step %d loss: reference %g, WebGPU %g", kind, s+1, losses[0][s], losses[1][s])
			}
		}
		for pi := range params[0] {
			a, b := params[0][pi].Data, params[1][pi].Data
			for j := range a {
				if math.Abs(float64(a[j]-b[j])) > 1e-3+1e-2*math.Abs(float64(a[j])) {
					t.Fatalf("%s: %s[%d]: reference %g, WebGPU %g", kind, params[0][pi].Name, j, a[j], b[j])
				}
			}
		}
	}
}

// TestHyperAdapterLearnsDomains trains a hyper-network on two domains
// whose rules the frozen random model cannot know: the adapted loss must
// fall well below the base model's.
func TestHyperAdapterLearnsDomains(t *testing.T) {
	b := gputest.Backend(t)
	m, d := adapterFixture(t, b, 6)
	meta := hyperMeta(t, m, 4)
	meta.Dropout = 0.1
	cfg := AdapterConfig{Meta: meta, Batch: 4, Epochs: 40, LR: 2e-2, MinLR: 2e-3, Warmup: 5, ClipNorm: 1, Seed: 1}
	a, losses, err := TrainAdapter(b, m.W.Wte, cfg, d, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.Meta.Centroids == 0 || a.TrainingCentroids() == nil {
		t.Fatal("the hyper adapter stores no training centroids")
	}
	n, err := NewAdapterNet(b, m.W.Wte, a.Meta, a.Tensors[:len(a.Tensors)-1])
	if err != nil {
		t.Fatal(err)
	}
	defer n.Free()
	groups, _, err := d.ClusteredGroups(b, 4, 1)
	if err != nil {
		t.Fatal(err)
	}
	base, err := EvalGroups(n, d, groups, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	adapted, err := EvalGroups(n, d, groups, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	bl, al := base.Mean()[2], adapted.Mean()[2]
	t.Logf("base %.3f nats/token, adapted %.3f; training loss %.3f -> %.3f", bl, al, losses[0], losses[len(losses)-1])
	if !(al < bl-1) {
		t.Fatalf("adapted loss %.3f is not at least 1 nat below the base model's %.3f", al, bl)
	}
}

func TestFoldStandardize(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const out, c = 3, 5
	w, b := make([]float32, out*c), make([]float32, out)
	x := make([]float32, c)
	mu, sd := make([]float64, c), make([]float64, c)
	for i := range w {
		w[i] = float32(r.NormFloat64())
	}
	for j := 0; j < c; j++ {
		x[j], mu[j], sd[j] = float32(r.NormFloat64()), r.NormFloat64(), 0.1+r.Float64()
	}
	want := make([]float64, out)
	xs := Standardize(x, mu, sd)
	for o := 0; o < out; o++ {
		b[o] = float32(r.NormFloat64())
		want[o] = float64(b[o])
		for j := 0; j < c; j++ {
			want[o] += float64(w[o*c+j]) * float64(xs[j])
		}
	}
	FoldStandardize(w, b, mu, sd)
	for o := 0; o < out; o++ {
		got := float64(b[o])
		for j := 0; j < c; j++ {
			got += float64(w[o*c+j]) * float64(x[j])
		}
		if math.Abs(got-want[o]) > 1e-4*(1+math.Abs(want[o])) {
			t.Fatalf("output %d: folded %g, standardised %g", o, got, want[o])
		}
	}
}
