package adaptrun

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/model"
)

// TestTunedGates checks test-time tuning of a gated basis's gates: no
// step scores exactly as the untuned gates; steps on a batch's prompts
// lower those prompts' loss; a window the gate keeps at the base model
// (cluster -1) is scored the same either way; a grouping of tuned gates
// is refused for an adapter that is not a gated basis.
//
// (Over 80 lines: one random adapter and batch shared by every check.)
func TestTunedGates(t *testing.T) {
	m, set, base := fixtureSet(t, "validation")
	meta := adapt.Meta{Kind: adapt.KindHyper, Rank: 3, StaticRank: 3, Basis: true, Alpha: 0.7, Hidden: []int{5, 3},
		Features: adapt.FeatureHidden, Base: base}
	rng := rand.New(rand.NewPCG(7, 8))
	host := randomTensors(meta.Spec(), rng, 0.3)
	net, err := NewAdapterNet(m.B.(gpu.TrainBackend), m.W.Wte, meta, host)
	if err != nil {
		t.Fatal(err)
	}
	defer net.Free()
	c := m.Cfg.NEmbd
	means := make([]float32, 2*c)
	for i := range means {
		means[i] = float32(rng.NormFloat64())
	}
	g := group{Members: []int{0, 1, 2}, Cluster: []int{1, -1, 0}, K: 2, Means: means}
	bt, pb := set.batch(g, 1), set.promptBatch(g)
	mean := func(ls []float32, bt AdapterBatch) float64 {
		var s float64
		n := 0
		for i, tg := range bt.Targets {
			if tg >= 0 {
				s += float64(ls[i])
				n++
			}
		}
		return s / float64(n)
	}
	plain, err := net.Losses(bt)
	if err != nil {
		t.Fatal(err)
	}
	none, err := net.TunedLosses(bt, pb, Tune{Steps: 0, LR: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range plain {
		if plain[i] != none[i] {
			t.Fatalf("row %d: %g untuned, %g after no tuning step", i, plain[i], none[i])
		}
	}
	before, err := net.Losses(pb)
	if err != nil {
		t.Fatal(err)
	}
	after, err := net.TunedLosses(pb, pb, Tune{Steps: 8, LR: 0.05})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("prompt loss %.5f untuned, %.5f tuned", mean(before, pb), mean(after, pb))
	if !(mean(after, pb) < mean(before, pb)-1e-4) {
		t.Errorf("tuning on the prompts did not lower their loss: %.5f -> %.5f", mean(before, pb), mean(after, pb))
	}
	tuned, err := net.TunedLosses(bt, pb, Tune{Steps: 8, LR: 0.05})
	if err != nil {
		t.Fatal(err)
	}
	first := len(set.Targets[g.Members[0]])
	moved := false
	for i := range plain {
		kept := i >= first && i < first+len(set.Targets[g.Members[1]])
		if kept && tuned[i] != plain[i] {
			t.Fatalf("row %d of the window kept at the base model moved: %g -> %g", i, plain[i], tuned[i])
		}
		moved = moved || (!kept && tuned[i] != plain[i])
	}
	if !moved {
		t.Errorf("tuning changed no adapted row's loss")
	}
	e := &Evaluator{TB: m.B.(gpu.TrainBackend), Wte: m.W.Wte, Base: base, Batch: 4, Seed: 1, Tune: Tune{Steps: 1, LR: 0.1}}
	hm := meta
	hm.Rank, hm.Basis = 2, false // a hybrid: its own pair besides the static one
	hyb := &Trained{M: hybridMethod, Adapter: &adapt.Adapter{Meta: hm, Tensors: randomTensors(hm.Spec(), rng, 0)}}
	if _, err := e.Score(hyb, set, GroupTuned, 1); err == nil {
		t.Errorf("tuned gates for a hybrid (not a gated basis): no error")
	}
}

// TestZeroGateBasis: a gated LoRA made a zero-gate basis scores every
// window as the LoRA does (online with its gate and self-check against
// the LoRA's gated, self-checked rows), and other adapters are refused.
func TestZeroGateBasis(t *testing.T) {
	m, w := fixture(t)
	tb := m.B.(gpu.TrainBackend)
	train, err := Prepare(m, w, "train", 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	val, err := Prepare(m, w, "validation", 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	base, err := adapt.BaseOfModel(m)
	if err != nil {
		t.Fatal(err)
	}
	lm := Method{Name: "lora", Kind: KindLoRA, Rank: 3, Features: adapt.FeatureHidden}
	lora, err := Train(tb, m.W.Wte, base, lm, train, TrainOpts{Batch: 4, Epochs: 2, LR: 3e-2, Seed: 3, Alpha: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &Evaluator{TB: tb, Wte: m.W.Wte, Base: base, Batch: 4, Seed: 1}
	want, err := e.Score(lora, val, GroupStaticChecked, 1)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := GateAndSelfCheck(lora, train, nil, 4); !ok || err != nil {
		t.Fatalf("gate of a LoRA with features: %v, %v", ok, err)
	}
	zb, err := ZeroGateBasis(lora.Adapter)
	if err != nil {
		t.Fatal(err)
	}
	zt := &Trained{M: Method{Name: "zero-gate basis", Kind: KindHyper, Features: zb.Meta.Features, Basis: true}, Adapter: zb,
		Cents: zb.TrainingCentroids(), Radius: lora.Radius}
	got, err := e.Score(zt, val, GroupChecked, 1)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := e.Score(nil, val, GroupBase, 1)
	if err != nil {
		t.Fatal(err)
	}
	adapted := 0
	for i := range want.Loss {
		if want.Loss[i] != bs.Loss[i] {
			adapted++
		}
		if d := got.Loss[i] - want.Loss[i]; d > 1e-4 || d < -1e-4 || got.N[i] != want.N[i] {
			t.Fatalf("window %d: %.5f over %d tokens as a zero-gate basis, %.5f over %d as the LoRA", i, got.Loss[i], got.N[i], want.Loss[i], want.N[i])
		}
	}
	if adapted == 0 {
		t.Errorf("the LoRA adapted none of %d windows: nothing compared", len(want.Loss))
	}
	if _, err := ZeroGateBasis(zb); err == nil {
		t.Errorf("a zero-gate basis of a hyper adapter: no error")
	}
}

// randomTensors fills spec's tensors with normal values of deviation std
// (0: zeros).
func randomTensors(spec []model.HostTensor, rng *rand.Rand, std float64) []model.HostTensor {
	for i := range spec {
		spec[i].Data = make([]float32, gpu.Numel(spec[i].Shape))
		for j := range spec[i].Data {
			spec[i].Data[j] = float32(std * rng.NormFloat64())
		}
	}
	return spec
}

// fixtureSet is the fixture's model, its split prepared in batches of 4
// windows, and its base fingerprint.
func fixtureSet(t *testing.T, split string) (*model.Model, *Set, adapt.Base) {
	t.Helper()
	m, w := fixture(t)
	set, err := Prepare(m, w, split, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	base, err := adapt.BaseOfModel(m)
	if err != nil {
		t.Fatal(err)
	}
	return m, set, base
}

// TestTunedGatesRuntime: a plan's test-time tuning (adapt.PlanOptions.Tune)
// scores the windows' continuations as the training path's TunedLosses
// does with the same gates, steps and rate, on the reference backend and
// on WebGPU; tuning moves the scores; zero steps change nothing; tuning a
// plan of an adapter that is not a gated basis, or at a bad rate, is
// refused.
//
// (Over 80 lines: one trained basis scored by both paths on both
// backends, then the refusals.)
func TestTunedGatesRuntime(t *testing.T) {
	m, set, base := fixtureSet(t, "train")
	tr, err := Train(m.B.(gpu.TrainBackend), m.W.Wte, base, basisMethod, set, TrainOpts{Batch: 4, Epochs: 2, LR: 3e-2, Seed: 3, Alpha: 0.7}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := tr.Adapter
	rng := rand.New(rand.NewPCG(11, 12))
	for i := range a.Tensors { // a network whose gates differ from zero, so tuning starts off the pair
		if a.Tensors[i].Name != adapt.CentroidsTensor {
			for j := range a.Tensors[i].Data {
				a.Tensors[i].Data[j] += float32(0.2 * rng.NormFloat64())
			}
		}
	}
	members := []int{0, 1, 2}
	var prompts, toks [][]int32
	for _, wi := range members {
		prompts = append(prompts, set.Windows[wi].Tokens[:set.Prompt])
		toks = append(toks, set.Windows[wi].Tokens[:len(set.Targets[wi])])
	}
	tu := adapt.Tune{Steps: 4, LR: 0.05}
	net, err := NewAdapterNet(m.B.(gpu.TrainBackend), m.W.Wte, a.Meta, append(a.HyperTensors(), a.StaticPair()...))
	if err != nil {
		t.Fatal(err)
	}
	defer net.Free()
	wm, _ := fixtureOn(t, gputest.Backend(t))
	for _, mb := range []*model.Model{m, wm} {
		rt, err := adapt.NewRuntime(mb, a)
		if err != nil {
			t.Fatal(err)
		}
		scores := func(o adapt.PlanOptions) ([]model.SequenceScore, []float32) {
			p, err := rt.Plan(prompts, o)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Free()
			sc, err := mb.Score(toks, nil, p.Adapter(nil))
			if err != nil {
				t.Fatal(err)
			}
			return sc, p.Means
		}
		plain, means := scores(adapt.PlanOptions{Mode: adapt.ModeOne})
		none, _ := scores(adapt.PlanOptions{Mode: adapt.ModeOne, Tune: adapt.Tune{Steps: 0, LR: 0.05}})
		tuned, _ := scores(adapt.PlanOptions{Mode: adapt.ModeOne, Tune: tu})
		g := group{Members: members, Cluster: []int{0, 0, 0}, K: 1, Means: means}
		want, err := net.TunedLosses(set.batch(g, 1), set.promptBatch(g), tu)
		if err != nil {
			t.Fatal(err)
		}
		bt := set.batch(g, 1)
		row, worst, moved := 0, 0.0, 0.0
		for i := range members {
			for j, l := range tuned[i].Losses {
				if bt.Targets[row+j] < 0 {
					continue // a prompt row: the training path scores only the rest
				}
				if none[i].Losses[j] != plain[i].Losses[j] {
					t.Fatalf("%s: window %d position %d: %g untuned, %g after zero steps", mb.B.Name(), i, j, plain[i].Losses[j], none[i].Losses[j])
				}
				worst = max(worst, math.Abs(float64(l-want[row+j])))
				moved = max(moved, math.Abs(float64(l-plain[i].Losses[j])))
			}
			row += len(set.Targets[members[i]])
		}
		t.Logf("%s: tuned losses differ from the training path's by up to %.2e; tuning moved them by up to %.2e", mb.B.Name(), worst, moved)
		if worst > 1e-4 || moved < 1e-3 {
			t.Errorf("%s: tuned losses %.2e from the training path's, moved %.2e by tuning", mb.B.Name(), worst, moved)
		}
		// A server's pool: a plan of the tuned gates (PlanGates) scores
		// exactly as the tuned plan.
		tp, err := rt.Plan(prompts, adapt.PlanOptions{Mode: adapt.ModeOne, Tune: tu})
		if err != nil {
			t.Fatal(err)
		}
		gates, err := tp.Gates()
		if err != nil {
			t.Fatal(err)
		}
		pool, err := rt.PlanGates(len(prompts), append(make([]float32, len(gates)), gates...)) // row 1 holds them
		if err != nil {
			t.Fatal(err)
		}
		cl := make([]int, len(prompts))
		for i, c := range tp.Cluster {
			cl[i] = -1
			if c >= 0 {
				cl[i] = c + 1
			}
		}
		if err := pool.SetClusters(cl); err != nil {
			t.Fatal(err)
		}
		ps, err := mb.Score(toks, nil, pool.Adapter(nil))
		if err != nil {
			t.Fatal(err)
		}
		for i := range ps {
			if !slices.Equal(ps[i].Losses, tuned[i].Losses) {
				t.Fatalf("%s: window %d: a plan of the tuned gates scores %v, the tuned plan %v", mb.B.Name(), i, ps[i].Losses[:3], tuned[i].Losses[:3])
			}
		}
		pool.Free()
		tp.Free()
		if _, err := rt.PlanGates(1, []float32{1, float32(math.NaN()), 0}); err == nil {
			t.Errorf("%s: a NaN gate: no error", mb.B.Name())
		}
		if _, err := rt.Plan(prompts, adapt.PlanOptions{Mode: adapt.ModeOne, Tune: adapt.Tune{Steps: 3, LR: -1}}); err == nil {
			t.Errorf("%s: tuning at rate -1: no error", mb.B.Name())
		}
		rt.Free()
	}
	lora := &adapt.Adapter{Meta: adapt.Meta{Kind: adapt.KindLoRA, Experts: 1, Rank: 2, Alpha: 1, Base: base}}
	lora.Tensors = randomTensors(lora.Meta.Spec(), rng, 0.1)
	rt, err := adapt.NewRuntime(m, lora)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Free()
	if _, err := rt.Plan(prompts, adapt.PlanOptions{Tune: tu}); err == nil {
		t.Errorf("tuning a LoRA's plan: no error")
	}
}
