package ref

import "github.com/chameleon-llm/chameleon/gpu"

// MatMul: dst(M,N) = x(M,K) · w(N,K)ᵀ + bias(N).
//
// x and dst may have any leading dims (M is their product); w is F32, F16
// or quantized (F16 and quantized tensors hold the float32 values their
// elements decode to, see Tensor); bias is F32
// (N) or nil. Each output is one dot product of K terms accumulated in
// float64, then rounded to float32. Panics on shape or dtype mismatch.
func (*Backend) MatMul(dst, x, w, bias gpu.Tensor) {
	m, k, n := gpu.MatMulDims(dst, x, w, bias)
	xv, wv, out := f(x), f(w), f(dst)
	var bv []float32
	if bias != nil {
		bv = f(bias)
	}
	for i := 0; i < m; i++ {
		xr := xv[i*k : (i+1)*k]
		for j := 0; j < n; j++ {
			wr := wv[j*k : (j+1)*k]
			var s float64
			for p := range xr {
				s += float64(xr[p]) * float64(wr[p])
			}
			if bv != nil {
				s += float64(bv[j])
			}
			out[i*n+j] = float32(s)
		}
	}
}

// MatMulGELU: dst = gelu(x · wᵀ + bias), MatMul's rounded outputs put
// through GELU, as the two ops give.
func (b *Backend) MatMulGELU(dst, x, w, bias gpu.Tensor) {
	b.MatMul(dst, x, w, bias)
	out := f(dst)
	for i, v := range out {
		out[i] = GELU(v)
	}
}

// MatMulKVStore: MatMul then KVStore.
func (b *Backend) MatMulKVStore(qkv, x, w, bias, kCache, vCache, start, qlen gpu.Tensor) {
	b.MatMul(qkv, x, w, bias)
	b.KVStore(kCache, vCache, qkv, start, qlen)
}
