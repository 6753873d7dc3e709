package gen

import (
	"fmt"
	"strings"

	"github.com/chameleon-llm/chameleon/wgsl"
)

// The quantized texture mat-vecs' low-rank twins (wgsl.QTexKernel LR:
// matmul_qtex*_lr): the plain kernel with a decoder site's expand y[m] +=
// B_c u[m] as its epilogue, as the texture matmuls' "lr" twins (tex_lr.go)
// have it: the block's rows make one pass over the ranks per distinct
// cluster among them (lowRankEpilogueSums), each output's update is summed
// from zero in rank order and added to the biased output last, so the twin
// stores what its plain kernel then lowrank_add_tiled store, bit for bit.

// qtexLowRankKernel is the block of kernel k as the low-rank helpers
// describe a block.
func qtexLowRankKernel(k wgsl.QTexKernel) wgsl.LowRankKernel {
	return wgsl.LowRankKernel{Name: k.Name, Expand: true, RM: k.RM, RN: k.RN, WG: k.WG}
}

// qtexDocLR is the header comment's paragraph on the update.
func qtexDocLR(k wgsl.QTexKernel) string {
	return comment(fmt.Sprintf("The low-rank twin of %s (gpu.WebGPU.MatMulLowRank): for each row whose "+
		"cluster c = cluster[m] lies in [0, K) it adds sum_j u[m, j] * B_c[v, j] to the biased output, u (M,R) "+
		"from the shrink (alpha applied), B_k[v, j] = lrb[b_off + k * b_stride + v * R + j]: %s then "+
		"lowrank_add_tiled, bit for bit, in one dispatch and one write of dst. The block's rows make one pass "+
		"over the ranks per distinct cluster among them. Rows with cluster -1 (or any outside [0, K)) get the "+
		"plain output.", strings.TrimSuffix(k.Name, "_lr"), strings.TrimSuffix(k.Name, "_lr")))
}

// qtexDeclLR writes the Meta and group-0 bindings of a low-rank twin.
func qtexDeclLR(p func(string, ...any), meta string) {
	p("const RM: u32 = BM; // rows of the block's low-rank passes\n")
	p("const NONE: u32 = 0xffffffffu; // cluster of a row that gets no update\n\n")
	p("struct Meta { %s, r: u32, n_clusters: u32, b_off: u32, b_stride: u32, has_cluster: u32 }\n\n", meta)
	p("@group(0) @binding(0) var<storage, read> bias: array<f32>;\n")
	p("@group(0) @binding(1) var<storage, read> u: array<f32>;\n")
	p("@group(0) @binding(2) var<storage, read> cluster: array<i32>;\n")
	p("@group(0) @binding(3) var<storage, read> lrb: array<f32>;\n")
	p("@group(0) @binding(4) var<storage, read_write> dst: array<f32>;\n")
}

// qtexPutLR writes cluster_of and put for a low-rank twin: the plain
// kernel's output plus the bias, then, where up, the row's update l.
func qtexPutLR(p func(string, ...any), k wgsl.QTexKernel) {
	lowRankClustersOf(p, "params.m", "params.n_clusters")
	p("// put stores output (r, c) if it exists, plus the bias and, where up,\n")
	p("// plus the row's low-rank update l.\n")
	p("fn put(r: u32, c: u32, v: f32, up: bool, l: f32) {\n")
	p("    if (r < params.m && c < params.n) {\n")
	p("        var o = v;\n")
	p("        if (params.has_bias != 0u) {\n            o = o + bias[c];\n        }\n")
	p("        if (up) {\n            o = o + l;\n        }\n")
	p("        dst[r * params.n + c] = o;\n    }\n}\n\n")
}

// qtexStoresLR writes the block's low-rank sums and the stores of a
// low-rank twin.
func qtexStoresLR(p func(string, ...any), k wgsl.QTexKernel) {
	lowRankEpilogueSums(p, qtexLowRankKernel(k), "c0", "params.n - 1u")
	for r := 0; r < k.RM; r++ {
		p("   ")
		for j := 0; j < k.RN; j++ {
			p(" put(r0 + %du, c0 + %du, a%d_%d, cl[%d] != NONE, l%d_%d.%c);", r, j, r, j, r, r, j/4, "xyzw"[j%4])
		}
		p("\n")
	}
}
