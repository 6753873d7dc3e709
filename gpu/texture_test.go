package gpu

import (
	"math"
	"math/rand/v2"
	"testing"
)

// refMatMul is dst = x·wᵀ on the host (f16 weights rounded as stored).
func refMatMul(x, w []float32, m, k, n int, f16 bool) []float32 {
	out := make([]float32, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				wv := w[j*k+p]
				if f16 {
					wv = F16ToF32(F32ToF16(wv))
				}
				s += float64(x[i*k+p]) * float64(wv)
			}
			out[i*n+j] = float32(s)
		}
	}
	return out
}

// normals returns a generator of n standard-normal float32s, seeded.
func normals(seed uint64) func(n int) []float32 {
	r := rand.New(rand.NewPCG(seed, seed+1))
	return func(n int) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = float32(r.NormFloat64())
		}
		return out
	}
}

// texDevice is the test device with the texture matmuls forced. They need
// read-only storage textures, which wgpu-native offers on every backend:
// their absence fails the test rather than letting the buffer kernels
// stand in unnoticed.
func texDevice(t *testing.T) *WebGPU {
	w := device(t)
	if !w.HasTexRead {
		t.Fatal("the device has no read-only storage textures (wgpu-native's TEXTURE_ADAPTER_SPECIFIC_FORMAT_FEATURES): the texture paths are off")
	}
	old := w.MatMulVariant
	w.MatMulVariant = MatMulTex
	t.Cleanup(func() { w.MatMulVariant = old })
	return w
}

// matMulOf writes xs into x and, unless nil, ws into wt, computes
// dst = x·wtᵀ and reads dst back.
func matMulOf(t *testing.T, w *WebGPU, dst, x, wt Tensor, xs, ws []float32) []float32 {
	t.Helper()
	if err := w.Write(x, xs); err != nil {
		t.Fatal(err)
	}
	if ws != nil {
		if err := w.Write(wt, ws); err != nil {
			t.Fatal(err)
		}
	}
	w.MatMul(dst, x, wt, nil)
	got, err := w.ReadF32(dst)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// The texture matmul's copy of a weight matrix follows every way the
// weights can change: a host Write, a kernel writing them, a Copy into
// them, and a freed buffer handed to a new tensor.
func TestTexWeightCopyFollowsWrites(t *testing.T) {
	w := texDevice(t)
	rnd := normals(5)
	for _, dt := range []DType{F32, F16} {
		m, k, n := 3, 37, 21
		xs := rnd(m * k)
		x := Must(w.Alloc(F32, m, k))
		wt := Must(w.Alloc(dt, n, k))
		dst := Must(w.Alloc(F32, m, n))
		check := func(what string, ws []float32) {
			t.Helper()
			w.MatMul(dst, x, wt, nil)
			got, err := w.ReadF32(dst)
			if err != nil {
				t.Fatal(err)
			}
			want := refMatMul(xs, ws, m, k, n, dt == F16)
			for i := range want {
				if math.Abs(float64(got[i]-want[i])) > 1e-4*(1+math.Abs(float64(want[i]))) {
					t.Fatalf("%v, %s: dst[%d] = %v, want %v", dt, what, i, got[i], want[i])
				}
			}
		}
		if err := w.Write(x, xs); err != nil {
			t.Fatal(err)
		}
		w1 := rnd(n * k)
		if err := w.Write(wt, w1); err != nil {
			t.Fatal(err)
		}
		check("first use", w1)
		w2 := rnd(n * k)
		if err := w.Write(wt, w2); err != nil {
			t.Fatal(err)
		}
		check("after a host write", w2)
		if dt == F32 {
			// A kernel writes the weights: w = w2 + w2.
			a, b := Must(w.Alloc(F32, n, k)), Must(w.Alloc(F32, n, k))
			if err := w.Write(a, w2); err != nil {
				t.Fatal(err)
			}
			if err := w.Write(b, w2); err != nil {
				t.Fatal(err)
			}
			w.Add(wt, a, b)
			sum := make([]float32, len(w2))
			for i := range w2 {
				sum[i] = w2[i] + w2[i]
			}
			check("after a kernel wrote them", sum)
			// Copy into them.
			w3 := rnd(n * k)
			if err := w.Write(a, w3); err != nil {
				t.Fatal(err)
			}
			w.Copy(wt, a)
			check("after a copy into them", w3)
			w.Free(a)
			w.Free(b)
		}
		// A freed weight buffer reused by a new tensor of the same shape.
		w.Free(wt)
		wt = Must(w.Alloc(dt, n, k))
		w4 := rnd(n * k)
		if err := w.Write(wt, w4); err != nil {
			t.Fatal(err)
		}
		check("in a reused buffer", w4)
		w.Free(x)
		w.Free(wt)
		w.Free(dst)
	}
}

// texFit lays rows out within the 2D size limit or says it cannot.
func TestTexFit(t *testing.T) {
	for _, c := range []struct {
		rows, kt, want int
		lim            uint32
		rowsPer        int
		w, h           uint32
		ok             bool
	}{
		{50257, 192, 50257, 16384, 85, 16320, 592, true},
		{1, 192, 1, 16384, 1, 192, 1, true},
		{3, 5, 3, 8, 1, 5, 3, true},
		{3, 9, 3, 8, 0, 0, 0, false},      // a row wider than the limit
		{100, 4, 100, 8, 2, 8, 50, false}, // 50 texture rows > 8
	} {
		rp, w, h, ok := texFit(c.rows, c.kt, c.want, c.lim)
		if ok != c.ok || (ok && (rp != c.rowsPer || w != c.w || h != c.h)) {
			t.Errorf("texFit(%d, %d, %d, %d) = %d, %d, %d, %v; want %d, %d, %d, %v",
				c.rows, c.kt, c.want, c.lim, rp, w, h, ok, c.rowsPer, c.w, c.h, c.ok)
		}
	}
}

// texFitBlocked sizes the weights' blocked layout: whole 32-row blocks,
// a width that is a multiple of 32, within the 2D size limit.
func TestTexFitBlocked(t *testing.T) {
	for _, c := range []struct {
		rows, kt int
		lim      uint32
		w, h     uint32
		ok       bool
	}{
		{50257, 96, 16384, 16384, 295, true}, // GPT-2's f16 LM head: 1571 blocks x 32 x 96 texels
		{768, 192, 16384, 16384, 9, true},
		{1, 1, 16384, 32, 1, true},   // one (padded) block of one texel per row
		{33, 3, 16384, 192, 1, true}, // two blocks
		{100, 4, 40, 32, 16, true},   // the limit rounded down to 32
		{100, 4, 31, 0, 0, false},    // no room for one block's width
		{1000, 100, 64, 0, 0, false}, // too many texture rows
	} {
		w, h, ok := texFitBlocked(c.rows, c.kt, c.lim)
		if ok != c.ok || (ok && (w != c.w || h != c.h)) {
			t.Errorf("texFitBlocked(%d, %d, %d) = %d, %d, %v; want %d, %d, %v", c.rows, c.kt, c.lim, w, h, ok, c.w, c.h, c.ok)
		}
		if ok && int(w)*int(h) < (c.rows+31)/32*32*c.kt {
			t.Errorf("texFitBlocked(%d, %d, %d): %d x %d texels hold fewer than the layout needs", c.rows, c.kt, c.lim, w, h)
		}
	}
}

// rowsMatchAlone multiplies m random rows by random weights of dtype dt and
// checks the given rows of the product against the same row multiplied
// alone, bit for bit, and against the host within f32 rounding. what names
// the two routes in a failure.
func rowsMatchAlone(t *testing.T, w *WebGPU, rnd func(int) []float32, dt DType, m, k, n int, rows []int, what string) {
	t.Helper()
	xs, ws := rnd(m*k), rnd(n*k)
	x, x1 := Must(w.Alloc(F32, m, k)), Must(w.Alloc(F32, 1, k))
	wt := Must(w.Alloc(dt, n, k))
	dst, dst1 := Must(w.Alloc(F32, m, n)), Must(w.Alloc(F32, 1, n))
	defer func() {
		for _, x := range []Tensor{x, x1, wt, dst, dst1} {
			w.Free(x)
		}
	}()
	all := matMulOf(t, w, dst, x, wt, xs, ws)
	want := refMatMul(xs, ws, m, k, n, dt == F16)
	for _, i := range rows {
		row := matMulOf(t, w, dst1, x1, wt, xs[i*k:(i+1)*k], nil)
		for j := 0; j < n; j++ {
			got := all[i*n+j]
			if math.Float32bits(got) != math.Float32bits(row[j]) {
				t.Fatalf("%v, K %d: row %d col %d: %v among %d rows, %v alone (%s)", dt, k, i, j, got, m, row[j], what)
			}
			if math.Abs(float64(got-want[i*n+j])) > 1e-4*(1+math.Abs(float64(want[i*n+j]))) {
				t.Fatalf("%v, K %d: dst[%d,%d] = %v, want %v", dt, k, i, j, got, want[i*n+j])
			}
		}
	}
}

// Above texCopyMinRows rows (K a multiple of 64) x reaches its texture by
// a queue copy rather than the pack kernel: each row's result must equal,
// bit for bit, the same row multiplied alone (which packs), and the host.
func TestTexXCopyEqualsPack(t *testing.T) {
	w := texDevice(t)
	rnd := normals(9)
	m := texCopyMinRows + 5
	rows := make([]int, m)
	for i := range rows {
		rows[i] = i
	}
	for _, dt := range []DType{F32, F16} {
		rowsMatchAlone(t, w, rnd, dt, m, 128, 40, rows, "copied x in the batch, packed alone")
	}
}

// The kernel for more than 8 rows may take k two texels per pass, then one
// at a time (wgsl.TexKernel.KU): over even and odd texel counts, a partial
// last texel and a single texel, each of its rows must equal, bit for bit,
// the same row through the one-row kernel (one texel per pass), and the host.
func TestTexPassesKeepKOrder(t *testing.T) {
	w := texDevice(t)
	rnd := normals(11)
	for _, dt := range []DType{F32, F16} {
		for _, k := range []int{4, 8, 36, 129, 260} {
			rowsMatchAlone(t, w, rnd, dt, 20, k, 72, []int{0, 9, 19}, "the kernel for more than 8 rows, then the one-row kernel")
		}
	}
}

// Without read-only storage textures the texture variant falls back to the
// buffer kernels: same results as the host, and no texture made.
func TestTexVariantFallsBackWithoutTexRead(t *testing.T) {
	w := texDevice(t)
	w.HasTexRead = false
	defer func() { w.HasTexRead = true }()
	rnd := normals(11)
	m, k, n := 12, 128, 24
	xs, ws := rnd(m*k), rnd(n*k)
	x, wt, dst := Must(w.Alloc(F32, m, k)), Must(w.Alloc(F16, n, k)), Must(w.Alloc(F32, m, n))
	defer func() { w.Free(x); w.Free(wt); w.Free(dst) }()
	got := matMulOf(t, w, dst, x, wt, xs, ws)
	if s := w.shadows[w.t(wt).buf]; s != nil {
		t.Fatal("a texture copy of the weights was made without read-only storage textures")
	}
	want := refMatMul(xs, ws, m, k, n, true)
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-4*(1+math.Abs(float64(want[i]))) {
			t.Fatalf("dst[%d] = %v, want %v", i, got[i], want[i])
		}
	}
}
