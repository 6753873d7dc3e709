package adapt

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/model"
)

// TestSelfCheckSharedPass: a self-checked plan of an adapter with
// hidden-state features takes its features, the base model's losses and
// (head-only update) the adapted losses from one forward of the base
// model. Each piece equals what the separate forwards give, and plans and
// online assignments come out the same either way, on both backends.
//
// (Over 80 lines: one shared pass checked piece by piece against the separate
// forwards, on both backends.)
func TestSelfCheckSharedPass(t *testing.T) {
	f := newRTFixture(t)
	prompts, _ := f.prompts(12, 2)
	c := rtCfg.NEmbd
	for _, kind := range []string{FeatureHidden, FeatureBoth} {
		a := f.hyperAdapter(t, nil)
		a.Meta.Features, a.Meta.SelfCheck = kind, true
		in, _ := FeatureDim(kind, c)
		hc := rtHyper
		hc.In = in
		a.Tensors = InitHyper(hc, f.rng.Uint64())
		withCents := *a
		withCents.Meta.Centroids = 2
		ccents := make([]float32, 2*in)
		for i := range ccents {
			ccents[i] = float32(f.rng.NormFloat64() * 0.1)
		}
		withCents.Tensors = append(withCents.Tensors[:len(withCents.Tensors):len(withCents.Tensors)],
			model.HostTensor{Name: CentroidsTensor, Shape: []int{2, in}, Data: ccents})
		for name, m := range f.models {
			rt, err := NewRuntime(m, a)
			if err != nil {
				t.Fatal(err)
			}
			if !rt.sharedPass(prompts) {
				t.Fatalf("%s %s: the shared pass declined prompts within the context", name, kind)
			}
			pp, err := rt.basePass(prompts, true)
			if err != nil {
				t.Fatal(err)
			}
			hm, err := HiddenMeans(m, prompts)
			if err != nil {
				t.Fatal(err)
			}
			for i := range hm {
				if d := math.Abs(float64(hm[i] - pp.hidden[i])); d > 1e-6 {
					t.Fatalf("%s %s: hidden feature %d: %g from the shared pass, %g from HiddenMeans", name, kind, i, pp.hidden[i], hm[i])
				}
			}
			for i, s := range prompts {
				if len(s) < 2 {
					continue
				}
				sc, err := m.Score([][]int32{s}, nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				if d := math.Abs(sc[0].NLL - pp.base[i]); d > 1e-5*math.Max(1, sc[0].NLL) || len(pp.rows[i]) != len(s)*c {
					t.Fatalf("%s %s: prompt %d: base loss %g shared, %g alone (%d hidden values for %d tokens)", name, kind, i, pp.base[i], sc[0].NLL, len(pp.rows[i]), len(s))
				}
			}
			o := PlanOptions{Mode: ModeBatch, K: 2, Seed: 3}
			shared, err := rt.Plan(prompts, o)
			if err != nil {
				t.Fatal(err)
			}
			// The adapted losses from the hidden rows equal the adapted forward's.
			var idx []int
			for i, s := range prompts {
				if len(s) >= 2 {
					idx = append(idx, i)
				}
			}
			free, err := rt.Plan(prompts, PlanOptions{Mode: ModeBatch, K: 2, Seed: 3, Ungated: true})
			if err != nil {
				t.Fatal(err)
			}
			hs, per, err := free.headScores(idx, prompts, pp.rows)
			if err != nil {
				t.Fatal(err)
			}
			for j, i := range idx {
				sc, err := m.Score([][]int32{prompts[i]}, nil, free.AdapterFrom(i, nil))
				if err != nil {
					t.Fatal(err)
				}
				if d := math.Abs(sc[0].NLL - hs[j]); d > 1e-5*math.Max(1, sc[0].NLL) {
					t.Fatalf("%s %s: prompt %d: adapted loss %g from the hidden rows, %g from the adapted forward", name, kind, i, hs[j], sc[0].NLL)
				}
				if len(per[j]) != len(sc[0].Losses) {
					t.Fatalf("%s %s: prompt %d: %d per-position losses from the hidden rows, %d from the forward", name, kind, i, len(per[j]), len(sc[0].Losses))
				}
				for q, l := range sc[0].Losses {
					if math.Abs(float64(l-per[j][q])) > 1e-4*math.Max(1, float64(l)) {
						t.Fatalf("%s %s: prompt %d position %d: adapted loss %g from the hidden rows, %g from the forward", name, kind, i, q, per[j][q], l)
					}
				}
			}
			free.Free()
			rt.noSharedPass = true
			apart, err := rt.Plan(prompts, o)
			if err != nil {
				t.Fatal(err)
			}
			for i := range shared.Cluster {
				if shared.Cluster[i] != apart.Cluster[i] {
					t.Fatalf("%s %s: prompt %d: cluster %d with the shared pass, %d apart", name, kind, i, shared.Cluster[i], apart.Cluster[i])
				}
			}
			for i := range shared.Features {
				if d := math.Abs(float64(shared.Features[i] - apart.Features[i])); d > 1e-6 {
					t.Fatalf("%s %s: feature %d: %g shared, %g apart", name, kind, i, shared.Features[i], apart.Features[i])
				}
			}
			shared.Free()
			apart.Free()
			rt.Free()
			// Online assignment under the self-check: the same either way.
			rc, err := NewRuntime(m, &withCents)
			if err != nil {
				t.Fatal(err)
			}
			as, lp, err := rc.AssignCentroidsLosses(prompts)
			if err != nil {
				t.Fatal(err)
			}
			checkAssignedLosses(t, name+" "+kind, rc, prompts, as, lp)
			rc.noSharedPass = true
			bs, blp, err := rc.AssignCentroidsLosses(prompts)
			if err != nil || blp != nil {
				t.Fatalf("without the shared pass: %v, losses %v (want none: no pass knows them)", err, blp != nil)
			}
			for i := range as {
				if as[i] != bs[i] {
					t.Fatalf("%s %s: online assignment of prompt %d: %d shared, %d apart", name, kind, i, as[i], bs[i])
				}
			}
			rc.Free()
		}
	}
}

// checkAssignedLosses: the per-position losses AssignCentroidsLosses
// returns are each prompt's forward through its assigned centroid's update,
// or the base model's where it assigned -1, and some prompt of each kind is
// there (else the check shows nothing).
func checkAssignedLosses(t *testing.T, what string, rt *Runtime, prompts [][]int32, as []int, lp [][]float32) {
	t.Helper()
	if len(lp) != len(prompts) {
		t.Fatalf("%s: %d loss rows for %d prompts", what, len(lp), len(prompts))
	}
	p, err := rt.PlanMeans(len(prompts), rt.Centroids.Data)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Free()
	if err := p.SetClusters(as); err != nil {
		t.Fatal(err)
	}
	kinds := map[bool]bool{}
	for i, s := range prompts {
		if len(s) < 2 {
			if lp[i] != nil {
				t.Errorf("%s: prompt %d of %d token(s) has losses", what, i, len(s))
			}
			continue
		}
		var ad model.Adapter
		if as[i] >= 0 {
			ad = p.AdapterFrom(i, nil)
		}
		sc, err := rt.M.Score([][]int32{s}, nil, ad)
		if err != nil {
			t.Fatal(err)
		}
		kinds[as[i] >= 0] = true
		if len(lp[i]) != len(sc[0].Losses) {
			t.Fatalf("%s: prompt %d (cluster %d): %d losses, the forward %d", what, i, as[i], len(lp[i]), len(sc[0].Losses))
		}
		for q, l := range sc[0].Losses {
			if math.Abs(float64(l-lp[i][q])) > 1e-4*math.Max(1, float64(l)) {
				t.Fatalf("%s: prompt %d (cluster %d) position %d: loss %g returned, %g from the forward", what, i, as[i], q, lp[i][q], l)
			}
		}
	}
	if !kinds[true] {
		t.Logf("%s: every prompt kept the base model; the adapted losses were not checked", what)
	}
}

// BenchmarkPlanSelfCheck times a self-checked plan of 16 prompts of 64
// tokens (hidden-state features, a rank-8 hyper-network, the default
// model's shape with random weights) with its forwards shared (one base
// pass; the adapted losses from its hidden rows) and apart (features, base
// loss and adapted loss each a forward), on the WebGPU adapter.
func BenchmarkPlanSelfCheck(b *testing.B) {
	cfg := model.Config{VocabSize: 4096, NCtx: 256, NEmbd: 256, NHead: 4, NLayer: 6, LNEps: 1e-5}
	be := gputest.Backend(b)
	w, err := model.Upload(be, cfg, model.RandomInit(cfg, 5), gpu.F32)
	if err != nil {
		b.Fatal(err)
	}
	m := &model.Model{Cfg: cfg, W: w, B: be}
	base, err := BaseOfModel(m)
	if err != nil {
		b.Fatal(err)
	}
	hc := HyperConfig{C: cfg.NEmbd, V: cfg.VocabSize, Rank: 8, Alpha: 1, Hidden: []int{64, 32}}
	a := &Adapter{Meta: Meta{Kind: KindHyper, Rank: 8, Alpha: 1, Hidden: hc.Hidden, Base: base, Features: FeatureHidden, SelfCheck: true},
		Tensors: InitHyper(hc, 7)}
	rng := rand.New(rand.NewPCG(1, 2))
	prompts := make([][]int32, 16)
	for i := range prompts {
		for range 64 {
			prompts[i] = append(prompts[i], int32(rng.IntN(cfg.VocabSize)))
		}
	}
	for _, apart := range []bool{false, true} {
		name := "shared"
		if apart {
			name = "apart"
		}
		b.Run(name, func(b *testing.B) {
			rt, err := NewRuntime(m, a)
			if err != nil {
				b.Fatal(err)
			}
			defer rt.Free()
			rt.noSharedPass = apart
			for b.Loop() {
				p, err := rt.Plan(prompts, PlanOptions{Mode: ModeBatch, K: 2, Seed: 1})
				if err != nil {
					b.Fatal(err)
				}
				p.Free()
			}
		})
	}
}
