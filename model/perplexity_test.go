package model

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/conformance"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/gpu/ref"
)

// directNLL scores every target from its full-window context with the
// reference forward, computing log-softmax on the host in float64.
func directNLL(t *testing.T, m *Model, tokens []int32, ctx, stride int) (float64, int) {
	t.Helper()
	nll, n := 0.0, 0
	prevEnd := 1
	for begin := 0; prevEnd < len(tokens); begin += stride {
		end := min(begin+ctx, len(tokens))
		lg := forwardAll(t, m, []int{end - begin}, [][]int32{tokens[begin:end]})
		V := m.Cfg.VocabSize
		for p := max(prevEnd, begin+1); p < end; p++ {
			row := lg[(p-1-begin)*V : (p-begin)*V]
			mx := math.Inf(-1)
			for _, v := range row {
				mx = math.Max(mx, float64(v))
			}
			s := 0.0
			for _, v := range row {
				s += math.Exp(float64(v) - mx)
			}
			nll += mx + math.Log(s) - float64(row[tokens[p]])
			n++
		}
		prevEnd = end
		if end == len(tokens) {
			break
		}
	}
	return nll, n
}

func TestPerplexitySlidingWindow(t *testing.T) {
	w := gputest.Backend(t)
	seed := conformance.Seed()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 4))
	cfg := testConfigs[0]
	toks := randomTokens(rng, []int{57}, cfg.VocabSize)[0]
	rm := newModel(t, ref.New(), cfg, seed, gpu.F32)
	for _, cs := range [][2]int{{24, 24}, {24, 8}, {10, 3}, {2, 1}} {
		wantNLL, wantN := directNLL(t, rm, toks, cs[0], cs[1])
		for _, b := range []gpu.Backend{ref.New(), w} {
			m := newModel(t, b, cfg, seed, gpu.F32)
			r, err := m.Perplexity(toks, cs[0], cs[1], 3, nil)
			if err != nil {
				t.Fatal(err)
			}
			full := len(toks) - 1 // every token but the first, when windows overlap
			if r.Tokens != wantN || (cs[1] < cs[0] && r.Tokens != full) {
				t.Errorf("%s ctx %d stride %d: scored %d tokens, want %d", b.Name(), cs[0], cs[1], r.Tokens, wantN)
			}
			if math.Abs(r.NLL-wantNLL) > 1e-3*math.Abs(wantNLL) {
				t.Errorf("%s ctx %d stride %d: NLL %g, want %g", b.Name(), cs[0], cs[1], r.NLL, wantNLL)
			}
			if math.Abs(r.Perplexity-math.Exp(r.NLL/float64(r.Tokens))) > 1e-9*r.Perplexity {
				t.Errorf("perplexity %g is not exp(nll/tokens)", r.Perplexity)
			}
		}
	}
	m := newModel(t, ref.New(), cfg, seed, gpu.F32)
	if _, err := m.Perplexity(toks[:1], 8, 8, 1, nil); err == nil {
		t.Error("one token accepted")
	}
	if _, err := m.Perplexity(toks, cfg.NCtx+1, 8, 1, nil); err == nil {
		t.Error("context over the model's accepted")
	}
	if _, err := m.Perplexity(toks, 8, 9, 1, nil); err == nil {
		t.Error("stride over the context accepted")
	}
}
