package adapt

import (
	"math"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/model"
)

// The adapted perplexity scores every window with its own cluster's
// update: the same as PerplexityWith given that plan's adapters, different
// from the base model's; too few tokens is an error.
func TestRuntimePerplexity(t *testing.T) {
	f := newRTFixture(t)
	toks := make([]int32, 60)
	for i := range toks {
		toks[i] = int32(f.rng.IntN(rtCfg.VocabSize))
	}
	o := model.PerplexityOptions{Context: 12, Stride: 6, Batch: 3}
	po := PlanOptions{Mode: ModeBatch, K: 2, Seed: 5}
	for name, m := range f.models {
		rt, err := NewRuntime(m, f.hyperAdapter(t, nil))
		if err != nil {
			t.Fatal(err)
		}
		got, k, err := rt.Perplexity(toks, o, po)
		if err != nil {
			t.Fatal(err)
		}
		wins := model.PerplexityWindows(toks, o.Context, o.Stride)
		plan, err := rt.Plan(wins, po)
		if err != nil {
			t.Fatal(err)
		}
		want := o
		want.Adapters = func(first int, _ [][]int32) (model.Adapter, func(), error) {
			return plan.AdapterFrom(first, nil), nil, nil
		}
		ref, err := m.PerplexityWith(toks, want)
		plan.Free()
		if err != nil {
			t.Fatal(err)
		}
		base, err := m.PerplexityWith(toks, o)
		if err != nil {
			t.Fatal(err)
		}
		if k != plan.K || got.Windows != len(wins) || got.Tokens != ref.Tokens || math.Abs(got.NLL-ref.NLL) > 1e-6*math.Abs(ref.NLL) {
			t.Errorf("%s: %+v in %d clusters, want %+v in %d", name, got, k, ref, plan.K)
		}
		if got.NLL == base.NLL {
			t.Errorf("%s: the adapted NLL equals the base model's %v", name, base.NLL)
		}
		if _, _, err := rt.Perplexity(toks[:1], o, po); err == nil || !strings.Contains(err.Error(), "nothing to score") {
			t.Errorf("%s: one token: %v", name, err)
		}
		rt.Free()
	}
}
