package adapt

import (
	"fmt"
	"math"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/conformance"
)

// Conformance returns the exported conformance suite of the adaptation
// ops, as gpu/conformance is the Backend's: each case runs Ops (New of
// each backend of a pair) on the same random inputs, at awkward sizes up
// to GPT-2's head, with outputs poisoned, and compares them; on WebGPU
// both Logits variants run. lowrank_test.go runs it with gputest.RunCases
// (the WGSL kernels against the plain-Go reference); conformance.Check runs
// a case outside a test. It is a function, not a variable, so that
// binaries which never call it do not link it.
func Conformance() []conformance.Case {
	return []conformance.Case{
		{Name: "Logits", Fn: confLogits},
		{Name: "LowRankKernels", Fn: confLowRankKernels},
		{Name: "SiteMatMul", Fn: confSiteMatMul},
		{Name: "ReLU", Fn: confReLU},
		{Name: "LowRankBackward", Fn: confLowRankBackward},
		{Name: "ReLUBackward", Fn: confReLUBackward},
		{Name: "GateFactors", Fn: confGateFactors},
		{Name: "GateBackward", Fn: confGateBackward},
		{Name: "CacheMix", Fn: confCacheMix},
		{Name: "NeuralMix", Fn: confNeuralMix},
		{Name: "SequenceSums", Fn: confSequenceSums},
		{Name: "CrossEntropyPair", Fn: confCrossEntropyPair},
	}
}

// factorCase is one shape of the low-rank update.
type factorCase struct {
	m, c, v, r, k int
	packed        bool // factors read in place from a hyper-network output
	noCluster     bool // nil cluster: every row uses cluster 0
	only          int  // 1: f32 weights only, 2: f16 only (to save time on GPT-2's head)
	uniform       int  // gradient tests: > 0 puts every row in cluster uniform-1
	runs          bool // clusters in runs of rows (as a batch's sequences), -1 runs included
	sharedB       bool // one B for every cluster (BStride 0: the gated basis)
}

func (fc factorCase) String() string {
	return fmt.Sprintf("M=%d C=%d V=%d R=%d K=%d packed=%v nocluster=%v sharedB=%v", fc.m, fc.c, fc.v, fc.r, fc.k, fc.packed, fc.noCluster, fc.sharedB)
}

// confFactors uploads random factors for fc on both backends: A ~ N(0,
// 1/C), B ~ N(0, 1/R), so that the update is as large as the base logits.
func confFactors(t conformance.T, p *conformance.Pair, fc factorCase) (ref, got Factors, free func()) {
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
	if fc.sharedB {
		b := p.Upload(t, gpu.F32, p.Randn(fc.v*fc.r, 1/math.Sqrt(float64(fc.r))), 1, fc.v, fc.r)
		l := Layout{K: fc.k, R: fc.r, C: fc.c, V: fc.v, AStride: fc.r * fc.c}
		return Factors{l, a.Ref, b.Ref}, Factors{l, a.Got, b.Got}, func() { p.Free(a, b) }
	}
	b := p.Upload(t, gpu.F32, p.Randn(fc.k*fc.v*fc.r, 1/math.Sqrt(float64(fc.r))), fc.k, fc.v, fc.r)
	return NewFactors(a.Ref, b.Ref), NewFactors(a.Got, b.Got), func() { p.Free(a, b) }
}

// confClusters uploads M cluster ids interleaving every cluster with -1
// and K (rows that get no update), or returns nil tensors.
func confClusters(t conformance.T, p *conformance.Pair, fc factorCase) (conformance.Tensors, []int32) {
	if fc.noCluster {
		return conformance.Tensors{}, nil
	}
	ids := p.Ints(fc.m, -1, fc.k+1)
	if fc.runs {
		for i := 0; i < fc.m; {
			n, c := 1+p.Rng.IntN(40), int32(p.Rng.IntN(fc.k+1)-1)
			for ; n > 0 && i < fc.m; n, i = n-1, i+1 {
				ids[i] = c
			}
		}
	}
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
	// One B for every cluster (the gated basis), both weight dtypes.
	{m: 129, c: 64, v: 129, r: 16, k: 8, sharedB: true},
	{m: 3, c: 768, v: 50257, r: 16, k: 3, sharedB: true, only: 2},
}

var gradCases = []factorCase{
	{m: 1, c: 1, v: 1, r: 1, k: 1},
	{m: 3, c: 5, v: 7, r: 2, k: 1, noCluster: true},
	{m: 127, c: 33, v: 129, r: 4, k: 3},
	{m: 129, c: 64, v: 257, r: 8, k: 5, packed: true},
	{m: 64, c: 3, v: 4096, r: 8, k: 1, packed: true, noCluster: true},
	{m: 300, c: 768, v: 50, r: 16, k: 2},
	{m: 129, c: 64, v: 257, r: 8, k: 5, packed: true, uniform: 3},
	{m: 2048, c: 64, v: 4096, r: 8, k: 6, uniform: 6},
	{m: 33, c: 5, v: 7, r: 3, k: 1, uniform: 1},
}

// confLogits compares the adapted output projection (both variants, f32
// and f16 weights, with and without bias) with the reference.
func confLogits(t conformance.T, p *conformance.Pair) {
	ro, gotOps := New(p.Ref), New(p.Got)
	gw, _ := gotOps.(*WebGPUOps)
	for ci, fc := range logitsCases {
		fr, fg, free := confFactors(t, p, fc)
		cl, _ := confClusters(t, p, fc)
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
				t.Fatalf("%v", err)
			}
			wantV, err := p.Ref.ReadF32(want.Ref)
			if err != nil {
				t.Fatalf("%v", err)
			}
			atol := 1e-5*math.Sqrt(float64(fc.c+fc.r)) + 1e-5
			variants := []string{VariantAuto} // the backend's own choice
			if gw != nil {
				variants = []string{VariantFused, VariantSeparate}
			}
			for _, variant := range variants {
				if gw != nil {
					gw.Variant = variant
				}
				ran := gotOps.LogitsVariant(fc.m, w.Got)
				if gw != nil && ran != variant && variant == VariantFused {
					continue // w too large to bind: always separate, run below
				}
				d := p.Poisoned(t, gpu.F32, fc.m, fc.v)
				if err := gotOps.Logits(d.Got, h.Got, w.Got, bias.Got, fg, cl.Got, alpha); err != nil {
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
			if gw != nil {
				gw.Variant = VariantAuto
			}
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

// lowRankKernelCases are confLowRankKernels's shapes: odd M, C and N
// around the tiles (8 rows, 8 ranks, 256 columns, 64 lanes), R from 1 to
// past two rank blocks, rows of mixed clusters and -1 (no update), runs
// of rows as in a batch of sequences, an expand long enough to be
// submitted in row slices on a CPU adapter, and GPT-2's widest site.
var lowRankKernelCases = []factorCase{
	{m: 1, c: 3, v: 5, r: 1, k: 1},
	{m: 3, c: 768, v: 129, r: 16, k: 8},
	{m: 129, c: 64, v: 5, r: 4, k: 3, packed: true},
	{m: 129, c: 3, v: 129, r: 1, k: 3, noCluster: true},
	{m: 17, c: 65, v: 257, r: 3, k: 2},
	{m: 255, c: 129, v: 771, r: 8, k: 4, packed: true, runs: true},
	{m: 77, c: 257, v: 300, r: 17, k: 5, runs: true},
	{m: 40, c: 100, v: 24, r: 12, k: 1, noCluster: true},
	{m: 129, c: 5, v: 50257, r: 16, k: 3, runs: true},
	{m: 33, c: 3072, v: 768, r: 8, k: 3, packed: true, runs: true},
	{m: 77, c: 257, v: 300, r: 17, k: 5, runs: true, sharedB: true},
}

// confLowRankKernels checks LowRankU, AddLowRank and AddLowRankT one at a
// time, each of WebGPUOps's update kernels (plain, tiled, split) on the
// same inputs.
func confLowRankKernels(t conformance.T, p *conformance.Pair) {
	ro, go_ := New(p.Ref), New(p.Got)
	gw, _ := go_.(*WebGPUOps)
	updates := []string{UpdateAuto}
	if gw != nil {
		updates = []string{UpdatePlain, UpdateTiled, UpdateSplit}
		defer func() { gw.Update = UpdateAuto }()
	}
	for _, fc := range lowRankKernelCases {
		fr, fg, free := confFactors(t, p, fc)
		cl, _ := confClusters(t, p, fc)
		h := p.Upload(t, gpu.F32, p.Randn(fc.m*fc.c, 1), fc.m, fc.c)
		alpha := float32(0.5 + p.Rng.Float64())
		want := p.Poisoned(t, gpu.F32, fc.m, fc.r)
		ro.LowRankU(want.Ref, h.Ref, fr, cl.Ref, alpha)
		uv, err := p.Ref.ReadF32(want.Ref)
		if err != nil {
			t.Fatalf("%v", err)
		}
		// The same u on both sides, so that AddLowRank is checked alone.
		u2 := p.Upload(t, gpu.F32, uv, fc.m, fc.r)
		d0 := p.Randn(fc.m*fc.v, 1)
		d := p.Upload(t, gpu.F32, d0, fc.m, fc.v)
		if err := ro.AddLowRank(d.Ref, u2.Ref, fr, cl.Ref); err != nil {
			t.Fatalf("%v", err)
		}
		for _, up := range updates {
			if gw != nil {
				gw.Update = up
			}
			u := p.Poisoned(t, gpu.F32, fc.m, fc.r)
			ro.LowRankU(u.Ref, h.Ref, fr, cl.Ref, alpha)
			go_.LowRankU(u.Got, h.Got, fg, cl.Got, alpha)
			p.Close(t, fmt.Sprintf("LowRankU %s %v", up, fc), u, 1e-5*math.Sqrt(float64(fc.c)), 1e-5)
			if err := p.Got.Write(d.Got, d0); err != nil {
				t.Fatalf("%v", err)
			}
			if err := go_.AddLowRank(d.Got, u2.Got, fg, cl.Got); err != nil {
				t.Fatalf("%v", err)
			}
			p.Close(t, fmt.Sprintf("AddLowRank %s %v", up, fc), d, 1e-5*math.Sqrt(float64(fc.r)), 1e-5)
			p.Free(u)
		}
		// AddLowRankT: the input gradient through A_c, into a live dst.
		dx := p.Upload(t, gpu.F32, p.Randn(fc.m*fc.c, 1), fc.m, fc.c)
		ro.AddLowRankT(dx.Ref, u2.Ref, fr, cl.Ref, alpha)
		go_.AddLowRankT(dx.Got, u2.Got, fg, cl.Got, alpha)
		p.Close(t, fmt.Sprintf("AddLowRankT %v", fc), dx, 1e-5*math.Sqrt(float64(fc.r)), 1e-5)
		free()
		p.Free(h, want, u2, d, dx)
		if !fc.noCluster {
			p.Free(cl)
		}
	}
}

// dropoutMask is a random dropout mask of n units at p = 0.5: 0 for a
// dropped unit, 2 = 1/(1-p) for a kept one.
func dropoutMask(p *conformance.Pair, n int) []float32 {
	mask := make([]float32, n)
	for i := range mask {
		if p.Rng.IntN(2) == 0 {
			mask[i] = 2
		}
	}
	return mask
}

// confReLU checks relu_mask with and without a dropout mask.
func confReLU(t conformance.T, p *conformance.Pair) {
	ro, go_ := New(p.Ref), New(p.Got)
	for _, n := range []int{1, 3, 257, 4099} {
		x := p.Upload(t, gpu.F32, p.Randn(n, 1), n)
		mk := p.Upload(t, gpu.F32, dropoutMask(p, n), n)
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

// confLowRankBackward compares the WGSL gradient kernels with the reference
// on random inputs: rows of several clusters interleaved with rows that
// have none (-1, K), clusters with no rows, packed and separate factors.
func confLowRankBackward(t conformance.T, p *conformance.Pair) {
	refOps, gotOps := New(p.Ref), New(p.Got)
	for _, fc := range gradCases {
		conformance.Sub(t, fc.String(), func(t conformance.T) {
			fRef, fGot, free := confFactors(t, p, fc)
			defer free()
			_, ids := confClusters(t, p, fc)
			if fc.uniform > 0 { // every row in one cluster: the matmul path
				for i := range ids {
					ids[i] = int32(fc.uniform - 1)
				}
			}
			h := p.Upload(t, gpu.F32, p.Randn(fc.m*fc.c, 1), fc.m, fc.c)
			u := p.Upload(t, gpu.F32, p.Randn(fc.m*fc.r, 1), fc.m, fc.r)
			dl := p.Upload(t, gpu.F32, p.Randn(fc.m*fc.v, 0.1), fc.m, fc.v)
			var dRef, dGot Factors
			var grads []conformance.Tensors
			if fc.packed {
				g := p.Poisoned(t, gpu.F32, fc.k, fc.r*fc.c+fc.v*fc.r)
				dRef, dGot = PackedFactors(g.Ref, fc.r, fc.c, fc.v), PackedFactors(g.Got, fc.r, fc.c, fc.v)
				grads = append(grads, g)
			} else {
				ga := p.Poisoned(t, gpu.F32, fc.k, fc.r, fc.c)
				gb := p.Poisoned(t, gpu.F32, fc.k, fc.v, fc.r)
				dRef, dGot = NewFactors(ga.Ref, gb.Ref), NewFactors(ga.Got, gb.Got)
				grads = append(grads, ga, gb)
			}
			const alpha = 0.7
			du := p.Poisoned(t, gpu.F32, fc.m, fc.r)
			if err := refOps.LowRankBackwardInput(dRef, du.Ref, dl.Ref, h.Ref, u.Ref, fRef, ids, alpha); err != nil {
				t.Fatalf("%v", err)
			}
			if err := gotOps.LowRankBackwardInput(dGot, du.Got, dl.Got, h.Got, u.Got, fGot, ids, alpha); err != nil {
				t.Fatalf("%v", err)
			}
			p.Close(t, "du", du, 1e-4*math.Sqrt(float64(fc.v)), 1e-3)
			grads = append(grads, du)
			// dA sums M rows of du (itself a V-long dot product) times h:
			// terms of size ~sqrt(V)/10 cancel to small results, so f32's
			// rounding grows with M in absolute terms.
			atol := 1e-4 * max(1, float64(fc.m)/64)
			for i, g := range grads {
				p.Close(t, fmt.Sprintf("gradient %d", i), g, atol, 1e-3)
			}
			p.Free(append(grads, h, u, dl)...)
		})
	}
}

// confReLUBackward checks the ReLU backward with and without a dropout mask.
func confReLUBackward(t conformance.T, p *conformance.Pair) {
	refOps, gotOps := New(p.Ref), New(p.Got)
	for _, n := range []int{1, 3, 257, 5000} {
		for _, withMask := range []bool{false, true} {
			x := p.Upload(t, gpu.F32, p.Randn(n, 1), n)
			dy := p.Upload(t, gpu.F32, p.Randn(n, 1), n)
			mk := p.Upload(t, gpu.F32, dropoutMask(p, n), n)
			dx := p.Poisoned(t, gpu.F32, n)
			var mr, mg gpu.Tensor
			if withMask {
				mr, mg = mk.Ref, mk.Got
			}
			refOps.ReLUBackward(dx.Ref, dy.Ref, x.Ref, mr)
			gotOps.ReLUBackward(dx.Got, dy.Got, x.Got, mg)
			p.Close(t, fmt.Sprintf("n=%d mask=%v", n, withMask), dx, 0, 0)
			p.Free(x, dy, mk, dx)
		}
	}
}

// confCacheMix checks cache_mix on random log-probabilities (rows
// normalised, some peaked) and counts: rows with both, either or neither
// of own and pool counts, weights from 0 to 0.8, and a vocabulary that is
// not a multiple of the workgroup.
func confCacheMix(t conformance.T, p *conformance.Pair) {
	ro, go_ := New(p.Ref), New(p.Got)
	for _, sh := range []struct{ m, v, s, k int }{{1, 7, 1, 1}, {5, 300, 3, 2}, {9, 4099, 4, 3}} {
		lp := p.Randn(sh.m*sh.v, 3)
		for m := range sh.m {
			row := lp[m*sh.v : (m+1)*sh.v]
			if m%3 == 1 {
				row[m%sh.v] += 25 // a near-certain token
			}
			mx, sum := row[0], 0.0
			for _, x := range row {
				mx = max(mx, x)
			}
			for _, x := range row {
				sum += math.Exp(float64(x - mx))
			}
			for j := range row {
				row[j] -= mx + float32(math.Log(sum))
			}
		}
		counts := func(rows int) ([]float32, []float64) {
			c := make([]float32, rows*sh.v)
			tot := make([]float64, rows)
			for i := range c {
				if p.Rng.IntN(4) == 0 {
					c[i] = float32(p.Rng.IntN(5))
					tot[i/sh.v] += float64(c[i])
				}
			}
			return c, tot
		}
		own, ownTot := counts(sh.s)
		pool, poolTot := counts(sh.k)
		prior := make([]float32, sh.v)
		for j := range prior {
			prior[j] = 1 / float32(sh.v)
		}
		var orow, prow []int
		var ws []CacheWeights
		var ot, pt []float64
		for m := range sh.m {
			o, q := m%sh.s, m%sh.k
			if m%4 == 2 {
				o = -1
			}
			if m%5 == 3 {
				q = -1
			}
			orow, prow = append(orow, o), append(prow, q)
			ws = append(ws, CacheWeights{Own: []float64{0, 0.1, 0.3, 0.5}[m%4], Pool: []float64{0.3, 0, 0.2}[m%3]})
			ot, pt = append(ot, ownTot[max(o, 0)]), append(pt, poolTot[max(q, 0)])
		}
		in := []conformance.Tensors{p.Upload(t, gpu.F32, lp, sh.m, sh.v), p.Upload(t, gpu.F32, own, sh.s, sh.v),
			p.Upload(t, gpu.F32, pool, sh.k, sh.v), p.Upload(t, gpu.F32, prior, sh.v),
			p.Upload(t, gpu.F32, CacheRowParams(orow, prow, ws, ot, pt), sh.m, 6)}
		d := p.Poisoned(t, gpu.F32, sh.m, sh.v)
		ro.CacheMix(d.Ref, in[0].Ref, in[1].Ref, in[2].Ref, in[3].Ref, in[4].Ref, 1.5)
		go_.CacheMix(d.Got, in[0].Got, in[1].Got, in[2].Got, in[3].Got, in[4].Got, 1.5)
		p.Close(t, fmt.Sprintf("CacheMix M=%d V=%d", sh.m, sh.v), d, 1e-5, 1e-5)
		p.Free(append(in, d)...)
	}
}
