package adaptrun

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/model"
)

// hybridMethod is a small ChamaleonLLM+ hybrid for the fixture's model.
var hybridMethod = Method{Name: "hybrid", Kind: KindHyper, Rank: 2, StaticRank: 3, Features: adapt.FeatureHidden,
	Hidden: []int{5, 3}, Recluster: true}

// TestHybridAdapterFile checks the hybrid's inference path against its
// training path: Train writes the static pair into the file form (counted
// in NParams, its B moved off its zero start); with random non-zero
// parameters, the AdapterNet's logits (generated update by the fused
// kernel, then the static pair) for rows of two clusters and an unadapted
// row equal those of the file form, written and read back, loaded by
// adapt.Runtime and run through model.ForwardAdapted on the reference
// backend and on WebGPU.
//
// The gated basis (basisMethod) runs the same checks: its gates generated
// per cluster on the shared pair, trained on mixed-cluster batches.
func TestHybridAdapterFile(t *testing.T) {
	for _, meth := range []Method{hybridMethod, basisMethod} {
		t.Run(meth.Name, func(t *testing.T) { checkAdapterFile(t, meth) })
	}
}

// basisMethod is a small gated basis for the fixture's model.
var basisMethod = Method{Name: "basis", Kind: KindHyper, Rank: 3, Features: adapt.FeatureHidden,
	Hidden: []int{5, 3}, Recluster: true, Basis: true, Mixed: true}

// checkAdapterFile is TestHybridAdapterFile for one head-only hyper
// method with a static pair of rank 3.
//
// (Over 80 lines: one adapter built, written, read back and run on both
// backends, the logits compared at each step.)
func checkAdapterFile(t *testing.T, meth Method) {
	m, w := fixture(t)
	set, err := Prepare(m, w, "train", 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	base, err := adapt.BaseOfModel(m)
	if err != nil {
		t.Fatal(err)
	}
	c, v := m.Cfg.NEmbd, m.Cfg.VocabSize
	tr, err := Train(m.B.(gpu.TrainBackend), m.W.Wte, base, meth, set, TrainOpts{Batch: 4, Epochs: 2, LR: 3e-2, Seed: 3, Alpha: 0.7}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := tr.Adapter
	if a.Meta.StaticRank != 3 || a.Meta.Basis != meth.Basis || tr.NParams != meth.Params(c, v, 1) {
		t.Fatalf("static rank %d, basis %v, %d parameters: want 3, %v and %d", a.Meta.StaticRank, a.Meta.Basis, tr.NParams, meth.Basis, meth.Params(c, v, 1))
	}
	if tr.NParams-paramCount(a.HyperTensors()) != 3*(c+v) {
		t.Errorf("the static pair holds %d parameters, want %d", tr.NParams-paramCount(a.HyperTensors()), 3*(c+v))
	}
	pair := a.StaticPair()
	if len(pair) != 2 || pair[0].Name != adapt.StaticPairA || pair[1].Name != adapt.StaticPairB {
		t.Fatalf("static pair %v", pair)
	}
	if maxAbs(pair[1].Data) == 0 {
		t.Errorf("training left the static pair's B at zero")
	}
	// Random non-zero parameters, raw (file-form) network inputs.
	rng := rand.New(rand.NewPCG(9, 9))
	for i := range a.Tensors {
		if a.Tensors[i].Name == adapt.CentroidsTensor {
			continue
		}
		for j := range a.Tensors[i].Data {
			a.Tensors[i].Data[j] = float32(0.3 * rng.NormFloat64())
		}
	}
	raw := make([]float32, 2*c)
	for i := range raw {
		raw[i] = float32(rng.NormFloat64())
	}
	g := group{Members: []int{0, 1, 2}, Cluster: []int{1, -1, 0}, K: 2, Means: raw}
	net, err := NewAdapterNet(m.B.(gpu.TrainBackend), m.W.Wte, a.Meta, append(a.HyperTensors(), a.StaticPair()...))
	if err != nil {
		t.Fatal(err)
	}
	s, err := net.forward(set.batch(g, 1), nil)
	if err != nil {
		t.Fatal(err)
	}
	want, err := m.B.ReadF32(s.logits)
	s.free()
	net.Free()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := a.Write(&buf); err != nil {
		t.Fatal(err)
	}
	if a, err = adapt.Read(bytes.NewReader(buf.Bytes()), int64(buf.Len()), base); err != nil {
		t.Fatal(err)
	}
	var toks [][]int32
	for _, wi := range g.Members {
		toks = append(toks, set.Windows[wi].Tokens[:len(set.Targets[wi])])
	}
	wm, _ := fixtureOn(t, gputest.Backend(t))
	for _, mb := range []*model.Model{m, wm} {
		rt, err := adapt.NewRuntime(mb, a)
		if err != nil {
			t.Fatal(err)
		}
		p, err := rt.PlanMeans(len(toks), raw)
		if err != nil {
			t.Fatal(err)
		}
		copy(p.Cluster, g.Cluster)
		got := logitsWith(t, mb, toks, p.Adapter(nil))
		p.Free()
		rt.Free()
		bl := baseLogits(t, mb, toks)
		var worst, moved float64
		for i := range want {
			worst = max(worst, math.Abs(float64(got[i]-want[i])))
			moved = max(moved, math.Abs(float64(want[i]-bl[i])))
		}
		// The unadapted window keeps the base logits exactly as the
		// training path computes them.
		rowsPer := len(set.Targets[g.Members[1]])
		first := len(set.Targets[g.Members[0]]) * v
		for i := first; i < first+rowsPer*v; i++ {
			if d := math.Abs(float64(got[i] - bl[i])); d > 1e-4*(1+math.Abs(float64(bl[i]))) {
				t.Fatalf("%s: the unadapted window's logit %d moved by %g", mb.B.Name(), i-first, d)
			}
		}
		t.Logf("%s: largest difference %.2e, largest update %.2e", mb.B.Name(), worst, moved)
		if worst > 2e-4*(1+moved) || moved < 1e-2 {
			t.Errorf("%s: inference logits differ from training's by up to %.2e (update %.2e)", mb.B.Name(), worst, moved)
		}
	}
}

// TestHybridMeanControl: with its generated update switched off (the
// hyper-network's B part zero), a hybrid adapter is its static pair alone,
// so the mean-update control (static + mean generated update, for all)
// scores exactly as the clustered grouping does, and both differ from the
// base model; the file refuses a static pair on a static adapter. A gated
// basis whose gates do not depend on the input (the last layer's weights
// zero, its bias not) is likewise one update for all: the mean control
// equals the clustered grouping; the file refuses a basis whose pair's
// rank is not its own.
func TestHybridMeanControl(t *testing.T) {
	for _, basis := range []bool{false, true} {
		checkMeanControl(t, basis)
	}
}

// checkMeanControl is TestHybridMeanControl for a hybrid (basis false) or
// a gated basis.
func checkMeanControl(t *testing.T, basis bool) {
	m, set, base := fixtureSet(t, "validation")
	c := m.Cfg.NEmbd
	meta := adapt.Meta{Kind: adapt.KindHyper, Rank: 2, StaticRank: 3, Alpha: 0.7, Hidden: []int{5, 3}, Features: adapt.FeatureHidden,
		Centroids: 2, Base: base}
	meth := hybridMethod
	if basis {
		meta.Rank, meta.Basis, meth = 3, true, basisMethod
	}
	a := &adapt.Adapter{Meta: meta, Tensors: randomTensors(meta.Spec(), rand.New(rand.NewPCG(5, 6)), 0.3)}
	hs := a.HyperTensors()
	last := len(hs) - 2
	if basis {
		clear(hs[last].Data) // gates = the bias, for every input
	} else {
		rc := meta.Rank * c
		clear(hs[last].Data[rc*hs[last].Shape[1]:])
		clear(hs[last+1].Data[rc:])
	}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	tr := &Trained{M: meth, Adapter: a, Cents: a.TrainingCentroids()}
	e := &Evaluator{TB: m.B.(gpu.TrainBackend), Wte: m.W.Wte, Base: base, Batch: 4, Seed: 1}
	mean := func(g string, tr *Trained) float64 {
		s, err := e.Score(tr, set, g, 1)
		if err != nil {
			t.Fatalf("%s: %v", g, err)
		}
		return s.Mean(nil)
	}
	mc, cl, b := mean(GroupMean, tr), mean(GroupClustered, tr), mean(GroupBase, nil)
	t.Logf("mean update %.5f, clustered %.5f, base %.5f nats/token", mc, cl, b)
	if math.Abs(mc-cl) > 1e-4 || math.Abs(cl-b) < 1e-3 {
		t.Errorf("mean update %.5f, clustered %.5f, base %.5f: want the first two equal and apart from the base", mc, cl, b)
	}
	if basis {
		bad := meta
		bad.StaticRank = 2
		if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "gated basis") {
			t.Errorf("a gated basis with a pair of rank 2 and rank 3: %v", err)
		}
		return
	}
	bad := adapt.Meta{Kind: adapt.KindLoRA, Experts: 1, Rank: 2, StaticRank: 3, Alpha: 1, Base: base}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "static_rank") {
		t.Errorf("a lora adapter with a static pair: %v", err)
	}
}

func maxAbs(x []float32) float64 {
	var m float64
	for _, v := range x {
		m = max(m, math.Abs(float64(v)))
	}
	return m
}
