package gpu_test

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
)

// GPT-2 small's attention: C = 768 channels in H = 12 heads of D = 64.
const attnC, attnH = 768, 12

// attnProcCPU is the CPU time of this process (lavapipe's threads
// included), to report work per CPU-second next to wall-clock rates when
// other jobs share the machine.
func attnProcCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// attnSetup allocates and fills qkv (B,Tq,3C) and caches (B,Tmax,C) with
// random values and start(B), qlen(B); dst (B,Tq,C).
func attnSetup(b *testing.B, w *gpu.WebGPU, nb, tq, tmax int, start, qlen int32) (dst, qkv, kc, vc, st, ql gpu.Tensor) {
	r := rand.New(rand.NewPCG(3, 4))
	fill := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		return v
	}
	ints := func(x int32) []int32 {
		v := make([]int32, nb)
		for i := range v {
			v[i] = x
		}
		return v
	}
	dst = gpu.Must(w.Alloc(gpu.F32, nb, tq, attnC))
	qkv = gpu.Must(w.Alloc(gpu.F32, nb, tq, 3*attnC))
	kc = gpu.Must(w.Alloc(gpu.F32, nb, tmax, attnC))
	vc = gpu.Must(w.Alloc(gpu.F32, nb, tmax, attnC))
	st = gpu.Must(w.Alloc(gpu.I32, nb))
	ql = gpu.Must(w.Alloc(gpu.I32, nb))
	for _, err := range []error{w.Write(qkv, fill(nb*tq*3*attnC)), w.Write(kc, fill(nb*tmax*attnC)),
		w.Write(vc, fill(nb*tmax*attnC)), w.Write(st, ints(start)), w.Write(ql, ints(qlen))} {
		if err != nil {
			b.Fatal(err)
		}
	}
	return
}

// runAttn times b.N Attention calls: all are recorded, then one Flush waits
// for the device, so ns/op includes the GPU finishing. One warm-up call
// (pipeline compile, bind groups) runs first, outside the timer.
func runAttn(b *testing.B, w *gpu.WebGPU, dst, qkv, kc, vc, st, ql gpu.Tensor) (sec, cpu float64) {
	w.Attention(dst, qkv, kc, vc, st, ql, attnH)
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	c0 := attnProcCPU()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w.Attention(dst, qkv, kc, vc, st, ql, attnH)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	return b.Elapsed().Seconds() / float64(b.N), (attnProcCPU() - c0) / float64(b.N)
}

// BenchmarkAttentionDecode: one new token for each of B sequences, every
// sequence at context ctx (the query at position ctx-1 attends ctx keys).
// GB/s counts the K and V bytes read: 2 * B * ctx * C * 4 per call. Both
// decode kernels run (gpu.AttentionDecodeWG, gpu.AttentionDecodeLanes).
func BenchmarkAttentionDecode(b *testing.B) {
	w := gputest.Backend(b)
	old := w.AttentionDecodeVariant
	defer func() { w.AttentionDecodeVariant = old }()
	for _, ctx := range []int{256, 1024} {
		for _, nb := range []int{1, 8, 32} {
			for _, v := range []string{gpu.AttentionDecodeWG, gpu.AttentionDecodeLanes} {
				b.Run(fmt.Sprintf("B=%d/ctx=%d/%s", nb, ctx, v), func(b *testing.B) {
					w.AttentionDecodeVariant = v
					dst, qkv, kc, vc, st, ql := attnSetup(b, w, nb, 1, ctx, int32(ctx-1), 1)
					defer func() {
						for _, t := range []gpu.Tensor{dst, qkv, kc, vc, st, ql} {
							w.Free(t)
						}
					}()
					sec, cpu := runAttn(b, w, dst, qkv, kc, vc, st, ql)
					bytes := 2 * float64(nb) * float64(ctx) * attnC * 4
					b.ReportMetric(bytes/sec/1e9, "GB/s")
					b.ReportMetric(bytes/cpu/1e9, "GB/cpu-s")
					b.ReportMetric(sec*1e3, "ms/call")
				})
			}
		}
	}
}

// BenchmarkAttentionPrefill: B sequences of T = 256 new tokens from an
// empty cache. FLOPs count both products over the causal triangle:
// 4 * B * H * D * T(T+1)/2 (q·k and p·v, a multiply and an add each).
func BenchmarkAttentionPrefill(b *testing.B) {
	w := gputest.Backend(b)
	const t = 256
	for _, nb := range []int{1, 8} {
		b.Run(fmt.Sprintf("B=%d/T=%d", nb, t), func(b *testing.B) {
			dst, qkv, kc, vc, st, ql := attnSetup(b, w, nb, t, t, 0, t)
			defer func() {
				for _, x := range []gpu.Tensor{dst, qkv, kc, vc, st, ql} {
					w.Free(x)
				}
			}()
			sec, cpu := runAttn(b, w, dst, qkv, kc, vc, st, ql)
			flops := 4 * float64(nb) * attnH * (attnC / attnH) * float64(t*(t+1)/2)
			b.ReportMetric(flops/sec/1e9, "GFLOP/s")
			b.ReportMetric(flops/cpu/1e9, "GFLOP/cpu-s")
			b.ReportMetric(sec*1e3, "ms/call")
		})
	}
}
