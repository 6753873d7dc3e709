package adaptrun

import (
	"math"
	"testing"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/gpu/ref"
)

// TestTrainScoredRows: training a head-only adapter on the rows with a
// target alone (the default) takes the steps that training on every
// position takes (the loss is a mean over the scored rows either way):
// every step's loss and every trained value agree to float rounding, on
// the reference and on WebGPU, for a LoRA, experts and a gated basis.
func TestTrainScoredRows(t *testing.T) {
	meths := []Method{
		{Name: "lora", Kind: KindLoRA, Rank: 2, Features: adapt.FeatureHidden},
		{Name: "experts", Kind: KindExperts, Rank: 2, Features: adapt.FeatureHidden},
		{Name: "basis", Kind: KindHyper, Rank: 3, Features: adapt.FeatureHidden, Hidden: []int{5}, Recluster: true, Basis: true, Mixed: true},
	}
	for _, b := range []gpu.Backend{ref.New(), gputest.Backend(t)} {
		m, d, base := trainSetOn(t, b)
		var err error
		g := group{Members: seqIdx(len(d.Windows)), Cluster: uniform(len(d.Windows), 0), K: 1}
		if s, a := len(d.scoredBatch(g, 1).Targets), len(d.batch(g, 1).Targets); s == 0 || s == a {
			t.Fatalf("the training windows have %d scored rows of %d: the test shows nothing", s, a)
		}
		for _, meth := range meths {
			var got [2]*Trained
			for i, all := range []bool{false, true} {
				o := TrainOpts{Batch: 4, Epochs: 2, LR: 1e-2, Seed: 5, Alpha: 1, allRows: all}
				if got[i], err = Train(b.(gpu.TrainBackend), m.W.Wte, base, meth, d, o, nil); err != nil {
					t.Fatalf("%s on %s: %v", meth.Name, b.Name(), err)
				}
			}
			sc, all := got[0], got[1]
			if len(sc.Losses) != len(all.Losses) || len(sc.Losses) == 0 {
				t.Fatalf("%s on %s: %d and %d steps", meth.Name, b.Name(), len(sc.Losses), len(all.Losses))
			}
			for i := range sc.Losses {
				if !near(sc.Losses[i], all.Losses[i], 1e-5) {
					t.Fatalf("%s on %s, step %d: loss %g on the scored rows, %g on every row", meth.Name, b.Name(), i, sc.Losses[i], all.Losses[i])
				}
			}
			for ti, x := range sc.Adapter.Tensors {
				for j, v := range x.Data {
					if w := all.Adapter.Tensors[ti].Data[j]; !near(float64(v), float64(w), 1e-4) {
						t.Fatalf("%s on %s, %s[%d]: %g on the scored rows, %g on every row", meth.Name, b.Name(), x.Name, j, v, w)
					}
				}
			}
		}
	}
}

// near says whether a and b agree to rel of the larger, or both are
// below rel in size.
func near(a, b, rel float64) bool {
	return math.Abs(a-b) <= rel*max(math.Abs(a), math.Abs(b), 1)
}
