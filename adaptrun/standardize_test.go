package adaptrun

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestFoldStandardize(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const out, c = 3, 5
	w, b := make([]float32, out*c), make([]float32, out)
	x := make([]float32, c)
	mu, sd := make([]float64, c), make([]float64, c)
	for i := range w {
		w[i] = float32(r.NormFloat64())
	}
	for j := 0; j < c; j++ {
		x[j], mu[j], sd[j] = float32(r.NormFloat64()), r.NormFloat64(), 0.1+r.Float64()
	}
	want := make([]float64, out)
	xs := Standardize(x, mu, sd)
	for o := 0; o < out; o++ {
		b[o] = float32(r.NormFloat64())
		want[o] = float64(b[o])
		for j := 0; j < c; j++ {
			want[o] += float64(w[o*c+j]) * float64(xs[j])
		}
	}
	FoldStandardize(w, b, mu, sd)
	for o := 0; o < out; o++ {
		got := float64(b[o])
		for j := 0; j < c; j++ {
			got += float64(w[o*c+j]) * float64(x[j])
		}
		if math.Abs(got-want[o]) > 1e-4*(1+math.Abs(want[o])) {
			t.Fatalf("output %d: folded %g, standardised %g", o, got, want[o])
		}
	}
}
