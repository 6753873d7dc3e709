package ref

import (
	"fmt"
	"math"

	"github.com/chameleon-llm/chameleon/gpu"
)

// Backward ops of the reference backend (gpu.TrainBackend). Contract as in
// gpu.TrainBackend: weight gradients accumulate (+=), activation gradients
// are written.

var _ gpu.TrainBackend = (*Backend)(nil)

// Zero: dst = 0.
func (*Backend) Zero(dst gpu.Tensor) {
	t := tt(dst)
	clear(t.F)
	clear(t.I)
}

// Accumulate: dst += x.
func (*Backend) Accumulate(dst, x gpu.Tensor) {
	gpu.CheckShape("Accumulate", "dst", dst, gpu.F32, x.Shape()...)
	gpu.CheckShape("Accumulate", "x", x, gpu.F32, x.Shape()...)
	d, s := f(dst), f(x)
	for i := range d {
		d[i] += s[i]
	}
}

// MatMulBackward: dx = dOut·w (written), dW += dOutᵀ·x, dBias += Σ_rows dOut.
func (*Backend) MatMulBackward(dx, dW, dBias, dOut, x, w gpu.Tensor) {
	m, k, n := gpu.MatMulBackwardDims(dx, dW, dBias, dOut, x, w)
	g, xv, wv, dwv := f(dOut), f(x), f(w), f(dW)
	if dx != nil {
		out := f(dx)
		for i := 0; i < m; i++ {
			for c := 0; c < k; c++ {
				var s float64
				for j := 0; j < n; j++ {
					s += float64(g[i*n+j]) * float64(wv[j*k+c])
				}
				out[i*k+c] = float32(s)
			}
		}
	}
	for j := 0; j < n; j++ {
		for c := 0; c < k; c++ {
			var s float64
			for i := 0; i < m; i++ {
				s += float64(g[i*n+j]) * float64(xv[i*k+c])
			}
			dwv[j*k+c] = float32(float64(dwv[j*k+c]) + s)
		}
	}
	if dBias != nil {
		db := f(dBias)
		for j := 0; j < n; j++ {
			var s float64
			for i := 0; i < m; i++ {
				s += float64(g[i*n+j])
			}
			db[j] = float32(float64(db[j]) + s)
		}
	}
}

// LayerNormBackward, with x̂ = (x-mean)*rstd recomputed per row:
//
//	dx = rstd * (dx̂ - mean(dx̂) - x̂ * mean(dx̂·x̂)),  dx̂ = dOut*gamma
//	dGamma += Σ_rows dOut*x̂,  dBeta += Σ_rows dOut
func (*Backend) LayerNormBackward(dx, dGamma, dBeta, dOut, x, gamma gpu.Tensor, eps float32) {
	m, c := rowsCols(x)
	gpu.CheckShape("LayerNormBackward", "x", x, gpu.F32, x.Shape()...)
	gpu.CheckShape("LayerNormBackward", "dOut", dOut, gpu.F32, x.Shape()...)
	gpu.CheckShape("LayerNormBackward", "dx", dx, gpu.F32, x.Shape()...)
	gpu.CheckShape("LayerNormBackward", "gamma", gamma, gpu.F32, c)
	gpu.CheckShape("LayerNormBackward", "dGamma", dGamma, gpu.F32, c)
	gpu.CheckShape("LayerNormBackward", "dBeta", dBeta, gpu.F32, c)
	in, g, gm, out := f(x), f(dOut), f(gamma), f(dx)
	dg := make([]float64, c)
	dbt := make([]float64, c)
	xh := make([]float64, c)
	for r := 0; r < m; r++ {
		row := in[r*c : (r+1)*c]
		mean, rstd := rowStats(row, eps)
		var a, b float64 // mean(dx̂), mean(dx̂·x̂)
		for j, x := range row {
			xh[j] = (float64(x) - mean) * rstd
			d := float64(g[r*c+j]) * float64(gm[j])
			a += d
			b += d * xh[j]
			dg[j] += float64(g[r*c+j]) * xh[j]
			dbt[j] += float64(g[r*c+j])
		}
		a /= float64(c)
		b /= float64(c)
		for j := range row {
			d := float64(g[r*c+j]) * float64(gm[j])
			out[r*c+j] = float32(rstd * (d - a - xh[j]*b))
		}
	}
	dgv, dbv := f(dGamma), f(dBeta)
	for j := 0; j < c; j++ {
		dgv[j] = float32(float64(dgv[j]) + dg[j])
		dbv[j] = float32(float64(dbv[j]) + dbt[j])
	}
}

// GELUBackward: dx = dOut * gelu'(x).
func (*Backend) GELUBackward(dx, dOut, x gpu.Tensor) {
	gpu.CheckShape("GELUBackward", "x", x, gpu.F32, x.Shape()...)
	gpu.CheckShape("GELUBackward", "dOut", dOut, gpu.F32, x.Shape()...)
	gpu.CheckShape("GELUBackward", "dx", dx, gpu.F32, x.Shape()...)
	in, g, out := f(x), f(dOut), f(dx)
	for i, v := range in {
		out[i] = float32(float64(g[i]) * GELUGrad(float64(v)))
	}
}

// GELUGrad is the derivative of GPT-2's tanh GELU at x, in float64.
func GELUGrad(x float64) float64 {
	const a = 0.044715
	k := math.Sqrt(2 / math.Pi)
	th := math.Tanh(k * (x + a*x*x*x))
	return 0.5*(1+th) + 0.5*x*(1-th*th)*k*(1+3*a*x*x)
}

// CrossEntropyBackward: dLogits = scale*(softmax - onehot), zero rows where
// the target is negative.
func (*Backend) CrossEntropyBackward(dLogits, logits, targets gpu.Tensor, scale float32) {
	m, v := rowsCols(logits)
	gpu.CheckShape("CrossEntropyBackward", "logits", logits, gpu.F32, logits.Shape()...)
	gpu.CheckShape("CrossEntropyBackward", "dLogits", dLogits, gpu.F32, logits.Shape()...)
	if targets.DType() != gpu.I32 || gpu.Numel(targets.Shape()) != m {
		panic(fmt.Sprintf("gpu: CrossEntropyBackward: targets is %v%v, want i32 with %d elements", targets.DType(), targets.Shape(), m))
	}
	x, tg, out := f(logits), ints(targets), f(dLogits)
	for r := 0; r < m; r++ {
		row, o := x[r*v:(r+1)*v], out[r*v:(r+1)*v]
		t := int(tg[r])
		if t < 0 {
			clear(o)
			continue
		}
		mx := math.Inf(-1)
		for _, z := range row {
			mx = max(mx, float64(z))
		}
		var s float64
		for _, z := range row {
			s += math.Exp(float64(z) - mx)
		}
		for j, z := range row {
			p := math.Exp(float64(z)-mx) / s
			if j == t {
				p--
			}
			o[j] = float32(float64(scale) * p)
		}
		if t >= v {
			for j := range o {
				o[j] = float32(math.NaN())
			}
		}
	}
}

// EmbedBackward: dWte[tokens[m]] += dOut[m], dWpe[pos[m]] += dOut[m]; rows
// with a negative id are skipped. Each table row's contributions are summed
// in float64 in increasing m, then added to the table.
func (*Backend) EmbedBackward(dWte, dWpe, dOut, tokens, pos gpu.Tensor) {
	m, c := gpu.EmbedBackwardDims(dWte, dWpe, dOut, tokens, pos)
	g := f(dOut)
	scatter := func(table gpu.Tensor, ids []int32) {
		rows, _ := rowsCols(table)
		tv := f(table)
		sums := map[int][]float64{}
		for i := 0; i < m; i++ {
			id := int(ids[i])
			if id < 0 {
				continue
			}
			if id >= rows {
				panic(fmt.Sprintf("gpu: EmbedBackward: id %d of row %d outside a table of %d rows", id, i, rows))
			}
			s := sums[id]
			if s == nil {
				s = make([]float64, c)
				sums[id] = s
			}
			for j := 0; j < c; j++ {
				s[j] += float64(g[i*c+j])
			}
		}
		for id, s := range sums {
			for j := 0; j < c; j++ {
				tv[id*c+j] = float32(float64(tv[id*c+j]) + s[j])
			}
		}
	}
	scatter(dWte, ints(tokens))
	if dWpe != nil {
		scatter(dWpe, ints(pos))
	}
}

// GradNormSq: dst[0] = Σ g² over every grad, in float64.
func (*Backend) GradNormSq(dst gpu.Tensor, grads ...gpu.Tensor) {
	if dst.DType() != gpu.F32 || gpu.Numel(dst.Shape()) != 1 {
		panic(fmt.Sprintf("gpu: GradNormSq: dst is %v%v, want f32 with 1 element", dst.DType(), dst.Shape()))
	}
	var s float64
	for _, g := range grads {
		gpu.CheckShape("GradNormSq", "grad", g, gpu.F32, g.Shape()...)
		for _, v := range f(g) {
			s += float64(v) * float64(v)
		}
	}
	f(dst)[0] = float32(s)
}

// AdamW: one decoupled-weight-decay Adam step, in float64 per element.
func (*Backend) AdamW(param, m, v, grad, normSq gpu.Tensor, p gpu.AdamWParams) {
	gpu.AdamWCheck(param, m, v, grad, normSq, p)
	gscale, bc1, bc2 := gpu.AdamWMeta(p)
	if normSq != nil && p.ClipNorm > 0 {
		gscale *= gpu.ClipScale(p.ClipNorm, f(normSq)[0])
	}
	pv, mv, vv, gv := f(param), f(m), f(v), f(grad)
	b1, b2 := float64(p.Beta1), float64(p.Beta2)
	for i := range pv {
		g := float64(gv[i]) * float64(gscale)
		mi := b1*float64(mv[i]) + (1-b1)*g
		vi := b2*float64(vv[i]) + (1-b2)*g*g
		mh := mi / float64(bc1)
		vh := vi / float64(bc2)
		x := float64(pv[i])
		x -= float64(p.LR) * (mh/(math.Sqrt(vh)+float64(p.Eps)) + float64(p.WeightDecay)*x)
		pv[i], mv[i], vv[i] = float32(x), float32(mi), float32(vi)
	}
}
