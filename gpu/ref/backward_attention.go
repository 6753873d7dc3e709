package ref

import (
	"math"

	"github.com/chameleon-llm/chameleon/gpu"
)

// AttentionTrain: causal self-attention of qkv(B,T,3C) with every sequence
// starting at position 0, no cache; dst(B,T,C) as Attention, lse(B,H,T) the
// logsumexp of each real row's scaled scores (0 on padding rows).
func (*Backend) AttentionTrain(dst, lse, qkv, qlen gpu.Tensor, nHead int) {
	nb, tq, c, d := gpu.AttentionTrainDims("AttentionTrain", qkv, qlen, nHead)
	gpu.CheckShape("AttentionTrain", "dst", dst, gpu.F32, nb, tq, c)
	gpu.CheckShape("AttentionTrain", "lse", lse, gpu.F32, nb, nHead, tq)
	scale := 1 / math.Sqrt(float64(d))
	x, ql, out, ls := f(qkv), ints(qlen), f(dst), f(lse)
	s := make([]float64, tq)
	for b := 0; b < nb; b++ {
		n := min(max(int(ql[b]), 0), tq)
		for h := 0; h < nHead; h++ {
			for i := 0; i < tq; i++ {
				o := out[(b*tq+i)*c+h*d : (b*tq+i)*c+(h+1)*d]
				if i >= n {
					clear(o)
					ls[(b*nHead+h)*tq+i] = 0
					continue
				}
				mx := math.Inf(-1)
				for j := 0; j <= i; j++ {
					s[j] = scale * dotQK(x, b, tq, c, i, j, h*d, d)
					mx = max(mx, s[j])
				}
				var sum float64
				for j := 0; j <= i; j++ {
					s[j] = math.Exp(s[j] - mx)
					sum += s[j]
				}
				for e := 0; e < d; e++ {
					var acc float64
					for j := 0; j <= i; j++ {
						acc += s[j] * float64(x[(b*tq+j)*3*c+2*c+h*d+e])
					}
					o[e] = float32(acc / sum)
				}
				ls[(b*nHead+h)*tq+i] = float32(mx + math.Log(sum))
			}
		}
	}
}

// dotQK is q(b,i)·k(b,j) over the head columns [off, off+d), in float64.
func dotQK(x []float32, b, tq, c, i, j, off, d int) float64 {
	q := x[(b*tq+i)*3*c+off:]
	k := x[(b*tq+j)*3*c+c+off:]
	var s float64
	for e := 0; e < d; e++ {
		s += float64(q[e]) * float64(k[e])
	}
	return s
}

// AttentionBackward: with P = softmax of the scaled causal scores (recomputed
// here from qkv in float64; out and lse are checked for shape only, as the
// reference does not need them), for every real row i and head h:
//
//	dV_j += P_ij dO_i;  dS_ij = P_ij (dO_i·v_j - Σ_l P_il dO_i·v_l)
//	dQ_i = scale Σ_j dS_ij k_j;  dK_j += scale dS_ij q_i
//
// dQKV(B,T,3C) is written whole; padding rows and keys are zero.
func (*Backend) AttentionBackward(dQKV, dOut, qkv, out, lse, qlen gpu.Tensor, nHead int) {
	nb, tq, c, d := gpu.AttentionTrainDims("AttentionBackward", qkv, qlen, nHead)
	gpu.CheckShape("AttentionBackward", "dQKV", dQKV, gpu.F32, nb, tq, 3*c)
	gpu.CheckShape("AttentionBackward", "dOut", dOut, gpu.F32, nb, tq, c)
	gpu.CheckShape("AttentionBackward", "out", out, gpu.F32, nb, tq, c)
	gpu.CheckShape("AttentionBackward", "lse", lse, gpu.F32, nb, nHead, tq)
	scale := 1 / math.Sqrt(float64(d))
	x, ql, g, dst := f(qkv), ints(qlen), f(dOut), f(dQKV)
	acc := make([]float64, len(dst))
	p := make([]float64, tq)
	dp := make([]float64, tq)
	for b := 0; b < nb; b++ {
		n := min(max(int(ql[b]), 0), tq)
		for h := 0; h < nHead; h++ {
			off := h * d
			for i := 0; i < n; i++ {
				mx := math.Inf(-1)
				for j := 0; j <= i; j++ {
					p[j] = scale * dotQK(x, b, tq, c, i, j, off, d)
					mx = max(mx, p[j])
				}
				var sum float64
				for j := 0; j <= i; j++ {
					p[j] = math.Exp(p[j] - mx)
					sum += p[j]
				}
				gi := g[(b*tq+i)*c+off:]
				var dd float64 // Σ_j P_ij dP_ij
				for j := 0; j <= i; j++ {
					p[j] /= sum
					v := x[(b*tq+j)*3*c+2*c+off:]
					var s float64
					for e := 0; e < d; e++ {
						s += float64(gi[e]) * float64(v[e])
					}
					dp[j] = s
					dd += p[j] * s
				}
				qi := x[(b*tq+i)*3*c+off:]
				for j := 0; j <= i; j++ {
					ds := p[j] * (dp[j] - dd) * scale
					kj := x[(b*tq+j)*3*c+c+off:]
					for e := 0; e < d; e++ {
						acc[(b*tq+i)*3*c+off+e] += ds * float64(kj[e])
						acc[(b*tq+j)*3*c+c+off+e] += ds * float64(qi[e])
						acc[(b*tq+j)*3*c+2*c+off+e] += p[j] * float64(gi[e])
					}
				}
			}
		}
	}
	for i, v := range acc {
		dst[i] = float32(v)
	}
}
