package ref

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
)

// Finite-difference checks of the reference backward ops: for each op a
// float64 forward written here (independently of the ops), a scalar loss
// L = Σ out·R for a random R, the numerical gradient by central differences
// in float64, and the reference backward with dOut = R compared against it.
// Weight-gradient accumulators start from random values, so the check also
// covers the += contract.

const fdH = 1e-4

func fdRng(t *testing.T) *rand.Rand {
	seed := uint64(rand.Int64())
	t.Logf("seed %d", seed)
	return rand.New(rand.NewPCG(seed, 7))
}

func randn(r *rand.Rand, n int, std float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * std)
	}
	return v
}

func up(t *testing.T, b *Backend, dt gpu.DType, data any, shape ...int) gpu.Tensor {
	t.Helper()
	x := gpu.Must(b.Alloc(dt, shape...))
	if err := b.Write(x, data); err != nil {
		t.Fatal(err)
	}
	return x
}

func to64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// dot64 is Σ a·r.
func dot64(a []float64, r []float32) float64 {
	var s float64
	for i := range a {
		s += a[i] * float64(r[i])
	}
	return s
}

// numGrad returns dL/dx by central differences, perturbing x in place.
func numGrad(x []float64, loss func() float64) []float64 {
	g := make([]float64, len(x))
	for i := range x {
		old := x[i]
		x[i] = old + fdH
		lp := loss()
		x[i] = old - fdH
		lm := loss()
		x[i] = old
		g[i] = (lp - lm) / (2 * fdH)
	}
	return g
}

// checkGrad compares an analytic gradient (minus the accumulator's start
// value, when acc0 is not nil) with the numerical one.
func checkGrad(t *testing.T, what string, got []float32, acc0 []float32, want []float64) {
	t.Helper()
	bad, worst, wi := 0, 0.0, -1
	for i := range want {
		g := float64(got[i])
		if acc0 != nil {
			g -= float64(acc0[i])
		}
		d := math.Abs(g - want[i])
		tol := 2e-3 + 2e-3*math.Abs(want[i])
		if math.IsNaN(d) || d > tol {
			bad++
			if wi < 0 || d-tol > worst || math.IsNaN(d) {
				worst, wi = d-tol, i
			}
		}
	}
	if bad > 0 {
		g := float64(got[wi])
		if acc0 != nil {
			g -= float64(acc0[wi])
		}
		t.Errorf("%s: %d of %d gradients differ from finite differences; worst at %d: analytic %g, numeric %g",
			what, bad, len(want), wi, g, want[wi])
	}
}

func TestMatMulBackwardFD(t *testing.T) {
	r := fdRng(t)
	b := New()
	for _, sz := range [][3]int{{1, 1, 1}, {3, 5, 4}, {7, 3, 9}} {
		m, k, n := sz[0], sz[1], sz[2]
		xs, ws, bs, rs := randn(r, m*k, 1), randn(r, n*k, 1), randn(r, n, 1), randn(r, m*n, 1)
		dw0, db0 := randn(r, n*k, 1), randn(r, n, 1)
		x64, w64, b64 := to64(xs), to64(ws), to64(bs)
		loss := func() float64 {
			out := make([]float64, m*n)
			for i := 0; i < m; i++ {
				for j := 0; j < n; j++ {
					s := b64[j]
					for c := 0; c < k; c++ {
						s += x64[i*k+c] * w64[j*k+c]
					}
					out[i*n+j] = s
				}
			}
			return dot64(out, rs)
		}
		dx := gpu.Must(b.Alloc(gpu.F32, m, k))
		dw := up(t, b, gpu.F32, dw0, n, k)
		db := up(t, b, gpu.F32, db0, n)
		b.MatMulBackward(dx, dw, db, up(t, b, gpu.F32, rs, m, n), up(t, b, gpu.F32, xs, m, k), up(t, b, gpu.F32, ws, n, k))
		name := fmt.Sprintf("%dx%dx%d", m, k, n)
		checkGrad(t, name+" dx", f(dx), nil, numGrad(x64, loss))
		checkGrad(t, name+" dW", f(dw), dw0, numGrad(w64, loss))
		checkGrad(t, name+" dBias", f(db), db0, numGrad(b64, loss))
	}
}

func TestLayerNormBackwardFD(t *testing.T) {
	r := fdRng(t)
	b := New()
	const eps = 1e-5
	for _, sz := range [][2]int{{1, 2}, {3, 5}, {4, 16}} {
		m, c := sz[0], sz[1]
		xs, gs, bs, rs := randn(r, m*c, 1), randn(r, c, 1), randn(r, c, 1), randn(r, m*c, 1)
		for i := range xs {
			xs[i] += 3
		}
		dg0, db0 := randn(r, c, 1), randn(r, c, 1)
		x64, g64, b64 := to64(xs), to64(gs), to64(bs)
		loss := func() float64 {
			var l float64
			for i := 0; i < m; i++ {
				var mean, v float64
				for j := 0; j < c; j++ {
					mean += x64[i*c+j]
				}
				mean /= float64(c)
				for j := 0; j < c; j++ {
					v += (x64[i*c+j] - mean) * (x64[i*c+j] - mean)
				}
				rstd := 1 / math.Sqrt(v/float64(c)+eps)
				for j := 0; j < c; j++ {
					l += ((x64[i*c+j]-mean)*rstd*g64[j] + b64[j]) * float64(rs[i*c+j])
				}
			}
			return l
		}
		dx := gpu.Must(b.Alloc(gpu.F32, m, c))
		dg := up(t, b, gpu.F32, dg0, c)
		db := up(t, b, gpu.F32, db0, c)
		b.LayerNormBackward(dx, dg, db, up(t, b, gpu.F32, rs, m, c), up(t, b, gpu.F32, xs, m, c), up(t, b, gpu.F32, gs, c), eps)
		name := fmt.Sprintf("%dx%d", m, c)
		checkGrad(t, name+" dx", f(dx), nil, numGrad(x64, loss))
		checkGrad(t, name+" dGamma", f(dg), dg0, numGrad(g64, loss))
		checkGrad(t, name+" dBeta", f(db), db0, numGrad(b64, loss))
	}
}

func TestGELUBackwardFD(t *testing.T) {
	r := fdRng(t)
	b := New()
	n := 64
	xs, rs := randn(r, n, 3), randn(r, n, 1)
	x64 := to64(xs)
	loss := func() float64 {
		var l float64
		for i, x := range x64 {
			l += 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x))) * float64(rs[i])
		}
		return l
	}
	dx := gpu.Must(b.Alloc(gpu.F32, n))
	b.GELUBackward(dx, up(t, b, gpu.F32, rs, n), up(t, b, gpu.F32, xs, n))
	checkGrad(t, "dx", f(dx), nil, numGrad(x64, loss))
}

// attention64 is causal self-attention of qkv (B,T,3C) in float64, rows
// i >= qlen[b] zero; it also returns each real row's logsumexp (B,H,T).
func attention64(x []float64, nb, tq, c, nh int, ql []int32) (out, lse []float64) {
	d := c / nh
	out = make([]float64, nb*tq*c)
	lse = make([]float64, nb*nh*tq)
	for b := 0; b < nb; b++ {
		for h := 0; h < nh; h++ {
			for i := 0; i < int(ql[b]); i++ {
				s := make([]float64, i+1)
				mx := math.Inf(-1)
				for j := 0; j <= i; j++ {
					for e := 0; e < d; e++ {
						s[j] += x[(b*tq+i)*3*c+h*d+e] * x[(b*tq+j)*3*c+c+h*d+e]
					}
					s[j] /= math.Sqrt(float64(d))
					mx = max(mx, s[j])
				}
				var z float64
				for j := range s {
					z += math.Exp(s[j] - mx)
				}
				lse[(b*nh+h)*tq+i] = mx + math.Log(z)
				for j := range s {
					p := math.Exp(s[j]-mx) / z
					for e := 0; e < d; e++ {
						out[(b*tq+i)*c+h*d+e] += p * x[(b*tq+j)*3*c+2*c+h*d+e]
					}
				}
			}
		}
	}
	return out, lse
}

func TestAttentionBackwardFD(t *testing.T) {
	r := fdRng(t)
	b := New()
	for _, sz := range [][4]int{{1, 1, 1, 1}, {2, 4, 6, 2}, {2, 5, 8, 2}} {
		nb, tq, c, nh := sz[0], sz[1], sz[2], sz[3]
		xs, rs := randn(r, nb*tq*3*c, 1), randn(r, nb*tq*c, 1)
		ql := make([]int32, nb)
		for i := range ql {
			ql[i] = int32(r.IntN(tq + 1))
		}
		ql[0] = int32(tq)
		x64 := to64(xs)
		loss := func() float64 {
			out, _ := attention64(x64, nb, tq, c, nh, ql)
			return dot64(out, rs)
		}
		name := fmt.Sprintf("B=%d T=%d C=%d H=%d qlen=%v", nb, tq, c, nh, ql)
		qkv := up(t, b, gpu.F32, xs, nb, tq, 3*c)
		qlT := up(t, b, gpu.I32, ql, nb)
		out := gpu.Must(b.Alloc(gpu.F32, nb, tq, c))
		lse := gpu.Must(b.Alloc(gpu.F32, nb, nh, tq))
		b.AttentionTrain(out, lse, qkv, qlT, nh)
		want, wantLse := attention64(x64, nb, tq, c, nh, ql)
		checkGrad(t, name+" forward", f(out), nil, want)
		checkGrad(t, name+" lse", f(lse), nil, wantLse)
		// The training forward equals the cached forward with start = 0.
		kc, vc := gpu.Must(b.Alloc(gpu.F32, nb, tq, c)), gpu.Must(b.Alloc(gpu.F32, nb, tq, c))
		st := up(t, b, gpu.I32, make([]int32, nb), nb)
		b.KVStore(kc, vc, qkv, st, qlT)
		att := gpu.Must(b.Alloc(gpu.F32, nb, tq, c))
		b.Attention(att, qkv, kc, vc, st, qlT, nh)
		checkGrad(t, name+" vs Attention", f(out), nil, to64(f(att)))
		dqkv := up(t, b, gpu.F32, randn(r, nb*tq*3*c, 1), nb, tq, 3*c) // written whole
		b.AttentionBackward(dqkv, up(t, b, gpu.F32, rs, nb, tq, c), qkv, out, lse, qlT, nh)
		checkGrad(t, name+" dQKV", f(dqkv), nil, numGrad(x64, loss))
	}
}

func TestCrossEntropyBackwardFD(t *testing.T) {
	r := fdRng(t)
	b := New()
	m, v := 5, 7
	xs := randn(r, m*v, 2)
	tg := make([]int32, m)
	for i := range tg {
		tg[i] = int32(r.IntN(v))
	}
	tg[1] = -1 // masked
	const scale = 0.25
	x64 := to64(xs)
	loss := func() float64 {
		var l float64
		for i := 0; i < m; i++ {
			if tg[i] < 0 {
				continue
			}
			var z float64
			for j := 0; j < v; j++ {
				z += math.Exp(x64[i*v+j])
			}
			l += math.Log(z) - x64[i*v+int(tg[i])]
		}
		return scale * l
	}
	dl := gpu.Must(b.Alloc(gpu.F32, m, v))
	b.CrossEntropyBackward(dl, up(t, b, gpu.F32, xs, m, v), up(t, b, gpu.I32, tg, m), scale)
	checkGrad(t, "dLogits", f(dl), nil, numGrad(x64, loss))
}

func TestEmbedBackwardFD(t *testing.T) {
	r := fdRng(t)
	b := New()
	vocab, pmax, c, m := 6, 5, 3, 11
	te, pe, rs := randn(r, vocab*c, 1), randn(r, pmax*c, 1), randn(r, m*c, 1)
	tok, pos := make([]int32, m), make([]int32, m)
	for i := range tok {
		tok[i], pos[i] = int32(r.IntN(vocab)), int32(r.IntN(pmax))
	}
	tok[2], pos[3] = -1, -1 // skipped rows
	te64, pe64 := to64(te), to64(pe)
	loss := func() float64 {
		var l float64
		for i := 0; i < m; i++ {
			for j := 0; j < c; j++ {
				var o float64
				if tok[i] >= 0 {
					o += te64[int(tok[i])*c+j]
				}
				if pos[i] >= 0 {
					o += pe64[int(pos[i])*c+j]
				}
				l += o * float64(rs[i*c+j])
			}
		}
		return l
	}
	dte0, dpe0 := randn(r, vocab*c, 1), randn(r, pmax*c, 1)
	dte, dpe := up(t, b, gpu.F32, dte0, vocab, c), up(t, b, gpu.F32, dpe0, pmax, c)
	b.EmbedBackward(dte, dpe, up(t, b, gpu.F32, rs, m, c), up(t, b, gpu.I32, tok, m), up(t, b, gpu.I32, pos, m))
	checkGrad(t, "dWte", f(dte), dte0, numGrad(te64, loss))
	checkGrad(t, "dWpe", f(dpe), dpe0, numGrad(pe64, loss))
}

// TestAdamWFirstStep checks AdamW against the closed form of its first step
// from zero moments: the bias-corrected update is g/(|g|+eps).
func TestAdamWFirstStep(t *testing.T) {
	r := fdRng(t)
	b := New()
	n := 50
	ps, gs := randn(r, n, 1), randn(r, n, 1)
	gs[0] = 0
	p := gpu.AdamWParams{LR: 0.01, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, Step: 1, GradScale: 0.5, ClipNorm: 1}
	norm := up(t, b, gpu.F32, []float32{0}, 1)
	b.GradNormSq(norm, up(t, b, gpu.F32, gs, n))
	var nsq float64
	for _, g := range gs {
		nsq += float64(g) * float64(g)
	}
	if d := math.Abs(float64(f(norm)[0]) - nsq); d > 1e-5*nsq {
		t.Errorf("GradNormSq = %g, want %g", f(norm)[0], nsq)
	}
	clip := math.Min(1, 1/math.Sqrt(nsq))
	param, m, v := up(t, b, gpu.F32, ps, n), up(t, b, gpu.F32, make([]float32, n), n), up(t, b, gpu.F32, make([]float32, n), n)
	b.AdamW(param, m, v, up(t, b, gpu.F32, gs, n), norm, p)
	want := make([]float64, n)
	for i := range want {
		g := float64(gs[i]) * 0.5 * clip
		want[i] = float64(ps[i]) - 0.01*(g/(math.Abs(g)+1e-8)+0.1*float64(ps[i]))
	}
	checkGrad(t, "param", f(param), nil, want)
}
