package cluster

import (
	"fmt"

	"github.com/chameleon-llm/chameleon/gpu"
)

// Ops are the kernels clustering needs, added to the backend they run on
// (the op-extension pattern of package gpu: GPUOps runs them as WGSL on
// *gpu.WebGPU, RefOps as plain Go on a gpu.Host, OpsFor picks one, and
// ops_test.go checks one against the other). Memory operations and Name
// are the embedded backend's. Like gpu.Backend, the kernels write into
// their outputs, never modify their inputs, may run asynchronously
// (results are visible through ReadF32 and ReadI32) and panic on shape or
// dtype mismatches.
type Ops interface {
	gpu.Backend

	// Features: dst(B, C) F32 is, for each sequence b, the mean of
	// wte(V, C) (F32 or F16) rows tokens(B, T)[b, t] over t < lengths(B)[b],
	// scaled to unit L2 norm. Lengths are clamped to [0, T]; positions past
	// them are never read. Ids outside [0, V) add nothing (they still count
	// in the length). Zero length or an all-zero mean give a zero row; a
	// non-finite mean gives a NaN row.
	Features(dst, wte, tokens, lengths gpu.Tensor)
	// Assign: for each point of x(N, C), the nearest row of cents(K, C) by
	// squared Euclidean distance, row k labelled label0+k, ties to the
	// lowest label: assign(N) I32 gets the label, dist(N) F32 the squared
	// distance. With merge, the labels and distances already in assign and
	// dist compete too; they must be lower than label0.
	Assign(assign, dist, x, cents gpu.Tensor, label0 int, merge bool)
	// Update: dst(K, C) row k is the mean of the rows of x(N, C) listed in
	// order(N)[offsets[k]:offsets[k+1]] (offsets(K+1) I32, non-decreasing,
	// offsets[K] <= N); for an empty cluster, x[reseed[k]] if reseed(K)[k]
	// >= 0, else prev(K, C)[k].
	Update(dst, x, prev, order, offsets, reseed gpu.Tensor)
}

func dims(op, arg string, t gpu.Tensor, n int) []int {
	if t == nil {
		panic(fmt.Sprintf("cluster: %s: %s is nil", op, arg))
	}
	s := t.Shape()
	if len(s) != n {
		panic(fmt.Sprintf("cluster: %s: %s has shape %v, want %d dims", op, arg, s, n))
	}
	return s
}

func want(op, arg string, t gpu.Tensor, dt gpu.DType, shape ...int) {
	if t == nil {
		panic(fmt.Sprintf("cluster: %s: %s is nil", op, arg))
	}
	if t.DType() != dt {
		panic(fmt.Sprintf("cluster: %s: %s has dtype %v, want %v", op, arg, t.DType(), dt))
	}
	got := t.Shape()
	ok := len(got) == len(shape)
	for i := 0; ok && i < len(shape); i++ {
		ok = got[i] == shape[i]
	}
	if !ok {
		panic(fmt.Sprintf("cluster: %s: %s has shape %v, want %v", op, arg, got, shape))
	}
}

// checkFeatures validates Features' arguments and returns B, T, C, V.
func checkFeatures(dst, wte, tokens, lengths gpu.Tensor) (b, t, c, v int) {
	ws := dims("Features", "wte", wte, 2)
	v, c = ws[0], ws[1]
	if dt := wte.DType(); dt != gpu.F32 && dt != gpu.F16 {
		panic(fmt.Sprintf("cluster: Features: wte has dtype %v, want f32 or f16", dt))
	}
	ts := dims("Features", "tokens", tokens, 2)
	b, t = ts[0], ts[1]
	want("Features", "tokens", tokens, gpu.I32, b, t)
	want("Features", "lengths", lengths, gpu.I32, b)
	want("Features", "dst", dst, gpu.F32, b, c)
	return b, t, c, v
}

// checkAssign validates Assign's arguments and returns N, C, K.
func checkAssign(assign, dist, x, cents gpu.Tensor, label0 int) (n, c, k int) {
	xs := dims("Assign", "x", x, 2)
	n, c = xs[0], xs[1]
	want("Assign", "x", x, gpu.F32, n, c)
	cs := dims("Assign", "cents", cents, 2)
	k = cs[0]
	want("Assign", "cents", cents, gpu.F32, k, c)
	want("Assign", "assign", assign, gpu.I32, n)
	want("Assign", "dist", dist, gpu.F32, n)
	if label0 < 0 {
		panic(fmt.Sprintf("cluster: Assign: negative label0 %d", label0))
	}
	return n, c, k
}

// checkUpdate validates Update's arguments and returns K, C, N.
func checkUpdate(dst, x, prev, order, offsets, reseed gpu.Tensor) (k, c, n int) {
	xs := dims("Update", "x", x, 2)
	n, c = xs[0], xs[1]
	want("Update", "x", x, gpu.F32, n, c)
	ps := dims("Update", "prev", prev, 2)
	k = ps[0]
	want("Update", "prev", prev, gpu.F32, k, c)
	want("Update", "dst", dst, gpu.F32, k, c)
	want("Update", "order", order, gpu.I32, n)
	want("Update", "offsets", offsets, gpu.I32, k+1)
	want("Update", "reseed", reseed, gpu.I32, k)
	return k, c, n
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// OpsFor returns the clustering ops of a backend: the WGSL kernels on a
// WebGPU backend, the plain-Go ones on a host backend (the reference).
func OpsFor(b gpu.Backend) (Ops, error) {
	ops, err := gpu.Select(b,
		func(w *gpu.WebGPU) Ops { return NewGPUOps(w) },
		func(h gpu.Host) Ops { return &RefOps{h} })
	if err != nil {
		return nil, fmt.Errorf("cluster: no clustering ops: %w", err)
	}
	return ops, nil
}
