package adapt

import (
	"math"
	"slices"
	"testing"

	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/model/tokenizer"
)

// TestCacheGenerate: greedy generation through CacheAdapter picks, at
// every step, the argmax of the mixture computed on the host from the
// plan's own logits and hidden states (no cache) of the whole context so
// far, with the context's counts and keys, the pool's prompts and the
// plan's chosen weights (cacheHost.mixture, token and neural caches);
// both backends generate the same tokens; a forward asking for several
// logits rows of one sequence is refused.
//
// (Over 80 lines: one generation per backend, then the host mixture
// recomputed at every step of every prompt, then the refusal.)
func TestCacheGenerate(t *testing.T) {
	f := newRTFixture(t)
	a := f.hyperAdapter(t, nil)
	prompts, _ := f.prompts(7, 3)
	prompts[0] = append(prompts[0], prompts[3]...) // every prompt has a loss to choose weights on
	tok, err := tokenizer.NewGPT2()
	if err != nil {
		t.Fatal(err)
	}
	v := rtCfg.VocabSize
	cfg := UniformCache(v)
	// No zero weight: every prompt that shares its pool mixes it in (a
	// prompt alone in its pool has none to mix), so the host check below
	// covers the pools whatever the random losses prefer (with 0 in the
	// grid, some seeds chose no pool at all).
	cfg.Grid = slices.DeleteFunc(slices.Clone(cfg.Grid), func(w float64) bool { return w == 0 })
	var gens [][][]int32
	for _, name := range []string{"ref", "webgpu"} {
		m := f.models[name]
		rt, err := NewRuntime(m, a)
		if err != nil {
			t.Fatal(err)
		}
		p, err := rt.Plan(prompts, PlanOptions{K: 3, Seed: 2})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.CacheAdapter(nil); err == nil {
			t.Fatal("CacheAdapter before EnableCache: no error")
		}
		if err := p.EnableCache(prompts, cfg, 4); err != nil {
			t.Fatal(err)
		}
		ad, err := p.CacheAdapter(nil)
		if err != nil {
			t.Fatal(err)
		}
		out, err := m.Generate(tok, prompts, model.GenerateOptions{MaxTokens: 5, Adapter: ad})
		if err != nil {
			t.Fatal(err)
		}
		anyPool := false
		host := newCacheHost(t, m, p, prompts, cfg)
		var toks [][]int32
		for i, g := range out {
			_, w, ok := p.CacheWeightsOf(i)
			if !ok {
				t.Fatal("no cache weights")
			}
			anyPool = anyPool || w.Pool > 0 || w.NeuralPool > 0
			t.Logf("%s prompt %d: weights %+v", name, i, w)
			ctx := slices.Clone(prompts[i])
			for step, id := range g.Tokens {
				mix := host.mixture(t, i, ctx, w)
				bestY := 0
				for y, l := range mix {
					if l > mix[bestY] {
						bestY = y
					}
				}
				if int32(bestY) != id && mix[bestY]-mix[id] > 1e-4 {
					t.Fatalf("%s prompt %d step %d: generated %d (log p' %.5f), the host mixture's argmax is %d (%.5f); weights %+v", name, i, step, id, mix[id], bestY, mix[bestY], w)
				}
				ctx = append(ctx, id)
			}
			toks = append(toks, g.Tokens)
		}
		if !anyPool {
			t.Errorf("%s: no pool chose a weight, from a grid without 0", name)
		}
		if _, err := m.Score(prompts[1:3], nil, ad); err == nil {
			t.Errorf("%s: scoring every position through the cache: no error", name)
		}
		// The refused forward's tokens were not counted: every sequence's
		// own counts still hold exactly its prompt and the generated tokens
		// that went through the model.
		for i, g := range out {
			want := len(prompts[i]) + len(g.Tokens) - 1 // the last generated token never went through the model
			if got := p.cache.own[i].Total; int(got) != want {
				t.Errorf("%s prompt %d: own counts hold %v tokens, want %d", name, i, got, want)
			}
		}
		gens = append(gens, toks)
		p.Free()
		rt.Free()
	}
	for i := range gens[0] {
		if !slices.Equal(gens[0][i], gens[1][i]) {
			t.Errorf("prompt %d: ref %v, webgpu %v", i, gens[0][i], gens[1][i])
		}
	}
}

// TestCacheHeldOut: each prompt's cache loss from the plan is the mixture
// recomputed here from the plan's own per-position losses, with its pool
// rebuilt from the other members' prompts (never itself); the plan's
// weights are those chosen from the same losses; losses given to
// EnableCacheLosses that are too short are refused. Random prompts do not
// always give a pool a weight (the check would then show nothing of the
// pool): prompts are drawn again, at most 8 times, until one does.
func TestCacheHeldOut(t *testing.T) {
	f := newRTFixture(t)
	a := f.hyperAdapter(t, nil)
	for draw := 1; ; draw++ {
		prompts, _ := f.prompts(7, 3)
		mixed, pooled := checkCacheHeldOut(t, f, a, prompts)
		if mixed && pooled {
			return
		}
		if draw == 8 {
			t.Fatalf("%d draws of prompts: no prompt's loss moved under the cache (%v) or no pool has a weight (%v): the test shows nothing", draw, mixed, pooled)
		}
	}
}

// checkCacheHeldOut is TestCacheHeldOut on one draw of prompts: whether
// some prompt's loss moved under the cache, and whether some pool has a
// weight.
//
// (Over 80 lines: the plan and its losses computed here, then every
// prompt's mixture rebuilt and its pool's weights chosen again.)
func checkCacheHeldOut(t *testing.T, f *rtFixture, a *Adapter, prompts [][]int32) (mixed, pooled bool) {
	t.Helper()
	m := f.models["ref"]
	rt, err := NewRuntime(m, a)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Free()
	p, err := rt.Plan(prompts, PlanOptions{K: 3, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Free()
	if _, err := p.CacheHeldOut(); err == nil {
		t.Fatal("CacheHeldOut before EnableCache: no error")
	}
	cfg := UniformCache(rtCfg.VocabSize)
	short := make([][]float32, len(prompts))
	if err := p.EnableCacheLosses(prompts, short, cfg, 4); err == nil {
		t.Fatal("missing losses: no error")
	}
	var scored []int
	var ss [][]int32
	for i, s := range prompts {
		if len(s) >= 2 {
			scored, ss = append(scored, i), append(ss, s)
		}
	}
	sc, err := m.Score(ss, nil, p.AdapterOf(scored, nil))
	if err != nil {
		t.Fatal(err)
	}
	lp := make([][]float32, len(prompts))
	base := make([]float64, len(prompts))
	for j, i := range scored {
		lp[i], base[i] = sc[j].Losses, sc[j].NLL
	}
	if err := p.EnableCache(prompts, cfg, 4); err != nil {
		t.Fatal(err)
	}
	if err := p.EnableCacheLosses(prompts, lp, cfg, 4); err != nil { // the token cache alone
		t.Fatal(err)
	}
	got, err := p.CacheHeldOut()
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range prompts {
		g, w, _ := p.CacheWeightsOf(i)
		others := &TokenCounts{}
		var members [][]int32
		var memberLP [][]float32
		for j := range prompts {
			if gj, _, _ := p.CacheWeightsOf(j); gj == g {
				members, memberLP = append(members, prompts[j]), append(memberLP, lp[j])
				if j != i {
					others.Add(prompts[j]...)
				}
			}
		}
		if len(s) < 2 {
			if got[i] != 0 {
				t.Errorf("prompt %d of one token: cache loss %v", i, got[i])
			}
			continue
		}
		want, _ := w.SequenceLoss(s, lp[i], 0, len(s)-1, others, cfg)
		if math.Abs(got[i]-want) > 1e-6*math.Max(1, math.Abs(want)) {
			t.Errorf("prompt %d: cache loss %.6f, recomputed %.6f", i, got[i], want)
		}
		if w.Own+w.Pool > 0 && math.Abs(base[i]-got[i]) > 1e-3 {
			mixed = true
		}
		pooled = pooled || w.Pool > 0
		if chosen, err := ChooseCacheWeights(members, padLosses(members, memberLP), true, cfg); err != nil || chosen != w {
			t.Errorf("prompt %d: plan weights %+v, chosen from the same losses %+v (%v)", i, w, chosen, err)
		}
	}
	return mixed, pooled
}
