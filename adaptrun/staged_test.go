package adaptrun

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
)

// TestStagedBasis: a staged gated basis (Method.Staged) trains its pair
// alone while every gate stays at zero (the gate network's last layer
// does not move from zero, so the update is a LoRA), then its gate
// network alone while the pair stays as the first stage left it; an
// unstaged basis trains both at once; Staged without Basis is refused.
func TestStagedBasis(t *testing.T) {
	m, set, base := fixtureSet(t, "train")
	tb := m.B.(gpu.TrainBackend)
	o := TrainOpts{Batch: 4, Epochs: 1, LR: 3e-2, Seed: 5, Alpha: 0.7}
	tr, err := Train(tb, m.W.Wte, base, basisMethod, set, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The trained file's network and pair, its last layer zeroed: the
	// gates start at zero, as Train starts them.
	host := append(tr.Adapter.HyperTensors(), tr.Adapter.StaticPair()...)
	nl := len(tr.Adapter.HyperTensors())
	clear(host[nl-2].Data)
	clear(host[nl-1].Data)
	net, err := NewAdapterNet(tb, m.W.Wte, tr.Adapter.Meta, host)
	if err != nil {
		t.Fatal(err)
	}
	defer net.Free()
	read := func(i int) []float32 {
		d, err := m.B.ReadF32(net.Params()[i])
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	np := len(net.Params())
	lastW, lastB, pairA, pairB := np-4, np-3, np-2, np-1
	startA, startB := read(pairA), read(pairB)

	rng := rand.New(rand.NewPCG(1, 2))
	c := m.Cfg.NEmbd
	means := make([]float32, 2*c)
	for i := range means {
		means[i] = float32(rng.NormFloat64())
	}
	g := []group{{Members: []int{0, 1, 2, 3}, Cluster: []int{0, 1, 1, 0}, K: 2, Means: means},
		{Members: []int{4, 5, 6, 7}, Cluster: []int{1, 0, -1, 1}, K: 2, Means: means}}
	staged := basisMethod
	staged.Staged = true
	var midA, midB []float32
	steps := 0
	err = trainHead(tb, net, staged, set, o, [][]group{g, g, g, g}, rand.New(rand.NewPCG(3, 3)), &Trained{}, func(step, n int, _ float64) {
		steps = n
		if step == n/2 { // the end of the pair's stage
			if maxAbs(read(lastW)) != 0 || maxAbs(read(lastB)) != 0 {
				t.Errorf("the gate network's last layer moved while the pair trained: the gates left zero")
			}
			midA, midB = read(pairA), read(pairB)
			if slices.Equal(midA, startA) || slices.Equal(midB, startB) {
				t.Errorf("the pair did not train in its stage")
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if steps != 8 || midA == nil {
		t.Fatalf("%d steps, want 8 in two stages of 4", steps)
	}
	if !slices.Equal(read(pairA), midA) || !slices.Equal(read(pairB), midB) {
		t.Errorf("the pair moved while the gates trained")
	}
	if maxAbs(read(lastW)) == 0 {
		t.Errorf("the gate network's last layer did not train in its stage")
	}

	// Unstaged, one stage trains everything at once.
	if st := headStages(net, basisMethod); len(st) != 1 || st[0] != nil {
		t.Errorf("unstaged basis: stages %v, want one of every parameter", st)
	}
	bad := hybridMethod
	bad.Staged = true
	if _, err := Train(tb, m.W.Wte, base, bad, set, o, nil); err == nil {
		t.Errorf("a staged hybrid (not a gated basis) was trained")
	}
}

// TestWarmBasis: a warm-started gated basis (Method.Warm) trains its pair
// alone first, every gate held at zero (a LoRA), and then the pair and
// the gate network together; it is refused with Staged and without Basis.
func TestWarmBasis(t *testing.T) {
	m, set, base := fixtureSet(t, "train")
	tb := m.B.(gpu.TrainBackend)
	o := TrainOpts{Batch: 4, Epochs: 1, LR: 3e-2, Seed: 5, Alpha: 0.7}
	warm := basisMethod
	warm.Warm = true
	tr, err := Train(tb, m.W.Wte, base, warm, set, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	host := append(tr.Adapter.HyperTensors(), tr.Adapter.StaticPair()...)
	nl := len(tr.Adapter.HyperTensors())
	clear(host[nl-2].Data)
	clear(host[nl-1].Data)
	net, err := NewAdapterNet(tb, m.W.Wte, tr.Adapter.Meta, host)
	if err != nil {
		t.Fatal(err)
	}
	defer net.Free()
	read := func(i int) []float32 {
		d, err := m.B.ReadF32(net.Params()[i])
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	np := len(net.Params())
	lastW, pairA, pairB := np-4, np-2, np-1
	first := read(0) // the gate network's first layer
	rng := rand.New(rand.NewPCG(1, 2))
	means := make([]float32, 2*m.Cfg.NEmbd)
	for i := range means {
		means[i] = float32(rng.NormFloat64())
	}
	g := []group{{Members: []int{0, 1, 2, 3}, Cluster: []int{0, 1, 1, 0}, K: 2, Means: means},
		{Members: []int{4, 5, 6, 7}, Cluster: []int{1, 0, -1, 1}, K: 2, Means: means}}
	var midA, midB []float32
	err = trainHead(tb, net, warm, set, o, [][]group{g, g, g, g}, rand.New(rand.NewPCG(3, 3)), &Trained{}, func(step, n int, _ float64) {
		if step == n/2 { // the end of the pair's stage
			if maxAbs(read(lastW)) != 0 || !slices.Equal(read(0), first) {
				t.Errorf("the gate network moved while the pair trained alone")
			}
			midA, midB = read(pairA), read(pairB)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if midA == nil {
		t.Fatal("no end of the pair's stage was seen")
	}
	if slices.Equal(read(pairA), midA) || slices.Equal(read(pairB), midB) {
		t.Errorf("the pair stopped training when the gates started")
	}
	if maxAbs(read(lastW)) == 0 || slices.Equal(read(0), first) {
		t.Errorf("the gate network did not train in the joint stage")
	}
	for _, bad := range []Method{{Name: "warm hybrid", Kind: KindHyper, Rank: 3, Features: basisMethod.Features, Hidden: []int{5, 3}, StaticRank: 2, Warm: true},
		func() Method { b := warm; b.Staged = true; return b }()} {
		if _, err := Train(tb, m.W.Wte, base, bad, set, o, nil); err == nil {
			t.Errorf("%s (staged %v, basis %v) was trained", bad.Name, bad.Staged, bad.Basis)
		}
	}
}
