package adapt

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/model"
)

// sitesCfg is the default model's shape (defaults/model).
var sitesCfg = model.Config{VocabSize: 4096, NCtx: 256, NEmbd: 256, NHead: 8, NLayer: 6, LNEps: 1e-5}

// randomSitesAdapter is a rank-r hyper-network adapter for base that also
// generates updates of sites (comma-separated) at every layer, its weights
// drawn at random (for timing, where the values do not matter).
func randomSitesAdapter(b testing.TB, base Base, r int, sites string) *Adapter {
	return randomSitesAdapterStd(b, base, r, sites, 0.02)
}

// randomSitesAdapterStd is randomSitesAdapter with the site generators'
// weights drawn with standard deviation std.
func randomSitesAdapterStd(b testing.TB, base Base, r int, sites string, std float64) *Adapter {
	hc := DefaultHyper(base.Config.NEmbd, base.Config.VocabSize, r)
	meta := Meta{Kind: KindHyper, Rank: r, Alpha: hc.Alpha, Hidden: hc.Hidden, Dropout: hc.Dropout, Base: base,
		Sites: strings.Split(sites, ",")}
	a := &Adapter{Meta: meta, Tensors: InitHyper(hc, 1)}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, t := range meta.Spec()[len(a.Tensors):] {
		t.Data = randn(rng, gpu.Numel(t.Shape), std)
		a.Tensors = append(a.Tensors, t)
	}
	if err := a.Validate(); err != nil {
		b.Fatal(err)
	}
	return a
}

// sitesModel is a model of sitesCfg with random f32 weights on w, its
// identity, and 32 random sequences of 256 tokens.
func sitesModel(b *testing.B, w *gpu.WebGPU) (*model.Model, Base, [][]int32) {
	host := model.RandomInit(sitesCfg, 3)
	wt, err := model.Upload(w, sitesCfg, host, gpu.F32)
	if err != nil {
		b.Fatal(err)
	}
	m := &model.Model{Cfg: sitesCfg, W: wt, B: w}
	base, err := BaseOfModel(m)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(32, 256))
	toks := make([][]int32, 32)
	for i := range toks {
		toks[i] = make([]int32, 256)
		for j := range toks[i] {
			toks[i][j] = int32(rng.IntN(sitesCfg.VocabSize))
		}
	}
	return m, base, toks
}

// BenchmarkSitesForward measures what generated per-row updates of block
// sites at every layer add to a whole forward of the default model's shape
// (random f32 weights, batch 32 x 256, rank 8, two clusters), with the
// tiled update kernels, each site's expand apart from its matmul
// ("tiled", Runtime.SeparateSiteExpand) and as the matmul's epilogue
// ("fused"), in one process: each round runs the plain forward and the
// adapted forward both ways, in an order that rotates from round to round
// (the plan is made once, outside the timing). It reports the medians of
// the rounds' added time in percent of the plain forward, by wall clock
// and by process CPU time. (The plain update kernels, UpdatePlain, are no
// longer run: their figures are in BENCHMARKS.md.)
func BenchmarkSitesForward(b *testing.B) {
	w := gputest.Backend(b)
	m, base, toks := sitesModel(b, w)
	cache, err := m.NewCache(len(toks), len(toks[0]))
	if err != nil {
		b.Fatal(err)
	}
	defer m.FreeCache(cache)
	for _, sites := range []string{"attn.qkv", "attn.qkv,attn.proj,mlp.fc,mlp.fc2"} {
		rt, err := NewRuntime(m, randomSitesAdapter(b, base, 8, sites))
		if err != nil {
			b.Fatal(err)
		}
		plan, err := rt.Plan(toks, PlanOptions{Mode: ModeBatch, K: 2, Seed: 2})
		if err != nil {
			b.Fatal(err)
		}
		pass := func(ad model.Adapter) {
			for i := range cache.Len {
				cache.Len[i] = 0
			}
			lg, err := m.ForwardAdapted(cache, toks, true, ad)
			if err == nil {
				_, err = w.ReadF32(lg)
				w.Free(lg)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		runs := []struct {
			name string
			run  func()
		}{
			{"base", func() { pass(nil) }},
			{"tiled", func() { rt.SeparateSiteExpand = true; pass(plan.Adapter(nil)) }},
			{"fused", func() { rt.SeparateSiteExpand = false; pass(plan.Adapter(nil)) }},
		}
		name := strings.ReplaceAll(sites, ",", "+")
		b.Run(name, func(b *testing.B) {
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
			round(0, false) // compile pipelines, fill caches
			b.ResetTimer()
			for r := 0; r < b.N; r++ {
				round(r, true)
			}
			for i := 1; i < len(runs); i++ {
				b.ReportMetric(medianAdded(wall[i], wall[0]), runs[i].name+"-added-%")
				b.ReportMetric(medianAdded(cpu[i], cpu[0]), runs[i].name+"-added-cpu-%")
			}
			b.ReportMetric(slices.Min(wall[0]), "base-min-s")
		})
		plan.Free()
		rt.Free()
	}
}

// medianAdded is the median over rounds of 100 * (x - base) / base.
func medianAdded(x, base []float64) float64 {
	r := make([]float64, len(x))
	for i := range x {
		r[i] = 100 * (x[i] - base[i]) / base[i]
	}
	slices.Sort(r)
	if n := len(r); n%2 == 0 {
		return (r[n/2-1] + r[n/2]) / 2
	}
	return r[len(r)/2]
}
