package adapt

// RefReLUBackward: dx = dy * mask where x > 0, else 0 (mask nil: 1).
func RefReLUBackward(dx, dy, x, mask []float32) {
	for i := range dx {
		g := float32(0)
		if x[i] > 0 {
			g = dy[i]
			if mask != nil {
				g *= mask[i]
			}
		}
		dx[i] = g
	}
}

// RefLowRankBackward writes the gradients of the low-rank update's factors
// (see Ops.LowRankBackward): dB_c = Σ_{m in c} dlogits[m] u[m]ᵀ and dA_c =
// alpha Σ_{m in c} (B_cᵀ dlogits[m]) h[m]ᵀ, into da and db at dl's layout;
// b holds the forward's B factors at l's layout. Clusters with no rows get
// zero gradients.
func RefLowRankBackward(da, db, dlogits, h, u, b []float32, cluster []int32, l, dl Layout, alpha float32) {
	m := len(h) / l.C
	order, offsets := ClusterOrder(cluster, m, l.K)
	du := make([]float64, l.R)
	for c := 0; c < l.K; c++ {
		rowsOf := order[offsets[c]:offsets[c+1]]
		gb := make([]float64, l.V*l.R)
		ga := make([]float64, l.R*l.C)
		for _, r32 := range rowsOf {
			r := int(r32)
			dr := dlogits[r*l.V : (r+1)*l.V]
			ur := u[r*l.R : (r+1)*l.R]
			clear(du)
			for v, g := range dr {
				br := b[l.BOff+c*l.BStride+v*l.R:][:l.R]
				for j := range ur {
					gb[v*l.R+j] += float64(g) * float64(ur[j])
					du[j] += float64(g) * float64(br[j])
				}
			}
			hr := h[r*l.C : (r+1)*l.C]
			for j := 0; j < l.R; j++ {
				for i, x := range hr {
					ga[j*l.C+i] += du[j] * float64(x)
				}
			}
		}
		for i, g := range gb {
			db[dl.BOff+c*dl.BStride+i] = float32(g)
		}
		for i, g := range ga {
			da[dl.AOff+c*dl.AStride+i] = alpha * float32(g)
		}
	}
}

// refLowRankDU: du(M,R)[m] = B_cᵀ dy[m] per row, c = cluster[m] (0 when
// cluster is nil); zero for rows whose cluster is outside [0, K).
func refLowRankDU(du, dy, b []float32, cluster []int32, l Layout) {
	m := len(du) / l.R
	for r := 0; r < m; r++ {
		out := du[r*l.R : (r+1)*l.R]
		clear(out)
		c, ok := clusterOf(cluster, r, l.K)
		if !ok {
			continue
		}
		for j := range out {
			var s float64
			for v, g := range dy[r*l.V : (r+1)*l.V] {
				s += float64(g) * float64(b[l.BOff+c*l.BStride+v*l.R+j])
			}
			out[j] = float32(s)
		}
	}
}
