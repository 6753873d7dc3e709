// Package conformance is the test suite every gpu.Backend must pass: each
// op runs on the backend under test and on the plain-Go reference with the
// same random inputs (fresh seeds each run, logged so a failure can be
// replayed with CHAMELEON_SEED), at awkward sizes, with the outputs
// poisoned first so unwritten elements fail, and the results are compared
// with per-op tolerances |got-want| <= atol + rtol*|want|.
//
// The package does not import testing, so that the CLI's self-check links
// it without the test framework: a check reports through T, which
// *testing.T satisfies, and Check runs one Case outside a test and returns
// a Result. The go tests run the same cases through gputest.RunCases.
// Packages that add ops (cluster, adapt) pair their implementations with
// the same Pair helpers.
package conformance

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"time"

	"github.com/chameleon-llm/chameleon/gpu"
)

// Pair runs the same op on a reference and a backend under test.
type Pair struct {
	Ref, Got gpu.Backend
	Rng      *rand.Rand
}

// Seed returns CHAMELEON_SEED if set, else a fresh seed.
func Seed() uint64 {
	if s := os.Getenv("CHAMELEON_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err == nil {
			return v
		}
	}
	return uint64(time.Now().UnixNano())
}

// NewPair seeds a pair with Seed and logs the seed.
func NewPair(t T, ref, got gpu.Backend) *Pair {
	return NewPairSeed(t, ref, got, Seed())
}

// NewPairSeed is NewPair with a given seed.
func NewPairSeed(t T, ref, got gpu.Backend, seed uint64) *Pair {
	t.Logf("seed %d (replay with CHAMELEON_SEED=%d)", seed, seed)
	return &Pair{Ref: ref, Got: got, Rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Randn returns n normal values scaled by std.
func (p *Pair) Randn(n int, std float64) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(p.Rng.NormFloat64() * std)
	}
	return out
}

// Uniform returns n values in [lo, hi).
func (p *Pair) Uniform(n int, lo, hi float64) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(lo + (hi-lo)*p.Rng.Float64())
	}
	return out
}

// Ints returns n ints in [lo, hi).
func (p *Pair) Ints(n int, lo, hi int) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(lo + p.Rng.IntN(hi-lo))
	}
	return out
}

// Tensors holds the same tensor on both backends.
type Tensors struct{ Ref, Got gpu.Tensor }

// Upload creates the tensor on both backends with the same data
// ([]float32 or []int32).
func (p *Pair) Upload(t T, dt gpu.DType, data any, shape ...int) Tensors {
	t.Helper()
	var out Tensors
	for i, b := range []gpu.Backend{p.Ref, p.Got} {
		x, err := b.Alloc(dt, shape...)
		if err != nil {
			t.Fatalf("%s: alloc %v%v: %v", b.Name(), dt, shape, err)
		}
		if err := b.Write(x, data); err != nil {
			t.Fatalf("%s: write %v%v: %v", b.Name(), dt, shape, err)
		}
		if i == 0 {
			out.Ref = x
		} else {
			out.Got = x
		}
	}
	return out
}

// Poisoned creates an output tensor on both backends, filled with NaN
// (floats) or -7777 (ints) so that elements an op fails to write stand out.
func (p *Pair) Poisoned(t T, dt gpu.DType, shape ...int) Tensors {
	t.Helper()
	n := gpu.Numel(shape)
	if dt == gpu.I32 {
		v := make([]int32, n)
		for i := range v {
			v[i] = -7777
		}
		return p.Upload(t, dt, v, shape...)
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.NaN())
	}
	return p.Upload(t, dt, v, shape...)
}

// Free releases both tensors.
func (p *Pair) Free(ts ...Tensors) {
	for _, x := range ts {
		p.Ref.Free(x.Ref)
		p.Got.Free(x.Got)
	}
}

// ReadBoth flushes and reads a float tensor from both backends.
func (p *Pair) ReadBoth(t T, x Tensors) (got, want []float32) {
	t.Helper()
	want, err := p.Ref.ReadF32(x.Ref)
	if err != nil {
		t.Fatalf("ref read: %v", err)
	}
	got, err = p.Got.ReadF32(x.Got)
	if err != nil {
		t.Fatalf("%s read: %v", p.Got.Name(), err)
	}
	return got, want
}

// ReadBothI32 flushes and reads an int tensor from both backends.
func (p *Pair) ReadBothI32(t T, x Tensors) (got, want []int32) {
	t.Helper()
	want, err := p.Ref.ReadI32(x.Ref)
	if err != nil {
		t.Fatalf("ref read: %v", err)
	}
	got, err = p.Got.ReadI32(x.Got)
	if err != nil {
		t.Fatalf("%s read: %v", p.Got.Name(), err)
	}
	return got, want
}

// Close compares a float output of both backends.
func (p *Pair) Close(t T, what string, x Tensors, atol, rtol float64) {
	t.Helper()
	got, want := p.ReadBoth(t, x)
	if err := AllClose(got, want, atol, rtol); err != nil {
		t.Errorf("%s: %v", what, err)
	}
}

// AllClose reports whether |got-want| <= atol + rtol*|want| everywhere; the
// error names how many elements fail, the worst one, and its index. NaN
// anywhere in got fails (a poisoned element was never written) unless want
// is NaN there too.
func AllClose(got, want []float32, atol, rtol float64) error {
	if len(got) != len(want) {
		return fmt.Errorf("length %d, want %d", len(got), len(want))
	}
	bad, worst, wi := 0, 0.0, -1
	for i := range got {
		g, w := float64(got[i]), float64(want[i])
		if math.IsNaN(w) && math.IsNaN(g) {
			continue
		}
		if math.IsInf(w, 0) && g == w {
			continue
		}
		d := math.Abs(g - w)
		if math.IsNaN(d) || d > atol+rtol*math.Abs(w) {
			bad++
			excess := d - (atol + rtol*math.Abs(w))
			if math.IsNaN(d) {
				excess = math.Inf(1)
			}
			if wi < 0 || excess > worst {
				worst, wi = excess, i
			}
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d of %d elements differ (atol %g, rtol %g); worst at %d: got %g, want %g",
			bad, len(got), atol, rtol, wi, got[wi], want[wi])
	}
	return nil
}

// Case is one op's conformance check.
type Case struct {
	Name string
	Fn   func(t T, p *Pair)
}

// Cases lists the suite; each op's file appends to it in init.
var Cases []Case

func register(name string, fn func(t T, p *Pair)) {
	Cases = append(Cases, Case{name, fn})
}

// Equal compares an int output of both backends exactly.
func (p *Pair) Equal(t T, what string, x Tensors) {
	t.Helper()
	got, want := p.ReadBothI32(t, x)
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("%s: row %d: got %d, want %d", what, i, got[i], want[i])
			return
		}
	}
}
