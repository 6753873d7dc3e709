package gpu

import "fmt"

// NormAttention is the input of Backend.LayerNormAttention: a decoder
// block's first layer norm, its qkv projection, the KV-cache store and
// causal attention, for sequences b < B of Tq new tokens each (rows i >=
// qlen[b] are padding).
type NormAttention struct {
	X           Tensor  // (B,Tq,C) F32: the residual stream
	Gamma, Beta Tensor  // (C) F32: the layer norm's scale and shift
	Eps         float32 // the layer norm's epsilon
	W           Tensor  // (3C,C) F32, F16 or quantized: the qkv projection
	Bias        Tensor  // (3C) F32 or nil
	// KCache, VCache (B,Tmax,C) F32 receive the keys and values at
	// positions start[b]+i, i < qlen[b]; Start, Qlen (B) I32.
	KCache, VCache, Start, Qlen Tensor
	NHead                       int // heads; C must be a multiple
}

// NormAttentionDims checks LayerNormAttention's operands and returns B,
// Tq, C, Tmax and the head size. It panics with a "gpu:
// LayerNormAttention: " message on any shape or dtype mismatch.
func NormAttentionDims(dst Tensor, a NormAttention) (nb, tq, c, tmax, d int) {
	const op = "LayerNormAttention"
	if a.X == nil || a.KCache == nil || a.W == nil {
		panic("gpu: LayerNormAttention: X, W and KCache must not be nil")
	}
	ks := a.KCache.Shape()
	if len(ks) != 3 {
		panic(fmt.Sprintf("gpu: %s: kCache has shape %v, want (B, Tmax, C)", op, ks))
	}
	nb, tmax, c = ks[0], ks[1], ks[2]
	CheckShape(op, "x", a.X, F32, nb, -1, c)
	tq = a.X.Shape()[1]
	CheckShape(op, "vCache", a.VCache, F32, nb, tmax, c)
	CheckShape(op, "kCache", a.KCache, F32, nb, tmax, c)
	CheckShape(op, "start", a.Start, I32, nb)
	CheckShape(op, "qlen", a.Qlen, I32, nb)
	CheckShape(op, "gamma", a.Gamma, F32, c)
	CheckShape(op, "beta", a.Beta, F32, c)
	CheckShape(op, "w", a.W, a.W.DType(), 3*c, c)
	if a.Bias != nil {
		CheckShape(op, "bias", a.Bias, F32, 3*c)
	}
	CheckShape(op, "dst", dst, F32, nb, tq, c)
	if a.NHead <= 0 || c%a.NHead != 0 {
		panic(fmt.Sprintf("gpu: %s: C=%d is not divisible by nHead=%d", op, c, a.NHead))
	}
	return nb, tq, c, tmax, c / a.NHead
}

// LayerNormMatMulParts runs LayerNormMatMul on b as its parts: LayerNorm
// into a scratch tensor, then MatMul or MatMulGELU (the reference's
// definition, and WebGPU's where it does not fuse them). It fails only if
// the scratch tensor cannot be allocated.
func LayerNormMatMulParts(b Backend, dst, x, gamma, beta, w, bias Tensor, eps float32, gelu bool) error {
	h, err := b.Alloc(F32, x.Shape()...)
	if err != nil {
		return err
	}
	b.LayerNorm(h, x, gamma, beta, eps)
	if gelu {
		b.MatMulGELU(dst, h, w, bias)
	} else {
		b.MatMul(dst, h, w, bias)
	}
	b.Free(h)
	return nil
}

// LayerNormAttentionParts runs LayerNormAttention on b as its parts:
// LayerNorm, MatMulKVStore and Attention through scratch tensors. It
// fails only if those cannot be allocated.
func LayerNormAttentionParts(b Backend, dst Tensor, a NormAttention) error {
	nb, tq, c, _, _ := NormAttentionDims(dst, a)
	h, err := b.Alloc(F32, a.X.Shape()...)
	if err != nil {
		return err
	}
	defer b.Free(h)
	qkv, err := b.Alloc(F32, nb, tq, 3*c)
	if err != nil {
		return err
	}
	defer b.Free(qkv)
	b.LayerNorm(h, a.X, a.Gamma, a.Beta, a.Eps)
	b.MatMulKVStore(qkv, h, a.W, a.Bias, a.KCache, a.VCache, a.Start, a.Qlen)
	b.Attention(dst, qkv, a.KCache, a.VCache, a.Start, a.Qlen, a.NHead)
	return nil
}
