package adapt

import "math"

// Project2D returns a 2-D projection of the plan's features (the first two
// principal components, by power iteration): N (x, y) pairs for plotting
// the clusters.
func (p *Plan) Project2D() [][2]float64 {
	n := len(p.Cluster)
	if len(p.Features) == 0 || n == 0 {
		return make([][2]float64, n)
	}
	c := len(p.Features) / n
	mean := make([]float64, c)
	for i := 0; i < n; i++ {
		for j := 0; j < c; j++ {
			mean[j] += float64(p.Features[i*c+j]) / float64(n)
		}
	}
	x := make([][]float64, n)
	for i := range x {
		x[i] = make([]float64, c)
		for j := range x[i] {
			x[i][j] = float64(p.Features[i*c+j]) - mean[j]
		}
	}
	var comps [][]float64
	for k := 0; k < 2; k++ {
		v := make([]float64, c)
		for j := range v {
			v[j] = math.Sin(float64(j*(k+1)) + 1) // a fixed start: deterministic
		}
		for it := 0; it < 100; it++ {
			w := make([]float64, c)
			for i := range x {
				d := dot(x[i], v)
				for j := range w {
					w[j] += d * x[i][j]
				}
			}
			for _, u := range comps { // deflate
				d := dot(w, u)
				for j := range w {
					w[j] -= d * u[j]
				}
			}
			nrm := math.Sqrt(dot(w, w))
			if nrm == 0 {
				break
			}
			for j := range w {
				w[j] /= nrm
			}
			v = w
		}
		comps = append(comps, v)
	}
	out := make([][2]float64, n)
	for i := range x {
		out[i] = [2]float64{dot(x[i], comps[0]), dot(x[i], comps[1])}
	}
	return out
}

func dot(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}
