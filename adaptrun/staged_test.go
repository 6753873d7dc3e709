package adaptrun

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
)

// TestStagedBasis: a staged gated basis (Method.Staged) trains its pair
// alone while every gate stays at zero (the gate network's last layer
// does not move from zero, so the update is a LoRA), then its gate
// network alone while the pair stays as the first stage left it; an
// unstaged basis trains both at once; Staged without Basis is refused.
func TestStagedBasis(t *testing.T) {
	rig := newStagedRig(t, basisMethod)
	m, set, base, tb, o, net, g := rig.m, rig.set, rig.base, rig.tb, rig.o, rig.net, rig.g
	read := func(i int) []float32 { return rig.read(t, i) }
	np := len(net.Params())
	lastW, lastB, pairA, pairB := np-4, np-3, np-2, np-1
	startA, startB := read(pairA), read(pairB)

	staged := basisMethod
	staged.Staged = true
	var midA, midB []float32
	steps := 0
	err := trainHead(tb, net, staged, set, o, [][]group{g, g, g, g}, nil, rand.New(rand.NewPCG(3, 3)), &Trained{}, func(step, n int, _ float64) {
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
	warm := basisMethod
	warm.Warm = true
	rig := newStagedRig(t, warm)
	m, set, base, tb, o, net, g := rig.m, rig.set, rig.base, rig.tb, rig.o, rig.net, rig.g
	read := func(i int) []float32 { return rig.read(t, i) }
	np := len(net.Params())
	lastW, pairA, pairB := np-4, np-2, np-1
	first := read(0) // the gate network's first layer
	var midA, midB []float32
	err := trainHead(tb, net, warm, set, o, [][]group{g, g, g, g}, nil, rand.New(rand.NewPCG(3, 3)), &Trained{}, func(step, n int, _ float64) {
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

// stagedRig is a trained gated basis's network with its gates zeroed (as
// Train starts them), ready for trainHead, and a mixed-cluster group.
type stagedRig struct {
	m    *model.Model
	set  *Set
	base adapt.Base
	tb   gpu.TrainBackend
	o    TrainOpts
	net  *AdapterNet
	g    []group
}

// newStagedRig trains meth for one epoch on the fixture and rebuilds its
// network with the gate network's last layer at zero.
func newStagedRig(t *testing.T, meth Method) *stagedRig {
	t.Helper()
	m, set, base := fixtureSet(t, "train")
	r := &stagedRig{m: m, set: set, base: base, tb: m.B.(gpu.TrainBackend), o: TrainOpts{Batch: 4, Epochs: 1, LR: 3e-2, Seed: 5, Alpha: 0.7}}
	tr, err := Train(r.tb, m.W.Wte, base, meth, set, r.o, nil)
	if err != nil {
		t.Fatal(err)
	}
	host := append(tr.Adapter.HyperTensors(), tr.Adapter.StaticPair()...)
	nl := len(tr.Adapter.HyperTensors())
	clear(host[nl-2].Data)
	clear(host[nl-1].Data)
	if r.net, err = NewAdapterNet(r.tb, m.W.Wte, tr.Adapter.Meta, host); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.net.Free)
	rng := rand.New(rand.NewPCG(1, 2))
	means := make([]float32, 2*m.Cfg.NEmbd)
	for i := range means {
		means[i] = float32(rng.NormFloat64())
	}
	r.g = []group{{Members: []int{0, 1, 2, 3}, Cluster: []int{0, 1, 1, 0}, K: 2, Means: means},
		{Members: []int{4, 5, 6, 7}, Cluster: []int{1, 0, -1, 1}, K: 2, Means: means}}
	return r
}

// read is parameter i of the rig's network.
func (r *stagedRig) read(t *testing.T, i int) []float32 {
	t.Helper()
	d, err := r.m.B.ReadF32(r.net.Params()[i])
	if err != nil {
		t.Fatal(err)
	}
	return d
}
