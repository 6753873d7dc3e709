package gpu_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
)

// TestProducedXSkipsCopies: under the texture matmuls, a matmul whose x
// was written by LayerNorm, AddLayerNorm or MatMulGELU records no copy of
// x (one dispatch), MatMulGELU is one dispatch, the producers' "_xt"
// kernels give their plain kernels' bits (what the register variant runs)
// and the fused MatMulGELU gives MatMul then GELU's, so that fusing never
// changes a result.
func TestProducedXSkipsCopies(t *testing.T) {
	w := gputest.Backend(t)
	if !w.HasTexRead {
		t.Fatalf("adapter %s cannot read storage textures; the texture matmuls need it", w.Name())
	}
	old := w.MatMulVariant
	defer func() { w.MatMulVariant = old }()
	rng := rand.New(rand.NewPCG(17, 1))
	const m, c, n = 3, 64, 256
	up := func(dt gpu.DType, shape ...int) gpu.Tensor {
		x := gpu.Must(w.Alloc(dt, shape...))
		v := make([]float32, gpu.Numel(shape))
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		if err := w.Write(x, v); err != nil {
			t.Fatal(err)
		}
		return x
	}
	x, a := up(gpu.F32, m, c), up(gpu.F32, m, c)
	g, be := up(gpu.F32, c), up(gpu.F32, c)
	wfc, wfc2 := up(gpu.F16, n, c), up(gpu.F16, c, n)
	bias := up(gpu.F32, n)
	h, sum, act, y := up(gpu.F32, m, c), up(gpu.F32, m, c), up(gpu.F32, m, n), up(gpu.F32, m, c)
	pre, sep := up(gpu.F32, m, n), up(gpu.F32, m, n)
	read := func(x gpu.Tensor) []float32 { return gpu.Must(w.ReadF32(x)) }
	run := func(variant string) (outs [][]float32, d gpu.Counts) {
		w.MatMulVariant = variant
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		c0 := w.Counts()
		w.AddLayerNorm(sum, h, x, a, g, be, 1e-5)
		w.MatMulGELU(act, h, wfc, bias)
		w.MatMul(y, act, wfc2, nil)
		d = w.Counts().Sub(c0)
		w.MatMul(pre, h, wfc, bias)
		w.GELU(sep, pre)
		outs = append(outs, read(h), read(act), read(y), read(sep))
		w.LayerNorm(h, x, g, be, 1e-5)
		outs = append(outs, read(h))
		return outs, d
	}
	// Warm the weights' texture copies (made once per weight version).
	run(gpu.MatMulTex)
	tex, d := run(gpu.MatMulTex)
	if want := (gpu.Counts{Dispatches: 3, Passes: 1}); d.Dispatches != want.Dispatches || d.Passes != want.Passes {
		t.Errorf("AddLayerNorm, MatMulGELU, MatMul under the texture matmuls recorded %+v; want %d dispatches in %d pass (no copies of x)",
			d, want.Dispatches, want.Passes)
	}
	reg, _ := run(gpu.MatMulReg)
	same := func(what string, got, want []float32) {
		t.Helper()
		for j := range got {
			if math.Float32bits(got[j]) != math.Float32bits(want[j]) {
				t.Errorf("%s differs at %d: %g vs %g", what, j, got[j], want[j])
				return
			}
		}
	}
	same("AddLayerNorm with its texture copy against its plain kernel", tex[0], reg[0])
	same("LayerNorm with its texture copy against its plain kernel", tex[4], reg[4])
	same("the fused MatMulGELU against MatMul then GELU", tex[1], tex[3])
}
