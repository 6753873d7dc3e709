package adaptrun

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/gpu/ref"
	"github.com/chameleon-llm/chameleon/model"
)

// TestAdapterGradientsFD checks the whole head-only adapter backward
// (cross-entropy, the low-rank update, the hyper-network's layers and
// ReLUs, a hybrid's static pair, a gated basis's pair and gates, with one
// cluster's gates dropped too) against
// central finite differences of the
// mean loss, on the reference backend, with rows of several clusters and
// unadapted rows.
//
// (Over 80 lines: every parameter group's finite-difference check shares one
// net and batch.)
func TestAdapterGradientsFD(t *testing.T) {
	m, w := fixture(t)
	b := m.B.(gpu.TrainBackend)
	d, err := Prepare(m, w, "train", 5, nil)
	if err != nil {
		t.Fatal(err)
	}
	base, err := adapt.BaseOfModel(m)
	if err != nil {
		t.Fatal(err)
	}
	c, v := m.Cfg.NEmbd, m.Cfg.VocabSize
	for _, kind := range []adapt.Kind{adapt.KindHyper, "hybrid", "basis", "basis-drop", adapt.KindExperts} {
		var meta adapt.Meta
		var host []model.HostTensor
		switch kind {
		case adapt.KindHyper:
			meta = adapt.Meta{Kind: kind, Rank: 2, Alpha: 0.8, Hidden: []int{5, 4}, Base: base}
			host = adapt.InitHyper(meta.Hyper(), 9) // non-zero B: every gradient is live
		case "hybrid", "basis", "basis-drop":
			meta = adapt.Meta{Kind: adapt.KindHyper, Rank: 2, StaticRank: 3, Alpha: 0.8, Hidden: []int{5, 4}, Base: base}
			if kind != "hybrid" {
				meta.Rank, meta.Basis = 3, true
			}
			host = adapt.InitHyper(meta.Hyper(), 9)
			pair := adapt.InitStatic(1, 3, c, v, 4)
			pair[0].Name, pair[1].Name = adapt.StaticPairA, adapt.StaticPairB
			r := rand.New(rand.NewPCG(2, 2))
			for i := range pair[1].Data {
				pair[1].Data[i] = float32(r.NormFloat64()) // non-zero Bs: As's gradient is live
			}
			host = append(host, pair...)
		default:
			meta = adapt.Meta{Kind: kind, Rank: 2, Alpha: 0.8, Experts: 3, Base: base}
			host = adapt.InitStatic(3, 2, c, v, 9)
			r := rand.New(rand.NewPCG(1, 1))
			for i := range host[1].Data {
				host[1].Data[i] = float32(r.NormFloat64())
			}
		}
		n, err := NewAdapterNet(b, m.W.Wte, meta, host)
		if err != nil {
			t.Fatal(err)
		}
		g := group{Members: []int{0, 1, 2, 5}, Cluster: []int{0, 2, -1, 0}, K: 3, Means: make([]float32, 3*c)}
		for i := range g.Means {
			g.Means[i] = float32(math.Sin(float64(i)))
		}
		bt := d.batch(g, 1)
		if kind == "basis-drop" {
			bt.ZeroGates = []bool{true, false, false}
		}
		scored := 0
		for _, tg := range bt.Targets {
			if tg >= 0 {
				scored++
			}
		}
		meanLoss := func() float64 {
			ls, err := n.Losses(bt)
			if err != nil {
				t.Fatal(err)
			}
			var s float64
			for _, l := range ls {
				s += float64(l)
			}
			return s / float64(scored)
		}
		s, err := n.forward(bt, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.backward(bt.Cluster); err != nil {
			t.Fatal(err)
		}
		s.free()
		var staticFD float64 // the largest finite difference of a hybrid's static pair
		for pi, p := range n.Params() {
			grad, _ := b.ReadF32(n.Grads()[pi])
			val, _ := b.ReadF32(p)
			for _, i := range rand.New(rand.NewPCG(uint64(pi), 2)).Perm(len(val))[:min(12, len(val))] {
				old := val[i]
				const eps = 1e-3
				val[i] = old + eps
				_ = b.Write(p, val)
				lp := meanLoss()
				val[i] = old - eps
				_ = b.Write(p, val)
				lm := meanLoss()
				val[i] = old
				_ = b.Write(p, val)
				fd := (lp - lm) / (2 * eps)
				if strings.HasPrefix(n.names[pi], "static.") {
					staticFD = max(staticFD, math.Abs(fd))
				}
				if math.Abs(fd-float64(grad[i])) > 2e-3+2e-2*math.Abs(fd) {
					t.Fatalf("%s: %s[%d]: analytic %g, finite difference %g", kind, n.names[pi], i, grad[i], fd)
				}
			}
		}
		if kind != adapt.KindHyper && kind != adapt.KindExperts && !(staticFD > 1e-4) {
			t.Errorf("%s: the static pair does not move the loss (largest finite difference %g)", kind, staticFD)
		}
		if kind == "basis-drop" {
			checkGateDrop(t, n, bt)
		}
		n.Free()
	}
}

// checkGateDrop checks what dropping cluster 0's gates (bt.ZeroGates)
// means: the loss is the loss of the network's gates given with cluster
// 0's row zeroed, and cluster 0's mean feature no longer moves it while
// cluster 2's (which has rows too) does.
func checkGateDrop(t *testing.T, n *AdapterNet, bt AdapterBatch) {
	t.Helper()
	loss := func(bt AdapterBatch) float64 {
		ls, err := n.Losses(bt)
		if err != nil {
			t.Fatal(err)
		}
		var sum float64
		scored := 0
		for i, l := range ls {
			if bt.Targets[i] >= 0 {
				sum, scored = sum+float64(l), scored+1
			}
		}
		return sum / float64(scored)
	}
	dropped := loss(bt)
	s, err := n.forward(AdapterBatch{H: bt.H, Targets: bt.Targets, Cluster: bt.Cluster, K: bt.K, Means: bt.Means}, nil)
	if err != nil {
		t.Fatal(err)
	}
	gates, err := n.B.ReadF32(s.packed)
	s.free()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(gates, func(g float32) bool { return g != 0 }) {
		t.Fatal("every generated gate is zero: dropping some proves nothing")
	}
	clear(gates[:len(gates)/bt.K])
	given := bt
	given.ZeroGates, given.Gates = nil, gates
	if g := loss(given); math.Abs(g-dropped) > 1e-5 {
		t.Errorf("loss with cluster 0's gates dropped %g, with them given as zero %g", dropped, g)
	}
	c := len(bt.Means) / bt.K
	for _, k := range []int{0, 2} {
		moved := bt
		moved.Means = slices.Clone(bt.Means)
		for j := k * c; j < (k+1)*c; j++ {
			moved.Means[j] += 3
		}
		if got, want := math.Abs(loss(moved)-dropped) > 1e-6, k != 0; got != want {
			t.Errorf("moving cluster %d's mean feature moves the loss: %v, want %v", k, got, want)
		}
	}
}

// TestTrainWebGPU trains every head-only kind (and a gated basis with
// gate dropout) on WebGPU and on the reference from the same windows:
// step losses and trained parameters agree, and the hyper-network's
// training adapts (its loss falls).
func TestTrainWebGPU(t *testing.T) {
	w := gputest.Backend(t)
	for _, meth := range []Method{
		{Name: "hyper", Kind: KindHyper, Rank: 3, Features: adapt.FeatureBoth, Hidden: []int{5, 4}, Recluster: true},
		{Name: "lora", Kind: KindLoRA, Rank: 3},
		{Name: "experts", Kind: KindExperts, Rank: 3, Features: adapt.FeatureHidden},
		{Name: "table", Kind: KindTable, Rank: 3, Features: adapt.FeatureEmbed, K: 3},
		{Name: "basis-drop", Kind: KindHyper, Rank: 3, Features: adapt.FeatureHidden, Hidden: []int{5, 4}, Recluster: true,
			Basis: true, Mixed: true, GateDrop: 0.5},
	} {
		var losses [2][]float64
		var params [2][]model.HostTensor
		for i, b := range []gpu.Backend{ref.New(), w} {
			_, _, tr := trainedOn(t, b, meth, 3)
			losses[i], params[i] = tr.Losses, tr.Adapter.Tensors
		}
		for s := range losses[0] {
			if math.Abs(losses[0][s]-losses[1][s]) > 1e-3*(1+math.Abs(losses[0][s])) {
				t.Fatalf("%s: step %d loss: reference %g, WebGPU %g", meth.Name, s+1, losses[0][s], losses[1][s])
			}
		}
		for pi := range params[0] {
			a, b := params[0][pi].Data, params[1][pi].Data
			for j := range a {
				if math.Abs(float64(a[j]-b[j])) > 1e-3+1e-2*math.Abs(float64(a[j])) {
					t.Fatalf("%s: %s[%d]: reference %g, WebGPU %g", meth.Name, params[0][pi].Name, j, a[j], b[j])
				}
			}
		}
		if n := len(losses[0]); !(losses[0][n-1] < losses[0][0]) {
			t.Errorf("%s: training loss did not fall: %.3f -> %.3f", meth.Name, losses[0][0], losses[0][n-1])
		}
	}
}

// TestScoredBatch: scoring only the positions with a target (what Score
// does) gives each of them the loss the full batch gives it, bit for bit,
// on the reference and on WebGPU, for a trained gated basis under two
// clusters' gates, on a window set and on its prompt targets (the
// self-check's set, where most positions have none).
func TestScoredBatch(t *testing.T) {
	meth := Method{Name: "basis", Kind: KindHyper, Rank: 3, Features: adapt.FeatureHidden, Hidden: []int{5}, Recluster: true, Basis: true}
	for _, b := range []gpu.Backend{ref.New(), gputest.Backend(t)} {
		m, d, tr := trainedOn(t, b, meth, 2)
		net := fileNet(t, b, m, tr)
		defer net.Free()
		dim := len(d.Feature(meth.Features)) / len(d.Windows)
		for _, s := range []*Set{d, promptTargets(d)} {
			members := []int{0, 1, 2, 3, 4, 5}
			g := group{Members: members, Cluster: []int{0, 0, 0, 1, 1, 1}, K: 2,
				Means: append(meanOf(s.Feature(meth.Features), dim, members[:3]), meanOf(s.Feature(meth.Features), dim, members[3:])...)}
			full, err := net.Losses(s.batch(g, 0.9))
			if err != nil {
				t.Fatal(err)
			}
			scored, err := net.Losses(s.scoredBatch(g, 0.9))
			if err != nil {
				t.Fatal(err)
			}
			row, k := 0, 0
			for _, wi := range members {
				for _, tg := range s.Targets[wi] {
					if tg >= 0 {
						if k >= len(scored) || scored[k] != full[row] {
							t.Fatalf("%s: window %d position %d: scored %v, full batch %g", b.Name(), wi, row, scored[min(k, len(scored)-1)], full[row])
						}
						k++
					}
					row++
				}
			}
			if k != len(scored) || k == 0 || k == len(full) {
				t.Fatalf("%s: %d scored rows for %d positions with a target of %d", b.Name(), len(scored), k, len(full))
			}
		}
	}
}

// trainedOn trains meth for epochs on the fixture's training windows on
// backend b (rate 1e-2, seed 5, batches of 4).
func trainedOn(t *testing.T, b gpu.Backend, meth Method, epochs int) (*model.Model, *Set, *Trained) {
	t.Helper()
	m, d, base := trainSetOn(t, b)
	tr, err := Train(b.(gpu.TrainBackend), m.W.Wte, base, meth, d, TrainOpts{Batch: 4, Epochs: epochs, LR: 1e-2, Seed: 5, Alpha: 1}, nil)
	if err != nil {
		t.Fatalf("%s on %s: %v", meth.Name, b.Name(), err)
	}
	return m, d, tr
}

// trainSetOn is the fixture's model on backend b, its training windows and
// its base.
func trainSetOn(t *testing.T, b gpu.Backend) (*model.Model, *Set, adapt.Base) {
	t.Helper()
	m, win := fixtureOn(t, b)
	d, err := Prepare(m, win, "train", 5, nil)
	if err != nil {
		t.Fatal(err)
	}
	base, err := adapt.BaseOfModel(m)
	if err != nil {
		t.Fatal(err)
	}
	return m, d, base
}

// fileNet is the network of trained hyper adapter tr's file form (raw
// features) on backend b; the caller frees it.
func fileNet(t *testing.T, b gpu.Backend, m *model.Model, tr *Trained) *AdapterNet {
	t.Helper()
	host := append(slices.Clone(tr.Adapter.HyperTensors()), tr.Adapter.StaticPair()...)
	net, err := NewAdapterNet(b.(gpu.TrainBackend), m.W.Wte, tr.Adapter.Meta, host)
	if err != nil {
		t.Fatal(err)
	}
	return net
}
