package gpu

import (
	"fmt"
	"math"
)

// Vocabulary-wide ops: each runs one workgroup per row of a (M, V) logits
// tensor (wgsl/logsoftmax.wgsl, crossentropy.wgsl, argmax.wgsl,
// sample.wgsl). Logits larger than one storage binding are split into row
// chunks; per-row inputs and outputs are bound whole and indexed with the
// chunk's first row.

// maxSampleVocab bounds V for Sample: the top-k search counts tokens in f32,
// exact below 2^24.
const maxSampleVocab = 1 << 24

// checkVocabRows panics unless t has dtype dt and m elements: per-row tensors
// may be shaped (M) or like the logits' leading dims.
func checkVocabRows(op, arg string, t Tensor, dt DType, m int) {
	if t == nil {
		panic(fmt.Sprintf("gpu: %s: %s is nil", op, arg))
	}
	if t.DType() != dt {
		panic(fmt.Sprintf("gpu: %s: %s has dtype %v, want %v", op, arg, t.DType(), dt))
	}
	if Numel(t.Shape()) != m {
		panic(fmt.Sprintf("gpu: %s: %s has shape %v, want %d elements (one per row)", op, arg, t.Shape(), m))
	}
}

// LogSoftmax over the last dim: dst(M,V) = x - logsumexp(x).
func (w *WebGPU) LogSoftmax(dst, x Tensor) {
	CheckShape("LogSoftmax", "x", x, F32, x.Shape()...)
	CheckShape("LogSoftmax", "dst", dst, F32, x.Shape()...)
	_, v := dims2(x)
	src, out := w.rowChunks("LogSoftmax", x), w.rowChunks("LogSoftmax", dst)
	for i, ch := range src {
		gx, gy := w.grid1(ch.n)
		w.dispatch(w.RowKernel("logsoftmax"), 1, 1, []binding{ch.b, out[i].b}, Meta{ch.n, v}, gx, gy, 1)
	}
}

// CrossEntropy: dst(M) = -log softmax(logits(M,V))[targets[m]]. A negative
// target masks its row (dst = 0). A target >= V is a programmer error that
// the host cannot see without reading the targets back: the kernel never
// reads out of bounds and writes NaN for that row.
func (w *WebGPU) CrossEntropy(dst, logits, targets Tensor) {
	CheckShape("CrossEntropy", "logits", logits, F32, logits.Shape()...)
	m, v := dims2(logits)
	checkVocabRows("CrossEntropy", "targets", targets, I32, m)
	checkVocabRows("CrossEntropy", "dst", dst, F32, m)
	for _, ch := range w.rowChunks("CrossEntropy", logits) {
		gx, gy := w.grid1(ch.n)
		w.dispatch(w.RowKernel("crossentropy"), 2, 1, []binding{ch.b, w.bind(targets), w.bind(dst)},
			Meta{ch.n, v, ch.start}, gx, gy, 1)
	}
}

// Argmax: dst(M) I32 = the index of each row's largest logit, the lowest
// index among ties. NaN never wins; a row of NaNs gives 0.
func (w *WebGPU) Argmax(dst, logits Tensor) {
	CheckShape("Argmax", "logits", logits, F32, logits.Shape()...)
	m, _ := dims2(logits)
	checkVocabRows("Argmax", "dst", dst, I32, m)
	w.argmax(dst, logits)
}

func (w *WebGPU) argmax(dst, logits Tensor) {
	_, v := dims2(logits)
	for _, ch := range w.rowChunks("Argmax", logits) {
		gx, gy := w.grid1(ch.n)
		w.dispatch("argmax", 1, 1, []binding{ch.b, w.bind(dst)}, Meta{ch.n, v, ch.start}, gx, gy, 1)
	}
}

// Sample: dst(M) I32 draws one token per row of logits(M,V) with the row's
// uniforms(M) F32 value u in [0,1):
//   - Temperature <= 0 (or NaN) or TopK == 1: greedy, exactly Argmax.
//   - otherwise the softmax of logits/Temperature restricted to the tokens
//     whose logit is >= the TopK-th largest (TopK <= 0 or >= V: all; every
//     token tied with the TopK-th value is kept), then to the smallest set
//     of highest-probability tokens, ties included, whose mass reaches
//     TopP of that (TopP >= 1: all), renormalised; the token is the first,
//     in index order, whose cumulative mass exceeds u times the total.
//
// NaN logits are never drawn. Rows whose largest logit is infinite fall
// back to greedy. V must be below 2^24. See wgsl/sample.wgsl for the
// algorithm; gpu/ref runs the same steps on the host.
func (w *WebGPU) Sample(dst, logits, uniforms Tensor, p SampleParams) {
	CheckShape("Sample", "logits", logits, F32, logits.Shape()...)
	m, v := dims2(logits)
	checkVocabRows("Sample", "uniforms", uniforms, F32, m)
	checkVocabRows("Sample", "dst", dst, I32, m)
	if v >= maxSampleVocab {
		panic(fmt.Sprintf("gpu: Sample: V = %d, must be below %d", v, maxSampleVocab))
	}
	if !(p.Temperature > 0) || p.TopK == 1 {
		w.argmax(dst, logits)
		return
	}
	k, topP, invT := SampleMeta(p, v)
	kernel := w.sampleKernel(v)
	step := w.sampleRowsPerSubmit(v)
	for _, ch := range w.rowChunks("Sample", logits) {
		for first := 0; first < ch.n; first += step {
			n := min(step, ch.n-first)
			gx, gy := w.grid1(n)
			w.dispatch(kernel, 2, 1, []binding{ch.b, w.bind(uniforms), w.bind(dst)},
				Meta{ch.n, v, ch.start, k, topP, invT, first}, gx, gy, 1)
			if first+n < ch.n {
				if err := w.flush(); err != nil {
					w.rec.fail(err)
				}
			}
		}
	}
}

// SampleWorkgroup overrides the number of invocations that share a row in
// the sample kernel: 0 picks per adapter, 256 or 64 force one (for tests
// and benchmarks that check both variants on one adapter).
var SampleWorkgroup = 0

// sampleKernel names the sample pipeline for this adapter. GPUs run
// sample.wgsl as written (256 invocations share a row, which keeps one
// decode row's latency low). CPU adapters run sample_wg64, its copy with
// 64 generated by wgsl/internal/gen: lavapipe executes a workgroup as one coroutine per 8 invocations and
// every barrier switches through all of them, so 64 is about 4x faster for
// short rows and still faster at V = 50257. The sums then split over 64
// lanes, not the 256 that the reference mirrors, so results can differ
// only where rounding moves a boundary. lavapipe also stops an
// invocation's loops after 65535 iterations in all, and an invocation runs
// about 25 passes over its ceil(V/WG) tokens, so 64 is used only while that
// stays well below the limit (V up to about 160k tokens); 256 lanes cover V
// up to about 650k on lavapipe.
func (w *WebGPU) sampleKernel(v int) string {
	wg := SampleWorkgroup
	if wg == 0 {
		wg = 256
		if w.Info.Type == "cpu" && 25*ceilDiv(v, 64)+1000 < 65535 {
			wg = 64
		}
	}
	switch wg {
	case 256:
		return "sample"
	case 64:
		return "sample_wg64" // generated from sample.wgsl (wgsl/internal/gen)
	}
	panic(fmt.Sprintf("gpu: Sample: SampleWorkgroup = %d, want 0, 64 or 256", wg))
}

// sampleRowsPerSubmit bounds the rows of one Sample submission on CPU
// adapters. lavapipe runs the sample kernel at a few ms per 50257-token row
// (two dozen passes over the row, and each of its ~50 barriers switches
// through every invocation's coroutine), and a submission that runs longer
// than wgpu's fence wait (about 5 s) is read back before it finishes. GPUs
// take every row in one dispatch.
func (w *WebGPU) sampleRowsPerSubmit(v int) int {
	if w.Info.Type != "cpu" {
		return math.MaxInt32
	}
	return max(1, (1<<20)/(v+4096))
}

// SampleMeta normalises SampleParams for a vocabulary of v tokens as both
// backends use them: k = 0 means no top-k (TopK <= 0 or >= v), topP = 1
// means no top-p (TopP >= 1 or NaN), invT = 1/Temperature in f32.
// Temperature must be positive (the greedy cases are handled before).
func SampleMeta(p SampleParams, v int) (k int, topP, invT float32) {
	if p.TopK > 0 && p.TopK < v {
		k = p.TopK
	}
	topP = p.TopP
	if !(topP < 1) || math.IsNaN(float64(topP)) {
		topP = 1
	}
	return k, topP, 1 / p.Temperature
}
