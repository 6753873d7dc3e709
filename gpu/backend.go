// Package gpu is Chameleon's compute layer: the op-level Backend interface
// that model code is written against, and its WebGPU implementation (device
// selection, buffer pool, pipeline and bind-group caches, command recording,
// GPU timestamp profiling). The plain-Go reference Backend lives in gpu/ref.
//
// Dimension legend used in shape comments throughout:
//
//	B batch (sequences), T time (tokens per sequence), C channels (model width),
//	H attention heads, D = C/H head size, V vocabulary, M rows, K inner, N columns.
//
// Shapes are row-major, outermost first. Weights are stored (out, in).
//
// Errors: anything external (no adapter, a missing feature or limit, shader
// validation, a lost device) is returned as an error that names the kernel
// or resource. Shape mismatches are programmer errors and panic with a
// "gpu: " prefix; cmd, serve and wasm recover them into errors.
package gpu

import (
	"fmt"

	"github.com/chameleon-llm/chameleon/gpu/quant"
)

// DType is the element type of a tensor.
type DType uint8

const (
	F32 DType = iota // IEEE float32
	F16              // IEEE float16, weights only; rows padded to an even length on the GPU
	I32              // int32: token ids, positions, lengths, sampled ids
	// ggml block-quantised weights (gpu/quant has the layouts), MatMul's w
	// only: shape (N, K) with K a whole number of blocks. Written as the
	// blocks' raw bytes (or as []float32, quantized on the host), read
	// back dequantized; the GPU keeps them packed (gpu/quant_layout.go).
	Q8_0
	Q4_0
	Q4_K
)

// Quant is d's block format; ok is false for F32, F16 and I32.
func (d DType) Quant() (f quant.Format, ok bool) {
	switch d {
	case Q8_0:
		return quant.Q8_0, true
	case Q4_0:
		return quant.Q4_0, true
	case Q4_K:
		return quant.Q4_K, true
	}
	return 0, false
}

// QuantDType is the DType of a block format.
func QuantDType(f quant.Format) DType {
	switch f {
	case quant.Q8_0:
		return Q8_0
	case quant.Q4_0:
		return Q4_0
	case quant.Q4_K:
		return Q4_K
	}
	panic(fmt.Sprintf("gpu: QuantDType: unknown format %v", f))
}

// Quantized reports whether d is a block-quantised type.
func (d DType) Quantized() bool { _, ok := d.Quant(); return ok }

func (d DType) String() string {
	switch d {
	case F32:
		return "f32"
	case F16:
		return "f16"
	case I32:
		return "i32"
	case Q8_0:
		return "q8_0"
	case Q4_0:
		return "q4_0"
	case Q4_K:
		return "q4_k"
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
}

// Size is the element size in bytes on the host (for quantized types, of
// the float32 values they decode to).
func (d DType) Size() int {
	if d == F16 {
		return 2
	}
	return 4
}

// Tensor is a dense row-major array that lives on one Backend. Its contents
// are reached only through the Backend that made it.
type Tensor interface {
	Shape() []int
	DType() DType
}

// Numel is the number of elements of a shape.
func Numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// SampleParams configures Backend.Sample. A row's token is drawn from the
// softmax of logits/Temperature restricted to the top-K logits (TopK <= 0: no
// limit) and then to the smallest set of highest-probability tokens whose
// mass reaches TopP (TopP >= 1: no limit). Temperature <= 0 means greedy.
type SampleParams struct {
	Temperature float32
	TopK        int
	TopP        float32
}

// Backend is the set of ops the GPT-2 forward, its training and the
// adaptation method need. Ops write into dst, never modify their inputs
// (dst must not alias an input: WebGPU forbids binding one buffer both
// read-only and read-write in a dispatch, and the WebGPU backend panics), and
// may run asynchronously: results become visible through ReadF32/ReadI32,
// which flush. Ops panic on shape or dtype mismatches (programmer errors).
type Backend interface {
	// Name describes the backend and its adapter.
	Name() string

	// Alloc returns a tensor with undefined contents. It fails when the
	// tensor is larger than the device allows.
	Alloc(dt DType, shape ...int) (Tensor, error)
	// Write copies host data into t: []float32 for F32 and F16 tensors
	// (converted to f16 on upload), or []uint16 (IEEE half bits, kept as
	// they are) for F16, []int32 for I32; for quantized tensors
	// []byte of ggml blocks (N rows of K/BlockSize blocks) or []float32
	// (quantized on the host).
	Write(t Tensor, data any) error
	// ReadF32 flushes pending work and returns t's contents (F32, F16, or
	// a quantized tensor's dequantized weights).
	ReadF32(t Tensor) ([]float32, error)
	// ReadI32 flushes pending work and returns an I32 tensor's contents.
	ReadI32(t Tensor) ([]int32, error)
	// Free returns t's memory to the backend. t must not be used again.
	Free(t Tensor)
	// Flush submits recorded work and waits for it; it reports the first
	// device error (validation, out of memory, device lost) since the last
	// Flush, naming the kernel.
	Flush() error

	// MatMul: dst(M,N) = x(M,K) · w(N,K)ᵀ + bias(N). w is F32, F16 or
	// quantized (Q8_0, Q4_0, Q4_K: dequantized in registers); bias may be nil.
	MatMul(dst, x, w, bias Tensor)
	// MatMulGELU: dst(M,N) = gelu(x(M,K) · w(N,K)ᵀ + bias(N)), MatMul then
	// GELU in one op (a GPT-2 block's first MLP layer). Backends that can
	// fuse the two run one kernel (WebGPU's texture matmuls: GELU in the
	// epilogue); the others run the two ops.
	MatMulGELU(dst, x, w, bias Tensor)
	// MatMulKVStore: qkv(B,Tq,3C) = x(B,Tq,K) · w(3C,K)ᵀ + bias(3C), then
	// KVStore(kCache, vCache, qkv, start, qlen), in one op (a block's
	// attention input projection and the cache store that follows it).
	// Backends that can fuse the two run one kernel; the others the two ops.
	MatMulKVStore(qkv, x, w, bias, kCache, vCache, start, qlen Tensor)
	// FusesBlock reports whether the fused block ops below (MatMulAdd,
	// LayerNormMatMul, LayerNormAttention) run as one kernel each for a
	// matmul of m rows with weights w. Every backend runs them; where
	// this is false they run as their parts, and a forward should call
	// the parts' own fused forms (AddLayerNorm, MatMulGELU, ...) instead.
	FusesBlock(m int, w Tensor) bool
	// MatMulAdd: dst(M,N) = res(M,N) + (x(M,K) · w(N,K)ᵀ + bias(N)), MatMul
	// then Add (a projection and the residual add after it). dst must not
	// alias res.
	MatMulAdd(dst, x, w, bias, res Tensor)
	// LayerNormMatMul: dst(M,N) = LayerNorm(x)(M,K) · w(N,K)ᵀ + bias(N)
	// (gamma, beta (K), eps), put through GELU when gelu is set: LayerNorm
	// then MatMul or MatMulGELU, in one op (the layer norm before mlp.fc
	// or the vocabulary projection).
	LayerNormMatMul(dst, x, gamma, beta, w, bias Tensor, eps float32, gelu bool)
	// LayerNormAttention: dst(B,Tq,C) = Attention of qkv = LayerNorm(a.X) ·
	// a.Wᵀ + a.Bias after KVStore of its keys and values into the caches:
	// a block's attention half in one op (see NormAttention). The qkv rows
	// themselves are not an output.
	LayerNormAttention(dst Tensor, a NormAttention)
	// Embed: dst(M,C) = wte[tokens[m]] + wpe[pos[m]]; wte(V,C), wpe(P,C)
	// (F32 or F16), tokens(M) and pos(M) I32.
	Embed(dst, wte, wpe, tokens, pos Tensor)
	// LayerNorm over the last dim: dst(M,C) = (x-mean)/sqrt(var+eps)*gamma + beta.
	LayerNorm(dst, x, gamma, beta Tensor, eps float32)
	// GELU, GPT-2's tanh approximation, elementwise: dst = gelu(x).
	GELU(dst, x Tensor)
	// Add elementwise: dst = a + b (same shapes).
	Add(dst, a, b Tensor)
	// AddLayerNorm is Add then LayerNorm in one op (a residual add and the
	// layer norm that reads it): sum = a + b and dst = LayerNorm(sum),
	// bit for bit what the two ops give.
	AddLayerNorm(sum, dst, a, b, gamma, beta Tensor, eps float32)
	// Rows gathers rows: dst(R,C) = x[idx[r], :] for x(M,C) F32 and idx(R)
	// I32 (e.g. each sequence's last position before the vocabulary
	// projection). Indices outside [0, M) give zero rows.
	Rows(dst, x, idx Tensor)
	// KVStore writes the keys and values of qkv(B,Tq,3C) (columns C..2C and
	// 2C..3C) into kCache(B,Tmax,C) and vCache(B,Tmax,C) at positions
	// start[b]+i for i < qlen[b]; start(B), qlen(B) I32.
	KVStore(kCache, vCache, qkv, start, qlen Tensor)
	// Attention: causal multi-head attention with nHead heads. Query
	// (b,i) is qkv[b,i,0:C] at absolute position p = start[b]+i and attends
	// to cached keys 0..p of sequence b. dst(B,Tq,C); rows i >= qlen[b]
	// (padding) are written as zeros.
	Attention(dst, qkv, kCache, vCache, start, qlen Tensor, nHead int)
	// LogSoftmax over the last dim: dst(M,V) = x - logsumexp(x).
	LogSoftmax(dst, x Tensor)
	// CrossEntropy: dst(M) = -log softmax(logits(M,V))[targets[m]]; rows
	// whose target is negative are masked and get 0.
	CrossEntropy(dst, logits, targets Tensor)
	// Argmax: dst(M) I32 = index of the largest logit of each row (the
	// lowest index among ties).
	Argmax(dst, logits Tensor)
	// Sample: dst(M) I32 draws one token per row of logits(M,V) under p,
	// using uniforms(M) F32 in [0,1) as the row's random number, so that a
	// seeded host RNG makes sampling reproducible on every backend.
	Sample(dst, logits, uniforms Tensor, p SampleParams)
}

// Must panics on err; for tests and programmer-error paths only.
func Must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// CheckShape panics unless t has the given dtype and shape; -1 in want
// matches any size.
func CheckShape(op, arg string, t Tensor, dt DType, want ...int) {
	if t == nil {
		panic(fmt.Sprintf("gpu: %s: %s is nil", op, arg))
	}
	if t.DType() != dt {
		panic(fmt.Sprintf("gpu: %s: %s has dtype %v, want %v", op, arg, t.DType(), dt))
	}
	got := t.Shape()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = want[i] < 0 || want[i] == got[i]
	}
	if !ok {
		panic(fmt.Sprintf("gpu: %s: %s has shape %v, want %v", op, arg, got, want))
	}
}
