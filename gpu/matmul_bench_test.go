package gpu_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"syscall"
	"testing"
	"time"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
)

// matMulBenchShapes are (M, K, N): one decode token of GPT-2 small's QKV
// projection, a decode batch of 8 through the MLP, a 256-token prefill
// through the MLP, and a 256-token prefill through the tied LM head.
var matMulBenchShapes = [][3]int{{1, 768, 2304}, {8, 768, 3072}, {256, 768, 3072}, {256, 768, 50257}}

func randSlice(r *rand.Rand, n int, std float64) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(r.NormFloat64() * std)
	}
	return out
}

// reportMatMul reports GFLOP/s (2·M·N·K per op) and GB/s (bytes of w, x
// timeMatMul times w.MatMul(dst, x, wt, bias) (M x K by N x K weights of
// wBytes), one warm-up call first, and reports it (reportMatMul).
func timeMatMul(b *testing.B, w *gpu.WebGPU, dst, x, wt, bias gpu.Tensor, m, k, n int, wBytes float64) {
	w.MatMul(dst, x, wt, bias)
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	c0 := cpuSeconds()
	for i := 0; i < b.N; i++ {
		w.MatMul(dst, x, wt, bias)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	reportMatMul(b, m, k, n, wBytes, c0)
}

// and dst per op) from the benchmark's elapsed time.
func reportMatMul(b *testing.B, m, k, n int, wBytes float64, cpu0 float64) {
	sec := b.Elapsed().Seconds() / float64(b.N)
	cs := (cpuSeconds() - cpu0) / float64(b.N)
	b.ReportMetric(2*float64(m)*float64(n)*float64(k)/cs/1e9, "GFLOP/cpu-s")
	b.ReportMetric(2*float64(m)*float64(n)*float64(k)/sec/1e9, "GFLOP/s")
	b.ReportMetric((wBytes+4*float64(m)*float64(k+n))/sec/1e9, "GB/s")
}

// BenchmarkMatMul times the WGSL matmul per shape, weight dtype and
// variant. Timing: b.N matmuls are recorded into the command stream and
// then one Flush waits for the device, so ns/op = (record + GPU time of
// b.N matmuls) / b.N (on CPU adapters MatMul itself submits long matmuls
// in slices, see cpuSubmitFlops; those flushes are inside the timer too).
// A warm-up matmul (pipeline compile, bind groups) runs first, outside the
// timer. GFLOP/cpu-s divides the FLOPs by the process's CPU time (all
// threads, lavapipe's workers included): on a shared machine it shows the
// kernel's cost independently of how many cores it got.
func BenchmarkMatMul(b *testing.B) {
	w := gputest.Backend(b)
	r := rand.New(rand.NewPCG(1, 2))
	for _, s := range matMulBenchShapes {
		m, k, n := s[0], s[1], s[2]
		xh := randSlice(r, m*k, 1)
		wh := randSlice(r, n*k, 0.02)
		bh := randSlice(r, n, 0.1)
		for _, dt := range []gpu.DType{gpu.F32, gpu.F16} {
			x := gpu.Must(w.Alloc(gpu.F32, m, k))
			wt := gpu.Must(w.Alloc(dt, n, k))
			bias := gpu.Must(w.Alloc(gpu.F32, n))
			dst := gpu.Must(w.Alloc(gpu.F32, m, n))
			for _, e := range []error{w.Write(x, xh), w.Write(wt, wh), w.Write(bias, bh)} {
				if e != nil {
					b.Fatal(e)
				}
			}
			wBytes := float64(n) * float64(k) * float64(dt.Size())
			for _, v := range benchVariants(m) {
				b.Run(fmt.Sprintf("%dx%dx%d/%v/%s", m, k, n, dt, v), func(b *testing.B) {
					if v == gpu.MatMulTileOnly && w.Info.Type == "cpu" {
						b.Skip("the workgroup-tile kernel is for GPUs; on a CPU adapter it is only checked for conformance")
					}
					old := w.MatMulVariant
					defer func() { w.MatMulVariant = old }()
					w.MatMulVariant = v
					timeMatMul(b, w, dst, x, wt, bias, m, k, n, wBytes)
				})
			}
			w.Free(x)
			w.Free(wt)
			w.Free(bias)
			w.Free(dst)
		}
	}
}

// benchVariants are the kernels worth timing at M rows: the mat-vec
// kernel only where it is meant to serve (M <= 8), the register and tile
// kernels everywhere (forced with the -only names), and the texture
// kernels (the weights' texture copy is made by the warm-up call and
// reused, as in inference; x is copied into a texture inside every op).
func benchVariants(m int) []string {
	if m <= gpu.MatMulGemvMaxM {
		return []string{gpu.MatMulGemv, gpu.MatMulCoop, gpu.MatMulRegOnly, gpu.MatMulTileOnly, gpu.MatMulTex}
	}
	return []string{gpu.MatMulRegOnly, gpu.MatMulTileOnly, gpu.MatMulTex}
}

// BenchmarkGonumSgemm times gonum's blas32.Gemm on the same shapes as the
// peer of BenchmarkMatMul: C(M,N) = X(M,K) · W(N,K)ᵀ with W row-major.
func BenchmarkGonumSgemm(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, s := range matMulBenchShapes {
		m, k, n := s[0], s[1], s[2]
		x := blas32.General{Rows: m, Cols: k, Stride: k, Data: randSlice(r, m*k, 1)}
		wt := blas32.General{Rows: n, Cols: k, Stride: k, Data: randSlice(r, n*k, 0.02)}
		c := blas32.General{Rows: m, Cols: n, Stride: n, Data: make([]float32, m*n)}
		b.Run(fmt.Sprintf("%dx%dx%d", m, k, n), func(b *testing.B) {
			c0 := cpuSeconds()
			for i := 0; i < b.N; i++ {
				blas32.Gemm(blas.NoTrans, blas.Trans, 1, x, wt, 0, c)
			}
			reportMatMul(b, m, k, n, 4*float64(n)*float64(k), c0)
		})
	}
}

// cpuSeconds is the user+system CPU time of this process, all threads.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// BenchmarkMatMulVsGonum alternates the adapter's default matmul (f32
// weights, the op as inference calls it: x copied in, weights' copy reused)
// and gonum's Sgemm on the same shapes within one loop, so both see the
// same machine state (on a shared 2-core VM the speed of either drifts by
// up to 2x over minutes), and reports their ratio: "x-gonum" = gonum's time
// / ours (> 1: we are faster). Three rounds of each run first, untimed.
func BenchmarkMatMulVsGonum(b *testing.B) {
	w := gputest.Backend(b)
	r := rand.New(rand.NewPCG(3, 4))
	for _, s := range matMulBenchShapes {
		m, k, n := s[0], s[1], s[2]
		b.Run(fmt.Sprintf("%dx%dx%d", m, k, n), func(b *testing.B) {
			xh, wh := randSlice(r, m*k, 1), randSlice(r, n*k, 0.02)
			x := gpu.Must(w.Alloc(gpu.F32, m, k))
			wt := gpu.Must(w.Alloc(gpu.F32, n, k))
			dst := gpu.Must(w.Alloc(gpu.F32, m, n))
			defer func() { w.Free(x); w.Free(wt); w.Free(dst) }()
			for _, e := range []error{w.Write(x, xh), w.Write(wt, wh)} {
				if e != nil {
					b.Fatal(e)
				}
			}
			gx := blas32.General{Rows: m, Cols: k, Stride: k, Data: xh}
			gw := blas32.General{Rows: n, Cols: k, Stride: k, Data: wh}
			gc := blas32.General{Rows: m, Cols: n, Stride: n, Data: make([]float32, m*n)}
			// gonum is also timed with w stored transposed (K x N), the
			// layout its Sgemm runs fastest on, so the report shows both.
			whT := make([]float32, n*k)
			for i := 0; i < n; i++ {
				for j := 0; j < k; j++ {
					whT[j*n+i] = wh[i*k+j]
				}
			}
			gwT := blas32.General{Rows: k, Cols: n, Stride: n, Data: whT}
			var ours, theirs, theirsNN time.Duration
			var ratios, ratiosNN []float64 // per round, gonum's time over ours
			round := func() {
				t0 := time.Now()
				w.MatMul(dst, x, wt, nil)
				if err := w.Flush(); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				blas32.Gemm(blas.NoTrans, blas.Trans, 1, gx, gw, 0, gc)
				t2 := time.Now()
				blas32.Gemm(blas.NoTrans, blas.NoTrans, 1, gx, gwT, 0, gc)
				t3 := time.Now()
				ours += t1.Sub(t0)
				theirs += t2.Sub(t1)
				theirsNN += t3.Sub(t2)
				ratios = append(ratios, t2.Sub(t1).Seconds()/t1.Sub(t0).Seconds())
				ratiosNN = append(ratiosNN, t3.Sub(t2).Seconds()/t1.Sub(t0).Seconds())
			}
			for i := 0; i < 3; i++ {
				round()
			}
			ours, theirs, theirsNN, ratios, ratiosNN = 0, 0, 0, ratios[:0], ratiosNN[:0]
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				round()
			}
			b.StopTimer()
			fl := 2 * float64(m) * float64(n) * float64(k) * float64(b.N)
			b.ReportMetric(fl/ours.Seconds()/1e9, "GFLOP/s")
			b.ReportMetric(fl/theirs.Seconds()/1e9, "gonum-GFLOP/s")
			b.ReportMetric(theirs.Seconds()/ours.Seconds(), "x-gonum")
			// The median of the per-round ratios: each round times both
			// back to back, so a drift in the shared machine's speed over
			// the run moves this less than the ratio of the totals.
			slices.Sort(ratios)
			b.ReportMetric(ratios[len(ratios)/2], "x-gonum-p50")
			// The same against gonum on w stored K x N (not the model's
			// layout: its weights are N x K, as our kernels and the ratios
			// above take them).
			b.ReportMetric(fl/theirsNN.Seconds()/1e9, "gonumKN-GFLOP/s")
			slices.Sort(ratiosNN)
			b.ReportMetric(ratiosNN[len(ratiosNN)/2], "x-gonumKN-p50")
			b.Logf("adapter %s, variant %s", w.Name(), w.MatMulVariant)
		})
	}
}
