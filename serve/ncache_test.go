package serve

import (
	"context"
	"math"
	"testing"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/model"
)

// neuralKeys is q_n over the vocabulary (v) from keys (rows of width c)
// and their values for the unit query u at sharpness theta (nil: no keys).
func neuralDist(u, keys []float32, vals []int32, c, v int, theta float64) []float64 {
	if len(vals) == 0 {
		return nil
	}
	q := make([]float64, v)
	den := 0.0
	for k, y := range vals {
		dot := 0.0
		for i := range c {
			dot += float64(u[i]) * float64(keys[k*c+i])
		}
		e := math.Exp(theta * (dot - 1))
		q[y] += e
		den += e
	}
	for y := range q {
		q[y] /= den
	}
	return q
}

// hostNeuralMix is the full mixture (log p') of the log-probabilities lp:
// hostMix's token caches with w's token weights, then the neural caches
// qOwn and qPool (nil: no keys, the weight given back to p).
func hostNeuralMix(lp []float64, own, pool *adapt.TokenCounts, qOwn, qPool []float64, w adapt.CacheWeights, cfg adapt.CacheConfig) []float64 {
	c, d := w.NeuralOwn, w.NeuralPool
	if qOwn == nil {
		c = 0
	}
	if qPool == nil {
		d = 0
	}
	tok := hostMix(lp, own, pool, adapt.NeuralRescale(w, c, d), cfg)
	out := make([]float64, len(lp))
	for y := range lp {
		p := (1 - c - d) * math.Exp(tok[y])
		if c > 0 {
			p += c * qOwn[y]
		}
		if d > 0 {
			p += d * qPool[y]
		}
		out[y] = math.Log(p)
	}
	return out
}

// refHidden is the reference model's unit hidden states of seq at every
// position (L, C).
func refHidden(t *testing.T, m *model.Model, seq []int32) []float32 {
	t.Helper()
	_, h, err := adapt.ScoreHidden(m, [][]int32{append(seq[:len(seq):len(seq)], 0)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return h[0]
}

// A served greedy completion with the neural cache (base model: one global
// pool) gives each token the host mixture of the reference backend: its
// logits and hidden states of the whole context, own counts and own keys
// (its earlier positions, valued by the tokens that followed), the pool
// counts and keys of the earlier requests' prompts (never its own), and
// the four weights and theta chosen by leave-one-out over the pool with
// its prompt in, as its extension reports. At some step the mixture
// without the neural caches would have served another log-probability.
//
// Over 80 lines: per request, the snapshot and weights' check, then the
// reference greedy under the host mixture and its neural-free alternative.
func TestNeuralCacheServedMatchesHostMixture(t *testing.T) {
	be := gputest.Backend(t)
	m, tok := tinyModel(t, be)
	_, url := testServer(t, Base{m}, tok, Options{Slots: 2, Cache: true, CacheNeural: true})
	rm := refTiny(t)
	c, v := m.Cfg.NEmbd, m.Cfg.VocabSize
	cfg := adapt.UniformCache(v)
	const n = 5
	var hist []adapt.PoolPrompt
	var hl [][]float32
	differs, neural := false, false
	for i, p := range cachePrompts {
		ids := tok.Encode(p)
		r := post(context.Background(), t, url, map[string]any{"prompt": p, "max_tokens": n, "temperature": 0, "logprobs": 1})
		if r.Status != 200 {
			t.Fatalf("%q: %d %s", p, r.Status, r.Body)
		}
		ch := r.C.Choices[0]
		e := ch.Chameleon
		if e == nil || e.Cache == nil {
			t.Fatalf("%q: no cache in the extension: %s", p, r.Body)
		}
		sc, err := rm.Score([][]int32{ids}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		hid := refHidden(t, rm, ids)[:(len(ids)-1)*c]
		all := append(hist[:len(hist):len(hist)], adapt.PoolPrompt{Tokens: ids, Hidden: hid})
		lps := append(hl[:len(hl):len(hl)], sc[0].Losses)
		var terms []*adapt.MixTerms
		pool, poolKeys := &adapt.TokenCounts{}, &adapt.NeuralKeys{C: c}
		for a, pp := range all {
			var others []adapt.PoolPrompt
			for b, o := range all {
				if b != a {
					others = append(others, o)
				}
			}
			tm, err := adapt.PoolTerms(pp.Tokens, lps[a], pp.Hidden, len(pp.Tokens)-1, c, others, nil, cfg, adapt.DefaultThetas)
			if err != nil {
				t.Fatal(err)
			}
			terms = append(terms, tm)
			if a < len(hist) {
				pool.Add(pp.Tokens...)
				if err := poolKeys.Add(pp.Hidden, pp.Tokens[1:]); err != nil {
					t.Fatal(err)
				}
			}
		}
		multi := len(all) > 1
		w := adapt.ChooseMixWeights(terms, adapt.MixChoice{Own: true, Pool: multi, NeuralOwn: true, NeuralPool: multi}, cfg, adapt.DefaultThetas)
		got := adapt.CacheWeights{Own: e.Cache.Own, Pool: e.Cache.PoolWeight, NeuralOwn: e.Cache.NeuralOwn, NeuralPool: e.Cache.NeuralPool, Theta: e.Cache.Theta}
		w.ThetaIndex = 0
		if e.Cache.Pool != "global" || e.Cache.PoolPrompts != i || e.Cache.PoolKeys != poolKeys.Len() || got != w {
			t.Fatalf("%q: cache %s, want the global pool of %d prompts and %d keys with weights %+v", p, mustJSON(e.Cache), i, poolKeys.Len(), w)
		}
		t.Logf("%q: weights %+v", p, w)
		neural = neural || w.NeuralOwn > 0 || w.NeuralPool > 0
		seq := append([]int32(nil), ids...)
		for step := 0; step < len(ch.Logprobs.TokenLogprobs); step++ {
			lp := refLogProbs(t, rm, seq, nil)
			own := &adapt.TokenCounts{}
			own.Add(seq...)
			h := refHidden(t, rm, seq)
			l := len(seq)
			u := h[(l-1)*c : l*c]
			qOwn := neuralDist(u, h[:(l-1)*c], seq[1:], c, v, w.Theta)
			qPool := neuralDist(u, poolKeys.K, poolKeys.V, c, v, w.Theta)
			mix := hostNeuralMix(lp, own, pool, qOwn, qPool, w, cfg)
			best := argmax(mix)
			served := float64(*ch.Logprobs.TokenLogprobs[step])
			if math.Abs(served-mix[best]) > 2e-3 {
				t.Fatalf("%q token %d: served logprob %.5f, host mixture %.5f (weights %+v)", p, step, served, mix[best], w)
			}
			tokOnly := hostMix(lp, own, pool, adapt.CacheWeights{Own: w.Own, Pool: w.Pool}, cfg)
			if math.Abs(served-tokOnly[argmax(tokOnly)]) > 2e-3 {
				differs = true
			}
			if int32(best) == tok.EOT() {
				break
			}
			seq = append(seq, int32(best))
		}
		if want := string(tok.Decode(seq[len(ids):])); ch.Text != want {
			t.Errorf("%q: served %q, host greedy %q", p, ch.Text, want)
		}
		hist, hl = all, lps
	}
	if !neural || !differs {
		t.Errorf("neural weights chosen %v, a step served other than the token caches alone %v: the test cannot tell the neural cache apart", neural, differs)
	}
	keys := 0
	for _, h := range hist {
		keys += len(h.Tokens) - 1
	}
	if got := metricValue(t, url, "chameleon_cache_memory_keys"); got != float64(keys) {
		t.Errorf("memory keys %g, want %d", got, keys)
	}
}
