package conformance

import (
	"fmt"
	"math"

	"github.com/chameleon-llm/chameleon/gpu"
)

func init() {
	register("MatMul", testMatMul)
}

// matMulCase is one (M, K, N) with the leading dims x is given in.
type matMulCase struct {
	lead    []int // x's leading dims; their product is M
	k, n    int
	f16Only bool // large cases run with one weight dtype to save time
	f32Only bool
}

func (c matMulCase) m() int { return gpu.Numel(c.lead) }

// matMulCases cover M in {1,3,8,127,129,256}, K in {1,3,127,129,768} and
// N in {1,3,127,129,768}: every value of each appears, paired with
// awkward values of the others (partial register blocks and tiles in
// both directions, odd K for packed f16, K smaller than one tile step),
// plus GPT-2's LM head, whose f32 weights exceed a 128 MiB storage
// binding and are split along N, and a logits matrix split along M.
var matMulCases = []matMulCase{
	{lead: []int{1}, k: 1, n: 1},
	{lead: []int{3}, k: 3, n: 3},
	{lead: []int{1}, k: 768, n: 129},
	{lead: []int{3}, k: 127, n: 768},
	{lead: []int{8}, k: 129, n: 127},
	{lead: []int{127}, k: 768, n: 129},
	{lead: []int{3, 43}, k: 127, n: 3}, // M = 129 given as (B, T, K)
	{lead: []int{129}, k: 1, n: 768},
	{lead: []int{256}, k: 129, n: 127},
	{lead: []int{256}, k: 768, n: 1},
	{lead: []int{2}, k: 768, n: 50257, f16Only: true},
	{lead: []int{3}, k: 768, n: 50257, f32Only: true},
	// dst (700 x 50257 f32 = 141 MB) exceeds a 128 MiB binding: rows of x
	// and dst are split into aligned chunks.
	{lead: []int{7, 100}, k: 8, n: 50257, f32Only: true},
	// K = 8: one 16-byte word per row of f16 weights (the cooperative
	// mat-vec kernel's smallest row), two of f32.
	{lead: []int{5}, k: 8, n: 130},
}

// matMulVariants returns the MatMul variants to run p.Got under (every
// one on WebGPU, else just the backend's own), a func that forces one, and
// one that restores the backend's own choice.
func matMulVariants(p *Pair) (variants []string, force func(string), restore func()) {
	wg, ok := p.Got.(*gpu.WebGPU)
	if !ok {
		return []string{""}, func(string) {}, func() {}
	}
	old := wg.MatMulVariant
	return gpu.MatMulVariants, func(v string) { wg.MatMulVariant = v }, func() { wg.MatMulVariant = old }
}

// testMatMul runs every case under every MatMulVariant (forced through the
// WebGPU backend's MatMulVariant field, restored afterwards), so the GPU
// tile kernel is checked on CPU adapters too.
func testMatMul(t T, p *Pair) {
	variants, force, restore := matMulVariants(p)
	defer restore()
	for ci, c := range matMulCases {
		m, k, n := c.m(), c.k, c.n
		for _, dt := range []gpu.DType{gpu.F32, gpu.F16} {
			if (c.f16Only && dt != gpu.F16) || (c.f32Only && dt != gpu.F32) {
				continue
			}
			withBias := (ci+int(dt))%2 == 0
			x := p.Upload(t, gpu.F32, p.Randn(m*k, 1), append(append([]int{}, c.lead...), k)...)
			w := p.Upload(t, dt, p.Randn(n*k, 1/math.Sqrt(float64(k))), n, k)
			var b Tensors
			if withBias {
				b = p.Upload(t, gpu.F32, p.Randn(n, 1), n)
			}
			want := p.Poisoned(t, gpu.F32, m, n)
			p.Ref.MatMul(want.Ref, x.Ref, w.Ref, b.Ref)
			wantV, err := p.Ref.ReadF32(want.Ref)
			if err != nil {
				t.Fatalf("%v", err)
			}
			// f32 accumulation error grows like sqrt(K).
			atol := 2e-6 * math.Sqrt(float64(k)) * 4
			for _, v := range variants {
				if skipVariant(v, m) {
					continue
				}
				if v == gpu.MatMulCoop && m > gpu.MatMulGemvMaxM && m*n > 1<<22 {
					// The cooperative mat-vec kernel runs at M <= 8 unless
					// forced; its row blocks past the first are checked on
					// the cases up to M = 256. At 700 x 50257 its barriers
					// would cost ~40 s on lavapipe.
					continue
				}
				force(v)
				d := p.Poisoned(t, gpu.F32, m, n)
				p.Got.MatMul(d.Got, x.Got, w.Got, b.Got)
				got, err := p.Got.ReadF32(d.Got)
				if err != nil {
					t.Fatalf("%s read: %v", p.Got.Name(), err)
				}
				if err := AllClose(got, wantV, atol, 1e-5); err != nil {
					t.Errorf("%s M=%d (x %v) K=%d N=%d w %v bias=%v: %v", v, m, c.lead, k, n, dt, withBias, err)
				}
				p.Free(d)
			}
			p.Free(x, w, want)
			if withBias {
				p.Free(b)
			}
		}
	}
	Sub(t, "shape panics", func(t T) { testMatMulPanics(t, p) })
}

// skipVariant skips a variant whose kernel family an earlier variant in
// gpu.MatMulVariants already runs at this M.
func skipVariant(v string, m int) bool {
	fam := gpu.MatMulFamily(v, m)
	for _, u := range gpu.MatMulVariants {
		if u == v {
			return false
		}
		if gpu.MatMulFamily(u, m) == fam {
			return true
		}
	}
	return false
}

// testMatMulPanics checks that mismatched operands panic with a
// "gpu: MatMul:" message on both backends.
func testMatMulPanics(t T, p *Pair) {
	for _, b := range []gpu.Backend{p.Ref, p.Got} {
		alloc := func(dt gpu.DType, shape ...int) gpu.Tensor { return gpu.Must(b.Alloc(dt, shape...)) }
		x, w, d := alloc(gpu.F32, 4, 6), alloc(gpu.F32, 5, 6), alloc(gpu.F32, 4, 5)
		for what, call := range map[string]func(){
			"K mismatch":  func() { b.MatMul(d, alloc(gpu.F32, 4, 7), w, nil) },
			"dst shape":   func() { b.MatMul(alloc(gpu.F32, 4, 6), x, w, nil) },
			"bias length": func() { b.MatMul(d, x, w, alloc(gpu.F32, 4)) },
			"x dtype":     func() { b.MatMul(d, alloc(gpu.I32, 4, 6), w, nil) },
			"w dtype":     func() { b.MatMul(d, x, alloc(gpu.I32, 5, 6), nil) },
		} {
			msg := func() (msg string) {
				defer func() {
					if r := recover(); r != nil {
						msg = fmt.Sprint(r)
					}
				}()
				call()
				return ""
			}()
			if len(msg) < 12 || msg[:12] != "gpu: MatMul:" {
				t.Errorf("%s: %s: got panic %q, want a \"gpu: MatMul:\" panic", b.Name(), what, msg)
			}
		}
	}
}
