package cluster

import (
	"math"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/ref"
)

// RefOps is the plain-Go reference of the clustering kernels: the simplest
// loops, float64 accumulation, on the host slices of the embedded host
// backend's tensors. It is the ground truth GPUOps is tested against and
// the fallback without an adapter.
type RefOps struct{ gpu.Host }

// NewRefOps returns the reference implementation on its own reference
// backend (the reference backend is stateless: tensors of any of its
// instances work).
func NewRefOps() *RefOps { return &RefOps{ref.New()} }

// Name describes the implementation.
func (o *RefOps) Name() string { return "cluster " + o.Host.Name() }

// Features: see Ops.
func (o *RefOps) Features(dst, wte, tokens, lengths gpu.Tensor) {
	b, t, c, v := checkFeatures(dst, wte, tokens, lengths)
	table, ids, lens, out := o.HostF32(wte), o.HostI32(tokens), o.HostI32(lengths), o.HostF32(dst)
	sum := make([]float64, c)
	for s := 0; s < b; s++ {
		clear(sum)
		n := min(max(int(lens[s]), 0), t)
		for i := 0; i < n; i++ {
			id := int(ids[s*t+i])
			if id < 0 || id >= v {
				continue
			}
			for j, e := range table[id*c : (id+1)*c] {
				sum[j] += float64(e)
			}
		}
		meanToFeature(out[s*c:(s+1)*c], sum, n)
	}
}

// meanToFeature writes sum/n scaled to unit norm into dst: zeros for n == 0
// or an all-zero mean, NaN everywhere if the mean is not finite.
func meanToFeature(dst []float32, sum []float64, n int) {
	var ss float64
	finite := true
	for _, x := range sum {
		m := x / float64(max(n, 1))
		if math.IsNaN(m) || math.IsInf(m, 0) || math.Abs(m) > math.MaxFloat32 {
			finite = false
		}
		ss += m * m
	}
	for j, x := range sum {
		switch {
		case !finite:
			dst[j] = float32(math.NaN())
		case n == 0 || ss == 0:
			dst[j] = 0
		default:
			dst[j] = float32(x / float64(n) / math.Sqrt(ss))
		}
	}
}

// Assign: see Ops.
func (o *RefOps) Assign(assign, dist, x, cents gpu.Tensor, label0 int, merge bool) {
	n, c, k := checkAssign(assign, dist, x, cents, label0)
	xs, cs, as, ds := o.HostF32(x), o.HostF32(cents), o.HostI32(assign), o.HostF32(dist)
	for i := 0; i < n; i++ {
		best, label := 0.0, -1
		if merge {
			best, label = float64(ds[i]), int(as[i])
		}
		for r := 0; r < k; r++ {
			d := sqDist(xs[i*c:(i+1)*c], cs[r*c:(r+1)*c])
			if label < 0 || d < best {
				best, label = d, label0+r
			}
		}
		as[i], ds[i] = int32(label), float32(best)
	}
}

// sqDist is |a-b|^2 accumulated in float64.
func sqDist(a, b []float32) float64 {
	var d float64
	for j := range a {
		e := float64(a[j]) - float64(b[j])
		d += e * e
	}
	return d
}

// Update: see Ops.
func (o *RefOps) Update(dst, x, prev, order, offsets, reseed gpu.Tensor) {
	k, c, _ := checkUpdate(dst, x, prev, order, offsets, reseed)
	xs, ps, ord, off, rs, out := o.HostF32(x), o.HostF32(prev), o.HostI32(order), o.HostI32(offsets), o.HostI32(reseed), o.HostF32(dst)
	sum := make([]float64, c)
	for r := 0; r < k; r++ {
		row := out[r*c : (r+1)*c]
		members := ord[off[r]:off[r+1]]
		switch {
		case len(members) > 0:
			// Offsets from the first member, as the kernel: exact for
			// identical members.
			x0 := xs[int(members[0])*c : int(members[0]+1)*c]
			clear(sum)
			for _, p := range members {
				for j, e := range xs[int(p)*c : int(p+1)*c] {
					sum[j] += float64(e) - float64(x0[j])
				}
			}
			for j := range row {
				row[j] = float32(float64(x0[j]) + sum[j]/float64(len(members)))
			}
		case rs[r] >= 0:
			copy(row, xs[int(rs[r])*c:int(rs[r]+1)*c])
		default:
			copy(row, ps[r*c:(r+1)*c])
		}
	}
}

var _ Ops = (*RefOps)(nil)
