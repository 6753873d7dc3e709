package wgsl

// LowRankKernel describes one generated tiled kernel of the per-row
// low-rank update y[m] += B_c (alpha A_c x[m]) (c = cluster[m]): the shrink
// u = alpha A_c x or the expand dst += B_c u, written out by
// wgsl/internal/gen/lowrank.go. Package adapt dispatches them by this table,
// so the grid always matches the kernel.
type LowRankKernel struct {
	Name string
	// Expand: dst(M,N) += B_c u (lowrank_add's op); else the shrink
	// u(M,R) = alpha A_c h (lowrank_u's op).
	Expand bool
	// Split (shrink only): the workgroup's lanes split the width C and sum
	// their partial products through workgroup memory (the GPU design);
	// else each invocation owns its rows alone (the CPU-adapter design: no
	// workgroup memory, no barriers).
	Split bool
	RM    int // rows per invocation (per workgroup when Split)
	RN    int // ranks (shrink) or columns (expand) per invocation, a multiple of 4
	WG    int // invocations per workgroup
}

// LowRankKernels are the tiled shrink and expand kernels. Blocks from
// lavapipe's cost model (BENCHMARKS.md, Register kernels: every
// storage-buffer lane load costs the same, FMAs are nearly free): an RM x
// RN block loads RM + RN values per step for RM*RN products. Expand blocks
// from 4 x 16 to 16 x 16 and 8 to 32 lanes ran within noise of each other
// there (process CPU time, 2026-12-04): each output's read-modify-write of
// dst, which no block shape removes, is most of the expand's cost.
var LowRankKernels = []LowRankKernel{
	{Name: "lowrank_u_tiled", RM: 8, RN: 8, WG: 64},
	{Name: "lowrank_u_split", Split: true, RM: 4, RN: 8, WG: 64},
	{Name: "lowrank_add_tiled", Expand: true, RM: 8, RN: 8, WG: 32},
}

// LowRankKernelNamed returns the table entry of kernel name; it panics for
// an unknown name (names are fixed at compile time).
func LowRankKernelNamed(name string) LowRankKernel {
	for _, k := range LowRankKernels {
		if k.Name == name {
			return k
		}
	}
	panic("wgsl: no low-rank kernel " + name)
}
