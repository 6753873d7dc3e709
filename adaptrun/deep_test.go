package adaptrun

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/train"
)

// deepFixture is the fixture's model, its windows, their training split
// prepared, and a trainable copy of the model for updates inside the decoder.
func deepFixture(t *testing.T) (*model.Model, *Windows, *Set, *train.Model) {
	t.Helper()
	m, w := fixture(t)
	set, err := Prepare(m, w, "train", 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	tm, err := train.FromModel(m.B.(gpu.TrainBackend), m)
	if err != nil {
		t.Fatal(err)
	}
	return m, w, set, tm
}

// TestDeepGradientsFD checks a deep adapter's whole backward (the per-row
// updates inside the decoder, their input gradients through the frozen
// layers, the generated heads and the shared trunk) against central finite
// differences of the mean loss, on the reference backend in float32 with
// loose tolerances; a generated and a static placement.
//
// (Over 80 lines: every site's finite-difference check shares one model, net
// and batch.)
func TestDeepGradientsFD(t *testing.T) {
	_, _, set, tm := deepFixture(t)
	for _, meth := range []Method{
		{Name: "gen", Kind: KindHyper, Rank: 2, Features: adapt.FeatureHidden, Hidden: []int{3}, Deep: []string{train.SiteQKV, train.SiteFC2}},
		{Name: "v3", Kind: KindHyper, Rank: 2, Features: adapt.FeatureEmbed, Hidden: []int{3}, Deep: []string{train.SiteProj, train.SiteFC}, DeepStatic: true},
		{Name: "lora", Kind: KindLoRA, Rank: 2, Deep: []string{train.SiteQKV}},
	} {
		t.Run(meth.Name, func(t *testing.T) {
			net, err := NewDeepNet(tm.B, tm.Cfg, meth, 0.9, 5)
			if err != nil {
				t.Fatal(err)
			}
			defer net.Free()
			rng := rand.New(rand.NewPCG(7, 7))
			for _, p := range net.Params() { // every factor non-zero: every gradient is live
				d := make([]float32, gpu.Numel(p.Shape()))
				for i := range d {
					d[i] = float32(0.4 * rng.NormFloat64())
				}
				if err := tm.B.Write(p, d); err != nil {
					t.Fatal(err)
				}
			}
			g := group{Members: []int{0, 1, 2}, Cluster: []int{0, -1, 0}, K: 1}
			if meth.Kind == KindHyper {
				in, _ := adapt.FeatureDim(meth.Features, tm.Cfg.NEmbd)
				g.Means = make([]float32, in)
				for i := range g.Means {
					g.Means[i] = float32(rng.NormFloat64())
				}
			}
			bt, cl := set.deepBatch(g)
			loss := func() float64 {
				if err := net.begin(cl, 1, g.Means); err != nil {
					t.Fatal(err)
				}
				tm.Delta = net
				defer func() { tm.Delta = nil }()
				if err := tm.Forward(bt); err != nil {
					t.Fatal(err)
				}
				l, _, err := tm.Loss()
				if err != nil {
					t.Fatal(err)
				}
				return l
			}
			loss()
			tm.Delta = net
			if err := tm.Backward(); err != nil {
				t.Fatal(err)
			}
			tm.Delta = nil
			if err := net.finish(); err != nil {
				t.Fatal(err)
			}
			checked := 0
			for pi, p := range net.Params() {
				grad, err := tm.B.ReadF32(net.Grads()[pi])
				if err != nil {
					t.Fatal(err)
				}
				vals, err := tm.B.ReadF32(p)
				if err != nil {
					t.Fatal(err)
				}
				for _, i := range []int{0, len(vals) / 2, len(vals) - 1} {
					const h = 1e-2
					orig := vals[i]
					vals[i] = orig + h
					_ = tm.B.Write(p, vals)
					lp := loss()
					vals[i] = orig - h
					_ = tm.B.Write(p, vals)
					lm := loss()
					vals[i] = orig
					_ = tm.B.Write(p, vals)
					fd := (lp - lm) / (2 * h)
					if math.Abs(fd-float64(grad[i])) > 2e-3+0.05*math.Abs(fd) {
						t.Errorf("%s[%d]: backward %.6f, finite difference %.6f", net.names[pi], i, grad[i], fd)
					}
					checked++
				}
			}
			if checked < 9 {
				t.Fatalf("only %d gradients checked", checked)
			}
			t.Log(fmt.Sprintf("%d gradients checked", checked))
		})
	}
}

// TestRunTinyDeep runs the benchmark's deep rows on the fixture: a static
// LoRA inside the decoder, the paper's v3 (static inside, generated head)
// and generated updates everywhere, with their groupings and the gate.
func TestRunTinyDeep(t *testing.T) {
	m, w, sets, base := prepared(t)
	tb := m.B.(gpu.TrainBackend)
	tm, err := train.FromModel(tb, m)
	if err != nil {
		t.Fatal(err)
	}
	qkv := []string{train.SiteQKV}
	cfg := Config{
		Methods: []Method{
			{Name: "lora-qkv", Kind: KindLoRA, Rank: 2, Features: adapt.FeatureHidden, Deep: qkv},
			{Name: "v3", Kind: KindHyper, Rank: 2, Features: adapt.FeatureBoth, Hidden: []int{6}, Deep: qkv, DeepStatic: true},
			{Name: "deep", Kind: KindHyper, Rank: 2, Features: adapt.FeatureBoth, Hidden: []int{6}, Deep: []string{train.SiteQKV, train.SiteFC2}, Recluster: true},
		},
		LRs: []float64{3e-2}, Seeds: 2, Primary: "deep", Bootstrap: 100,
		Opts: TrainOpts{Batch: 4, Epochs: 4, Alpha: 1},
	}
	e := &Evaluator{TB: tb, Wte: m.W.Wte, Base: base, Batch: 4, Seed: 1, Deep: &DeepTrainer{M: tm}}
	res, _, err := Run(e, sets, w, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// base, temperature, lora-qkv x2 (static, gated), v3 x5, deep x5
	if len(res.Rows) != 14 {
		t.Fatalf("%d rows, want 14", len(res.Rows))
	}
	sum := res.Summarise()
	byName := map[string]RowSummary{}
	for _, r := range sum.Rows {
		byName[r.Name] = r
	}
	baseLoss := byName["base model"].Loss
	for _, name := range []string{"lora-qkv", "deep, online (nearest training centroid)", "v3, online (nearest training centroid)"} {
		if r := byName[name]; !(r.Loss < baseLoss-0.05) {
			t.Errorf("%s did not adapt: %.4f vs base %.4f", name, r.Loss, baseLoss)
		}
	}
	for _, name := range []string{"deep, online (nearest training centroid)", "lora-qkv, gated (as the hyper-network's online rows)"} {
		if h := byName[name].HarmPct; len(h) != 1 || math.Abs(h[0]) > 1e-3 {
			t.Errorf("%s: gated held-out windows should score as the base model (the decoder path agrees with the cached one): %v%%", name, h)
		}
	}
}
