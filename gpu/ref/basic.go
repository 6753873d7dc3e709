package ref

import (
	"fmt"
	"math"

	"github.com/chameleon-llm/chameleon/gpu"
)

// Add: dst = a + b.
func (*Backend) Add(dst, a, b gpu.Tensor) {
	gpu.CheckShape("Add", "b", b, gpu.F32, a.Shape()...)
	gpu.CheckShape("Add", "dst", dst, gpu.F32, a.Shape()...)
	av, bv, out := f(a), f(b), f(dst)
	for i := range out {
		out[i] = av[i] + bv[i]
	}
}

// GELU, tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
func (*Backend) GELU(dst, x gpu.Tensor) {
	gpu.CheckShape("GELU", "dst", dst, gpu.F32, x.Shape()...)
	in, out := f(x), f(dst)
	for i, v := range in {
		out[i] = GELU(v)
	}
}

// GELU of one value, in float64.
func GELU(v float32) float32 {
	x := float64(v)
	return float32(0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x))))
}

// LayerNorm over the last dim with population variance.
func (*Backend) LayerNorm(dst, x, gamma, beta gpu.Tensor, eps float32) {
	m, c := rowsCols(x)
	gpu.CheckShape("LayerNorm", "gamma", gamma, gpu.F32, c)
	gpu.CheckShape("LayerNorm", "beta", beta, gpu.F32, c)
	gpu.CheckShape("LayerNorm", "dst", dst, gpu.F32, x.Shape()...)
	in, out, g, b := f(x), f(dst), f(gamma), f(beta)
	for r := 0; r < m; r++ {
		row := in[r*c : (r+1)*c]
		mean, rstd := rowStats(row, eps)
		for j, x := range row {
			out[r*c+j] = float32((float64(x)-mean)*rstd)*g[j] + b[j]
		}
	}
}

// AddLayerNorm: sum = a + b, dst = LayerNorm(sum).
func (r *Backend) AddLayerNorm(sum, dst, a, b, gamma, beta gpu.Tensor, eps float32) {
	r.Add(sum, a, b)
	r.LayerNorm(dst, sum, gamma, beta, eps)
}

// Embed: dst(M,C) = wte[tokens[m]] + wpe[pos[m]].
func (*Backend) Embed(dst, wte, wpe, tokens, pos gpu.Tensor) {
	_, c := rowsCols(wte)
	m := gpu.Numel(tokens.Shape())
	gpu.CheckShape("Embed", "wpe", wpe, wte.DType(), -1, c)
	gpu.CheckShape("Embed", "pos", pos, gpu.I32, m)
	if r, cc := rowsCols(dst); r != m || cc != c || dst.DType() != gpu.F32 {
		panic(fmt.Sprintf("gpu: Embed: dst is %v%v, want f32 with %d rows of %d", dst.DType(), dst.Shape(), m, c))
	}
	te, pe, tok, ps, out := f(wte), f(wpe), ints(tokens), ints(pos), f(dst)
	for i := 0; i < m; i++ {
		for j := 0; j < c; j++ {
			out[i*c+j] = te[int(tok[i])*c+j] + pe[int(ps[i])*c+j]
		}
	}
}

// Rows: dst(R,C) = x[idx[r]]; out-of-range indices give zero rows.
func (*Backend) Rows(dst, x, idx gpu.Tensor) {
	m, c := rowsCols(x)
	ix := ints(idx)
	if dr, dc := rowsCols(dst); dr != len(ix) || dc != c {
		panic(fmt.Sprintf("gpu: Rows: dst is %v, want %d rows of %d", dst.Shape(), len(ix), c))
	}
	in, out := f(x), f(dst)
	for r, s := range ix {
		for j := 0; j < c; j++ {
			v := float32(0)
			if s >= 0 && int(s) < m {
				v = in[int(s)*c+j]
			}
			out[r*c+j] = v
		}
	}
}

// rowStats is a row's mean and 1/sqrt(population variance + eps), in
// float64, two passes (the layernorm forward and backward share it).
func rowStats(row []float32, eps float32) (mean, rstd float64) {
	for _, x := range row {
		mean += float64(x)
	}
	mean /= float64(len(row))
	var v float64
	for _, x := range row {
		d := float64(x) - mean
		v += d * d
	}
	return mean, 1 / math.Sqrt(v/float64(len(row))+float64(eps))
}
