package serve

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/gpu/ref"
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
// Served on WebGPU and on the reference backend, and with short prefill
// chunks (the rows of a partial prompt skip the neural mix, and the row of
// its last chunk writes its first query key).
func TestNeuralCacheServedMatchesHostMixture(t *testing.T) {
	t.Run("one prefill chunk", func(t *testing.T) { neuralHostMixture(t, gputest.Backend(t), 0) })
	t.Run("prefill chunks of 3", func(t *testing.T) { neuralHostMixture(t, gputest.Backend(t), 3) })
	t.Run("reference backend", func(t *testing.T) { neuralHostMixture(t, ref.New(), 0) })
}

// neuralHostMixture is TestNeuralCacheServedMatchesHostMixture served on
// be with prefill chunks of chunk tokens (0: the default).
//
// Over 80 lines: per request, the snapshot and weights' check, then the
// reference greedy under the host mixture and its neural-free alternative.
func neuralHostMixture(t *testing.T, be gpu.Backend, chunk int) {
	m, tok := tinyModel(t, be)
	_, url := testServer(t, Base{m}, tok, Options{Slots: 2, Cache: true, CacheNeural: true, PrefillChunk: chunk})
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

// neuralGated is a gated model that runs the neural cache through nm.
type neuralGated struct {
	*gated
	nm NeuralModel
}

func (c neuralGated) PromptLosses(p [][]int32, ad []Adapter) ([][]float32, error) {
	return c.nm.PromptLosses(p, ad)
}
func (c neuralGated) PromptHidden(p [][]int32, ad []Adapter) ([][]float32, [][]float32, error) {
	return c.nm.PromptHidden(p, ad)
}
func (c neuralGated) MemoryKeys(p [][]int32, ad []Adapter) ([]int, [][]float32, error) {
	return c.nm.MemoryKeys(p, ad)
}
func (c neuralGated) MemoryRadius() float64 { return c.nm.MemoryRadius() }
func (c neuralGated) ForwardLastHidden(k *model.Cache, tokens [][]int32, ad []Adapter, hidden gpu.Tensor) (gpu.Tensor, error) {
	if err := c.step(); err != nil {
		return nil, err
	}
	return c.nm.ForwardLastHidden(k, tokens, ad, hidden)
}

// With the neural cache too, a request's output does not depend on its
// batch (TestCacheBatchInvariant's scenario): every row reads only its
// slot's key region.
func TestNeuralCacheBatchInvariant(t *testing.T) { cacheBatchInvariant(t, true) }

// An adapted server with the neural cache (gated hyper adapter: run-time
// clusters; its pass under the hidden-state copy) reports each choice's
// neural weights, and a pool keeps at most CacheKeys keys, its oldest
// prompts evicted, the newest kept even when longer; bad options and
// sizes the device cannot hold are refused at start, naming what to
// change.
//
// Over 80 lines: the bounded pool's table, then the refusals.
func TestNeuralCacheAdaptiveBounded(t *testing.T) {
	be := gputest.Backend(t)
	m, tok := tinyModel(t, be)
	a := testHyper(t, m, 4, 7)
	gatedA := *a
	if err := gatedA.SetGate(&adapt.Gate{Radius: 1e-6}); err != nil {
		t.Fatal(err)
	}
	ad := newAdaptive(t, m, &gatedA, AdaptOptions{})
	const maxKeys = 12
	s, url := testServer(t, ad, tok, Options{Slots: 2, Cache: true, CacheNeural: true, CacheKeys: maxKeys, CacheClusters: 1, CacheRadius: 100})
	var kept [][]int32 // the pool's prompts, oldest first
	neural := false
	for i, p := range []string{cachePrompts[0], cachePrompts[0], cachePrompts[0], cachePrompts[0], "red " + cachePrompts[0] + " " + cachePrompts[1]} {
		ids := tok.Encode(p)
		r := post(context.Background(), t, url, cacheReq(p))
		if r.Status != 200 {
			t.Fatalf("request %d: %d %s", i, r.Status, r.Body)
		}
		e := r.C.Choices[0].Chameleon
		keys := 0
		for _, k := range kept {
			keys += len(k) - 1
		}
		if e == nil || e.Cache == nil || e.Cache.Pool != "run-time cluster 0" || e.Cache.PoolPrompts != len(kept) || e.Cache.PoolKeys != keys {
			t.Fatalf("request %d: extension %s, want run-time cluster 0 with %d prompts and %d keys", i, mustJSON(e), len(kept), keys)
		}
		if w := e.Cache; (w.NeuralOwn > 0 || w.NeuralPool > 0) != (w.Theta > 0) {
			t.Fatalf("request %d: neural weights %g, %g with theta %g", i, w.NeuralOwn, w.NeuralPool, w.Theta)
		}
		neural = neural || e.Cache.NeuralOwn > 0 || e.Cache.NeuralPool > 0
		kept, keys = append(kept, ids), keys+len(ids)-1
		for len(kept) > 1 && keys > maxKeys {
			keys -= len(kept[0]) - 1
			kept = kept[1:]
		}
		if st := s.Scheduler().Stats(); st.Memory == nil || st.Memory.Keys != keys || st.Memory.Prompts != len(kept) {
			t.Fatalf("request %d: memory %+v, want %d keys of %d prompts", i, st.Memory, keys, len(kept))
		}
	}
	if len(kept) != 1 || !neural {
		t.Errorf("the long prompt should be kept alone (%d prompts kept), and some request mixed the neural cache (%v)", len(kept), neural)
	}

	rm := refTiny(t)
	for _, c := range []struct {
		m    Model
		opt  Options
		want string
	}{
		{Base{rm}, Options{CacheNeural: true}, "set Options.Cache"},
		{Base{rm}, Options{Cache: true, CacheKeys: 10}, "set Options.CacheNeural"},
		{Base{rm}, Options{Cache: true, CacheNeural: true, CacheKeys: -1}, "CacheKeys"},
		{cacheGated{newGated(Base{rm}, false), Base{rm}}, Options{Cache: true, CacheNeural: true}, "cannot give its hidden states"},
		{Base{rm}, Options{Slots: 1, Cache: true, CacheNeural: true, CacheKeys: 300000}, "storage binding"},
		{Base{rm}, Options{Slots: 1, Cache: true, CacheNeural: true, CacheKeys: 50000}, "loop iterations"},
	} {
		if _, err := New(c.m, tok, c.opt); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one naming %q", c.opt, err, c.want)
		}
	}
}

// unitRow is x scaled to unit length.
func unitRow(x []float32) []float32 { return adapt.UnitRows(x, len(x)) }

// Adaptive's hidden states are its adapted forward's: PromptHidden's rows
// and ForwardLastHidden's copy of the last position equal the reference
// backend's through the same centroid's plan (an adapter with block sites,
// which move the hidden states), the base model's with adaptation off, and
// ForwardLastHidden's logits equal ForwardLast's.
//
// Over 80 lines: the served side, the reference side, then the three
// comparisons.
func TestAdaptiveHiddenStates(t *testing.T) {
	be := gputest.Backend(t)
	m, tok := tinyModel(t, be)
	a := testHyper(t, m, 4, 7, model.SiteQKV, model.SiteFC2)
	ad := newAdaptive(t, m, a, AdaptOptions{})
	c := m.Cfg.NEmbd
	prompts := [][]int32{tok.Encode(adaptPrompts[0]), tok.Encode(adaptPrompts[1])}
	cl, err := ad.RT.AssignCentroids(prompts[:1])
	if err != nil {
		t.Fatal(err)
	}
	ads := []Adapter{{On: true, Cluster: cl[0]}, {On: false, Cluster: -1}}
	_, hid, err := ad.PromptHidden(prompts, ads)
	if err != nil {
		t.Fatal(err)
	}
	cache, err := ad.NewCache(2, 64)
	if err != nil {
		t.Fatal(err)
	}
	defer ad.FreeCache(cache)
	hT := gpu.Must(be.Alloc(gpu.F32, 2, c))
	defer be.Free(hT)
	lt, err := ad.ForwardLastHidden(cache, prompts, ads, hT)
	if err != nil {
		t.Fatal(err)
	}
	logits, err := be.ReadF32(lt)
	be.Free(lt)
	if err != nil {
		t.Fatal(err)
	}
	last, err := be.ReadF32(hT)
	if err != nil {
		t.Fatal(err)
	}
	cache2, err := ad.NewCache(2, 64)
	if err != nil {
		t.Fatal(err)
	}
	defer ad.FreeCache(cache2)
	lt2, err := ad.ForwardLast(cache2, prompts, ads)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := be.ReadF32(lt2)
	be.Free(lt2)
	if err != nil {
		t.Fatal(err)
	}

	rm := refTiny(t)
	rrt, err := adapt.NewRuntime(rm, a)
	if err != nil {
		t.Fatal(err)
	}
	defer rrt.Free()
	plan, err := rrt.CentroidPlan(1)
	if err != nil {
		t.Fatal(err)
	}
	defer plan.Free()
	if err := plan.SetClusters([]int{cl[0]}); err != nil {
		t.Fatal(err)
	}
	ext := func(p []int32) [][]int32 { return [][]int32{append(p[:len(p):len(p)], 0)} } // every position's hidden state
	_, want0, err := adapt.ScoreHidden(rm, ext(prompts[0]), plan.Adapter(nil))
	if err != nil {
		t.Fatal(err)
	}
	_, base0, err := adapt.ScoreHidden(rm, ext(prompts[0]), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, want1, err := adapt.ScoreHidden(rm, ext(prompts[1]), nil)
	if err != nil {
		t.Fatal(err)
	}
	moved := false
	for i, want := range [][]float32{want0[0], want1[0]} {
		l := len(prompts[i])
		check := func(what string, got, w []float32) {
			for j := range w {
				if math.Abs(float64(got[j]-w[j])) > 2e-3 {
					t.Fatalf("prompt %d, %s: value %d is %v, reference %v", i, what, j, got[j], w[j])
				}
			}
		}
		check("PromptHidden", hid[i], want[:(l-1)*c])
		check("ForwardLastHidden's last position", unitRow(last[i*c:(i+1)*c]), want[(l-1)*c:l*c])
	}
	for j, w := range want0[0] {
		moved = moved || math.Abs(float64(w-base0[0][j])) > 1e-2
	}
	if !moved {
		t.Fatal("the block sites do not move the hidden states: the test cannot tell adapted from base")
	}
	for j, w := range plain {
		if math.Abs(float64(logits[j]-w)) > 1e-3*(1+math.Abs(float64(w))) {
			t.Fatalf("logit %d: %v with the copy, %v without", j, logits[j], w)
		}
	}
}

// For a self-checked adapter with hidden-state features and no block sites
// (the shipped default's kind), PromptHidden takes the hidden states and
// losses online Group's base pass kept instead of scoring the prompts
// again, and they are what that scoring forward gives.
func TestAdaptiveGroupHiddenReused(t *testing.T) {
	be := gputest.Backend(t)
	m, tok := tinyModel(t, be)
	a := testHyper(t, m, 4, 7)
	a.Meta.Features, a.Meta.SelfCheck = adapt.FeatureHidden, true
	ad := newAdaptive(t, m, a, AdaptOptions{})
	c := m.Cfg.NEmbd
	prompts := [][]int32{tok.Encode(adaptPrompts[0]), tok.Encode(adaptPrompts[1]), tok.Encode(adaptPrompts[2]), {7}}
	cl, err := ad.Group(prompts, nil)
	if err != nil {
		t.Fatal(err)
	}
	known := ad.grouped
	ads := make([]Adapter, len(prompts))
	for i := range ads {
		ads[i] = Adapter{On: true, Cluster: cl[i]}
	}
	lp, hid, err := ad.PromptHidden(prompts, ads)
	if err != nil {
		t.Fatal(err)
	}
	if ad.grouped != nil {
		t.Error("PromptHidden left Group's states for a later admission")
	}
	var wantLp, wantHid [][]float32
	err = ad.withClusters(prompts, ads, func(head func([]int) model.Adapter) (err error) {
		wantLp, wantHid, err = promptHidden(ad.M, prompts, head)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range prompts[:3] {
		g := known[&p[0]]
		if len(g.hid) == 0 || len(hid[i]) != (len(p)-1)*c || &hid[i][0] != &g.hid[0] || &lp[i][0] != &g.losses[0] {
			t.Fatalf("prompt %d: PromptHidden scored it again instead of taking Group's states", i)
		}
		for j, w := range wantHid[i] {
			if math.Abs(float64(hid[i][j]-w)) > 1e-4 {
				t.Fatalf("prompt %d value %d: Group's hidden state %v, the scoring forward's %v", i, j, hid[i][j], w)
			}
		}
		for j, w := range wantLp[i] {
			if math.Abs(float64(lp[i][j]-w)) > 1e-4*math.Max(1, float64(w)) {
				t.Fatalf("prompt %d position %d: Group's loss %v, the scoring forward's %v", i, j, lp[i][j], w)
			}
		}
	}
	if len(hid[3]) != 0 || len(lp[3]) != 0 {
		t.Errorf("the one-token prompt has %d hidden values and %d losses", len(hid[3]), len(lp[3]))
	}
}
