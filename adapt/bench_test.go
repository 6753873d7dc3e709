package adapt

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
)

// GPT-2 small's output projection and the adaptation shape: K = 4
// clusters, rank 16.
const benchC, benchV, benchK, benchR = 768, 50257, 4, 16

func randn(r *rand.Rand, n int, std float64) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(r.NormFloat64() * std)
	}
	return out
}

// cpuSeconds is the user+system CPU time of this process, all threads
// (lavapipe's workers included).
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// upload allocates and fills a tensor or fails the benchmark.
func upload(b *testing.B, be gpu.Backend, dt gpu.DType, data any, shape ...int) gpu.Tensor {
	t := gpu.Must(be.Alloc(dt, shape...))
	if err := be.Write(t, data); err != nil {
		b.Fatal(err)
	}
	return t
}

// BenchmarkAdaptOverhead measures what the per-cluster low-rank update adds
// to the plain output projection logits(M,V) = h(M,C) · Wᵀ, C = 768, V =
// 50257, K = 4, R = 16, at M = 32 rows (a decode step of batch 32) and M =
// 256 (prefill-like; see BENCHMARKS.md for why not 32*256). Each iteration
// runs, each followed by a Flush, the base MatMul, the fused kernel
// (lowrank_u + lowrank_matmul_*) and the separate one (lowrank_u + MatMul
// + lowrank_add), so all three see the same machine load; it reports each
// one's milliseconds and the update's added time in percent of the base,
// by wall clock and by process CPU time. Clusters are either interleaved
// (every 16-row block holds all four: the fused kernel's worst case) or
// grouped (rows sorted by cluster). f32 W (154 MB) exceeds a 128 MiB
// storage binding, so there only the separate variant runs.
//
// (Over 80 lines: one set of buffers for every variant and layout measured, as
// sub-benchmarks.)
func BenchmarkAdaptOverhead(b *testing.B) {
	w := gputest.Backend(b)
	ops := &WebGPUOps{WebGPU: w}
	r := rand.New(rand.NewPCG(7, 8))
	a := upload(b, w, gpu.F32, randn(r, benchK*benchR*benchC, 0.036), benchK, benchR, benchC)
	bf := upload(b, w, gpu.F32, randn(r, benchK*benchV*benchR, 0.25), benchK, benchV, benchR)
	f := NewFactors(a, bf)
	defer w.Free(a)
	defer w.Free(bf)
	for _, m := range []int{32, 256} {
		h := upload(b, w, gpu.F32, randn(r, m*benchC, 1), m, benchC)
		dst := gpu.Must(w.Alloc(gpu.F32, m, benchV))
		for _, dt := range []gpu.DType{gpu.F16, gpu.F32} {
			if dt == gpu.F32 && m > 32 {
				continue // the separate variant's cost is the same add at any dtype
			}
			wt := upload(b, w, dt, randn(r, benchV*benchC, 0.02), benchV, benchC)
			for _, grouped := range []bool{false, true} {
				ids := make([]int32, m)
				for i := range ids {
					ids[i] = int32(r.IntN(benchK))
				}
				order := "interleaved"
				if grouped {
					sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
					order = "grouped"
				}
				cl := upload(b, w, gpu.I32, ids, m)
				b.Run(fmt.Sprintf("M=%d/w=%v/%s", m, dt, order), func(b *testing.B) {
					runs := []struct {
						name string
						run  func() error
					}{
						{"base", func() error { w.MatMul(dst, h, wt, nil); return nil }},
						{"fused", func() error {
							ops.Variant = VariantFused
							return ops.Logits(dst, h, wt, nil, f, cl, 1)
						}},
						{"separate", func() error {
							ops.Variant = VariantSeparate
							return ops.Logits(dst, h, wt, nil, f, cl, 1)
						}},
					}
					if ops.Variant = VariantFused; ops.LogitsVariant(m, wt) != VariantFused {
						runs = append(runs[:1], runs[2])
					}
					wall := make([]float64, len(runs))
					cpu := make([]float64, len(runs))
					step := func(timed bool) {
						for i, x := range runs {
							t0, c0 := time.Now(), cpuSeconds()
							if err := x.run(); err != nil {
								b.Fatal(err)
							}
							if err := w.Flush(); err != nil {
								b.Fatal(err)
							}
							if timed {
								wall[i] += time.Since(t0).Seconds()
								cpu[i] += cpuSeconds() - c0
							}
						}
					}
					step(false) // compile pipelines, fill caches
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						step(true)
					}
					n := float64(b.N)
					flops := 2 * float64(m) * benchV * benchC
					b.ReportMetric(flops/(wall[0]/n)/1e9, "base-GFLOP/s")
					for i, x := range runs {
						b.ReportMetric(1e3*wall[i]/n, x.name+"-ms")
						if i > 0 {
							b.ReportMetric(100*(wall[i]-wall[0])/wall[0], x.name+"-added-%")
							b.ReportMetric(100*(cpu[i]-cpu[0])/cpu[0], x.name+"-added-cpu-%")
						}
					}
				})
				w.Free(cl)
			}
			w.Free(wt)
		}
		w.Free(h)
		w.Free(dst)
	}
	ops.Variant = VariantAuto
}

// BenchmarkHyperForward times the hyper-network (768-64-32-816,400) on K
// = 4 cluster features: once per batch, dominated by streaming its last
// layer's 104 MB of weights.
func BenchmarkHyperForward(b *testing.B) {
	w := gputest.Backend(b)
	ops := New(w)
	cfg := DefaultHyper(benchC, benchV, benchR)
	net, err := UploadHyper(w, cfg, InitHyper(cfg, 1))
	if err != nil {
		b.Fatal(err)
	}
	defer net.Free(w)
	r := rand.New(rand.NewPCG(9, 10))
	feats := upload(b, w, gpu.F32, randn(r, benchK*benchC, 0.036), benchK, benchC)
	out := gpu.Must(w.Alloc(gpu.F32, benchK, cfg.OutDim()))
	defer w.Free(feats)
	defer w.Free(out)
	run := func() {
		if err := net.Forward(ops, out, feats, nil); err != nil {
			b.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
	}
	run()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		run()
	}
	sec := b.Elapsed().Seconds() / float64(b.N)
	bytes := 4 * float64(cfg.OutDim()) * float64(cfg.Hidden[len(cfg.Hidden)-1]+1)
	b.ReportMetric(1e3*sec, "ms")
	b.ReportMetric(bytes/sec/1e9, "weight-GB/s")
}

// BenchmarkSiteUpdate measures what one decoder site's per-row update
// (LowRankU + AddLowRank, rank 8, two clusters in runs of 256 rows as in a
// batch of 256-token sequences, every fourth sequence unadapted: cluster
// -1) adds to the site's matmul y(M,N) = x(M,C) · Wᵀ + b at the default
// model's shapes (C = 256) and M = 32 x 256 rows. Each iteration runs,
// each followed by a Flush so that all see the same machine load, in an
// order that rotates from iteration to iteration: the
// matmul; the tiled update alone and its shrink alone; the site as
// SiteMatMul with the expand apart ("separate": matmul, shrink, expand)
// and fused into the matmul ("fused": shrink, then the matmul with the
// expand as its epilogue). It reports each one's milliseconds and what it
// adds to the matmul in percent of the matmul (the update and the shrink:
// their own time; separate and fused: their time less the matmul's), by
// wall clock and by process CPU time (lavapipe's workers included:
// steadier than the wall clock on a shared machine). The plain update
// kernels (UpdatePlain, the figures before 2026-12-04's tiled ones) are
// no longer run.
//
// (Over 80 lines: the four sites' tensors, the five runs and their
// interleaved timing share one closure scope.)
func BenchmarkSiteUpdate(b *testing.B) {
	w := gputest.Backend(b)
	ops := &WebGPUOps{WebGPU: w}
	const m, r, k = 32 * 256, 8, 2
	rng := rand.New(rand.NewPCG(11, 12))
	ids := make([]int32, m)
	for i := range ids {
		ids[i] = int32((i/256)%(k+2)) - 1 // -1, 0, 1, 2 (K = 2: no update)
	}
	cl := upload(b, w, gpu.I32, ids, m)
	defer w.Free(cl)
	for _, s := range []struct {
		name string
		c, n int
	}{{"qkv", 256, 768}, {"proj", 256, 256}, {"fc", 256, 1024}, {"fc2", 1024, 256}} {
		x := upload(b, w, gpu.F32, randn(rng, m*s.c, 1), m, s.c)
		wt := upload(b, w, gpu.F32, randn(rng, s.n*s.c, 0.02), s.n, s.c)
		bias := upload(b, w, gpu.F32, randn(rng, s.n, 0.02), s.n)
		a := upload(b, w, gpu.F32, randn(rng, k*r*s.c, 0.06), k, r, s.c)
		bf := upload(b, w, gpu.F32, randn(rng, k*s.n*r, 0.3), k, s.n, r)
		f := NewFactors(a, bf)
		y := gpu.Must(w.Alloc(gpu.F32, m, s.n))
		u := gpu.Must(w.Alloc(gpu.F32, m, r))
		site := func(separate bool) func() error {
			return func() error {
				ops.SeparateExpand = separate
				ops.LowRankU(u, x, f, cl, 1)
				return ops.SiteMatMul(y, x, wt, bias, u, f, cl)
			}
		}
		b.Run(fmt.Sprintf("%s/M=%d/C=%d/N=%d/R=%d", s.name, m, s.c, s.n, r), func(b *testing.B) {
			runs := []struct {
				name    string
				run     func() error
				withMat bool // the run includes the matmul
			}{
				{"matmul", func() error { w.MatMul(y, x, wt, bias); return nil }, true},
				{"tiled", func() error { ops.LowRankU(u, x, f, cl, 1); return ops.AddLowRank(y, u, f, cl) }, false},
				{"tiled-shrink", func() error { ops.LowRankU(u, x, f, cl, 1); return nil }, false},
				{"separate", site(true), true},
				{"fused", site(false), true},
			}
			wall := make([]float64, len(runs))
			cpu := make([]float64, len(runs))
			step := func(it int, timed bool) {
				for j := range runs {
					i := (j + it) % len(runs) // the order rotates: no run always first
					x := runs[i]
					t0, c0 := time.Now(), cpuSeconds()
					if err := x.run(); err != nil {
						b.Fatal(err)
					}
					if err := w.Flush(); err != nil {
						b.Fatal(err)
					}
					if timed {
						wall[i] += time.Since(t0).Seconds()
						cpu[i] += cpuSeconds() - c0
					}
				}
			}
			step(0, false) // compile pipelines, fill caches
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				step(i, true)
			}
			for i, x := range runs {
				b.ReportMetric(1e3*wall[i]/float64(b.N), x.name+"-ms")
				if i > 0 {
					mw, mc := 0.0, 0.0
					if x.withMat {
						mw, mc = wall[0], cpu[0]
					}
					b.ReportMetric(100*(wall[i]-mw)/wall[0], x.name+"-added-%")
					b.ReportMetric(100*(cpu[i]-mc)/cpu[0], x.name+"-added-cpu-%")
				}
			}
		})
		for _, t := range []gpu.Tensor{x, wt, bias, a, bf, y, u} {
			w.Free(t)
		}
	}
}
