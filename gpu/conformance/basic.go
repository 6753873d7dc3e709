package conformance

import (
	"fmt"
	"math"

	"github.com/chameleon-llm/chameleon/gpu"
)

// Awkward sizes: 1, odd, around powers of two, GPT-2's width and vocabulary.
var awkward = []int{1, 3, 127, 129, 768, 50257}

func init() {
	register("Add", testAdd)
	register("GELU", testGELU)
	register("LayerNorm", testLayerNorm)
	register("AddLayerNorm", testAddLayerNorm)
	register("Embed", testEmbed)
}

func testAdd(t T, p *Pair) {
	for _, n := range append(awkward, 70000) {
		a := p.Upload(t, gpu.F32, p.Randn(n, 1), n)
		b := p.Upload(t, gpu.F32, p.Randn(n, 1), n)
		d := p.Poisoned(t, gpu.F32, n)
		p.Ref.Add(d.Ref, a.Ref, b.Ref)
		p.Got.Add(d.Got, a.Got, b.Got)
		p.Close(t, fmt.Sprintf("n=%d", n), d, 0, 0)
		p.Free(a, b, d)
	}
}

func testGELU(t T, p *Pair) {
	for _, n := range awkward {
		x := p.Randn(n, 3)
		x[0] = 40 // tanh saturation must not produce NaN
		if n > 1 {
			x[1] = -40
		}
		a := p.Upload(t, gpu.F32, x, n)
		d := p.Poisoned(t, gpu.F32, n)
		p.Ref.GELU(d.Ref, a.Ref)
		p.Got.GELU(d.Got, a.Got)
		p.Close(t, fmt.Sprintf("n=%d", n), d, 1e-5, 1e-4)
		p.Free(a, d)
	}
}

// RowWGs runs f under each row-reduction workgroup size of the WebGPU
// backend (once for the reference), restoring the adapter's own.
func RowWGs(p *Pair, f func()) {
	w, ok := p.Got.(*gpu.WebGPU)
	if !ok {
		f()
		return
	}
	old := w.RowWG
	defer func() { w.RowWG = old }()
	for _, wg := range []int{256, 8} {
		w.RowWG = wg
		f()
	}
}

func testLayerNorm(t T, p *Pair) {
	RowWGs(p, func() { testLayerNormOnce(t, p) })
}

// layerNormSizes are the (rows, C) the layer-norm tests run.
var layerNormSizes = [][2]int{{1, 1}, {3, 3}, {5, 127}, {129, 129}, {8, 768}, {2, 1600}}

// layerNormInputs uploads m rows of c values around a mean of 5 (an offset
// mean checks the two-pass variance) and random gamma and beta.
func layerNormInputs(t T, p *Pair, m, c int) (x, gamma, beta Tensors) {
	v := p.Randn(m*c, 2)
	for i := range v {
		v[i] += 5
	}
	return p.Upload(t, gpu.F32, v, m, c), p.Upload(t, gpu.F32, p.Randn(c, 1), c), p.Upload(t, gpu.F32, p.Randn(c, 1), c)
}

func testLayerNormOnce(t T, p *Pair) {
	for _, sz := range layerNormSizes {
		m, c := sz[0], sz[1]
		a, g, b := layerNormInputs(t, p, m, c)
		d := p.Poisoned(t, gpu.F32, m, c)
		p.Ref.LayerNorm(d.Ref, a.Ref, g.Ref, b.Ref, 1e-5)
		p.Got.LayerNorm(d.Got, a.Got, g.Got, b.Got, 1e-5)
		p.Close(t, fmt.Sprintf("%dx%d", m, c), d, 1e-4, 1e-4)
		p.Free(a, g, b, d)
	}
}

// testAddLayerNorm checks the fused op against the reference and, on the
// backend under test, against its own Add then LayerNorm bit for bit (the
// model uses the fused op where it used the two).
func testAddLayerNorm(t T, p *Pair) {
	RowWGs(p, func() { testAddLayerNormOnce(t, p) })
}

func testAddLayerNormOnce(t T, p *Pair) {
	for _, sz := range layerNormSizes {
		m, c := sz[0], sz[1]
		a, g, be := layerNormInputs(t, p, m, c)
		b := p.Upload(t, gpu.F32, p.Randn(m*c, 1), m, c)
		sum := p.Poisoned(t, gpu.F32, m, c)
		d := p.Poisoned(t, gpu.F32, m, c)
		p.Ref.AddLayerNorm(sum.Ref, d.Ref, a.Ref, b.Ref, g.Ref, be.Ref, 1e-5)
		p.Got.AddLayerNorm(sum.Got, d.Got, a.Got, b.Got, g.Got, be.Got, 1e-5)
		what := fmt.Sprintf("%dx%d", m, c)
		p.Close(t, what+" sum", sum, 0, 0)
		p.Close(t, what, d, 1e-4, 1e-4)
		// The same backend's two ops.
		sum2 := p.Poisoned(t, gpu.F32, m, c)
		d2 := p.Poisoned(t, gpu.F32, m, c)
		p.Got.Add(sum2.Got, a.Got, b.Got)
		p.Got.LayerNorm(d2.Got, sum2.Got, g.Got, be.Got, 1e-5)
		fused, _ := p.ReadBoth(t, d)
		separate, _ := p.ReadBoth(t, d2)
		for i := range fused {
			if math.Float32bits(fused[i]) != math.Float32bits(separate[i]) {
				t.Errorf("%s: %s AddLayerNorm differs from its Add then LayerNorm at %d: %g vs %g", what, p.Got.Name(), i, fused[i], separate[i])
				break
			}
		}
		p.Free(a, b, g, be, sum, d, sum2, d2)
	}
}

func testEmbed(t T, p *Pair) {
	for _, dt := range []gpu.DType{gpu.F32, gpu.F16} {
		for _, sz := range [][3]int{{1, 1, 1}, {3, 7, 3}, {129, 50, 127}, {50257, 1024, 768}} {
			v, pmax, c := sz[0], sz[1], sz[2]
			m := 37
			wte := p.Upload(t, dt, p.Randn(v*c, 0.02), v, c)
			wpe := p.Upload(t, dt, p.Randn(pmax*c, 0.01), pmax, c)
			tok := p.Ints(m, 0, v)
			tok[0] = int32(v - 1)
			tk := p.Upload(t, gpu.I32, tok, m)
			ps := p.Upload(t, gpu.I32, p.Ints(m, 0, pmax), m)
			d := p.Poisoned(t, gpu.F32, m, c)
			p.Ref.Embed(d.Ref, wte.Ref, wpe.Ref, tk.Ref, ps.Ref)
			p.Got.Embed(d.Got, wte.Got, wpe.Got, tk.Got, ps.Got)
			p.Close(t, fmt.Sprintf("%v V=%d C=%d", dt, v, c), d, 0, 0)
			p.Free(wte, wpe, tk, ps, d)
		}
	}
}

func init() { register("Copy", testCopy) }

// testCopy checks the device copy (vec4 kernel and queue fallback); it
// needs the WebGPU backend, since Copy is not a Backend op.
func testCopy(t T, p *Pair) {
	w, ok := p.Got.(*gpu.WebGPU)
	if !ok {
		t.Fatalf("Copy is a WebGPU method; backend is %T", p.Got)
	}
	for _, n := range []int{3, 4, 127, 128, 70001, 70004} {
		src := p.Upload(t, gpu.F32, p.Randn(n, 1), n)
		dst := p.Poisoned(t, gpu.F32, n)
		w.Copy(dst.Got, src.Got)
		got, err := w.ReadF32(dst.Got)
		if err != nil {
			t.Fatalf("%v", err)
		}
		want, _ := p.Ref.ReadF32(src.Ref)
		if err := AllClose(got, want, 0, 0); err != nil {
			t.Errorf("n=%d: %v", n, err)
		}
		p.Free(src, dst)
	}
}

func init() { register("Rows", testRows) }

func testRows(t T, p *Pair) {
	for _, sz := range [][3]int{{1, 1, 1}, {7, 3, 5}, {129, 768, 33}, {256, 127, 300}} {
		m, c, r := sz[0], sz[1], sz[2]
		x := p.Upload(t, gpu.F32, p.Randn(m*c, 1), m, c)
		idx := p.Ints(r, -2, m+2) // includes out-of-range indices
		ix := p.Upload(t, gpu.I32, idx, r)
		d := p.Poisoned(t, gpu.F32, r, c)
		p.Ref.Rows(d.Ref, x.Ref, ix.Ref)
		p.Got.Rows(d.Got, x.Got, ix.Got)
		p.Close(t, fmt.Sprintf("M=%d C=%d R=%d", m, c, r), d, 0, 0)
		p.Free(x, ix, d)
	}
}
