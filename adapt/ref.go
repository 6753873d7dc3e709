package adapt

// Plain-Go references of every adaptation kernel: the simplest loops that
// compute each op, float64 accumulation wherever a sum runs long. The WGSL
// kernels are tested against these, and Ops runs them on the reference
// backend. Legend: M rows, C width, V vocabulary, R rank, K clusters.

import "math"

// clusterOf is row m's cluster (0 for every row when cluster is nil) and
// whether it lies in [0, k): rows outside get no update.
func clusterOf(cluster []int32, m, k int) (int, bool) {
	c := 0
	if cluster != nil {
		c = int(cluster[m])
	}
	return c, c >= 0 && c < k
}

// RefLowRankU: u(M,R)[m, j] = alpha * sum_i A_c[j, i] h[m, i], c =
// cluster[m] (0 when cluster is nil); rows whose cluster is outside [0, K)
// get zeros. h is (M, C); a holds the A factors as l describes.
func RefLowRankU(u, h, a []float32, cluster []int32, l Layout, alpha float32) {
	m := len(u) / l.R
	for r := 0; r < m; r++ {
		c, ok := clusterOf(cluster, r, l.K)
		for j := 0; j < l.R; j++ {
			var s float64
			if ok {
				ar := a[l.AOff+c*l.AStride+j*l.C:][:l.C]
				for i, x := range h[r*l.C : (r+1)*l.C] {
					s += float64(x) * float64(ar[i])
				}
			}
			u[r*l.R+j] = alpha * float32(s)
		}
	}
}

// RefAddLowRank: dst(M,V)[m, v] += sum_j u[m, j] B_c[v, j], c = cluster[m]
// (0 when cluster is nil); rows whose cluster is outside [0, K) are left
// unchanged. u is (M, R); b holds the B factors as l describes.
func RefAddLowRank(dst, u, b []float32, cluster []int32, l Layout) {
	m := len(dst) / l.V
	for r := 0; r < m; r++ {
		c, ok := clusterOf(cluster, r, l.K)
		if !ok {
			continue
		}
		ur := u[r*l.R : (r+1)*l.R]
		for v := 0; v < l.V; v++ {
			br := b[l.BOff+c*l.BStride+v*l.R:][:l.R]
			var s float64
			for j, x := range ur {
				s += float64(x) * float64(br[j])
			}
			dst[r*l.V+v] += float32(s)
		}
	}
}

// RefAddLowRankT: dst(M,C)[m, i] += alpha * sum_j du[m, j] A_c[j, i], c =
// cluster[m] (0 when cluster is nil); rows whose cluster is outside [0, K)
// are left unchanged. a holds the A factors as l describes.
func RefAddLowRankT(dst, du, a []float32, cluster []int32, l Layout, alpha float32) {
	m := len(dst) / l.C
	for r := 0; r < m; r++ {
		c, ok := clusterOf(cluster, r, l.K)
		if !ok {
			continue
		}
		ur := du[r*l.R : (r+1)*l.R]
		for i := 0; i < l.C; i++ {
			var s float64
			for j, x := range ur {
				s += float64(x) * float64(a[l.AOff+c*l.AStride+j*l.C+i])
			}
			dst[r*l.C+i] += float32(float64(alpha) * s)
		}
	}
}

// RefLogits: dst(M,V) = h(M,C) · w(V,C)ᵀ + bias(V) + alpha * B_c (A_c h),
// c = cluster[m] (0 when cluster is nil; no update for rows outside
// [0, K)); bias may be nil. Everything is accumulated in float64, the
// rank-space vector included, and rounded once.
func RefLogits(dst, h, w, bias, a, b []float32, cluster []int32, l Layout, alpha float32) {
	C, V, R := l.C, l.V, l.R
	m := len(h) / C
	u := make([]float64, R)
	for r := 0; r < m; r++ {
		hr := h[r*C : (r+1)*C]
		c, ok := clusterOf(cluster, r, l.K)
		for j := range u {
			u[j] = 0
			if !ok {
				continue
			}
			ar := a[l.AOff+c*l.AStride+j*C:][:C]
			for i, x := range hr {
				u[j] += float64(x) * float64(ar[i])
			}
			u[j] *= float64(alpha)
		}
		for v := 0; v < V; v++ {
			var s float64
			for i, x := range hr {
				s += float64(x) * float64(w[v*C+i])
			}
			if bias != nil {
				s += float64(bias[v])
			}
			if ok {
				br := b[l.BOff+c*l.BStride+v*R:][:R]
				for j, x := range u {
					s += x * float64(br[j])
				}
			}
			dst[r*V+v] = float32(s)
		}
	}
}

// RefReLU: dst = max(x, 0) * mask elementwise; mask nil means no dropout.
func RefReLU(dst, x, mask []float32) {
	for i, v := range x {
		v = max(v, 0)
		if mask != nil {
			v *= mask[i]
		}
		dst[i] = v
	}
}

// RefSequenceSums is seq_sums's reference: dst[b, j] is the float32 sum,
// in order, of rows[b, t, j] over t < lengths[b] (clamped to [0, T]), for
// rows of B sequences of T rows of C.
func RefSequenceSums(dst, rows []float32, lengths []int32, t, c int) {
	for b, l := range lengths {
		n := min(max(int(l), 0), t)
		out := dst[b*c : (b+1)*c]
		clear(out)
		for k := range n {
			for j, v := range rows[(b*t+k)*c : (b*t+k+1)*c] {
				out[j] += v
			}
		}
	}
}

// RefCacheMix is cache_mix's reference: each element of dst (rows of v)
// is log((1 - wo - wp) exp(lp) + wo q_own + wp q_pool) with row m's
// parameters rp[6m:6m+6] (Ops.CacheMix), in float64.
func RefCacheMix(dst, lp, own, pool, prior, rp []float32, v int, beta float32) {
	b := float64(beta)
	for m := 0; m < len(lp)/v; m++ {
		p := rp[6*m : 6*m+6]
		orow, prow, wo, wp := int(p[0]), int(p[1]), float64(p[2]), float64(p[3])
		if p[0] < 0 {
			wo = 0
		}
		if p[1] < 0 {
			wp = 0
		}
		for j := range v {
			bu := b * float64(prior[j])
			x := (1 - wo - wp) * math.Exp(float64(lp[m*v+j]))
			if wo > 0 {
				x += wo * (float64(own[orow*v+j]) + bu) / (float64(p[4]) + b)
			}
			if wp > 0 {
				x += wp * (float64(pool[prow*v+j]) + bu) / (float64(p[5]) + b)
			}
			dst[m*v+j] = float32(math.Log(x))
		}
	}
}

// RefNeuralMix is ncache_mix's reference (Ops.NeuralMix): for each row m
// of h (rows of c) with parameters rp[8m:8m+8], the unit query is written
// to keys' slot row when the slot is >= 0, and with weights c or d
// nonzero the row of dst (rows of v) becomes log((1-c-d) exp(dst) +
// c q_own + d q_pool) over its key ranges (clamped as the kernel clamps
// them, to the keys and s in all), in float64.
func RefNeuralMix(dst, h, keys []float32, vals []int32, rp []float32, c, v, s int) {
	kn := len(vals)
	u := make([]float64, c)
	for m := 0; m < len(h)/c; m++ {
		p := rp[8*m : 8*m+8]
		theta, cw, dw := float64(p[4]), float64(p[5]), float64(p[6])
		mix := cw != 0 || dw != 0
		if p[7] < 0 && !mix {
			continue
		}
		var ss float64
		for _, x := range h[m*c : (m+1)*c] {
			ss += float64(x) * float64(x)
		}
		inv := 0.0
		if ss > 0 {
			inv = 1 / math.Sqrt(ss)
		}
		for i, x := range h[m*c : (m+1)*c] {
			u[i] = float64(x) * inv
			if p[7] >= 0 {
				keys[int(p[7])*c+i] = float32(u[i])
			}
		}
		if !mix {
			continue
		}
		at := func(x float32) int { return int(max(x, 0)) }
		oo := min(at(p[0]), kn)
		ol := min(at(p[1]), kn-oo, s)
		po := min(at(p[2]), kn)
		pl := min(at(p[3]), kn-po, s-ol)
		add := map[int]float64{}
		for _, r := range []struct {
			off, n int
			w      float64
		}{{oo, ol, cw}, {po, pl, dw}} {
			e := make([]float64, r.n)
			den := 0.0
			for k := range e {
				dot := 0.0
				for i, x := range keys[(r.off+k)*c : (r.off+k+1)*c] {
					dot += u[i] * float64(x)
				}
				e[k] = math.Exp(theta * (dot - 1))
				den += e[k]
			}
			for k, x := range e {
				if y := int(vals[r.off+k]); y >= 0 && y < v {
					add[y] += r.w * x / den
				}
			}
		}
		row := dst[m*v : (m+1)*v]
		for j, x := range row {
			row[j] = float32(math.Log((1-cw-dw)*math.Exp(float64(x)) + add[j]))
		}
	}
}
