package model

import (
	"errors"
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

// TestPerplexityHeads checks the per-batch adapter hook: the batches' windows
// and first indices, one release per batch, a head that computes the tied
// projection leaving the result unchanged, and a head of zero logits giving
// exactly log V per token.
func TestPerplexityHeads(t *testing.T) {
	w := gputest.Backend(t)
	seed := conformance.Seed()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 5))
	cfg := testConfigs[1]
	toks := randomTokens(rng, []int{71}, cfg.VocabSize)[0]
	ctx, stride, batch := 20, 7, 3
	wins := PerplexityWindows(toks, ctx, stride)
	for _, b := range []gpu.Backend{ref.New(), w} {
		m := newModel(t, b, cfg, seed, gpu.F32)
		base, err := m.Perplexity(toks, ctx, stride, batch, nil)
		if err != nil {
			t.Fatal(err)
		}
		if base.Windows != len(wins) {
			t.Fatalf("%d windows, PerplexityWindows gives %d", base.Windows, len(wins))
		}
		calls, releases := 0, 0
		tied := func(first int, ws [][]int32) (Adapter, func(), error) {
			if first != calls*batch || len(ws) != min(batch, len(wins)-first) {
				t.Errorf("batch %d: first %d with %d windows", calls, first, len(ws))
			}
			for i, s := range ws {
				if !equalInts(s, wins[first+i]) {
					t.Errorf("batch %d window %d differs from PerplexityWindows", calls, i)
				}
			}
			calls++
			return HeadFunc(func(dst, h gpu.Tensor, seq []int32) error {
				m.B.MatMul(dst, h, m.W.Wte, nil)
				return nil
			}), func() { releases++ }, nil
		}
		got, err := m.PerplexityWith(toks, PerplexityOptions{Context: ctx, Stride: stride, Batch: batch, Adapters: tied})
		if err != nil {
			t.Fatal(err)
		}
		if want := (len(wins) + batch - 1) / batch; calls != want || releases != want {
			t.Errorf("%s: %d head calls and %d releases, want %d", b.Name(), calls, releases, want)
		}
		if got.Tokens != base.Tokens || math.Abs(got.NLL-base.NLL) > 1e-5*base.NLL {
			t.Errorf("%s: tied head gives %+v, no head %+v", b.Name(), got, base)
		}
		zero := gpu.Must(b.Alloc(gpu.F32, cfg.VocabSize, cfg.NEmbd))
		if err := b.Write(zero, make([]float32, cfg.VocabSize*cfg.NEmbd)); err != nil {
			t.Fatal(err)
		}
		flat := func(int, [][]int32) (Adapter, func(), error) {
			return HeadFunc(func(dst, h gpu.Tensor, seq []int32) error {
				m.B.MatMul(dst, h, zero, nil)
				return nil
			}), nil, nil
		}
		got, err = m.PerplexityWith(toks, PerplexityOptions{Context: ctx, Stride: stride, Batch: batch, Adapters: flat})
		if err != nil {
			t.Fatal(err)
		}
		if want := float64(got.Tokens) * math.Log(float64(cfg.VocabSize)); math.Abs(got.NLL-want) > 1e-4*want {
			t.Errorf("%s: zero head NLL %g, want %g", b.Name(), got.NLL, want)
		}
		b.Free(zero)
		// A failing head stops the run with its error.
		_, err = m.PerplexityWith(toks, PerplexityOptions{Context: ctx, Stride: stride, Batch: batch,
			Adapters: func(int, [][]int32) (Adapter, func(), error) { return nil, nil, errBoom }})
		if err != errBoom {
			t.Errorf("head error: got %v", err)
		}
	}
}

// TestScore checks per-sequence scores of a ragged batch against the
// direct host computation, and the start positions.
func TestScore(t *testing.T) {
	w := gputest.Backend(t)
	seed := conformance.Seed()
	rng := rand.New(rand.NewPCG(seed, 6))
	cfg := testConfigs[0]
	seqs := randomTokens(rng, []int{5, 2, 17, 9}, cfg.VocabSize)
	rm := newModel(t, ref.New(), cfg, seed, gpu.F32)
	for _, b := range []gpu.Backend{ref.New(), w} {
		m := newModel(t, b, cfg, seed, gpu.F32)
		from := []int{1, 1, 10, 4}
		got, err := m.Score(seqs, from, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range seqs {
			// Scoring from position f is the sliding window with one window.
			wantAll, n := directNLL(t, rm, s, len(s), len(s))
			if from[i] == 1 && (got[i].Tokens != n || math.Abs(got[i].NLL-wantAll) > 1e-4*wantAll) {
				t.Errorf("%s seq %d: %+v, want nll %g over %d", b.Name(), i, got[i], wantAll, n)
			}
			if f := from[i]; f >= 2 {
				// Causal: the prefix's own score is the part not counted.
				pre, _ := directNLL(t, rm, s[:f], f, f)
				if want := wantAll - pre; math.Abs(got[i].NLL-want) > 1e-4*wantAll {
					t.Errorf("%s seq %d from %d: nll %g, want %g", b.Name(), i, f, got[i].NLL, want)
				}
			}
			if got[i].Tokens != len(s)-from[i] {
				t.Errorf("%s seq %d: scored %d tokens, want %d", b.Name(), i, got[i].Tokens, len(s)-from[i])
			}
		}
		if _, err := m.Score([][]int32{{1}}, nil, nil); err == nil {
			t.Error("a one-token sequence accepted")
		}
		if _, err := m.Score(seqs, []int{1}, nil); err == nil {
			t.Error("mismatched start positions accepted")
		}
		if _, err := m.Score(seqs[:1], []int{6}, nil); err == nil {
			t.Error("start past the end accepted")
		}
	}
}

var errBoom = errors.New("boom")

func equalInts(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
