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
// plan's own logits (no cache) of the whole context so far, with the
// context's counts, the pool's prompts and the plan's chosen weights; both
// backends generate the same tokens; a forward asking for several logits
// rows of one sequence is refused.
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
		var toks [][]int32
		for i, g := range out {
			gi, w, ok := p.CacheWeightsOf(i)
			if !ok {
				t.Fatal("no cache weights")
			}
			anyPool = anyPool || w.Pool > 0
			pool := &TokenCounts{}
			for j := range prompts {
				if pj, _, _ := p.CacheWeightsOf(j); pj == gi {
					pool.Add(prompts[j]...)
				}
			}
			ctx := slices.Clone(prompts[i])
			for step, id := range g.Tokens {
				lg := forwardWith(t, m, [][]int32{ctx}, p.AdapterFrom(i, nil))
				row := lg[(len(ctx)-1)*v : len(ctx)*v]
				mx := row[0]
				for _, x := range row {
					mx = max(mx, x)
				}
				sum := 0.0
				for _, x := range row {
					sum += math.Exp(float64(x - mx))
				}
				own := &TokenCounts{}
				own.Add(ctx...)
				best, bestY, got := math.Inf(-1), -1, 0.0
				for y := range v {
					pr := (1 - w.Own - w.Pool) * math.Exp(float64(row[y]-mx)) / sum
					pr += w.Own*own.Prob(int32(y), cfg) + w.Pool*pool.Prob(int32(y), cfg)
					if l := math.Log(pr); l > best {
						best, bestY = l, y
					}
					if int32(y) == id {
						got = math.Log(pr)
					}
				}
				if int32(bestY) != id && best-got > 1e-4 {
					t.Fatalf("%s prompt %d step %d: generated %d (log p' %.5f), the host mixture's argmax is %d (%.5f); weights %+v", name, i, step, id, got, bestY, best, w)
				}
				ctx = append(ctx, id)
			}
			toks = append(toks, g.Tokens)
		}
		if !anyPool {
			t.Errorf("%s: no pool chose a weight, though each group's prompts share three token ids", name)
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
