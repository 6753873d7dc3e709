package adapt

import (
	"fmt"
	"math"
	"slices"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/conformance"
)

// siteCases are confSiteMatMul's shapes (C = x's width, V = the site's
// output width): one row, the texture kernels' row blocks (1, 8, 16/32)
// and past them, odd widths around the blocks, R from 1 to past two rank
// blocks, K from 1 to 8, rows of mixed clusters with -1 (no update), runs
// of rows as a batch's sequences, packed (generated) factors, and a
// GPT-2-wide fc2 site.
var siteCases = []factorCase{
	{m: 1, c: 3, v: 5, r: 1, k: 1},
	{m: 8, c: 64, v: 33, r: 3, k: 2, runs: true},
	{m: 3, c: 768, v: 129, r: 16, k: 8},
	{m: 129, c: 64, v: 5, r: 4, k: 3, packed: true},
	{m: 129, c: 3, v: 129, r: 1, k: 3, noCluster: true},
	{m: 17, c: 65, v: 257, r: 3, k: 2},
	{m: 255, c: 129, v: 771, r: 8, k: 4, packed: true, runs: true},
	{m: 77, c: 257, v: 300, r: 17, k: 5, runs: true},
	{m: 33, c: 3072, v: 768, r: 8, k: 3, packed: true, runs: true},
}

// siteDTypes are the weight dtypes confSiteMatMul runs for x's width c:
// f32 and f16 always, the quantized formats where c is a whole number of
// their blocks (the decode sites of a quantized model).
func siteDTypes(c int) []gpu.DType {
	out := []gpu.DType{gpu.F32, gpu.F16}
	for _, dt := range []gpu.DType{gpu.Q8_0, gpu.Q4_0, gpu.Q4_K} {
		if f, _ := dt.Quant(); c%f.BlockSize() == 0 {
			out = append(out, dt)
		}
	}
	return out
}

// siteInputs are one siteCases entry's operands on both backends.
type siteInputs struct {
	fc       factorCase
	x, u, cl conformance.Tensors
	fr, fg   Factors
}

// confSiteMatMul checks SiteMatMul (f32, f16 and, where C is a whole
// number of blocks, quantized weights; with and without bias) against the
// reference, MatMul then AddLowRank. On WebGPU it runs under the texture
// (CPU adapters' default), tile, register, cooperative mat-vec and mat-vec
// matmul variants (the last two forced at every M, so that lavapipe runs
// the GPUs' decode kernels), the fused and the separate path: every
// family has its twin, so the fused path must record exactly the
// dispatches of the plain MatMul (the expand
// costs none), the separate path more; both must store the same bits.
func confSiteMatMul(t conformance.T, p *conformance.Pair) {
	gw, _ := New(p.Got).(*WebGPUOps)
	variants := []string{""}
	if gw != nil {
		variants = []string{gw.MatMulVariant, gpu.MatMulTileOnly, gpu.MatMulReg, gpu.MatMulCoop, gpu.MatMulGemv}
	}
	for ci, fc := range siteCases {
		fr, fg, free := confFactors(t, p, fc)
		cl, _ := confClusters(t, p, fc)
		in := siteInputs{fc: fc, cl: cl, fr: fr, fg: fg,
			x: p.Upload(t, gpu.F32, p.Randn(fc.m*fc.c, 1), fc.m, fc.c),
			u: p.Upload(t, gpu.F32, p.Randn(fc.m*fc.r, 1), fc.m, fc.r)}
		for _, dt := range siteDTypes(fc.c) {
			confSiteDType(t, p, in, dt, (ci+int(dt))%2 == 0, variants)
		}
		free()
		p.Free(in.x, in.u)
		if !fc.noCluster {
			p.Free(cl)
		}
	}
}

// confSiteDType runs one case of confSiteMatMul with weights of dtype dt
// under every variant.
func confSiteDType(t conformance.T, p *conformance.Pair, in siteInputs, dt gpu.DType, withBias bool, variants []string) {
	fc := in.fc
	ro, go_ := New(p.Ref), New(p.Got)
	gw, _ := go_.(*WebGPUOps)
	if gw != nil {
		defer func(v string) { gw.MatMulVariant, gw.SeparateExpand = v, false }(gw.MatMulVariant)
	}
	w := p.Upload(t, dt, p.Randn(fc.v*fc.c, 1/math.Sqrt(float64(fc.c))), fc.v, fc.c)
	var bias conformance.Tensors
	if withBias {
		bias = p.Upload(t, gpu.F32, p.Randn(fc.v, 1), fc.v)
		defer p.Free(bias)
	}
	what := fmt.Sprintf("%v w %v bias=%v", fc, dt, withBias)
	want := p.Poisoned(t, gpu.F32, fc.m, fc.v)
	defer p.Free(w, want)
	if err := ro.SiteMatMul(want.Ref, in.x.Ref, w.Ref, bias.Ref, in.u.Ref, in.fr, in.cl.Ref); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	wantV, err := p.Ref.ReadF32(want.Ref)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	atol := 1e-5*math.Sqrt(float64(fc.c+fc.r)) + 1e-5
	for _, variant := range variants {
		var plain uint64 // the plain matmul's dispatches on this shape
		if gw != nil {
			// First, so that the weights' texture copy is made here, not
			// counted against the fused kernel.
			gw.MatMulVariant = variant
			d := p.Poisoned(t, gpu.F32, fc.m, fc.v)
			n0 := dispatches(p.Got)
			gw.MatMul(d.Got, in.x.Got, w.Got, bias.Got)
			gw.MatMul(d.Got, in.x.Got, w.Got, bias.Got)
			plain = (dispatches(p.Got) - n0) / 2
			p.Free(d)
		}
		var runs [2][]float32 // fused, separate
		for i, separate := range []bool{false, true} {
			if gw != nil {
				gw.MatMulVariant, gw.SeparateExpand = variant, separate
			}
			d := p.Poisoned(t, gpu.F32, fc.m, fc.v)
			n0 := dispatches(p.Got)
			if err := go_.SiteMatMul(d.Got, in.x.Got, w.Got, bias.Got, in.u.Got, in.fg, in.cl.Got); err != nil {
				t.Fatalf("%s %s: %v", what, variant, err)
			}
			n := dispatches(p.Got) - n0
			if runs[i], err = p.Got.ReadF32(d.Got); err != nil {
				t.Fatalf("%s %s: %v", what, variant, err)
			}
			p.Free(d)
			if err := conformance.AllClose(runs[i], wantV, atol, 1e-5); err != nil {
				t.Errorf("%s %s separate=%v: %v", what, variant, separate, err)
			}
			if gw == nil {
				continue
			}
			if !separate && n != plain {
				t.Errorf("%s %s: fused SiteMatMul recorded %d dispatches, the matmul alone %d", what, variant, n, plain)
			}
			if separate && n <= plain {
				t.Errorf("%s %s: separate SiteMatMul recorded %d dispatches, the matmul alone %d: no expand?", what, variant, n, plain)
			}
		}
		if gw != nil && !slices.Equal(runs[0], runs[1]) {
			t.Errorf("%s %s: the fused kernel's output differs from MatMul + AddLowRank's (want bit for bit)", what, variant)
		}
	}
}

// dispatches is b's dispatch count so far (0 for a backend that does not
// count).
func dispatches(b gpu.Backend) uint64 {
	if c, ok := b.(gpu.Counter); ok {
		return c.Counts().Dispatches
	}
	return 0
}
