package adapt

import (
	"math"
	"testing"

	"github.com/chameleon-llm/chameleon/model"
)

// TestCacheHeldOutNeural: with the neural cache (EnableCacheScored on the
// plan's own scores and hidden states), each prompt's CacheHeldOut loss is
// the sum over its positions of the host mixture's loss of the next token
// (its own counts and keys its tokens so far, its pools the other members'
// prompts, never itself); EnableCacheScored chooses the weights that
// EnableCache does; hidden states of the wrong shape are refused. Both
// backends.
//
// (Over 80 lines: per backend the plan, its scores and the refusal, then
// every prompt's positions recomputed on the host.)
func TestCacheHeldOutNeural(t *testing.T) {
	f := newRTFixture(t)
	a := f.hyperAdapter(t, nil)
	prompts, _ := f.prompts(7, 3)
	prompts[0] = append(prompts[0], prompts[3]...)
	cfg := UniformCache(rtCfg.VocabSize)
	for _, name := range []string{"ref", "webgpu"} {
		m, p := f.models[name], f.plan(t, name, a, prompts)
		if err := p.EnableCache(prompts, cfg, 4); err != nil {
			t.Fatal(err)
		}
		var self []CacheWeights
		for i := range prompts {
			_, w, _ := p.CacheWeightsOf(i)
			self = append(self, w)
		}
		var scored []int // prompts of one token have no scores and no hidden states
		var ss [][]int32
		for i, s := range prompts {
			if len(s) >= 2 {
				scored, ss = append(scored, i), append(ss, s)
			}
		}
		sc, h, err := ScoreHiddenChunked(m, ss, func(first, end int) model.Adapter { return p.AdapterOf(scored[first:end], nil) })
		if err != nil {
			t.Fatal(err)
		}
		lp, hid := make([][]float32, len(prompts)), make([][]float32, len(prompts))
		for j, i := range scored {
			lp[i], hid[i] = sc[j].Losses, h[j]
		}
		bad := append([][]float32(nil), hid...)
		bad[0] = bad[0][:len(bad[0])-1] // prompt 0 has at least two tokens
		if err := p.EnableCacheScored(prompts, lp, bad, cfg, 4); err == nil {
			t.Fatalf("%s: a hidden-state row one value short: no error", name)
		}
		if err := p.EnableCacheScored(prompts, lp, hid, cfg, 4); err != nil {
			t.Fatal(err)
		}
		got, err := p.CacheHeldOut()
		if err != nil {
			t.Fatal(err)
		}
		host := newCacheHost(t, m, p, prompts, cfg)
		host.heldOut = true
		neural := false
		for i, s := range prompts {
			_, w, _ := p.CacheWeightsOf(i)
			if w != self[i] {
				t.Errorf("%s prompt %d: weights %+v from EnableCacheScored, %+v from EnableCache", name, i, w, self[i])
			}
			neural = neural || w.NeuralOwn+w.NeuralPool > 0
			if len(s) < 2 {
				if got[i] != 0 {
					t.Errorf("%s prompt %d of one token: held-out loss %v", name, i, got[i])
				}
				continue
			}
			want := 0.0
			for j := 1; j < len(s); j++ {
				want -= host.mixture(t, i, s[:j], w)[s[j]]
			}
			if math.Abs(got[i]-want) > 2e-4*math.Max(1, math.Abs(want)) {
				t.Errorf("%s prompt %d: held-out cache loss %.5f, host mixture %.5f (weights %+v)", name, i, got[i], want, w)
			}
		}
		if !neural {
			t.Errorf("%s: no pool chose a neural weight: the test shows nothing of the neural cache", name)
		}
	}
}
