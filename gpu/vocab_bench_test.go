package gpu_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
)

// vocabBenchRows are the row counts M of the vocabulary-op benchmarks: one
// decode step, small and larger decode batches, and a 256-token prefill;
// every row has GPT-2's V = 50257 logits.
var vocabBenchRows = []int{1, 8, 32, 256}

const vocabBenchV = 50257

// BenchmarkVocab times LogSoftmax, CrossEntropy, Argmax and Sample on M x
// 50257 logits. Each iteration records one op and Flushes, so ns/op is the
// latency of one call with the GPU finished; GB/s counts the logit bytes
// (4·M·V) read once per call (kernels that pass over the row several times
// read more). A warm-up call (pipeline compile, bind groups) runs first,
// outside the timer.
func BenchmarkVocab(b *testing.B) {
	w := gputest.Backend(b)
	r := rand.New(rand.NewPCG(3, 4))
	ops := []struct {
		name string
		run  func(w *gpu.WebGPU, logits, rowsF, rowsI, targets, full gpu.Tensor)
	}{
		{"LogSoftmax", func(w *gpu.WebGPU, lg, _, _, _, full gpu.Tensor) { w.LogSoftmax(full, lg) }},
		{"CrossEntropy", func(w *gpu.WebGPU, lg, f, _, tg, _ gpu.Tensor) { w.CrossEntropy(f, lg, tg) }},
		{"Argmax", func(w *gpu.WebGPU, lg, _, i, _, _ gpu.Tensor) { w.Argmax(i, lg) }},
		{"Sample/T0.8-K40-P0.95", func(w *gpu.WebGPU, lg, u, i, _, _ gpu.Tensor) {
			w.Sample(i, lg, u, gpu.SampleParams{Temperature: 0.8, TopK: 40, TopP: 0.95})
		}},
		{"Sample/T1-K0-P0.9", func(w *gpu.WebGPU, lg, u, i, _, _ gpu.Tensor) {
			w.Sample(i, lg, u, gpu.SampleParams{Temperature: 1, TopK: 0, TopP: 0.9})
		}},
	}
	for _, m := range vocabBenchRows {
		v := vocabBenchV
		lh := make([]float32, m*v)
		for i := range lh {
			lh[i] = float32(r.NormFloat64() * 3)
		}
		uh := make([]float32, m)
		th := make([]int32, m)
		for i := range uh {
			uh[i] = r.Float32()
			th[i] = int32(r.IntN(v))
		}
		logits := gpu.Must(w.Alloc(gpu.F32, m, v))
		full := gpu.Must(w.Alloc(gpu.F32, m, v))
		rowsF := gpu.Must(w.Alloc(gpu.F32, m))
		rowsI := gpu.Must(w.Alloc(gpu.I32, m))
		targets := gpu.Must(w.Alloc(gpu.I32, m))
		for _, err := range []error{w.Write(logits, lh), w.Write(rowsF, uh), w.Write(targets, th)} {
			if err != nil {
				b.Fatal(err)
			}
		}
		for _, op := range ops {
			// The row-reduction ops run at both workgroup sizes (RowWG).
			wgs := []int{w.RowWG}
			if op.name == "LogSoftmax" || op.name == "CrossEntropy" {
				wgs = []int{256, 8}
			}
			for _, wg := range wgs {
				name := fmt.Sprintf("%s/M%d", op.name, m)
				if len(wgs) > 1 {
					name = fmt.Sprintf("%s/wg%d/M%d", op.name, wg, m)
				}
				old := w.RowWG
				w.RowWG = wg
				benchVocabOp(b, w, name, func() { op.run(w, logits, rowsF, rowsI, targets, full) }, rowsF, uh, 4*float64(m)*float64(v))
				w.RowWG = old
			}
		}
		for _, t := range []gpu.Tensor{logits, full, rowsF, rowsI, targets} {
			w.Free(t)
		}
	}
}

// benchVocabOp runs run as sub-benchmark name: a warm-up call, then timed
// calls each followed by a Flush; bytes is what one call reads once.
// rowsF holds the uniforms uh for Sample and receives CrossEntropy's
// losses: they are restored first.
func benchVocabOp(b *testing.B, w *gpu.WebGPU, name string, run func(), rowsF gpu.Tensor, uh []float32, bytes float64) {
	b.Run(name, func(b *testing.B) {
		if err := w.Write(rowsF, uh); err != nil {
			b.Fatal(err)
		}
		run()
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for range b.N {
			run()
			if err := w.Flush(); err != nil {
				b.Fatal(err)
			}
		}
		sec := b.Elapsed().Seconds() / float64(b.N)
		b.ReportMetric(bytes/sec/1e9, "GB/s")
	})
}
