package adaptrun

import "math"

// FeatureStats is the per-channel mean and standard deviation of (N, c)
// features; a channel's deviation is floored at 1e-3 of the largest.
func FeatureStats(f []float32, c int) (mu, sd []float64) {
	n := len(f) / c
	mu, sd = make([]float64, c), make([]float64, c)
	for i := 0; i < n; i++ {
		for j := 0; j < c; j++ {
			mu[j] += float64(f[i*c+j]) / float64(n)
		}
	}
	var top float64
	for i := 0; i < n; i++ {
		for j := 0; j < c; j++ {
			d := float64(f[i*c+j]) - mu[j]
			sd[j] += d * d / float64(n)
		}
	}
	for j := range sd {
		sd[j] = math.Sqrt(sd[j])
		top = max(top, sd[j])
	}
	for j := range sd {
		sd[j] = max(sd[j], 1e-3*top, 1e-12)
	}
	return mu, sd
}

// Standardize returns (x - mu) / sd per channel of the rows of x.
func Standardize(x []float32, mu, sd []float64) []float32 {
	c := len(mu)
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32((float64(v) - mu[i%c]) / sd[i%c])
	}
	return out
}

// FoldStandardize rewrites a first layer trained on standardised inputs,
// y = W (x - mu)/sd + b, as one on raw inputs: W' = W/sd, b' = b - W' mu.
// w is (out, c) row-major.
func FoldStandardize(w, b []float32, mu, sd []float64) {
	c := len(mu)
	for o := range b {
		s := float64(b[o])
		for j := 0; j < c; j++ {
			wj := float64(w[o*c+j]) / sd[j]
			w[o*c+j] = float32(wj)
			s -= wj * mu[j]
		}
		b[o] = float32(s)
	}
}
