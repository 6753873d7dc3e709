package gpu

import (
	"fmt"
	"math"
)

// TrainBackend is a Backend that also runs the backward pass of every
// forward op and the optimizer, so that a training loop (package train,
// llm.c style: an explicit backward, no tape) is written once against it.
//
// Gradient contract, the same for every op:
//   - gradients of WEIGHTS (dW, dBias, dGamma, dBeta, dWte, dWpe) are
//     ACCUMULATED: dW += ..., so that micro-batches sum; clear them with
//     Zero at the start of a step;
//   - gradients of ACTIVATIONS (dx, dQKV, dLogits) are WRITTEN: dx = ...,
//     every element, padding included. A residual connection adds its two
//     gradient streams with Accumulate (or Add).
//
// As for Backend, no output may alias an input (WebGPU forbids a buffer
// bound read-only and read-write in one dispatch); an output that is also
// read (an accumulator, AdamW's state) is bound read-write only.
type TrainBackend interface {
	Backend

	// Zero: dst = 0 (any dtype and shape).
	Zero(dst Tensor)
	// Accumulate: dst += x, elementwise, F32, same shapes.
	Accumulate(dst, x Tensor)

	// MatMulBackward is the backward of MatMul (dst = x·wᵀ + bias) for F32
	// weights: given dOut(M,N), x(M,K) and w(N,K),
	//	dx(M,K)  =  dOut · w          (written; dx may be nil: not needed)
	//	dW(N,K) +=  dOutᵀ · x         (accumulated)
	//	dBias(N) += Σ_rows dOut       (accumulated; may be nil: no bias)
	// x, dOut and dx may have any leading dims whose product is M.
	MatMulBackward(dx, dW, dBias, dOut, x, w Tensor)

	// LayerNormBackward is the backward of LayerNorm over the last dim; the
	// row statistics are recomputed from x (two passes, as the forward):
	//	dx(M,C) written, dGamma(C) += Σ_rows dOut·x̂, dBeta(C) += Σ_rows dOut.
	LayerNormBackward(dx, dGamma, dBeta, dOut, x, gamma Tensor, eps float32)

	// GELUBackward: dx = dOut * gelu'(x), elementwise (GPT-2's tanh form).
	GELUBackward(dx, dOut, x Tensor)

	// AttentionTrain is the training forward of causal self-attention with
	// no cache: every sequence starts at position 0, q, k and v are the
	// thirds of qkv(B,T,3C), and query (b,i < qlen[b]) attends to keys
	// 0..i of its own sequence. dst(B,T,C) is Attention's output (padding
	// rows i >= qlen[b] are zero); lse(B,H,T) receives each row's
	// logsumexp of the scaled scores, lse = log Σ_j exp(q·k_j/sqrt(D)),
	// which AttentionBackward needs (0 on padding rows).
	AttentionTrain(dst, lse, qkv, qlen Tensor, nHead int)
	// AttentionBackward is the backward of AttentionTrain, flash-attention
	// style: probabilities are recomputed from qkv and lse, never stored.
	// Inputs: dOut(B,T,C), qkv(B,T,3C), out(B,T,C) and lse(B,H,T) from
	// AttentionTrain, qlen(B). dQKV(B,T,3C) is written whole: padded query
	// rows get zero dq and keys/values at positions >= qlen[b] get zero
	// dk, dv.
	AttentionBackward(dQKV, dOut, qkv, out, lse, qlen Tensor, nHead int)

	// CrossEntropyBackward is the backward of CrossEntropy fused with the
	// softmax, for the loss L = scale * Σ_m CrossEntropy(logits, targets)_m:
	//	dLogits(M,V) = scale * (softmax(logits[m]) - onehot(targets[m]))
	// written; rows whose target is negative (masked) are written as zeros.
	// scale is typically 1/(number of unmasked targets).
	CrossEntropyBackward(dLogits, logits, targets Tensor, scale float32)

	// EmbedBackward is the backward of Embed (F32 tables): for every row m,
	//	dWte[tokens[m]] += dOut[m],  dWpe[pos[m]] += dOut[m]
	// with dOut(M,C), tokens(M), pos(M) I32, dWte(V,C), dWpe(P,C). Rows
	// whose token (or position) is negative contribute to neither table
	// (or not to dWpe); ids >= the table's rows are a programmer error
	// (the reference panics, WebGPU adds nothing). Deterministic: each
	// table row's contributions are summed in increasing m, with no
	// atomics. dWpe may be nil (then pos is not read). WebGPU accepts at
	// most 60000 rows per call.
	EmbedBackward(dWte, dWpe, dOut, tokens, pos Tensor)

	// GradNormSq: dst(1) = Σ over every element of every grad of g²
	// (written), the squared global norm for gradient clipping.
	GradNormSq(dst Tensor, grads ...Tensor)

	// AdamW updates one parameter tensor in place from its gradient (all
	// F32, same shape): with g = grad * s, where s = p.GradScale times,
	// when p.ClipNorm > 0 and normSq is given, min(1, ClipNorm/sqrt(normSq[0]))
	// (normSq from GradNormSq, read on the device: no host sync),
	//	m = β1 m + (1-β1) g;  v = β2 v + (1-β2) g²
	//	param -= LR * ( m/(1-β1^t) / (sqrt(v/(1-β2^t)) + Eps) + WeightDecay * param )
	// param, m and v are read and written; grad and normSq are only read.
	AdamW(param, m, v, grad, normSq Tensor, p AdamWParams)
}

// AdamWParams configures one AdamW step.
type AdamWParams struct {
	LR, Beta1, Beta2, Eps float32
	WeightDecay           float32 // decoupled; 0 for biases and LayerNorm gains by convention
	Step                  int     // t >= 1, for the bias corrections
	GradScale             float32 // multiplies the gradient (0 means 1), e.g. 1/micro-batches
	ClipNorm              float32 // > 0: clip the global norm to this (needs normSq)
}

// AdamWMeta returns the scalars every AdamW implementation uses, computed
// once on the host in float64: the gradient scale (0 -> 1) and the bias
// corrections 1-β1^t and 1-β2^t. It panics if Step < 1.
func AdamWMeta(p AdamWParams) (gscale, bc1, bc2 float32) {
	if p.Step < 1 {
		panic(fmt.Sprintf("gpu: AdamW: Step = %d, want >= 1", p.Step))
	}
	gscale = p.GradScale
	if gscale == 0 {
		gscale = 1
	}
	bc1 = float32(1 - math.Pow(float64(p.Beta1), float64(p.Step)))
	bc2 = float32(1 - math.Pow(float64(p.Beta2), float64(p.Step)))
	return gscale, bc1, bc2
}

// ClipScale is min(1, clip/sqrt(normSq)), the factor every implementation
// applies to the gradient when clip > 0 (1 otherwise).
func ClipScale(clip, normSq float32) float32 {
	if !(clip > 0) {
		return 1
	}
	n := float32(math.Sqrt(float64(normSq)))
	if n > clip {
		return clip / n
	}
	return 1
}

// MatMulBackwardDims checks MatMulBackward's operands and returns (M, K, N).
func MatMulBackwardDims(dx, dW, dBias, dOut, x, w Tensor) (m, k, n int) {
	if dW == nil || dOut == nil || x == nil || w == nil {
		panic("gpu: MatMulBackward: dW, dOut, x and w must not be nil")
	}
	ws := w.Shape()
	if len(ws) != 2 {
		panic(fmt.Sprintf("gpu: MatMulBackward: w has shape %v, want (N, K)", ws))
	}
	n, k = ws[0], ws[1]
	CheckShape("MatMulBackward", "w", w, F32, n, k)
	CheckShape("MatMulBackward", "dW", dW, F32, n, k)
	xs := x.Shape()
	if len(xs) == 0 || xs[len(xs)-1] != k {
		panic(fmt.Sprintf("gpu: MatMulBackward: x has shape %v, want (..., %d) to match w %v", xs, k, ws))
	}
	CheckShape("MatMulBackward", "x", x, F32, xs...)
	m = Numel(xs[:len(xs)-1])
	ds := dOut.Shape()
	if len(ds) == 0 || ds[len(ds)-1] != n || Numel(ds[:len(ds)-1]) != m {
		panic(fmt.Sprintf("gpu: MatMulBackward: dOut has shape %v, want %d rows of %d", ds, m, n))
	}
	CheckShape("MatMulBackward", "dOut", dOut, F32, ds...)
	if dx != nil {
		CheckShape("MatMulBackward", "dx", dx, F32, xs...)
	}
	if dBias != nil {
		CheckShape("MatMulBackward", "dBias", dBias, F32, n)
	}
	return m, k, n
}

// AttentionTrainDims checks the shapes of AttentionTrain and
// AttentionBackward: qkv(B,T,3C) F32, qlen(B) I32, C divisible by nHead
// with a head size of at most 128. It returns B, T, C and D = C/nHead.
func AttentionTrainDims(op string, qkv, qlen Tensor, nHead int) (b, t, c, d int) {
	qs := qkv.Shape()
	if len(qs) != 3 || qs[2]%3 != 0 {
		panic(fmt.Sprintf("gpu: %s: qkv has shape %v, want (B, T, 3C)", op, qs))
	}
	b, t, c = qs[0], qs[1], qs[2]/3
	CheckShape(op, "qkv", qkv, F32, b, t, 3*c)
	CheckShape(op, "qlen", qlen, I32, b)
	if nHead <= 0 || c%nHead != 0 {
		panic(fmt.Sprintf("gpu: %s: C=%d is not divisible by nHead=%d", op, c, nHead))
	}
	d = c / nHead
	if d > maxHeadDim {
		panic(fmt.Sprintf("gpu: %s: head size %d exceeds the kernels' maximum of %d", op, d, maxHeadDim))
	}
	return b, t, c, d
}

// EmbedBackwardDims checks EmbedBackward's operands and returns M and C.
func EmbedBackwardDims(dWte, dWpe, dOut, tokens, pos Tensor) (m, c int) {
	if dWte == nil || dOut == nil || tokens == nil {
		panic("gpu: EmbedBackward: dWte, dOut and tokens must not be nil")
	}
	_, c = rowsCols(dWte.Shape())
	CheckShape("EmbedBackward", "dWte", dWte, F32, -1, c)
	m = Numel(tokens.Shape())
	CheckShape("EmbedBackward", "tokens", tokens, I32, tokens.Shape()...)
	if r, cc := rowsCols(dOut.Shape()); r != m || cc != c || dOut.DType() != F32 {
		panic(fmt.Sprintf("gpu: EmbedBackward: dOut is %v%v, want f32 with %d rows of %d", dOut.DType(), dOut.Shape(), m, c))
	}
	if dWpe != nil {
		CheckShape("EmbedBackward", "dWpe", dWpe, F32, -1, c)
		if pos == nil || pos.DType() != I32 || Numel(pos.Shape()) != m {
			panic(fmt.Sprintf("gpu: EmbedBackward: pos must be i32 with %d elements", m))
		}
	}
	return m, c
}

// AdamWCheck panics unless param, m, v and grad are F32 of one shape and
// normSq, if given, is F32 with one element.
func AdamWCheck(param, m, v, grad, normSq Tensor, p AdamWParams) {
	CheckShape("AdamW", "param", param, F32, param.Shape()...)
	for _, a := range []struct {
		n string
		t Tensor
	}{{"m", m}, {"v", v}, {"grad", grad}} {
		CheckShape("AdamW", a.n, a.t, F32, param.Shape()...)
	}
	if normSq != nil {
		if normSq.DType() != F32 || Numel(normSq.Shape()) != 1 {
			panic(fmt.Sprintf("gpu: AdamW: normSq is %v%v, want f32 with 1 element", normSq.DType(), normSq.Shape()))
		}
	} else if p.ClipNorm > 0 {
		panic("gpu: AdamW: ClipNorm > 0 needs normSq")
	}
}
