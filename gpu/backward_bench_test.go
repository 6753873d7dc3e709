package gpu_test

import (
	"math/rand/v2"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
)

// Benchmarks of the TrainBackend ops at GPT-2 small training shapes:
// B*T = 256 rows (B = 4, T = 64... 128 for attention), C = 768, V = 50257.
// Each records b.N calls and flushes once, so ns/op includes the device
// finishing; one warm-up call (pipeline compile) runs outside the timer.
// cpu-s/op is the process CPU time (lavapipe's threads included) per op,
// to compare runs on a shared machine.

// bwdTensor allocates a tensor filled with normals of the given std.
func bwdTensor(b *testing.B, w *gpu.WebGPU, r *rand.Rand, std float64, shape ...int) gpu.Tensor {
	t := gpu.Must(w.Alloc(gpu.F32, shape...))
	v := make([]float32, gpu.Numel(shape))
	for i := range v {
		v[i] = float32(r.NormFloat64() * std)
	}
	if err := w.Write(t, v); err != nil {
		b.Fatal(err)
	}
	return t
}

// runBwd warms up, then times b.N calls of op and reports per-op metrics:
// work/op divided by seconds under the given unit.
func runBwd(b *testing.B, w *gpu.WebGPU, op func(), work float64, unit string) {
	op()
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	c0 := attnProcCPU()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		op()
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	sec := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(work/sec/1e9, unit)
	b.ReportMetric((attnProcCPU()-c0)/float64(b.N), "cpu-s/op")
}

// BenchmarkMatMulBackward: the MLP's first layer, x(256,768), w(3072,768):
// dx = dOut·w and dW += dOutᵀ·x (2 products of 2*256*768*3072 FLOPs) and
// dBias.
func BenchmarkMatMulBackward(b *testing.B) {
	w := gputest.Backend(b)
	r := rand.New(rand.NewPCG(1, 2))
	const m, k, n = 256, 768, 3072
	x, wt := bwdTensor(b, w, r, 1, m, k), bwdTensor(b, w, r, 0.02, n, k)
	g := bwdTensor(b, w, r, 1, m, n)
	dx, dw, db := bwdTensor(b, w, r, 0, m, k), bwdTensor(b, w, r, 0, n, k), bwdTensor(b, w, r, 0, n)
	b.Logf("adapter %s, kernel family %s", w.Name(), gpu.MatMulFamily(w.MatMulVariant, 64))
	runBwd(b, w, func() { w.MatMulBackward(dx, dw, db, g, x, wt) }, 4*m*k*n, "GFLOP/s")
}

// BenchmarkAttentionBackward: B = 4 sequences of T = 128, C = 768, H = 12:
// both backward kernels. FLOPs counted as 5 products of 2*D per causal
// (query, key) pair (recomputed scores, dP, dQ, dK, dV).
func BenchmarkAttentionBackward(b *testing.B) {
	w := gputest.Backend(b)
	r := rand.New(rand.NewPCG(1, 2))
	const nb, tq = 4, 128
	qkv := bwdTensor(b, w, r, 1, nb, tq, 3*attnC)
	g := bwdTensor(b, w, r, 1, nb, tq, attnC)
	out, lse := bwdTensor(b, w, r, 0, nb, tq, attnC), bwdTensor(b, w, r, 0, nb, attnH, tq)
	d := bwdTensor(b, w, r, 0, nb, tq, 3*attnC)
	ql := gpu.Must(w.Alloc(gpu.I32, nb))
	if err := w.Write(ql, []int32{tq, tq, tq, tq}); err != nil {
		b.Fatal(err)
	}
	w.AttentionTrain(out, lse, qkv, ql, attnH)
	pairs := float64(nb * attnH * tq * (tq + 1) / 2)
	runBwd(b, w, func() { w.AttentionBackward(d, g, qkv, out, lse, ql, attnH) }, pairs*5*2*float64(attnC/attnH), "GFLOP/s")
}

// BenchmarkAttentionTrain: the training forward at the same shape (2
// products of 2*D per causal pair).
func BenchmarkAttentionTrain(b *testing.B) {
	w := gputest.Backend(b)
	r := rand.New(rand.NewPCG(1, 2))
	const nb, tq = 4, 128
	qkv := bwdTensor(b, w, r, 1, nb, tq, 3*attnC)
	out, lse := bwdTensor(b, w, r, 0, nb, tq, attnC), bwdTensor(b, w, r, 0, nb, attnH, tq)
	ql := gpu.Must(w.Alloc(gpu.I32, nb))
	if err := w.Write(ql, []int32{tq, tq, tq, tq}); err != nil {
		b.Fatal(err)
	}
	pairs := float64(nb * attnH * tq * (tq + 1) / 2)
	runBwd(b, w, func() { w.AttentionTrain(out, lse, qkv, ql, attnH) }, pairs*2*2*float64(attnC/attnH), "GFLOP/s")
}

// BenchmarkCrossEntropyBackward: dLogits of 256 rows of V = 50257; bytes
// = logits read twice + dLogits written.
func BenchmarkCrossEntropyBackward(b *testing.B) {
	w := gputest.Backend(b)
	r := rand.New(rand.NewPCG(1, 2))
	const m, v = 256, 50257
	x := bwdTensor(b, w, r, 2, m, v)
	d := bwdTensor(b, w, r, 0, m, v)
	tg := make([]int32, m)
	for i := range tg {
		tg[i] = int32(r.IntN(v))
	}
	tt := gpu.Must(w.Alloc(gpu.I32, m))
	if err := w.Write(tt, tg); err != nil {
		b.Fatal(err)
	}
	runBwd(b, w, func() { w.CrossEntropyBackward(d, x, tt, 1.0/m) }, 3*4*m*v, "GB/s")
}

// BenchmarkEmbedBackward: 256 rows of C = 768 into wte (50257,768) and wpe
// (1024,768), GPT-2-like token ids; bytes = dOut read once per table +
// the touched table rows read and written (an upper bound of 2 per row).
func BenchmarkEmbedBackward(b *testing.B) {
	w := gputest.Backend(b)
	r := rand.New(rand.NewPCG(1, 2))
	const m, c, v, p = 256, 768, 50257, 1024
	g := bwdTensor(b, w, r, 1, m, c)
	te, pe := bwdTensor(b, w, r, 0, v, c), bwdTensor(b, w, r, 0, p, c)
	tok, pos := make([]int32, m), make([]int32, m)
	for i := range tok {
		tok[i], pos[i] = int32(r.IntN(v)), int32(i%64)
		if i%4 == 0 {
			tok[i] = 13 // a frequent token
		}
	}
	tk, ps := gpu.Must(w.Alloc(gpu.I32, m)), gpu.Must(w.Alloc(gpu.I32, m))
	if err := w.Write(tk, tok); err != nil {
		b.Fatal(err)
	}
	if err := w.Write(ps, pos); err != nil {
		b.Fatal(err)
	}
	runBwd(b, w, func() { w.EmbedBackward(te, pe, g, tk, ps) }, 2*3*4*m*c, "GB/s")
}

// BenchmarkLayerNormBackward: 256 rows of 768; bytes = x, dOut read twice
// (two kernels), dx written.
func BenchmarkLayerNormBackward(b *testing.B) {
	w := gputest.Backend(b)
	r := rand.New(rand.NewPCG(1, 2))
	const m, c = 256, 768
	x, g, gm := bwdTensor(b, w, r, 1, m, c), bwdTensor(b, w, r, 1, m, c), bwdTensor(b, w, r, 1, c)
	dx, dg, db := bwdTensor(b, w, r, 0, m, c), bwdTensor(b, w, r, 0, c), bwdTensor(b, w, r, 0, c)
	runBwd(b, w, func() { w.LayerNormBackward(dx, dg, db, g, x, gm, 1e-5) }, 5*4*m*c, "GB/s")
}

// BenchmarkAdamW: one step over 124,439,808 parameters (GPT-2 small) in
// one flat tensor; bytes = param, m, v, grad read + param, m, v written.
func BenchmarkAdamW(b *testing.B) {
	w := gputest.Backend(b)
	const n = 124439808
	prm, m := gpu.Must(w.Alloc(gpu.F32, n)), gpu.Must(w.Alloc(gpu.F32, n))
	v, g := gpu.Must(w.Alloc(gpu.F32, n)), gpu.Must(w.Alloc(gpu.F32, n))
	for _, t := range []gpu.Tensor{prm, m, v, g} {
		w.Zero(t)
	}
	hp := gpu.AdamWParams{LR: 6e-4, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, Step: 1}
	runBwd(b, w, func() { w.AdamW(prm, m, v, g, nil, hp) }, 7*4*n, "GB/s")
}

// BenchmarkGradNormSq: the squared norm of 124,439,808 gradient values.
func BenchmarkGradNormSq(b *testing.B) {
	w := gputest.Backend(b)
	const n = 124439808
	g := gpu.Must(w.Alloc(gpu.F32, n))
	w.Zero(g)
	d := gpu.Must(w.Alloc(gpu.F32, 1))
	runBwd(b, w, func() { w.GradNormSq(d, g) }, 4*n, "GB/s")
}
