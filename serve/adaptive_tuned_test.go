package serve

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/model"
)

// testBasis is a random gated basis for m (rank testRank, k random unit
// training centroids): its gates differ by centroid and its pair moves
// the logits by about as much as the base model's spread.
func testBasis(t testing.TB, m *model.Model, k int, seed uint64) *adapt.Adapter {
	t.Helper()
	base, err := adapt.BaseOfModel(m)
	if err != nil {
		t.Fatal(err)
	}
	meta := adapt.Meta{Kind: adapt.KindHyper, Rank: testRank, StaticRank: testRank, Basis: true, Alpha: 0.5, Hidden: []int{8},
		Base: base, Centroids: k}
	rng := rand.New(rand.NewPCG(seed, 5))
	var ts []model.HostTensor
	for _, s := range meta.Spec() {
		if s.Name == adapt.CentroidsTensor {
			s.Data = unitRows(k, m.Cfg.NEmbd, seed)
		} else {
			s.Data = make([]float32, numel(s.Shape))
			for j := range s.Data {
				s.Data[j] = float32(rng.NormFloat64() * 0.5)
			}
		}
		ts = append(ts, s)
	}
	return saveLoad(t, &adapt.Adapter{Meta: meta, Tensors: ts}, base)
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// Mode tuned: a served request's first-token logprobs, on WebGPU, equal
// the reference backend's through the plan that generate runs for that
// prompt alone with the same tuning (online assignment, then Adam steps on
// its centroid's gates against its own prompt), and differ from the
// untuned plan's; tuning is refused for a plain hyper-network and outside
// mode tuned.
func TestAdaptTuned(t *testing.T) {
	be := gputest.Backend(t)
	m, tok := tinyModel(t, be)
	a := testBasis(t, m, 3, 9)
	tu := adapt.Tune{Steps: 3, LR: 0.2}
	ad := newAdaptive(t, m, a, AdaptOptions{Tune: tu})
	if ad.Mode != AdaptTuned || !strings.Contains(ad.String(), "tuning their gates") {
		t.Fatalf("mode %q (%s), want tuned", ad.Mode, ad)
	}
	_, url := testServer(t, ad, tok, Options{Slots: 2})
	rm := refTiny(t)
	rrt, err := adapt.NewRuntime(rm, a)
	if err != nil {
		t.Fatal(err)
	}
	defer rrt.Free()
	for _, p := range adaptPrompts {
		ids := tok.Encode(p)
		lp := func(o adapt.PlanOptions) []float64 {
			plan, err := rrt.Plan([][]int32{ids}, o)
			if err != nil {
				t.Fatal(err)
			}
			defer plan.Free()
			return refLogProbs(t, rm, ids, func() model.Adapter { return plan.Adapter(nil) })
		}
		want, untuned := lp(adapt.PlanOptions{Mode: adapt.ModeOnline, Tune: tu}), lp(adapt.PlanOptions{Mode: adapt.ModeOnline})
		r := post(context.Background(), t, url, map[string]any{"prompt": p, "max_tokens": 1, "temperature": 0, "logprobs": 5})
		if r.Status != 200 {
			t.Fatalf("%q: %d %s", p, r.Status, r.Body)
		}
		checkLogprobs(t, fmt.Sprintf("%q tuned", p), r.C.Choices[0], want)
		if !far(r.C.Choices[0], untuned) {
			t.Errorf("%q: the tuned logprobs equal the untuned plan's: tuning did nothing", p)
		}
	}
	for _, c := range []struct {
		a    *adapt.Adapter
		o    AdaptOptions
		want string
	}{
		{testHyper(t, m, 3, 7), AdaptOptions{Tune: tu}, "gated basis"},
		{a, AdaptOptions{Mode: AdaptWindow, Tune: tu}, "does not tune"},
		{a, AdaptOptions{Mode: AdaptTuned}, "tuning steps"},
		{a, AdaptOptions{Tune: adapt.Tune{Steps: 2, LR: -1}}, "rate"},
	} {
		if _, err := NewAdaptive(m, c.a, c.o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err %v, want one naming %q", c.o, err, c.want)
		}
	}
}
