package ref

import (
	"fmt"
	"math"

	"github.com/chameleon-llm/chameleon/gpu"
)

// kvShapes checks the shapes shared by KVStore and Attention and returns
// B, Tq, C, Tmax. qkv(B,Tq,3C), kCache and vCache (B,Tmax,C), start(B),
// qlen(B) I32.
func kvShapes(op string, kCache, vCache, qkv, start, qlen gpu.Tensor) (b, tq, c, tmax int) {
	qs := qkv.Shape()
	if len(qs) != 3 || qs[2]%3 != 0 {
		panic(fmt.Sprintf("ref: %s: qkv has shape %v, want (B, Tq, 3C)", op, qs))
	}
	b, tq, c = qs[0], qs[1], qs[2]/3
	gpu.CheckShape(op, "qkv", qkv, gpu.F32, b, tq, 3*c)
	gpu.CheckShape(op, "kCache", kCache, gpu.F32, b, -1, c)
	tmax = kCache.Shape()[1]
	gpu.CheckShape(op, "vCache", vCache, gpu.F32, b, tmax, c)
	gpu.CheckShape(op, "start", start, gpu.I32, b)
	gpu.CheckShape(op, "qlen", qlen, gpu.I32, b)
	return b, tq, c, tmax
}

// KVStore copies the keys qkv[b,i,C:2C] and values qkv[b,i,2C:3C] of
// rows i < qlen[b] into kCache[b,start[b]+i,:] and vCache[b,start[b]+i,:].
// Positions outside [0, Tmax) are skipped.
func (*Backend) KVStore(kCache, vCache, qkv, start, qlen gpu.Tensor) {
	nb, tq, c, tmax := kvShapes("KVStore", kCache, vCache, qkv, start, qlen)
	x, kc, vc, st, ql := f(qkv), f(kCache), f(vCache), ints(start), ints(qlen)
	for b := 0; b < nb; b++ {
		for i := 0; i < tq && i < int(ql[b]); i++ {
			p := int(st[b]) + i
			if p < 0 || p >= tmax {
				continue
			}
			row := x[(b*tq+i)*3*c:]
			copy(kc[(b*tmax+p)*c:(b*tmax+p+1)*c], row[c:2*c])
			copy(vc[(b*tmax+p)*c:(b*tmax+p+1)*c], row[2*c:3*c])
		}
	}
}

// Attention: for every real query row (b, i < qlen[b]) and head h, with
// p = start[b]+i (clamped into [0, Tmax)), D = C/H:
//
//	s_j   = q·K[b,j,hD:(h+1)D] / sqrt(D)      j = 0..p  (float64)
//	dst   = Σ_j softmax(s)_j V[b,j,hD:(h+1)D]
//
// Padding rows (i >= qlen[b]) are zero, and so is every row when Tmax = 0.
func (*Backend) Attention(dst, qkv, kCache, vCache, start, qlen gpu.Tensor, nHead int) {
	nb, tq, c, tmax := kvShapes("Attention", kCache, vCache, qkv, start, qlen)
	if nHead <= 0 || c%nHead != 0 {
		panic(fmt.Sprintf("ref: Attention: C=%d is not divisible by nHead=%d", c, nHead))
	}
	gpu.CheckShape("Attention", "dst", dst, gpu.F32, nb, tq, c)
	d := c / nHead
	scale := 1 / math.Sqrt(float64(d))
	x, kc, vc, st, ql, out := f(qkv), f(kCache), f(vCache), ints(start), ints(qlen), f(dst)
	for b := 0; b < nb; b++ {
		for i := 0; i < tq; i++ {
			o := out[(b*tq+i)*c : (b*tq+i+1)*c]
			if i >= int(ql[b]) || tmax == 0 {
				clear(o)
				continue
			}
			p := min(max(int(st[b])+i, 0), tmax-1)
			q := x[(b*tq+i)*3*c:]
			for h := 0; h < nHead; h++ {
				s := make([]float64, p+1)
				mx := math.Inf(-1)
				for j := 0; j <= p; j++ {
					k := kc[(b*tmax+j)*c+h*d:]
					var dot float64
					for e := 0; e < d; e++ {
						dot += float64(q[h*d+e]) * float64(k[e])
					}
					s[j] = dot * scale
					mx = max(mx, s[j])
				}
				var sum float64
				for j := range s {
					s[j] = math.Exp(s[j] - mx)
					sum += s[j]
				}
				for e := 0; e < d; e++ {
					var acc float64
					for j := 0; j <= p; j++ {
						acc += s[j] * float64(vc[(b*tmax+j)*c+h*d+e])
					}
					o[h*d+e] = float32(acc / sum)
				}
			}
		}
	}
}
