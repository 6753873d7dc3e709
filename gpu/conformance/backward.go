package conformance

import (
	"fmt"

	"github.com/chameleon-llm/chameleon/gpu"
)

// Conformance of the TrainBackend ops (backward passes and the optimizer).
// Written gradients are poisoned first; accumulated ones start from random
// values, so a kernel that writes instead of adding (or adds twice) fails.

func init() {
	register("Zero", testZero)
	register("Accumulate", testAccumulate)
	register("GELUBackward", testGELUBackward)
	register("LayerNormBackward", testLayerNormBackward)
	register("MatMulBackward", testMatMulBackward)
	register("CrossEntropyBackward", testCrossEntropyBackward)
	register("EmbedBackward", testEmbedBackward)
	register("GradNormSq", testGradNormSq)
	register("AdamW", testAdamW)
}

// trainPair returns both backends as TrainBackends, failing the test when
// either does not implement the backward ops.
func trainPair(t T, p *Pair) (ref, got gpu.TrainBackend) {
	t.Helper()
	ref, ok := p.Ref.(gpu.TrainBackend)
	if !ok {
		t.Fatalf("reference backend %s does not implement gpu.TrainBackend", p.Ref.Name())
	}
	got, ok = p.Got.(gpu.TrainBackend)
	if !ok {
		t.Fatalf("backend %s does not implement gpu.TrainBackend (backward ops)", p.Got.Name())
	}
	return ref, got
}

func testZero(t T, p *Pair) {
	ref, got := trainPair(t, p)
	for _, dt := range []gpu.DType{gpu.F32, gpu.F16, gpu.I32} {
		for _, n := range []int{1, 3, 129, 70000} {
			var x Tensors
			if dt == gpu.I32 {
				x = p.Upload(t, dt, p.Ints(n, -50, 50), n)
			} else {
				x = p.Upload(t, dt, p.Randn(n, 1), n)
			}
			ref.Zero(x.Ref)
			got.Zero(x.Got)
			what := fmt.Sprintf("%v n=%d", dt, n)
			if dt == gpu.I32 {
				g, w := p.ReadBothI32(t, x)
				for i := range w {
					if g[i] != w[i] {
						t.Errorf("%s: [%d] = %d, want %d", what, i, g[i], w[i])
						break
					}
				}
			} else {
				p.Close(t, what, x, 0, 0)
			}
			p.Free(x)
		}
	}
}

func testAccumulate(t T, p *Pair) {
	ref, got := trainPair(t, p)
	for _, n := range []int{1, 3, 127, 768, 70000} {
		d := p.Upload(t, gpu.F32, p.Randn(n, 1), n)
		x := p.Upload(t, gpu.F32, p.Randn(n, 1), n)
		ref.Accumulate(d.Ref, x.Ref)
		got.Accumulate(d.Got, x.Got)
		p.Close(t, fmt.Sprintf("n=%d", n), d, 0, 0)
		p.Free(d, x)
	}
}

func testGELUBackward(t T, p *Pair) {
	ref, got := trainPair(t, p)
	for _, n := range append(awkward, 70000) {
		xv := p.Randn(n, 3)
		xv[0] = 40
		if n > 1 {
			xv[1] = -40
		}
		x := p.Upload(t, gpu.F32, xv, n)
		g := p.Upload(t, gpu.F32, p.Randn(n, 1), n)
		d := p.Poisoned(t, gpu.F32, n)
		ref.GELUBackward(d.Ref, g.Ref, x.Ref)
		got.GELUBackward(d.Got, g.Got, x.Got)
		p.Close(t, fmt.Sprintf("n=%d", n), d, 1e-5, 1e-4)
		p.Free(x, g, d)
	}
}

func testLayerNormBackward(t T, p *Pair) {
	ref, got := trainPair(t, p)
	for _, sz := range [][2]int{{1, 1}, {3, 3}, {5, 127}, {129, 129}, {256, 768}, {2, 1600}} {
		m, c := sz[0], sz[1]
		xv := p.Randn(m*c, 2)
		for i := range xv {
			xv[i] += 5
		}
		x := p.Upload(t, gpu.F32, xv, m, c)
		gm := p.Upload(t, gpu.F32, p.Randn(c, 1), c)
		g := p.Upload(t, gpu.F32, p.Randn(m*c, 1), m, c)
		dx := p.Poisoned(t, gpu.F32, m, c)
		dg := p.Upload(t, gpu.F32, p.Randn(c, 1), c)
		db := p.Upload(t, gpu.F32, p.Randn(c, 1), c)
		ref.LayerNormBackward(dx.Ref, dg.Ref, db.Ref, g.Ref, x.Ref, gm.Ref, 1e-5)
		got.LayerNormBackward(dx.Got, dg.Got, db.Got, g.Got, x.Got, gm.Got, 1e-5)
		what := fmt.Sprintf("%dx%d", m, c)
		p.Close(t, what+" dx", dx, 1e-4, 1e-3)
		p.Close(t, what+" dGamma", dg, 1e-4, 1e-4)
		p.Close(t, what+" dBeta", db, 1e-4, 1e-4)
		p.Free(x, gm, g, dx, dg, db)
	}
}

// matMulBackwardCase runs MatMulBackward at (M, K, N), with or without dx
// and dBias, and compares every output.
func (p *Pair) matMulBackwardCase(t T, m, k, n int, withDx, withBias bool) {
	t.Helper()
	ref, got := trainPair(t, p)
	x := p.Upload(t, gpu.F32, p.Randn(m*k, 1), m, k)
	w := p.Upload(t, gpu.F32, p.Randn(n*k, 1), n, k)
	g := p.Upload(t, gpu.F32, p.Randn(m*n, 1), m, n)
	dw := p.Upload(t, gpu.F32, p.Randn(n*k, 1), n, k)
	defer p.Free(x, w, g, dw)
	var dx, db Tensors
	if withDx {
		dx = p.Poisoned(t, gpu.F32, m, k)
		defer p.Free(dx)
	}
	if withBias {
		db = p.Upload(t, gpu.F32, p.Randn(n, 1), n)
		defer p.Free(db)
	}
	ref.MatMulBackward(dx.Ref, dw.Ref, db.Ref, g.Ref, x.Ref, w.Ref)
	got.MatMulBackward(dx.Got, dw.Got, db.Got, g.Got, x.Got, w.Got)
	what := fmt.Sprintf("M=%d K=%d N=%d", m, k, n)
	// Sums of up to max(M, N) products of unit normals.
	p.Close(t, what+" dW", dw, 1e-3, 1e-4)
	if withDx {
		p.Close(t, what+" dx", dx, 1e-3, 1e-4)
	}
	if withBias {
		p.Close(t, what+" dBias", db, 1e-3, 1e-4)
	}
}

func testMatMulBackward(t T, p *Pair) {
	for _, sz := range [][3]int{{1, 1, 1}, {3, 5, 7}, {1, 768, 3}, {127, 129, 3}, {129, 3, 127}, {256, 768, 768}, {130, 65, 257}} {
		p.matMulBackwardCase(t, sz[0], sz[1], sz[2], true, true)
	}
	p.matMulBackwardCase(t, 33, 17, 19, false, false) // optional outputs absent
	p.matMulBackwardCase(t, 9000, 5, 3, true, true)   // contraction over M split in pieces
	p.matMulBackwardCase(t, 3, 5, 9000, true, false)  // contraction over N split in pieces
	// The other kernel family (tile on CPU adapters, reg on GPUs) must
	// agree too: each adapter runs both kernels.
	if w, ok := p.Got.(*gpu.WebGPU); ok {
		old := w.MatMulVariant
		w.MatMulVariant = gpu.MatMulTileOnly
		if gpu.MatMulFamily(old, 64) == "tile" {
			w.MatMulVariant = gpu.MatMulRegOnly
		}
		defer func() { w.MatMulVariant = old }()
		for _, sz := range [][3]int{{1, 1, 1}, {3, 5, 7}, {127, 129, 3}, {130, 65, 257}, {9000, 5, 3}} {
			p.matMulBackwardCase(t, sz[0], sz[1], sz[2], true, true)
		}
	}
}

func testCrossEntropyBackward(t T, p *Pair) {
	RowWGs(p, func() { testCrossEntropyBackwardOnce(t, p) })
}

func testCrossEntropyBackwardOnce(t T, p *Pair) {
	ref, got := trainPair(t, p)
	for _, sz := range [][2]int{{1, 1}, {3, 3}, {5, 127}, {129, 129}, {7, 768}, {64, 50257}} {
		m, v := sz[0], sz[1]
		xv := p.Randn(m*v, 3)
		for i := range xv[:v] {
			xv[i] += 1000 // a large offset must cancel
		}
		x := p.Upload(t, gpu.F32, xv, m, v)
		tg := p.Ints(m, 0, v)
		if m > 1 {
			tg[1] = -1 // masked
		}
		tt := p.Upload(t, gpu.I32, tg, m)
		d := p.Poisoned(t, gpu.F32, m, v)
		scale := float32(1 / float64(m))
		ref.CrossEntropyBackward(d.Ref, x.Ref, tt.Ref, scale)
		got.CrossEntropyBackward(d.Got, x.Got, tt.Got, scale)
		p.Close(t, fmt.Sprintf("%dx%d", m, v), d, 1e-6, 1e-4)
		p.Free(x, tt, d)
	}
}

func testEmbedBackward(t T, p *Pair) {
	for _, sz := range [][4]int{{1, 1, 1, 1}, {3, 7, 3, 5}, {129, 50, 127, 300}, {50257, 1024, 768, 256}} {
		p.embedBackwardCase(t, sz[0], sz[1], sz[2], sz[3], true)
	}
	p.embedBackwardCase(t, 100, 10, 3, 2000, false) // long chains, no dWpe
}

// embedBackwardCase runs EmbedBackward with M rows over a (V,C) token table
// and a (P,C) position table: tokens drawn mostly from a few ids (long
// chains), some from the whole vocabulary, the last id and negative
// (skipped) ids included.
func (p *Pair) embedBackwardCase(t T, v, pmax, c, m int, withPos bool) {
	t.Helper()
	ref, got := trainPair(t, p)
	tok := p.Ints(m, 0, v)
	for i := range tok {
		if p.Rng.IntN(2) == 0 {
			tok[i] = int32(p.Rng.IntN(min(v, 5)))
		}
	}
	tok[0] = int32(v - 1)
	if m > 2 {
		tok[2] = -1
	}
	pos := p.Ints(m, 0, pmax)
	if m > 3 {
		pos[3] = -1
	}
	g := p.Upload(t, gpu.F32, p.Randn(m*c, 1), m, c)
	tk := p.Upload(t, gpu.I32, tok, m)
	ps := p.Upload(t, gpu.I32, pos, m)
	te := p.Upload(t, gpu.F32, p.Uniform(v*c, -1, 1), v, c)
	defer p.Free(g, tk, ps, te)
	var pe Tensors
	if withPos {
		pe = p.Upload(t, gpu.F32, p.Uniform(pmax*c, -1, 1), pmax, c)
		defer p.Free(pe)
	}
	ref.EmbedBackward(te.Ref, pe.Ref, g.Ref, tk.Ref, ps.Ref)
	got.EmbedBackward(te.Got, pe.Got, g.Got, tk.Got, ps.Got)
	what := fmt.Sprintf("V=%d P=%d C=%d M=%d", v, pmax, c, m)
	p.Close(t, what+" dWte", te, 1e-4, 1e-5)
	if withPos {
		p.Close(t, what+" dWpe", pe, 1e-4, 1e-5)
	}
}

func testGradNormSq(t T, p *Pair) {
	ref, got := trainPair(t, p)
	for _, sizes := range [][]int{{1}, {3, 5}, {64}, {65}, {4096, 4097, 1}, {768 * 3072, 50257, 768, 1}} {
		var gs []Tensors
		var rg, gg []gpu.Tensor
		for _, n := range sizes {
			x := p.Upload(t, gpu.F32, p.Randn(n, 0.1), n)
			gs = append(gs, x)
			rg, gg = append(rg, x.Ref), append(gg, x.Got)
		}
		d := p.Poisoned(t, gpu.F32, 1)
		ref.GradNormSq(d.Ref, rg...)
		got.GradNormSq(d.Got, gg...)
		p.Close(t, fmt.Sprintf("sizes %v", sizes), d, 0, 1e-5)
		p.Free(append(gs, d)...)
	}
}

func testAdamW(t T, p *Pair) {
	ref, got := trainPair(t, p)
	for _, n := range []int{1, 3, 127, 129, 768, 70000} {
		for _, clip := range []float32{0, 0.5} {
			prm := p.Upload(t, gpu.F32, p.Randn(n, 1), n)
			m := p.Upload(t, gpu.F32, p.Randn(n, 0.1), n)
			v := p.Upload(t, gpu.F32, p.Uniform(n, 0, 0.01), n)
			g := p.Upload(t, gpu.F32, p.Randn(n, 1), n)
			ns := p.Upload(t, gpu.F32, p.Uniform(1, 0, 2), 1)
			hp := gpu.AdamWParams{LR: 3e-4, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1,
				Step: 1 + p.Rng.IntN(1000), GradScale: 0.5, ClipNorm: clip}
			ref.AdamW(prm.Ref, m.Ref, v.Ref, g.Ref, ns.Ref, hp)
			got.AdamW(prm.Got, m.Got, v.Got, g.Got, ns.Got, hp)
			what := fmt.Sprintf("n=%d clip=%g", n, clip)
			p.Close(t, what+" param", prm, 1e-6, 1e-5)
			p.Close(t, what+" m", m, 1e-7, 1e-5)
			p.Close(t, what+" v", v, 1e-9, 1e-5)
			p.Free(prm, m, v, g, ns)
		}
	}
}
