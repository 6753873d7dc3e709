package ref

import "github.com/chameleon-llm/chameleon/gpu"

// The fused block ops, as the parts they fuse composed (each part's own
// rounding to float32 in between): the reference the WebGPU backend's
// fused kernels are checked against.

// FusesBlock implements gpu.Backend: the reference fuses nothing, so a
// forward on it runs the parts.
func (*Backend) FusesBlock(int, gpu.Tensor) bool { return false }

// MatMulAdd: dst = res + (x · wᵀ + bias), MatMul's rounded outputs added
// to res.
func (b *Backend) MatMulAdd(dst, x, w, bias, res gpu.Tensor) {
	gpu.MatMulDims(dst, x, w, bias)
	gpu.CheckShape("MatMulAdd", "res", res, gpu.F32, dst.Shape()...)
	b.MatMul(dst, x, w, bias)
	out, r := f(dst), f(res)
	for i := range out {
		out[i] = r[i] + out[i]
	}
}

// LayerNormMatMul: LayerNorm, then MatMul or MatMulGELU.
func (b *Backend) LayerNormMatMul(dst, x, gamma, beta, w, bias gpu.Tensor, eps float32, gelu bool) {
	gpu.MatMulDims(dst, x, w, bias)
	if err := gpu.LayerNormMatMulParts(b, dst, x, gamma, beta, w, bias, eps, gelu); err != nil {
		panic(err) // the reference allocates on the heap
	}
}

// LayerNormAttention: LayerNorm, MatMulKVStore, Attention.
func (b *Backend) LayerNormAttention(dst gpu.Tensor, a gpu.NormAttention) {
	if err := gpu.LayerNormAttentionParts(b, dst, a); err != nil {
		panic(err)
	}
}
