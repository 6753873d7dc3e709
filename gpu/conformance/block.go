package conformance

import (
	"fmt"
	"math"

	"github.com/chameleon-llm/chameleon/gpu"
)

func init() {
	register("MatMulAdd", testMatMulAdd)
	register("LayerNormMatMul", testLayerNormMatMul)
	register("LayerNormAttention", testLayerNormAttention)
}

// blockMode is one way a backend runs the fused block ops: on WebGPU the
// GPU decode family with the block fusions on (one kernel each, which the
// case checks by counting dispatches) and the same ops as their parts
// (fusions off); on any other backend its own way, once.
type blockMode struct {
	name string
	one  bool // the fused kernel must run: one dispatch per op
	set  func()
}

// blockModes returns the modes and a func that restores the backend's
// switches.
func blockModes(p *Pair) ([]blockMode, func()) {
	wg, ok := p.Got.(*gpu.WebGPU)
	if !ok {
		return []blockMode{{name: "", set: func() {}}}, func() {}
	}
	v, f := wg.MatMulVariant, wg.FuseEpilogues
	return []blockMode{
		{"coop fused", true, func() { wg.MatMulVariant, wg.FuseEpilogues = gpu.MatMulCoop, true }},
		{"parts", false, func() { wg.MatMulVariant, wg.FuseEpilogues = v, false }},
	}, func() { wg.MatMulVariant, wg.FuseEpilogues = v, f }
}

// dispatches runs op and returns how many dispatches the WebGPU backend
// recorded for it (-1 on other backends).
func dispatches(t T, p *Pair, op func()) int {
	wg, ok := p.Got.(*gpu.WebGPU)
	if !ok {
		op()
		return -1
	}
	if err := wg.Flush(); err != nil {
		t.Fatalf("%v", err)
	}
	c0 := wg.Counts()
	op()
	if err := wg.Flush(); err != nil {
		t.Fatalf("%v", err)
	}
	return int(wg.Counts().Sub(c0).Dispatches)
}

// blockShapes: a decode row and a batch of 8 at GPT-2's widths, partial
// column blocks (N not a multiple of 4), and M over the mat-vec's 8 rows
// (the parts on every variant).
var blockShapes = []struct{ m, k, n int }{{1, 768, 3072}, {8, 64, 40}, {3, 16, 129}, {5, 3072, 768}, {9, 32, 24}}

// testMatMulAdd checks MatMulAdd against the reference (MatMul's rounded
// sum plus res) and, bit for bit, against the backend's own MatMul then
// Add under the same variant.
func testMatMulAdd(t T, p *Pair) {
	modes, restore := blockModes(p)
	defer restore()
	for ci, c := range blockShapes {
		for _, dt := range []gpu.DType{gpu.F32, gpu.F16} {
			x := p.Upload(t, gpu.F32, p.Randn(c.m*c.k, 1), c.m, c.k)
			w := p.Upload(t, dt, p.Randn(c.n*c.k, 1/math.Sqrt(float64(c.k))), c.n, c.k)
			b := p.Upload(t, gpu.F32, p.Randn(c.n, 1), c.n)
			res := p.Upload(t, gpu.F32, p.Randn(c.m*c.n, 4), c.m, c.n)
			d, mm, sum := p.Poisoned(t, gpu.F32, c.m, c.n), p.Poisoned(t, gpu.F32, c.m, c.n), p.Poisoned(t, gpu.F32, c.m, c.n)
			var bias Tensors
			if ci%2 == 0 {
				bias = b
			}
			p.Ref.MatMulAdd(d.Ref, x.Ref, w.Ref, bias.Ref, res.Ref)
			for _, mode := range modes {
				mode.set()
				what := fmt.Sprintf("%s M=%d K=%d N=%d w %v bias=%v", mode.name, c.m, c.k, c.n, dt, bias.Ref != nil)
				n := dispatches(t, p, func() { p.Got.MatMulAdd(d.Got, x.Got, w.Got, bias.Got, res.Got) })
				if mode.one && c.m <= gpu.MatMulGemvMaxM && n != 1 {
					t.Errorf("%s: %d dispatches, want the fused kernel's 1", what, n)
				}
				p.Close(t, what, d, 2e-6*math.Sqrt(float64(c.k))*16, 1e-5)
				p.Got.MatMul(mm.Got, x.Got, w.Got, bias.Got)
				p.Got.Add(sum.Got, res.Got, mm.Got)
				fused, _ := p.ReadBoth(t, d)
				two, _ := p.ReadBoth(t, sum)
				if err := AllClose(fused, two, 0, 0); err != nil {
					t.Errorf("%s: against MatMul then Add: %v", what, err)
				}
			}
			p.Free(x, w, b, res, d, mm, sum)
		}
	}
}

// testLayerNormMatMul checks LayerNormMatMul, with and without GELU,
// against the reference (LayerNorm, then MatMul or MatMulGELU) on rows
// far from zero mean (as the LayerNorm case), and against the backend's
// own two ops closely (the fused kernel sums the statistics in another
// order).
func testLayerNormMatMul(t T, p *Pair) {
	modes, restore := blockModes(p)
	defer restore()
	for ci, c := range blockShapes {
		for _, dt := range []gpu.DType{gpu.F32, gpu.F16} {
			for _, gelu := range []bool{false, true} {
				x, g, be := layerNormInputs(t, p, c.m, c.k)
				w := p.Upload(t, dt, p.Randn(c.n*c.k, 1/math.Sqrt(float64(c.k))), c.n, c.k)
				b := p.Upload(t, gpu.F32, p.Randn(c.n, 1), c.n)
				d, sep, h := p.Poisoned(t, gpu.F32, c.m, c.n), p.Poisoned(t, gpu.F32, c.m, c.n), p.Poisoned(t, gpu.F32, c.m, c.k)
				var bias Tensors
				if ci%2 == 1 {
					bias = b
				}
				p.Ref.LayerNormMatMul(d.Ref, x.Ref, g.Ref, be.Ref, w.Ref, bias.Ref, 1e-5, gelu)
				atol := 2e-6 * math.Sqrt(float64(c.k)) * 16
				for _, mode := range modes {
					mode.set()
					what := fmt.Sprintf("%s M=%d K=%d N=%d w %v gelu=%v", mode.name, c.m, c.k, c.n, dt, gelu)
					n := dispatches(t, p, func() { p.Got.LayerNormMatMul(d.Got, x.Got, g.Got, be.Got, w.Got, bias.Got, 1e-5, gelu) })
					if mode.one && c.m <= gpu.MatMulGemvMaxM && n != 1 {
						t.Errorf("%s: %d dispatches, want the fused kernel's 1", what, n)
					}
					p.Close(t, what, d, atol, 1e-4)
					p.Got.LayerNorm(h.Got, x.Got, g.Got, be.Got, 1e-5)
					if gelu {
						p.Got.MatMulGELU(sep.Got, h.Got, w.Got, bias.Got)
					} else {
						p.Got.MatMul(sep.Got, h.Got, w.Got, bias.Got)
					}
					fused, _ := p.ReadBoth(t, d)
					two, _ := p.ReadBoth(t, sep)
					if err := AllClose(fused, two, atol, 1e-4); err != nil {
						t.Errorf("%s: against LayerNorm then MatMul: %v", what, err)
					}
				}
				p.Free(x, g, be, w, b, d, sep, h)
			}
		}
	}
}

// testLayerNormAttention checks LayerNormAttention's output and the keys
// and values it stores against the reference (LayerNorm, MatMulKVStore,
// Attention) for decode steps (a sequence at the cache's last position,
// one with nothing to add) and a chunk of several tokens (the parts on
// every backend).
func testLayerNormAttention(t T, p *Pair) {
	modes, restore := blockModes(p)
	defer restore()
	for _, cs := range []struct{ nb, tq, c, h, tmax int }{
		{1, 1, 768, 12, 9}, {3, 1, 64, 2, 7}, {4, 1, 96, 3, 12}, {8, 1, 32, 4, 5}, {3, 4, 64, 2, 12}, {2, 1, 12, 3, 6},
	} {
		for _, dt := range []gpu.DType{gpu.F32, gpu.F16} {
			for _, mode := range modes {
				mode.set()
				p.lnAttentionCase(t, mode, cs.nb, cs.tq, cs.c, cs.h, cs.tmax, dt)
			}
		}
	}
}

func (p *Pair) lnAttentionCase(t T, mode blockMode, nb, tq, c, nh, tmax int, dt gpu.DType) {
	kc := p.chunked(nb, tq, c, nh, tmax)
	if tq == 1 {
		kc = p.decode(nb, c, nh, tmax)
	}
	what := fmt.Sprintf("%s B=%d Tq=%d C=%d H=%d Tmax=%d w %v", mode.name, nb, tq, c, nh, tmax, dt)
	xv := p.Randn(nb*tq*c, 2)
	for i := range xv {
		xv[i] += 5 // far from zero mean, as the LayerNorm case
	}
	x := p.Upload(t, gpu.F32, xv, nb, tq, c)
	g, be := p.Upload(t, gpu.F32, p.Randn(c, 1), c), p.Upload(t, gpu.F32, p.Randn(c, 1), c)
	kcache := p.Upload(t, gpu.F32, p.cacheHistory(kc), nb, tmax, c)
	vcache := p.Upload(t, gpu.F32, p.cacheHistory(kc), nb, tmax, c)
	st, ql := p.Upload(t, gpu.I32, kc.start, nb), p.Upload(t, gpu.I32, kc.qlen, nb)
	w := p.Upload(t, dt, p.Randn(3*c*c, 1/math.Sqrt(float64(c))), 3*c, c)
	bias := p.Upload(t, gpu.F32, p.Randn(3*c, 1), 3*c)
	att := p.Poisoned(t, gpu.F32, nb, tq, c)
	defer p.Free(x, g, be, kcache, vcache, st, ql, w, bias, att)
	arg := func(pick func(Tensors) gpu.Tensor) gpu.NormAttention {
		return gpu.NormAttention{X: pick(x), Gamma: pick(g), Beta: pick(be), Eps: 1e-5, W: pick(w), Bias: pick(bias),
			KCache: pick(kcache), VCache: pick(vcache), Start: pick(st), Qlen: pick(ql), NHead: nh}
	}
	p.Ref.LayerNormAttention(att.Ref, arg(func(v Tensors) gpu.Tensor { return v.Ref }))
	a := arg(func(v Tensors) gpu.Tensor { return v.Got })
	n := dispatches(t, p, func() { p.Got.LayerNormAttention(att.Got, a) })
	// The fused kernel takes whole vec4 words of w's rows.
	if mode.one && tq == 1 && (c%8 == 0 || dt == gpu.F32 && c%4 == 0) && n != 1 {
		t.Errorf("%s: %d dispatches, want the fused kernel's 1", what, n)
	}
	p.Close(t, what+": attention", att, 1e-4, 1e-3)
	atol := 2e-6 * math.Sqrt(float64(c)) * 16
	p.Close(t, what+": kCache", kcache, atol, 1e-4)
	p.Close(t, what+": vCache", vcache, atol, 1e-4)
}
