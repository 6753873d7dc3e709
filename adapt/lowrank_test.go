package adapt

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/conformance"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/gpu/ref"
)

// pair opens the WebGPU backend (failing, never skipping, without an
// adapter) and pairs it with the reference under a fresh, logged seed.
func pair(t *testing.T) (*conformance.Pair, Ops, *WebGPUOps) {
	t.Helper()
	w := gputest.Backend(t)
	p := conformance.NewPair(t, ref.New(), w)
	return p, New(p.Ref).(*RefOps), &WebGPUOps{WebGPU: p.Got.(*gpu.WebGPU)}
}

// factorCase is one shape of the low-rank update.
type factorCase struct {
	m, c, v, r, k int
	packed        bool // factors read in place from a hyper-network output
	noCluster     bool // nil cluster: every row uses cluster 0
	only          int  // 1: f32 weights only, 2: f16 only (to save time on GPT-2's head)
	uniform       int  // gradient tests: > 0 puts every row in cluster uniform-1
}

func (fc factorCase) String() string {
	return fmt.Sprintf("M=%d C=%d V=%d R=%d K=%d packed=%v nocluster=%v", fc.m, fc.c, fc.v, fc.r, fc.k, fc.packed, fc.noCluster)
}

// testFactors uploads random factors for fc on both backends: A ~ N(0,
// 1/C), B ~ N(0, 1/R), so that the update is as large as the base logits.
func testFactors(t *testing.T, p *conformance.Pair, fc factorCase) (ref, got Factors, free func()) {
	t.Helper()
	if fc.packed {
		n := fc.r*fc.c + fc.v*fc.r
		data := make([]float32, 0, fc.k*n)
		for k := 0; k < fc.k; k++ {
			data = append(data, p.Randn(fc.r*fc.c, 1/math.Sqrt(float64(fc.c)))...)
			data = append(data, p.Randn(fc.v*fc.r, 1/math.Sqrt(float64(fc.r)))...)
		}
		x := p.Upload(t, gpu.F32, data, fc.k, n)
		return PackedFactors(x.Ref, fc.r, fc.c, fc.v), PackedFactors(x.Got, fc.r, fc.c, fc.v), func() { p.Free(x) }
	}
	a := p.Upload(t, gpu.F32, p.Randn(fc.k*fc.r*fc.c, 1/math.Sqrt(float64(fc.c))), fc.k, fc.r, fc.c)
	b := p.Upload(t, gpu.F32, p.Randn(fc.k*fc.v*fc.r, 1/math.Sqrt(float64(fc.r))), fc.k, fc.v, fc.r)
	return NewFactors(a.Ref, b.Ref), NewFactors(a.Got, b.Got), func() { p.Free(a, b) }
}

// testClusters uploads M cluster ids interleaving every cluster with -1
// and K (rows that get no update), or returns nil tensors.
func testClusters(t *testing.T, p *conformance.Pair, fc factorCase) (conformance.Tensors, []int32) {
	if fc.noCluster {
		return conformance.Tensors{}, nil
	}
	ids := p.Ints(fc.m, -1, fc.k+1)
	if fc.m >= 3 {
		ids[0], ids[1] = int32(fc.k-1), 0
	}
	return p.Upload(t, gpu.I32, ids, fc.m), ids
}

var logitsCases = []factorCase{
	{m: 1, c: 3, v: 5, r: 1, k: 1},
	{m: 3, c: 64, v: 129, r: 4, k: 3},
	{m: 129, c: 64, v: 129, r: 16, k: 8},
	{m: 129, c: 3, v: 5, r: 4, k: 3, packed: true},
	{m: 3, c: 768, v: 129, r: 1, k: 8, noCluster: true},
	{m: 129, c: 768, v: 129, r: 4, k: 8, packed: true},
	{m: 17, c: 768, v: 5, r: 16, k: 1},
	{m: 33, c: 64, v: 50257, r: 4, k: 3},
	// GPT-2's head: f16 weights fit a 128 MiB binding (fused kernel), f32
	// ones do not (MatMul splits them, then lowrank_add).
	{m: 3, c: 768, v: 50257, r: 16, k: 3, packed: true, only: 2},
	{m: 2, c: 768, v: 50257, r: 16, k: 8, only: 1},
	// Long enough that a CPU adapter submits both variants in slices
	// (tile_base and row_base offsets).
	{m: 129, c: 3, v: 50257, r: 16, k: 3},
}

// TestLogits compares the adapted output projection (both variants, f32
// and f16 weights, with and without bias) with the reference.
func TestLogits(t *testing.T) {
	p, ro, go_ := pair(t)
	for ci, fc := range logitsCases {
		fr, fg, free := testFactors(t, p, fc)
		cl, _ := testClusters(t, p, fc)
		h := p.Upload(t, gpu.F32, p.Randn(fc.m*fc.c, 1), fc.m, fc.c)
		alpha := float32(0.5 + p.Rng.Float64())
		for _, dt := range []gpu.DType{gpu.F32, gpu.F16} {
			if (fc.only == 1 && dt != gpu.F32) || (fc.only == 2 && dt != gpu.F16) {
				continue
			}
			w := p.Upload(t, dt, p.Randn(fc.v*fc.c, 1/math.Sqrt(float64(fc.c))), fc.v, fc.c)
			var bias conformance.Tensors
			withBias := (ci+int(dt))%2 == 0
			if withBias {
				bias = p.Upload(t, gpu.F32, p.Randn(fc.v, 1), fc.v)
			}
			want := p.Poisoned(t, gpu.F32, fc.m, fc.v)
			if err := ro.Logits(want.Ref, h.Ref, w.Ref, bias.Ref, fr, cl.Ref, alpha); err != nil {
				t.Fatal(err)
			}
			wantV, err := p.Ref.ReadF32(want.Ref)
			if err != nil {
				t.Fatal(err)
			}
			atol := 1e-5*math.Sqrt(float64(fc.c+fc.r)) + 1e-5
			for _, variant := range []string{VariantFused, VariantSeparate} {
				go_.Variant = variant
				ran := go_.LogitsVariant(fc.m, w.Got)
				if ran != variant && variant == VariantFused {
					continue // w too large to bind: always separate, run below
				}
				d := p.Poisoned(t, gpu.F32, fc.m, fc.v)
				if err := go_.Logits(d.Got, h.Got, w.Got, bias.Got, fg, cl.Got, alpha); err != nil {
					t.Fatalf("%v %v %s: %v", fc, dt, variant, err)
				}
				got, err := p.Got.ReadF32(d.Got)
				if err != nil {
					t.Fatalf("%v %v %s: %v", fc, dt, variant, err)
				}
				if err := conformance.AllClose(got, wantV, atol, 1e-5); err != nil {
					t.Errorf("%v w %v bias=%v alpha=%g %s: %v", fc, dt, withBias, alpha, ran, err)
				}
				p.Free(d)
			}
			go_.Variant = VariantAuto
			p.Free(w, want)
			if withBias {
				p.Free(bias)
			}
		}
		free()
		p.Free(h)
		if !fc.noCluster {
			p.Free(cl)
		}
	}
}

// TestLowRankKernels checks lowrank_u and lowrank_add one at a time.
func TestLowRankKernels(t *testing.T) {
	p, ro, go_ := pair(t)
	for _, fc := range []factorCase{
		{m: 1, c: 3, v: 5, r: 1, k: 1},
		{m: 3, c: 768, v: 129, r: 16, k: 8},
		{m: 129, c: 64, v: 5, r: 4, k: 3, packed: true},
		{m: 129, c: 3, v: 129, r: 1, k: 3, noCluster: true},
	} {
		fr, fg, free := testFactors(t, p, fc)
		cl, _ := testClusters(t, p, fc)
		h := p.Upload(t, gpu.F32, p.Randn(fc.m*fc.c, 1), fc.m, fc.c)
		alpha := float32(0.5 + p.Rng.Float64())
		u := p.Poisoned(t, gpu.F32, fc.m, fc.r)
		ro.LowRankU(u.Ref, h.Ref, fr, cl.Ref, alpha)
		go_.LowRankU(u.Got, h.Got, fg, cl.Got, alpha)
		p.Close(t, fmt.Sprintf("LowRankU %v", fc), u, 1e-5*math.Sqrt(float64(fc.c)), 1e-5)
		// The same u on both sides, so that AddLowRank is checked alone.
		uv, err := p.Ref.ReadF32(u.Ref)
		if err != nil {
			t.Fatal(err)
		}
		u2 := p.Upload(t, gpu.F32, uv, fc.m, fc.r)
		d := p.Upload(t, gpu.F32, p.Randn(fc.m*fc.v, 1), fc.m, fc.v)
		if err := ro.AddLowRank(d.Ref, u2.Ref, fr, cl.Ref); err != nil {
			t.Fatal(err)
		}
		if err := go_.AddLowRank(d.Got, u2.Got, fg, cl.Got); err != nil {
			t.Fatal(err)
		}
		p.Close(t, fmt.Sprintf("AddLowRank %v", fc), d, 1e-5*math.Sqrt(float64(fc.r)), 1e-5)
		// AddLowRankT: the input gradient through A_c, into a live dst.
		dx := p.Upload(t, gpu.F32, p.Randn(fc.m*fc.c, 1), fc.m, fc.c)
		ro.AddLowRankT(dx.Ref, u2.Ref, fr, cl.Ref, alpha)
		go_.AddLowRankT(dx.Got, u2.Got, fg, cl.Got, alpha)
		p.Close(t, fmt.Sprintf("AddLowRankT %v", fc), dx, 1e-5*math.Sqrt(float64(fc.r)), 1e-5)
		free()
		p.Free(h, u, u2, d, dx)
		if !fc.noCluster {
			p.Free(cl)
		}
	}
}

// TestReLU checks relu_mask with and without a dropout mask.
func TestReLU(t *testing.T) {
	p, ro, go_ := pair(t)
	for _, n := range []int{1, 3, 257, 4099} {
		x := p.Upload(t, gpu.F32, p.Randn(n, 1), n)
		mask := make([]float32, n)
		for i := range mask {
			if p.Rng.IntN(2) == 0 {
				mask[i] = 2
			}
		}
		mk := p.Upload(t, gpu.F32, mask, n)
		for _, withMask := range []bool{false, true} {
			var m conformance.Tensors
			if withMask {
				m = mk
			}
			d := p.Poisoned(t, gpu.F32, n)
			ro.ReLU(d.Ref, x.Ref, m.Ref)
			go_.ReLU(d.Got, x.Got, m.Got)
			p.Close(t, fmt.Sprintf("ReLU n=%d mask=%v", n, withMask), d, 0, 0)
			p.Free(d)
		}
		p.Free(x, mk)
	}
}

// TestLogitsLimits checks that logits larger than one storage binding are
// refused with an error (not a crash) and that mismatched operands panic
// with an "adapt: " or "gpu: " message on both backends.
func TestLogitsLimits(t *testing.T) {
	w := gputest.Backend(t)
	ops := New(w)
	m, v := int(w.Limits.MaxStorageBufferBindingSize/(4*50257))+1, 50257
	alloc := func(be gpu.Backend, dt gpu.DType, shape ...int) gpu.Tensor { return gpu.Must(be.Alloc(dt, shape...)) }
	if uint64(4*m*v) > w.Limits.MaxBufferSize {
		// Such logits cannot even be allocated here: Alloc refuses them.
		if _, err := w.Alloc(gpu.F32, m, v); err == nil {
			t.Errorf("a %d-byte tensor was allocated over the device's %d-byte buffer limit", 4*m*v, w.Limits.MaxBufferSize)
		}
	} else {
		dst, h, wt := alloc(w, gpu.F32, m, v), alloc(w, gpu.F32, m, 3), alloc(w, gpu.F16, v, 3)
		f := NewFactors(alloc(w, gpu.F32, 1, 1, 3), alloc(w, gpu.F32, 1, v, 1))
		err := ops.Logits(dst, h, wt, nil, f, nil, 1)
		if err == nil || !strings.Contains(err.Error(), "storage binding") {
			t.Errorf("logits of %d x %d f32: error %v, want one about the storage binding", m, v, err)
		}
		for _, x := range []gpu.Tensor{dst, h, wt, f.A, f.B} {
			w.Free(x)
		}
	}
	for _, be := range []gpu.Backend{ref.New(), w} {
		o := New(be)
		h, wt, d := alloc(be, gpu.F32, 4, 6), alloc(be, gpu.F32, 5, 6), alloc(be, gpu.F32, 4, 5)
		good := NewFactors(alloc(be, gpu.F32, 2, 3, 6), alloc(be, gpu.F32, 2, 5, 3))
		wrongC := NewFactors(alloc(be, gpu.F32, 2, 3, 7), alloc(be, gpu.F32, 2, 5, 3))
		for what, call := range map[string]func(){
			"factor width": func() { o.Logits(d, h, wt, nil, wrongC, nil, 1) },
			"cluster size": func() { o.Logits(d, h, wt, nil, good, alloc(be, gpu.I32, 3), 1) },
			"cluster type": func() { o.Logits(d, h, wt, nil, good, alloc(be, gpu.F32, 4), 1) },
			"u shape":      func() { o.LowRankU(alloc(be, gpu.F32, 4, 2), h, good, nil, 1) },
			"A/B ranks":    func() { NewFactors(alloc(be, gpu.F32, 2, 3, 6), alloc(be, gpu.F32, 2, 5, 4)) },
			"packed width": func() { PackedFactors(alloc(be, gpu.F32, 2, 10), 3, 6, 5) },
		} {
			msg := func() (msg string) {
				defer func() { msg = fmt.Sprint(recover()) }()
				call()
				return
			}()
			if !strings.HasPrefix(msg, "adapt: ") && !strings.HasPrefix(msg, "gpu: ") {
				t.Errorf("%s: %s: panic %q, want an adapt: or gpu: message", be.Name(), what, msg)
			}
		}
	}
}
