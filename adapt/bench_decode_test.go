package adapt

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/model"
)

// BenchmarkSitesDecode measures an adapted decode step of the default
// model's shape (sitesCfg, random weights) with generated updates at all
// four block sites of every layer (rank 8, two clusters, every fourth
// sequence unadapted: cluster -1): 8 sequences of a 64-token prompt, one
// token each, the logits read back. Per weight type (Q8_0, f32) and matmul
// variant (the cooperative and plain mat-vecs forced, the GPUs' decode
// kernels, and the adapter's default) each round runs, in an order that
// rotates from round to round, the plain step, the adapted step with each
// site's expand apart from its matmul ("separate",
// Runtime.SeparateSiteExpand; CHAMELEON_SEPARATE_EXPAND=1 in the CLI) and
// fused into it ("fused"). It reports the medians of the rounds'
// milliseconds, what the adapted steps add to the plain one in percent,
// and fused-vs-separate, the median of the rounds' fused/separate time
// ratios, by wall clock and by process CPU time.
//
// (Over 80 lines: the model, plan and cache of a weight type are shared
// by its variants' timed closures.)
func BenchmarkSitesDecode(b *testing.B) {
	w := gputest.Backend(b)
	const seqs, prompt = 8, 64
	host := model.RandomInit(sitesCfg, 3)
	rng := rand.New(rand.NewPCG(8, 64))
	prompts, next := make([][]int32, seqs), make([][]int32, seqs)
	on := make([]bool, seqs)
	for i := range prompts {
		for range prompt {
			prompts[i] = append(prompts[i], int32(rng.IntN(sitesCfg.VocabSize)))
		}
		next[i] = []int32{int32(rng.IntN(sitesCfg.VocabSize))}
		on[i] = i%4 != 3
	}
	variant := w.MatMulVariant
	defer func() { w.MatMulVariant = variant }()
	for _, dt := range []gpu.DType{gpu.Q8_0, gpu.F32} {
		wt, err := model.Upload(w, sitesCfg, host, dt)
		if err != nil {
			b.Fatal(err)
		}
		m := &model.Model{Cfg: sitesCfg, W: wt, B: w}
		base, err := BaseOfModel(m)
		if err != nil {
			b.Fatal(err)
		}
		rt, err := NewRuntime(m, randomSitesAdapter(b, base, 8, "attn.qkv,attn.proj,mlp.fc,mlp.fc2"))
		if err != nil {
			b.Fatal(err)
		}
		plan, err := rt.Plan(prompts, PlanOptions{K: 2, Seed: 2})
		if err != nil {
			b.Fatal(err)
		}
		cache, err := m.NewCache(seqs, prompt+1)
		if err != nil {
			b.Fatal(err)
		}
		ad := plan.Adapter(on)
		forward := func(toks [][]int32, a model.Adapter) {
			lg, err := m.ForwardAdapted(cache, toks, true, a)
			if err == nil {
				_, err = w.ReadF32(lg)
				w.Free(lg)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		forward(prompts, ad) // the prompts' keys and values, once
		step := func(a model.Adapter) {
			for i := range cache.Len {
				cache.Len[i] = prompt
			}
			forward(next, a)
		}
		runs := []struct {
			name string
			run  func()
		}{
			{"base", func() { step(nil) }},
			{"separate", func() { rt.SeparateSiteExpand = true; step(ad) }},
			{"fused", func() { rt.SeparateSiteExpand = false; step(ad) }},
		}
		for _, v := range []string{gpu.MatMulCoop, gpu.MatMulGemv, variant} {
			b.Run(fmt.Sprintf("%v/%s", dt, v), func(b *testing.B) {
				w.MatMulVariant = v
				wall := make([][]float64, len(runs))
				cpu := make([][]float64, len(runs))
				round := func(r int, timed bool) {
					for k := range runs {
						i := (k + r) % len(runs)
						t0, c0 := time.Now(), cpuSeconds()
						runs[i].run()
						if timed {
							wall[i] = append(wall[i], time.Since(t0).Seconds())
							cpu[i] = append(cpu[i], cpuSeconds()-c0)
						}
					}
				}
				round(0, false) // compile pipelines, copy textures
				b.ResetTimer()
				for r := 0; r < b.N; r++ {
					round(r, true)
				}
				for i, x := range runs {
					b.ReportMetric(1e3*median(wall[i]), x.name+"-ms")
					if i > 0 {
						b.ReportMetric(medianAdded(wall[i], wall[0]), x.name+"-added-%")
						b.ReportMetric(medianAdded(cpu[i], cpu[0]), x.name+"-added-cpu-%")
					}
				}
				b.ReportMetric(medianRatio(wall[2], wall[1]), "fused-vs-separate")
				b.ReportMetric(medianRatio(cpu[2], cpu[1]), "fused-vs-separate-cpu")
			})
		}
		m.FreeCache(cache)
		plan.Free()
		rt.Free()
		wt.Free(w)
	}
}

// median is the median of x (which it sorts a copy of).
func median(x []float64) float64 {
	s := slices.Clone(x)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// medianRatio is the median of x[i] / y[i].
func medianRatio(x, y []float64) float64 {
	r := make([]float64, len(x))
	for i := range x {
		r[i] = x[i] / y[i]
	}
	return median(r)
}
