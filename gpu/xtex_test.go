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

// TestFusedKVStore: once decode attention has made the caches' texture
// copies (CPU adapters), MatMulKVStore of an x that LayerNorm wrote is one
// dispatch (no copy of x, no separate store), its qkv has MatMul's bits,
// and the
// caches hold qkv's key and value columns at the sequences' positions.
func TestFusedKVStore(t *testing.T) {
	w := gputest.Backend(t)
	oldMM, oldAtt := w.MatMulVariant, w.AttentionDecodeVariant
	defer func() { w.MatMulVariant, w.AttentionDecodeVariant = oldMM, oldAtt }()
	w.MatMulVariant, w.AttentionDecodeVariant = gpu.MatMulTex, gpu.AttentionDecodeLanes
	// The caches' texture copies exist on CPU adapters only (GPUs read
	// the buffers): elsewhere the op is MatMul then KVStore.
	wantDispatches := uint64(2)
	if w.Info.Type == "cpu" {
		wantDispatches = 1
	}
	rng := rand.New(rand.NewPCG(18, 1))
	const nb, tmax, c, k, nh = 2, 5, 32, 40, 4
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
	ints := func(v ...int32) gpu.Tensor {
		x := gpu.Must(w.Alloc(gpu.I32, len(v)))
		if err := w.Write(x, v); err != nil {
			t.Fatal(err)
		}
		return x
	}
	kc, vc := up(gpu.F32, nb, tmax, c), up(gpu.F32, nb, tmax, c)
	xin, g, be := up(gpu.F32, nb, 1, k), up(gpu.F32, k), up(gpu.F32, k)
	h := up(gpu.F32, nb, 1, k)
	wt, bias := up(gpu.F16, 3*c, k), up(gpu.F32, 3*c)
	qkv, qkv2, att := up(gpu.F32, nb, 1, 3*c), up(gpu.F32, nb, 1, 3*c), up(gpu.F32, nb, 1, c)
	start, qlen := ints(3, 1), ints(1, 1)
	w.KVStore(kc, vc, qkv2, start, qlen)
	w.Attention(att, qkv2, kc, vc, start, qlen, nh) // makes the copies
	w.LayerNorm(h, xin, g, be, 1e-5)
	w.MatMul(qkv2, h, wt, bias) // makes the weights' texture copy
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	c0 := w.Counts()
	w.MatMulKVStore(qkv, h, wt, bias, kc, vc, start, qlen)
	if d := w.Counts().Sub(c0); d.Dispatches != wantDispatches {
		t.Errorf("MatMulKVStore on %s recorded %d dispatches, want %d", w.Name(), d.Dispatches, wantDispatches)
	}
	got, want := gpu.Must(w.ReadF32(qkv)), gpu.Must(w.ReadF32(qkv2))
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("fused qkv differs from MatMul's at %d: %g vs %g", i, got[i], want[i])
		}
	}
	kv, vv := gpu.Must(w.ReadF32(kc)), gpu.Must(w.ReadF32(vc))
	for b, pos := range []int{3, 1} {
		for e := 0; e < c; e++ {
			if kv[(b*tmax+pos)*c+e] != got[b*3*c+c+e] || vv[(b*tmax+pos)*c+e] != got[b*3*c+2*c+e] {
				t.Fatalf("sequence %d channel %d: cache holds k %g v %g, qkv has %g %g", b, e,
					kv[(b*tmax+pos)*c+e], vv[(b*tmax+pos)*c+e], got[b*3*c+c+e], got[b*3*c+2*c+e])
			}
		}
	}
}
