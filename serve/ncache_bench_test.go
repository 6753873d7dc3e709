package serve

import (
	"math/rand/v2"
	"testing"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/model"
)

// BenchmarkCacheStep is the cache's part of one decode step with 8 slots,
// each installed with a pool of 2048 prompt tokens and, with the neural
// cache, the default bound's 2048 pool keys and a prompt of 128 own keys:
// LogSoftmax and CacheMix ("token"), then NeuralMix too ("neural"); the
// model's forward is not included. At GPT-2's head (V = 50257, C = 768)
// and the embedded default model's (V = 4096, C = 256). Run the two in
// turn (-count) and compare.
func BenchmarkCacheStep(b *testing.B) {
	def := model.Config{VocabSize: 4096, NCtx: 256, NEmbd: 256, NHead: 8, NLayer: 6, LNEps: 1e-5}
	for _, shape := range []struct {
		name string
		cfg  model.Config
	}{{"gpt2", model.Configs["gpt2"]}, {"default", def}} {
		b.Run(shape.name, func(b *testing.B) { benchCacheStep(b, shape.cfg) })
	}
}

func benchCacheStep(b *testing.B, cfg model.Config) {
	be := gputest.Backend(b)
	const slots, promptLen, poolKeys = 8, 129, adapt.DefaultMemoryKeys
	rng := rand.New(rand.NewPCG(1, 2))
	rnd := func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		return x
	}
	for _, neural := range []bool{false, true} {
		name := map[bool]string{false: "token", true: "neural"}[neural]
		b.Run(name, func(b *testing.B) {
			opt := Options{Slots: slots, Cache: true, CacheNeural: neural}.withDefaults(cfg)
			tc, err := newTokenCache(Base{&model.Model{Cfg: cfg, B: be}}, opt)
			if err != nil {
				b.Fatal(err)
			}
			defer tc.free()
			pool := &adapt.TokenCounts{}
			keys := &adapt.NeuralKeys{C: cfg.NEmbd}
			for range poolKeys {
				t := int32(rng.IntN(cfg.VocabSize))
				pool.Add(t)
				if err := keys.Add(adapt.UnitRows(rnd(cfg.NEmbd), cfg.NEmbd), []int32{t}); err != nil {
					b.Fatal(err)
				}
			}
			prompt := make([]int32, promptLen)
			for i := range prompt {
				prompt[i] = int32(rng.IntN(cfg.VocabSize))
			}
			w := adapt.CacheWeights{Own: 0.1, Pool: 0.1, NeuralOwn: 0.2, NeuralPool: 0.3, Theta: 10}
			snap := &cacheSnap{snap: adapt.MemorySnapshot{Pool: pool, Keys: keys, Weights: w}, hid: adapt.UnitRows(rnd((promptLen-1)*cfg.NEmbd), cfg.NEmbd)}
			if !neural {
				snap.snap.Keys, snap.snap.Weights = nil, adapt.CacheWeights{Own: 0.1, Pool: 0.1}
			}
			for s := range slots {
				if err := tc.install(s, prompt, snap); err != nil {
					b.Fatal(err)
				}
			}
			logits := gpu.Must(be.Alloc(gpu.F32, slots, cfg.VocabSize))
			defer be.Free(logits)
			if err := be.Write(logits, rnd(slots*cfg.VocabSize)); err != nil {
				b.Fatal(err)
			}
			if neural {
				if err := be.Write(tc.nc.hidT, rnd(slots*cfg.NEmbd)); err != nil {
					b.Fatal(err)
				}
			}
			tokens := make([][]int32, slots)
			for s := range tokens {
				tokens[s] = prompt // the prompt first, then one token a step
			}
			step := func() {
				dst, err := tc.mix(logits, tokens)
				if err != nil {
					b.Fatal(err)
				}
				be.Free(dst)
				if err := be.Flush(); err != nil {
					b.Fatal(err)
				}
				for s := range tokens {
					tokens[s] = []int32{int32(rng.IntN(cfg.VocabSize))}
				}
			}
			step()
			for b.Loop() {
				step()
			}
		})
	}
}
