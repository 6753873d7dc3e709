package conformance

import (
	"fmt"
	"math"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/quant"
)

func init() {
	register("MatMulGELU", testMatMulGELU)
	register("ProducedX", testProducedX)
	register("MatMulKVStore", testMatMulKVStore)
}

// matMulGELUCases: N a multiple of 8 (the fused texture kernels) and not
// (MatMul then GELU), single rows, partial blocks of 8 and 16 rows, K of
// whole quantization blocks where the case also runs quantized weights.
var matMulGELUCases = []struct{ m, k, n int }{
	{1, 8, 16},
	{3, 16, 129},
	{1, 768, 3072},
	{8, 256, 136},
	{9, 40, 64},
	{33, 64, 256},
}

// testMatMulGELU checks MatMulGELU against the reference with f32, f16
// and (K a multiple of the block) quantized weights, and against the
// backend's own MatMul then GELU. On WebGPU it runs the texture variant
// (the fused kernels where the adapter reads textures) and the register
// variant (MatMul then GELU, as every other variant: their MatMul kernels
// are checked by the MatMul case).
func testMatMulGELU(t T, p *Pair) {
	wg, ok := p.Got.(*gpu.WebGPU)
	variants := []string{""}
	if ok {
		variants = []string{gpu.MatMulTex, gpu.MatMulReg}
		old := wg.MatMulVariant
		defer func() { wg.MatMulVariant = old }()
	}
	for ci, c := range matMulGELUCases {
		for _, dt := range []gpu.DType{gpu.F32, gpu.F16, gpu.Q8_0, gpu.Q4_0, gpu.Q4_K} {
			if f, q := dt.Quant(); q && (c.k%f.BlockSize() != 0 || c.m*c.n > 1<<10) {
				continue
			}
			x := p.Upload(t, gpu.F32, p.Randn(c.m*c.k, 1), c.m, c.k)
			w := p.Upload(t, dt, p.Randn(c.n*c.k, 2/math.Sqrt(float64(c.k))), c.n, c.k)
			var b Tensors
			withBias := ci%2 == 0
			if withBias {
				b = p.Upload(t, gpu.F32, p.Randn(c.n, 1), c.n)
			}
			d := p.Poisoned(t, gpu.F32, c.m, c.n)
			sep, pre := p.Poisoned(t, gpu.F32, c.m, c.n), p.Poisoned(t, gpu.F32, c.m, c.n)
			p.Ref.MatMulGELU(d.Ref, x.Ref, w.Ref, b.Ref)
			atol := 2e-6 * math.Sqrt(float64(c.k)) * 8
			for _, v := range variants {
				if ok {
					wg.MatMulVariant = v
				}
				what := fmt.Sprintf("%s M=%d K=%d N=%d w %v bias=%v", v, c.m, c.k, c.n, dt, withBias)
				p.Got.MatMulGELU(d.Got, x.Got, w.Got, b.Got)
				p.Close(t, what, d, atol, 1e-5)
				// The backend's two ops, and the fused one, agree closely
				// (the fused kernel's GELU may round differently where a
				// compiler contracts it differently; none did on lavapipe).
				p.Got.MatMul(pre.Got, x.Got, w.Got, b.Got)
				p.Got.GELU(sep.Got, pre.Got)
				fused, _ := p.ReadBoth(t, d)
				two, _ := p.ReadBoth(t, sep)
				if err := AllClose(fused, two, 1e-6, 1e-6); err != nil {
					t.Errorf("%s: MatMulGELU against MatMul then GELU: %v", what, err)
				}
			}
			p.Free(x, w, d, sep, pre)
			if withBias {
				p.Free(b)
			}
		}
	}
}

// testProducedX runs the ops whose output is a matmul's next x (which the
// WebGPU backend's texture matmuls read from a texture the producer wrote,
// gpu/xtex.go) followed by that matmul, so the copy is checked through its
// consumer: LayerNorm, AddLayerNorm, MatMulGELU and decode Attention, each
// then MatMul with f32, f16 and quantized weights; then the orders in which a copy
// goes stale: its buffer written again by another op, and the texture
// taken by another x of the same width before the matmul runs.
func testProducedX(t T, p *Pair) {
	for _, sz := range [][2]int{{1, 768}, {3, 64}, {8, 16}, {33, 40}, {5, 20}, {12, 256}} {
		m, c := sz[0], sz[1]
		for _, dt := range []gpu.DType{gpu.F32, gpu.F16} {
			p.producedX(t, m, c, 136, dt)
		}
		// Quantized weights: the texture mat-vecs read the copy too.
		for _, f := range quant.Formats {
			if c%f.BlockSize() == 0 {
				p.producedX(t, m, c, 256, gpu.QuantDType(f))
			}
		}
	}
	p.producedAttention(t, 3, 64, 4, 9)
	p.producedAttention(t, 1, 768, 12, 5)
	p.staleX(t, 4, 64, 24)
}

// matmulBoth runs dst = x · wᵀ on both backends and compares.
func (p *Pair) matmulBoth(t T, what string, x, w Tensors, m, n, k int) {
	t.Helper()
	y := p.Poisoned(t, gpu.F32, m, n)
	p.Ref.MatMul(y.Ref, x.Ref, w.Ref, nil)
	p.Got.MatMul(y.Got, x.Got, w.Got, nil)
	p.Close(t, what, y, 2e-6*math.Sqrt(float64(k))*16, 1e-4)
	p.Free(y)
}

func (p *Pair) producedX(t T, m, c, n int, dt gpu.DType) {
	what := fmt.Sprintf("%dx%d w %v", m, c, dt)
	x, g, be := layerNormInputs(t, p, m, c)
	a := p.Upload(t, gpu.F32, p.Randn(m*c, 1), m, c)
	w := p.Upload(t, dt, p.Randn(n*c, 1/math.Sqrt(float64(c))), n, c)
	w2 := p.Upload(t, dt, p.Randn(c*n, 1/math.Sqrt(float64(n))), c, n)
	h, sum, act := p.Poisoned(t, gpu.F32, m, c), p.Poisoned(t, gpu.F32, m, c), p.Poisoned(t, gpu.F32, m, n)
	defer p.Free(x, g, be, a, w, w2, h, sum, act)
	p.Ref.LayerNorm(h.Ref, x.Ref, g.Ref, be.Ref, 1e-5)
	p.Got.LayerNorm(h.Got, x.Got, g.Got, be.Got, 1e-5)
	p.matmulBoth(t, what+": LayerNorm then MatMul", h, w, m, n, c)
	p.Ref.AddLayerNorm(sum.Ref, h.Ref, x.Ref, a.Ref, g.Ref, be.Ref, 1e-5)
	p.Got.AddLayerNorm(sum.Got, h.Got, x.Got, a.Got, g.Got, be.Got, 1e-5)
	p.matmulBoth(t, what+": AddLayerNorm then MatMul", h, w, m, n, c)
	p.Ref.MatMulGELU(act.Ref, h.Ref, w.Ref, nil)
	p.Got.MatMulGELU(act.Got, h.Got, w.Got, nil)
	p.Close(t, what+": MatMulGELU", act, 2e-6*math.Sqrt(float64(c))*16, 1e-4)
	p.matmulBoth(t, what+": MatMulGELU then MatMul", act, w2, m, c, n)
}

// producedAttention: decode attention (Tq = 1) over a cache filled by a
// prefill, then the output projection of its output.
func (p *Pair) producedAttention(t T, nb, c, nh, tmax int) {
	kc := p.decode(nb, c, nh, tmax)
	what := fmt.Sprintf("decode attention B=%d C=%d H=%d", nb, c, nh)
	qkv := p.Upload(t, gpu.F32, p.Randn(nb*3*c, 1), nb, 1, 3*c)
	kcache := p.Upload(t, gpu.F32, p.Randn(nb*tmax*c, 1), nb, tmax, c)
	vcache := p.Upload(t, gpu.F32, p.Randn(nb*tmax*c, 1), nb, tmax, c)
	st := p.Upload(t, gpu.I32, kc.start, nb)
	ql := p.Upload(t, gpu.I32, kc.qlen, nb)
	w := p.Upload(t, gpu.F16, p.Randn(c*c, 1/math.Sqrt(float64(c))), c, c)
	att := p.Poisoned(t, gpu.F32, nb, 1, c)
	defer p.Free(qkv, kcache, vcache, st, ql, w, att)
	p.Ref.KVStore(kcache.Ref, vcache.Ref, qkv.Ref, st.Ref, ql.Ref)
	p.Got.KVStore(kcache.Got, vcache.Got, qkv.Got, st.Got, ql.Got)
	p.Ref.Attention(att.Ref, qkv.Ref, kcache.Ref, vcache.Ref, st.Ref, ql.Ref, nh)
	p.Got.Attention(att.Got, qkv.Got, kcache.Got, vcache.Got, st.Got, ql.Got, nh)
	p.Close(t, what, att, 1e-5, 1e-4)
	p.matmulBoth(t, what+" then MatMul", att, w, nb, c, c)
}

// staleX: x's texture copy must not be used once x changed or the texture
// was taken by another x of the same width.
func (p *Pair) staleX(t T, m, c, n int) {
	x, g, be := layerNormInputs(t, p, m, c)
	x2 := p.Upload(t, gpu.F32, p.Randn(m*c, 1), m, c)
	w := p.Upload(t, gpu.F32, p.Randn(n*c, 1), n, c)
	h, h2 := p.Poisoned(t, gpu.F32, m, c), p.Poisoned(t, gpu.F32, m, c)
	defer p.Free(x, g, be, x2, w, h, h2)
	p.Ref.LayerNorm(h.Ref, x.Ref, g.Ref, be.Ref, 1e-5)
	p.Got.LayerNorm(h.Got, x.Got, g.Got, be.Got, 1e-5)
	p.Ref.Add(h.Ref, x.Ref, x2.Ref) // h written again, without a copy
	p.Got.Add(h.Got, x.Got, x2.Got)
	p.matmulBoth(t, "x rewritten after its copy", h, w, m, n, c)
	p.Ref.LayerNorm(h.Ref, x.Ref, g.Ref, be.Ref, 1e-5)
	p.Got.LayerNorm(h.Got, x.Got, g.Got, be.Got, 1e-5)
	p.Ref.LayerNorm(h2.Ref, x2.Ref, g.Ref, be.Ref, 1e-5) // takes the texture
	p.Got.LayerNorm(h2.Got, x2.Got, g.Got, be.Got, 1e-5)
	p.matmulBoth(t, "texture taken by another x", h, w, m, n, c)
	p.matmulBoth(t, "the other x, its texture since overwritten", h2, w, m, n, c)
}

// testMatMulKVStore checks MatMulKVStore after a decode attention has
// made the WebGPU backend's texture copies of the caches (so that it
// takes its fused kernel where C is a multiple of 32): qkv against the
// reference, the caches against the reference KVStore of the backend's
// own qkv exactly (the store copies), and a decode attention after it,
// which reads the copies, against the reference.
func testMatMulKVStore(t T, p *Pair) {
	for _, cs := range []struct{ nb, tq, c, h, tmax, k int }{
		{1, 1, 64, 2, 9, 48}, {3, 1, 32, 4, 7, 40}, {4, 1, 96, 3, 12, 64}, {3, 4, 64, 2, 12, 24}, {3, 1, 12, 3, 6, 16},
	} {
		for _, dt := range []gpu.DType{gpu.F32, gpu.F16} {
			p.matMulKVCase(t, cs.nb, cs.tq, cs.c, cs.h, cs.tmax, cs.k, dt)
		}
	}
}

func (p *Pair) matMulKVCase(t T, nb, tq, c, nh, tmax, k int, dt gpu.DType) {
	kc := p.chunked(nb, tq, c, nh, tmax)
	if tq == 1 {
		kc = p.decode(nb, c, nh, tmax)
	}
	what := fmt.Sprintf("B=%d Tq=%d C=%d Tmax=%d K=%d w %v", nb, tq, c, tmax, k, dt)
	ones := make([]int32, nb)
	for b := range ones {
		ones[b] = 1
	}
	kcache := p.Upload(t, gpu.F32, p.cacheHistory(kc), nb, tmax, c)
	vcache := p.Upload(t, gpu.F32, p.cacheHistory(kc), nb, tmax, c)
	st, ql, one := p.Upload(t, gpu.I32, kc.start, nb), p.Upload(t, gpu.I32, kc.qlen, nb), p.Upload(t, gpu.I32, ones, nb)
	qkv0 := p.Upload(t, gpu.F32, p.Randn(nb*3*c, 1), nb, 1, 3*c)
	x := p.Upload(t, gpu.F32, p.Randn(nb*tq*k, 1), nb, tq, k)
	w := p.Upload(t, dt, p.Randn(3*c*k, 1/math.Sqrt(float64(k))), 3*c, k)
	bias := p.Upload(t, gpu.F32, p.Randn(3*c, 1), 3*c)
	qkv := p.Poisoned(t, gpu.F32, nb, tq, 3*c)
	att0, att := p.Poisoned(t, gpu.F32, nb, 1, c), p.Poisoned(t, gpu.F32, nb, 1, c)
	defer p.Free(kcache, vcache, st, ql, one, qkv0, x, w, bias, qkv, att0, att)
	// A decode step at start (its key and value stored first): the
	// WebGPU backend's decode attention makes the caches' texture copies.
	p.Ref.KVStore(kcache.Ref, vcache.Ref, qkv0.Ref, st.Ref, one.Ref)
	p.Got.KVStore(kcache.Got, vcache.Got, qkv0.Got, st.Got, one.Got)
	p.Ref.Attention(att0.Ref, qkv0.Ref, kcache.Ref, vcache.Ref, st.Ref, one.Ref, nh)
	p.Got.Attention(att0.Got, qkv0.Got, kcache.Got, vcache.Got, st.Got, one.Got, nh)
	p.Ref.MatMulKVStore(qkv.Ref, x.Ref, w.Ref, bias.Ref, kcache.Ref, vcache.Ref, st.Ref, ql.Ref)
	p.Got.MatMulKVStore(qkv.Got, x.Got, w.Got, bias.Got, kcache.Got, vcache.Got, st.Got, ql.Got)
	p.Close(t, what+": qkv", qkv, 2e-6*math.Sqrt(float64(k))*16, 1e-4)
	// The caches: the reference's store of the backend's own qkv.
	gotQKV, err := p.Got.ReadF32(qkv.Got)
	if err != nil {
		t.Fatalf("%v", err)
	}
	if err := p.Ref.Write(qkv.Ref, gotQKV); err != nil {
		t.Fatalf("%v", err)
	}
	p.Ref.KVStore(kcache.Ref, vcache.Ref, qkv.Ref, st.Ref, ql.Ref)
	p.Close(t, what+": kCache", kcache, 0, 0)
	p.Close(t, what+": vCache", vcache, 0, 0)
	// Decode attention at each sequence's last stored position reads the
	// texture copies on a CPU adapter (a sequence that stored none: zeros).
	last := make([]int32, nb)
	for b := range last {
		last[b] = kc.start[b] + kc.qlen[b] - 1
	}
	lastT := p.Upload(t, gpu.I32, last, nb)
	qkv1 := p.Upload(t, gpu.F32, p.Randn(nb*3*c, 1), nb, 1, 3*c)
	defer p.Free(lastT, qkv1)
	p.Ref.Attention(att.Ref, qkv1.Ref, kcache.Ref, vcache.Ref, lastT.Ref, ql.Ref, nh)
	p.Got.Attention(att.Got, qkv1.Got, kcache.Got, vcache.Got, lastT.Got, ql.Got, nh)
	p.Close(t, what+": attention after it", att, 1e-5, 1e-4)
}
