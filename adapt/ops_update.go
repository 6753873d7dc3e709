package adapt

import (
	"fmt"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/wgsl"
)

// Kernels of the per-row update y += B_c (alpha A_c x) (WebGPUOps.Update):
// LowRankU is its shrink and AddLowRank its expand, the two dispatches of
// every adapted decoder site (sites.go) and of the separate Logits variant.
const (
	// UpdateAuto picks UpdateTiled on CPU adapters, UpdateSplit on GPUs.
	UpdateAuto = ""
	// UpdateTiled runs the tiled kernels (wgsl.LowRankKernels) for CPU
	// adapters: lowrank_u_tiled (each invocation an 8-row x 8-rank block,
	// no workgroup memory, no barriers) and lowrank_add_tiled (8 rows x 8
	// columns per invocation). A width C whose per-invocation loop could
	// pass lavapipe's iteration budget runs lowrank_u instead.
	UpdateTiled = "tiled"
	// UpdateSplit is UpdateTiled with the GPU shrink, lowrank_u_split (a
	// workgroup per 4-row x 8-rank block, the width split over its lanes
	// with coalesced reads, partial sums in workgroup memory).
	UpdateSplit = "split"
	// UpdatePlain runs one invocation per output (lowrank_u, lowrank_add):
	// the simplest kernels, kept as the baseline of the tiled ones.
	UpdatePlain = "plain"
)

// lavapipeLoopBudget is the number of loop iterations after which Mesa's
// lavapipe silently ends an invocation's loops (wgsl's package comment).
const lavapipeLoopBudget = 65535

// shrinkKernel is the kernel LowRankU runs for width c.
func (o *WebGPUOps) shrinkKernel(c int) string {
	switch o.Update {
	case UpdatePlain:
		return "lowrank_u"
	case UpdateSplit:
		return "lowrank_u_split"
	case UpdateAuto, UpdateTiled:
		if o.Update == UpdateAuto && o.WebGPU.Info.Type != "cpu" {
			return "lowrank_u_split"
		}
		// One pass over the width per distinct cluster of a block's rows.
		if k := wgsl.LowRankKernelNamed("lowrank_u_tiled"); c*k.RM > lavapipeLoopBudget {
			return "lowrank_u"
		}
		return "lowrank_u_tiled"
	}
	panic(fmt.Sprintf("adapt: unknown update kernels %q", o.Update))
}

// expandKernel is the kernel AddLowRank runs.
func (o *WebGPUOps) expandKernel() string {
	switch o.Update {
	case UpdatePlain:
		return "lowrank_add"
	case UpdateAuto, UpdateTiled, UpdateSplit:
		return "lowrank_add_tiled"
	}
	panic(fmt.Sprintf("adapt: unknown update kernels %q", o.Update))
}

// LowRankU: u(M,R) = alpha * A_c h(M,C) per row, c = cluster[m]; cluster
// (M) I32, or nil for cluster 0 on every row. Rows whose cluster is outside
// [0, K) get zeros. h may have leading dims (M is their product). Rows of
// many clusters run in one dispatch (Update says which kernel).
func (o *WebGPUOps) LowRankU(u, h gpu.Tensor, f Factors, cluster gpu.Tensor, alpha float32) {
	m, c := checkLowRankU(u, h, f, cluster)
	w := o.WebGPU
	cl, has := orDefault(cluster, h)
	name := o.shrinkKernel(c)
	if name == "lowrank_u" {
		gx, gy := w.Grid1(ceilDiv(m*f.R, 64))
		w.Dispatch(name, []gpu.Tensor{h, f.A, cl}, []gpu.Tensor{u},
			gpu.Meta{m, f.C, f.R, f.K, f.AOff, f.AStride, has, alpha}, gx, gy, 1)
		return
	}
	k := wgsl.LowRankKernelNamed(name)
	rankBlocks := ceilDiv(f.R, k.RN)
	blocks := ceilDiv(m, k.RM) * rankBlocks
	if !k.Split {
		blocks = ceilDiv(blocks, k.WG) // an invocation per block
	}
	gx, gy := w.Grid1(blocks)
	w.Dispatch(name, []gpu.Tensor{h, f.A, cl}, []gpu.Tensor{u},
		gpu.Meta{m, f.C, f.R, f.K, f.AOff, f.AStride, has, alpha, rankBlocks}, gx, gy, 1)
}

// AddLowRank: dst(M,V) += B_c u(M,R) per row, c = cluster[m] (nil: 0);
// rows whose cluster is outside [0, K) are left unchanged. dst is updated
// in place (it is the op's only output binding). On CPU adapters long
// updates are submitted in slices of rows; the error of such a Flush is
// returned.
func (o *WebGPUOps) AddLowRank(dst, u gpu.Tensor, f Factors, cluster gpu.Tensor) error {
	m, v := checkAddLowRank(dst, u, f, cluster)
	w := o.WebGPU
	cl, has := orDefault(cluster, u)
	name := o.expandKernel()
	step := m
	if w.Info.Type == "cpu" {
		// The plain kernel's output costs R loads of B and R/4 of u: budget
		// it at an eighth of a matmul slice's FLOPs. The tiled one loads
		// R/4 + 2 values per output (a block of 8 x 8): a quarter.
		div := 8
		if name != "lowrank_add" {
			div = 4
		}
		step = max(1, min(m, cpuSubmitFlops/div/(2*v*f.R)))
	}
	for r0 := 0; r0 < m; r0 += step {
		n := min(step, m-r0)
		if name == "lowrank_add" {
			gx, gy := w.Grid1(ceilDiv(n*ceilDiv(v, 4), 64))
			w.Dispatch(name, []gpu.Tensor{u, cl, f.B}, []gpu.Tensor{dst},
				gpu.Meta{n, v, f.R, f.K, f.BOff, f.BStride, has, r0}, gx, gy, 1)
		} else {
			k := wgsl.LowRankKernelNamed(name)
			tilesN := ceilDiv(v, k.WG*k.RN)
			gx, gy := w.Grid1(ceilDiv(n, k.RM) * tilesN)
			w.Dispatch(name, []gpu.Tensor{u, cl, f.B}, []gpu.Tensor{dst},
				gpu.Meta{n, v, f.R, f.K, f.BOff, f.BStride, has, r0, tilesN}, gx, gy, 1)
		}
		if n < m {
			if err := w.Flush(); err != nil {
				return err
			}
		}
	}
	return nil
}
