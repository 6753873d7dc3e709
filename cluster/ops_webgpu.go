package cluster

import (
	"github.com/chameleon-llm/chameleon/gpu"
)

// GPUOps runs the clustering kernels (wgsl/cluster_*.wgsl) on a WebGPU
// device. Memory operations are the embedded backend's.
type GPUOps struct {
	*gpu.WebGPU
	// gather forces the path for embedding tables larger than one storage
	// binding (tests use it on small tables).
	gather bool
}

// NewGPUOps wraps a WebGPU backend.
func NewGPUOps(w *gpu.WebGPU) *GPUOps { return &GPUOps{WebGPU: w} }

// Name describes the implementation.
func (o *GPUOps) Name() string { return "cluster " + o.WebGPU.Name() }

const wg = 64 // workgroup size of every cluster kernel

// Loop budgets that keep each invocation under lavapipe's 65,535 loop
// iterations (see package wgsl). Variables so tests can force the split
// paths at small sizes.
var (
	assignBudget = 32768 // (k1-k0) * (C+1) per Assign dispatch
	updateSeg    = 32768 // members summed per Update dispatch
)

type tensors = []gpu.Tensor

// Features: see Ops.
func (o *GPUOps) Features(dst, wte, tokens, lengths gpu.Tensor) {
	b, t, c, v := checkFeatures(dst, wte, tokens, lengths)
	if b == 0 || c == 0 {
		return
	}
	w := o.WebGPU
	sums := gpu.Must(w.Alloc(gpu.F32, b, c))
	defer w.Free(sums)
	gx, gy := w.Grid1(ceilDiv(b*c, wg))
	if t > 0 {
		if o.gather || tableBytes(wte) > w.Limits.MaxStorageBufferBindingSize {
			o.gatherSums(sums, wte, tokens, lengths, b, t, c, v)
		} else {
			name := "cluster_features_f32"
			if wte.DType() == gpu.F16 {
				name = "cluster_features_f16"
			}
			w.Dispatch(name, tensors{wte, tokens, lengths}, tensors{sums},
				gpu.Meta{b, t, c, 0, v, false}, gx, gy, 1)
		}
	}
	nx, ny := w.Grid1(ceilDiv(b, wg))
	w.Dispatch("cluster_normalize", tensors{sums, lengths}, tensors{dst}, gpu.Meta{b, t, c}, nx, ny, 1)
}

// tableBytes is the size of an embedding table on the GPU (f16 rows padded
// to an even length).
func tableBytes(wte gpu.Tensor) uint64 {
	s := wte.Shape()
	if wte.DType() == gpu.F16 {
		return uint64(s[0]) * uint64((s[1]+1)/2) * 4
	}
	return uint64(s[0]) * uint64(s[1]) * 4
}

// gatherSums handles tables too large for one storage binding (GPT-2's
// 50257x768 f32 wte is 154 MB against 128 MiB on many adapters): the Embed
// op, which splits the table over bindings, gathers every token's row (with
// a zero position table), and cluster_features_rows sums the real ones. It
// costs a (B*T, C) buffer, one more pass over it, and a device copy of the
// ids into the vector Embed wants.
func (o *GPUOps) gatherSums(sums, wte, tokens, lengths gpu.Tensor, b, t, c, v int) {
	w := o.WebGPU
	m := b * t
	tok := gpu.Must(w.Alloc(gpu.I32, m))
	pos := gpu.Must(w.Alloc(gpu.I32, m))
	zpe := gpu.Must(w.Alloc(wte.DType(), 1, c))
	rows := gpu.Must(w.Alloc(gpu.F32, m, c))
	defer func() {
		for _, x := range (tensors{tok, pos, zpe, rows}) {
			w.Free(x)
		}
	}()
	// Uploads fail only on a lost device, which every later read reports.
	if w.Write(pos, make([]int32, m)) != nil || w.Write(zpe, make([]float32, c)) != nil {
		return
	}
	w.Copy(tok, tokens)
	w.Embed(rows, wte, zpe, tok, pos)
	gx, gy := w.Grid1(ceilDiv(b*c, wg))
	w.Dispatch("cluster_features_rows", tensors{rows, tokens, lengths}, tensors{sums},
		gpu.Meta{b, t, c, v}, gx, gy, 1)
}

// Assign: see Ops. Centroids are scanned in row ranges that keep each
// invocation's loop under budget, each merging into the previous.
func (o *GPUOps) Assign(assign, dist, x, cents gpu.Tensor, label0 int, merge bool) {
	n, c, k := checkAssign(assign, dist, x, cents, label0)
	if n == 0 || k == 0 {
		return
	}
	w := o.WebGPU
	per := max(1, assignBudget/(c+1))
	gx, gy := w.Grid1(ceilDiv(n, wg))
	for k0 := 0; k0 < k; k0 += per {
		k1 := min(k, k0+per)
		w.Dispatch("cluster_assign", tensors{x, cents}, tensors{assign, dist},
			gpu.Meta{n, c, k0, k1, label0, merge || k0 > 0}, gx, gy, 1)
	}
}

// Update: see Ops. Clusters longer than updateSeg are summed in parts.
func (o *GPUOps) Update(dst, x, prev, order, offsets, reseed gpu.Tensor) {
	k, c, n := checkUpdate(dst, x, prev, order, offsets, reseed)
	if k == 0 || c == 0 {
		return
	}
	w := o.WebGPU
	parts := max(1, ceilDiv(n, updateSeg))
	gx, gy := w.Grid1(ceilDiv(k*c, wg))
	for p := 0; p < parts; p++ {
		w.Dispatch("cluster_update", tensors{x, prev, order, offsets, reseed}, tensors{dst},
			gpu.Meta{k, c, updateSeg, p, parts}, gx, gy, 1)
	}
}

var _ Ops = (*GPUOps)(nil)
