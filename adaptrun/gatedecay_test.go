package adaptrun

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
)

// TestGateDecayMask: the gate decay reaches the gate network's weight
// matrices of a gated basis and nothing else (not its biases, not the
// pair, nothing of a LoRA), and a stage's subset of the parameters gets the
// mask of its own members.
func TestGateDecayMask(t *testing.T) {
	m, _, sets, base := prepared(t)
	set := sets.Train
	tb := m.B.(gpu.TrainBackend)
	tr, err := Train(tb, m.W.Wte, base, basisMethod, set, TrainOpts{Batch: 4, Epochs: 1, Alpha: 1, LR: 1e-2, Seed: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	net, err := NewAdapterNet(tb, m.W.Wte, tr.Adapter.Meta, tr.Adapter.Tensors)
	if err != nil {
		t.Fatal(err)
	}
	defer net.Free()
	mask := gateDecayMask(net, nil)
	if len(mask) != len(net.names) {
		t.Fatalf("mask of %d for %d parameters", len(mask), len(net.names))
	}
	decayed := 0
	for i, n := range net.names {
		want := strings.HasPrefix(n, "hyper.") && strings.HasSuffix(n, ".weight")
		if mask[i] != want {
			t.Errorf("%s: decayed %v, want %v", n, mask[i], want)
		}
		if mask[i] {
			decayed++
		}
	}
	if decayed != len(basisMethod.Hidden)+1 {
		t.Errorf("%d matrices decayed, want the network's %d layers", decayed, len(basisMethod.Hidden)+1)
	}
	pair := len(net.names) - 2
	if got := gateDecayMask(net, []int{pair, pair + 1, 0, 1}); !slices.Equal(got, []bool{false, false, true, false}) {
		t.Errorf("mask of the pair and the first layer: %v, want [false false true false]", got)
	}
	lora, err := Train(tb, m.W.Wte, base, Method{Name: "lora", Kind: KindLoRA, Rank: 2}, set, TrainOpts{Batch: 4, Epochs: 1, Alpha: 1, LR: 1e-2, Seed: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := NewAdapterNet(tb, m.W.Wte, lora.Adapter.Meta, lora.Adapter.Tensors)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Free()
	if got := gateDecayMask(ln, nil); slices.Contains(got, true) {
		t.Errorf("a LoRA's mask decays %v", got)
	}
}

// TestGateDecay trains the same gated basis with and without a gate
// decay: every weight matrix of the decayed gate network ends smaller, and
// a decay on a method that is not a gated basis, or a negative one, is
// refused.
func TestGateDecay(t *testing.T) {
	m, _, sets, base := prepared(t)
	set := sets.Train
	tb := m.B.(gpu.TrainBackend)
	o := TrainOpts{Batch: 4, Epochs: 3, Alpha: 1, LR: 3e-2, Seed: 1}
	norms := func(decay float64) map[string]float64 {
		mc := basisMethod
		mc.GateDecay = decay
		tr, err := Train(tb, m.W.Wte, base, mc, set, o, nil)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, h := range tr.Adapter.Tensors {
			if strings.HasPrefix(h.Name, "hyper.") && strings.HasSuffix(h.Name, ".weight") {
				out[h.Name] = norm(h)
			}
		}
		return out
	}
	plain, decayed := norms(0), norms(10)
	if len(plain) != len(basisMethod.Hidden)+1 {
		t.Fatalf("gate network matrices %v", plain)
	}
	for n, p := range plain {
		if d := decayed[n]; !(d < 0.8*p) {
			t.Errorf("%s: norm %.4g with decay 10, %.4g without: want under 0.8 of it", n, d, p)
		}
	}
	for _, c := range []struct {
		m     Method
		decay float64
	}{{Method{Name: "lora", Kind: KindLoRA, Rank: 2}, 1}, {basisMethod, -1}, {basisMethod, math.NaN()}, {basisMethod, math.Inf(1)}} {
		mc := c.m
		mc.GateDecay = c.decay
		if _, err := Train(tb, m.W.Wte, base, mc, set, o, nil); err == nil || !strings.Contains(err.Error(), "gate decay") {
			t.Errorf("%s with gate decay %g: %v, want a refusal", mc.Name, c.decay, err)
		}
	}
}

// norm is the Euclidean norm of a host tensor.
func norm(h model.HostTensor) float64 {
	s := 0.0
	for _, x := range h.Data {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

// TestDecayGrid chooses a gated basis's gate decay with the rate on
// validation: the grid has a point per decay (none for the LoRA), the
// row names the decay of least validation loss, the report shows the
// grid, and the second seed trains at the chosen decay and not at the
// other.
func TestDecayGrid(t *testing.T) {
	m, w, sets, base := prepared(t)
	lora := Method{Name: "lora", Kind: KindLoRA, Rank: 2, Features: basisMethod.Features}
	grid := []float64{0, 20}
	cfg := Config{Methods: []Method{basisMethod, lora}, LRs: []float64{3e-2}, DecayGrid: grid, Seeds: 2, Primary: basisMethod.Name,
		Bootstrap: 10, Opts: TrainOpts{Batch: 4, Epochs: 2, Alpha: 1}}
	tb := m.B.(gpu.TrainBackend)
	e := &Evaluator{TB: tb, Wte: m.W.Wte, Base: base, Batch: 4, Seed: 1}
	res, _, err := Run(e, sets, w, cfg)
	if err != nil {
		t.Fatal(err)
	}
	lr := res.Rows[find(res.Rows, func(x Row) bool { return x.Method == "lora" })]
	if len(lr.LRVal) != 1 || lr.GateDecay != 0 {
		t.Fatalf("the LoRA trained at %v (gate decay %g), want one point and no decay", lr.LRVal, lr.GateDecay)
	}
	r := res.Rows[find(res.Rows, func(x Row) bool { return x.Method == basisMethod.Name && x.Grouping == GroupOnline })]
	key := func(d float64) string { return DecayKey(GridKey(3e-2, 2, nil), d, grid) }
	if len(r.LRVal) != len(grid) || r.LRVal[key(0)] == r.LRVal[key(20)] {
		t.Fatalf("validation %v: want a distinct loss at each of %v", r.LRVal, grid)
	}
	other := grid[0]
	if r.GateDecay == other {
		other = grid[1]
	}
	if !slices.Contains(grid, r.GateDecay) || r.Val != r.LRVal[key(r.GateDecay)] || r.LRVal[key(other)] < r.Val {
		t.Fatalf("chose gate decay %g (validation %.5f), want the least of %v", r.GateDecay, r.Val, r.LRVal)
	}
	for _, c := range []struct {
		decay float64
		same  bool
	}{{r.GateDecay, true}, {other, false}} {
		mc := basisMethod
		mc.GateDecay = c.decay
		checkSecondSeed(t, e, sets, mc, TrainOpts{Batch: 4, Epochs: 2, Alpha: 1, LR: 3e-2, Seed: 2}, r, c.same, fmt.Sprintf("gate decay %g", c.decay))
	}
	md := res.Markdown(res.Summarise())
	if !strings.Contains(md, "gate decay |") || !strings.Contains(md, fmt.Sprintf("| %s | %g | ", basisMethod.Name, other)) ||
		!strings.Contains(md, "weight decay [0 20] chosen") {
		t.Fatalf("the report does not show the decay grid:\n%s", md)
	}
}
