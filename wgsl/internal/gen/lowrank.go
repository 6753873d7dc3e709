package gen

import (
	"fmt"
	"strings"

	"github.com/chameleon-llm/chameleon/wgsl"
)

// The tiled low-rank kernels (wgsl.LowRankKernels): the shrink u = alpha
// A_c h and the expand dst += B_c u of the per-row update inside the
// decoder, with each invocation's accumulators written out as named vec4s
// (lavapipe keeps them in registers; a private array indexed in a loop
// would go through memory).

// lowRankKernel returns the WGSL source of kernel k.
func lowRankKernel(k wgsl.LowRankKernel) string {
	if k.RN%4 != 0 || k.RM < 1 || k.RM > 32 || k.WG < 1 {
		panic(fmt.Sprintf("wgsl: %s: block %d x %d over %d invocations: RN must be a multiple of 4, RM in 1..32", k.Name, k.RM, k.RN, k.WG))
	}
	var s strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&s, format, a...) }
	switch {
	case k.Expand:
		lowRankExpand(p, k)
	case k.Split:
		lowRankSplit(p, k)
	default:
		lowRankShrink(p, k)
	}
	return s.String()
}

// lowRankClusters writes cluster_of, rows past rowEnd and clusters
// outside [0, params.k) giving NONE.
func lowRankClusters(p func(string, ...any), k wgsl.LowRankKernel, rowEnd string) {
	lowRankClustersOf(p, rowEnd, "params.k")
}

// lowRankClustersOf writes cluster_of, rows past rowEnd and clusters
// outside [0, count) giving NONE.
func lowRankClustersOf(p func(string, ...any), rowEnd, count string) {
	p("// cluster_of is row r's cluster, or NONE for a row past the end or one\n")
	p("// whose cluster lies outside [0, K) (-1: no update).\n")
	p("fn cluster_of(r: u32) -> u32 {\n")
	p("    if (r >= %s) {\n        return NONE;\n    }\n", rowEnd)
	p("    var c = 0;\n    if (params.has_cluster != 0u) {\n        c = cluster[r];\n    }\n")
	p("    if (c < 0 || u32(c) >= %s) {\n        return NONE;\n    }\n", count)
	p("    return u32(c);\n}\n\n")
}

// lowRankPassOpen writes the start of the loop over the distinct clusters
// of the block's rows r0..: each pass takes the first pending row's
// cluster c and the set sel of the rows in it. The block's zeroed vec4
// accumulators are named acc<row>_<q>.
func lowRankPassOpen(p func(string, ...any), k wgsl.LowRankKernel, indent, acc string) {
	p("%svar cl: array<u32, %d>;\n", indent, k.RM)
	p("%svar todo = 0u; // bit i: row r0+i still waits for its cluster's pass\n", indent)
	p("%sfor (var i = 0u; i < RM; i = i + 1u) {\n", indent)
	p("%s    cl[i] = cluster_of(r0 + i);\n", indent)
	p("%s    if (cl[i] != NONE) {\n%s        todo = todo | (1u << i);\n%s    }\n%s}\n", indent, indent, indent, indent)
	for r := 0; r < k.RM; r++ {
		p("%s", indent)
		for q := 0; q < k.RN/4; q++ {
			if q > 0 {
				p(" ")
			}
			p("var %s%d_%d = vec4<f32>(0.0);", acc, r, q)
		}
		p("\n")
	}
	p("%sloop {\n", indent)
	p("%s    if (todo == 0u) {\n%s        break;\n%s    }\n", indent, indent, indent)
	p("%s    let c = cl[firstTrailingBit(todo)];\n", indent)
	p("%s    var sel = 0u; // rows of cluster c\n", indent)
	p("%s    for (var i = 0u; i < RM; i = i + 1u) {\n", indent)
	p("%s        if (cl[i] == c) {\n%s            sel = sel | (1u << i);\n%s        }\n%s    }\n", indent, indent, indent, indent)
	p("%s    todo = todo & ~sel;\n", indent)
}

// lowRankFMA writes, for each row of the block in sel, the update of its
// accumulators acc<r>_<q> by the row's value (an expression of the row
// index) times the vec4s v<q>.
func lowRankFMA(p func(string, ...any), k wgsl.LowRankKernel, indent, acc string, value func(r int) string) {
	for r := 0; r < k.RM; r++ {
		p("%sif ((sel & %du) != 0u) {\n", indent, 1<<r)
		p("%s    let s = vec4<f32>(%s);\n%s   ", indent, value(r), indent)
		for q := 0; q < k.RN/4; q++ {
			p(" %s%d_%d = fma(s, v%d, %s%d_%d);", acc, r, q, q, acc, r, q)
		}
		p("\n%s}\n", indent)
	}
}

// lowRankEpilogueSums writes a matmul epilogue's low-rank sums of the
// block's rows, accumulators l<row>_<q>: one pass over the ranks per
// distinct cluster among the rows, reading B's columns from col0 to at most
// colLast (lowRankOffsets) and u's row of each.
func lowRankEpilogueSums(p func(string, ...any), lk wgsl.LowRankKernel, col0, colLast string) {
	p("    // The low-rank update of the block's rows: one pass over the ranks\n")
	p("    // per distinct cluster among them.\n")
	p("    let rr = params.r;\n")
	lowRankOffsets(p, lk, col0, colLast, "rr")
	lowRankPassOpen(p, lk, "    ", "l")
	p("        let bb = params.b_off + c * params.b_stride;\n")
	p("        for (var j = 0u; j < rr; j = j + 1u) {\n")
	lowRankGather(p, lk, "            ", "lrb", "bb + j")
	lowRankFMA(p, lk, "            ", "l", func(r int) string { return fmt.Sprintf("u[(r0 + %du) * rr + j]", r) })
	p("        }\n    }\n")
}

// lowRankGather writes the vec4s v<q> = (src[base + off<4q>], ...,
// src[base + off<4q+3>]).
func lowRankGather(p func(string, ...any), k wgsl.LowRankKernel, indent, src, base string) {
	for q := 0; q < k.RN/4; q++ {
		p("%slet v%d = vec4<f32>(", indent, q)
		for e := 0; e < 4; e++ {
			if e > 0 {
				p(", ")
			}
			p("%s[%s + o%d]", src, base, 4*q+e)
		}
		p(");\n")
	}
}

// lowRankShrinkHeader writes the constants, bindings and helpers shared by
// both shrink kernels.
func lowRankShrinkHeader(p func(string, ...any), k wgsl.LowRankKernel) {
	p("const WG: u32 = %du; // invocations per workgroup\n", k.WG)
	p("const RM: u32 = %du; // rows per %s\n", k.RM, map[bool]string{false: "invocation", true: "workgroup"}[k.Split])
	p("const RB: u32 = %du; // ranks per %s\n", k.RN, map[bool]string{false: "invocation", true: "workgroup"}[k.Split])
	p("const NONE: u32 = 0xffffffffu; // cluster of a row that gets no update\n\n")
	p("struct Meta { m: u32, c: u32, r: u32, k: u32, a_off: u32, a_stride: u32, has_cluster: u32, alpha: f32, rank_blocks: u32 }\n\n")
	p("@group(0) @binding(0) var<storage, read> h: array<f32>;\n")
	p("@group(0) @binding(1) var<storage, read> a: array<f32>;\n")
	p("@group(0) @binding(2) var<storage, read> cluster: array<i32>;\n")
	p("@group(0) @binding(3) var<storage, read_write> u: array<f32>;\n")
	p("@group(1) @binding(0) var<uniform> params: Meta;\n\n")
	lowRankClusters(p, k, "params.m")
	p("// put stores ranks j0..j0+3 of row r, those that exist, times alpha.\n")
	p("fn put(r: u32, j0: u32, v: vec4<f32>) {\n")
	p("    if (r >= params.m) {\n        return;\n    }\n")
	p("    for (var q = 0u; q < 4u; q = q + 1u) {\n")
	p("        if (j0 + q < params.r) {\n")
	p("            u[r * params.r + j0 + q] = params.alpha * v[q];\n")
	p("        }\n    }\n}\n\n")
}

// lowRankShrinkDoc writes the part of a shrink kernel's header comment
// that both variants share.
func lowRankShrinkDoc(p func(string, ...any), k wgsl.LowRankKernel, what string) {
	p("// %s: the shrink of the per-cluster low-rank update, generated by\n", k.Name)
	p("// wgsl/internal/gen/lowrank.go (edit the generator, not this file):\n")
	p("//   u[m, j] = alpha * sum_i A_c[j, i] h[m, i],  c = cluster[m],\n")
	p("// the first half of y[m] += alpha B_c (A_c h[m]) (lowrank_u's op, tiled).\n")
	p("// Rows whose cluster lies outside [0, K) get u = 0. %s\n", what)
	p("// Rows of a block may belong to different clusters (the SGMV case): the\n")
	p("// block makes one pass over the width per distinct cluster among its rows,\n")
	p("// each row taking part in its cluster's pass only.\n")
	p("// Factor layout: A_k[j, i] = a[a_off + k * a_stride + j * C + i].\n")
	p("// Bindings: h(M,C) f32, a f32, cluster(M) i32 (any tensor when has_cluster\n")
	p("// = 0: every row uses cluster 0) read; u(M,R) f32 write.\n")
	p("// Meta: M, C, R, K, a_off, a_stride, has_cluster, alpha, rank_blocks =\n")
	p("// ceil(R / RB). Ranks past R are clamped for loading and not stored.\n")
}

// lowRankPuts writes the stores of every accumulator through fn (put or
// add) at row r0+r, column or rank base+4q.
func lowRankPuts(p func(string, ...any), k wgsl.LowRankKernel, indent, fn, base string) {
	for r := 0; r < k.RM; r++ {
		for q := 0; q < k.RN/4; q++ {
			p("%s%s(r0 + %du, %s + %du, a%d_%d);\n", indent, fn, r, base, 4*q, r, q)
		}
	}
}

// lowRankOffsets writes o<q> = min(first + q, last) * stride for the
// block's RN ranks or columns.
func lowRankOffsets(p func(string, ...any), k wgsl.LowRankKernel, first, last, stride string) {
	for q := 0; q < k.RN; q++ {
		p("    let o%d = min(%s + %du, %s) * %s;\n", q, first, q, last, stride)
	}
}

// lowRankShrink writes the CPU-adapter shrink: each invocation owns RM rows
// and RB ranks and walks the width alone.
func lowRankShrink(p func(string, ...any), k wgsl.LowRankKernel) {
	lowRankShrinkDoc(p, k, "Tiled for CPU\n// adapters: each invocation owns a block of RM rows x RB ranks and walks\n// the width once per distinct cluster, loading RM h values and RB A values\n// per step for RM*RB products (lowrank_u loads 2 per product).")
	p("// Dispatch: one invocation per block, ceil(ceil(M / RM) * rank_blocks / WG)\n")
	p("// workgroups over (x, y); block b = (wid.y * nwg.x + wid.x) * WG + lid\n")
	p("// covers rows (b / rank_blocks) * RM.. and ranks (b %% rank_blocks) * RB...\n")
	p("// Portability: an invocation's width loop runs C times per distinct\n")
	p("// cluster among its rows, so C * RM must stay under lavapipe's 65,535\n")
	p("// iterations (adapt falls back to lowrank_u beyond).\n")
	lowRankShrinkHeader(p, k)
	p("@compute @workgroup_size(WG)\n")
	p("fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,\n")
	p("        @builtin(local_invocation_index) lid: u32) {\n")
	p("    let blk = (wid.y * nwg.x + wid.x) * WG + lid;\n")
	p("    let r0 = (blk / params.rank_blocks) * RM;\n")
	p("    let j0 = (blk %% params.rank_blocks) * RB;\n")
	p("    if (r0 >= params.m) {\n        return;\n    }\n")
	p("    let cc = params.c;\n")
	lowRankOffsets(p, k, "j0", "params.r - 1u", "cc")
	lowRankPassOpen(p, k, "    ", "a")
	p("        let ab = params.a_off + c * params.a_stride;\n")
	p("        for (var i = 0u; i < cc; i = i + 1u) {\n")
	lowRankGather(p, k, "            ", "a", "ab + i")
	lowRankFMA(p, k, "            ", "a", func(r int) string { return fmt.Sprintf("h[(r0 + %du) * cc + i]", r) })
	p("        }\n    }\n")
	lowRankPuts(p, k, "    ", "put", "j0")
	p("}\n")
}

// lowRankSplit writes the GPU shrink: a workgroup owns RM rows and RB
// ranks, its lanes take every WG-th element of the width (neighbouring
// lanes read neighbouring words) and sum their partials in workgroup
// memory.
func lowRankSplit(p func(string, ...any), k wgsl.LowRankKernel) {
	if k.WG&(k.WG-1) != 0 {
		panic(fmt.Sprintf("wgsl: %s: the tree sum needs a power-of-two workgroup, not %d", k.Name, k.WG))
	}
	nv := k.RM * k.RN / 4
	lowRankShrinkDoc(p, k, "Split over the\n// width for GPUs: a workgroup owns a block of RM rows x RB ranks; its lane l\n// takes elements l, l+WG, ... of the width (neighbouring lanes read\n// neighbouring words) and the lanes' partial sums meet in workgroup memory.")
	p("// Dispatch: one workgroup per block, ceil(M / RM) * rank_blocks workgroups\n")
	p("// over (x, y); block b = wid.y * nwg.x + wid.x covers rows\n")
	p("// (b / rank_blocks) * RM.. and ranks (b %% rank_blocks) * RB...\n")
	lowRankShrinkHeader(p, k)
	p("const NV: u32 = %du; // vec4 partials per lane (RM * RB / 4)\n", nv)
	p("var<workgroup> part: array<vec4<f32>, %d>; // WG * NV\n\n", k.WG*nv)
	p("@compute @workgroup_size(WG)\n")
	p("fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,\n")
	p("        @builtin(local_invocation_index) lid: u32) {\n")
	p("    let blk = wid.y * nwg.x + wid.x;\n")
	p("    let r0 = (blk / params.rank_blocks) * RM; // past M: no row has a pass\n")
	p("    let j0 = (blk %% params.rank_blocks) * RB;\n")
	p("    let cc = params.c;\n")
	lowRankOffsets(p, k, "j0", "params.r - 1u", "cc")
	lowRankPassOpen(p, k, "    ", "a")
	p("        let ab = params.a_off + c * params.a_stride;\n")
	p("        for (var i = lid; i < cc; i = i + WG) {\n")
	lowRankGather(p, k, "            ", "a", "ab + i")
	lowRankFMA(p, k, "            ", "a", func(r int) string { return fmt.Sprintf("h[(r0 + %du) * cc + i]", r) })
	p("        }\n    }\n")
	for r := 0; r < k.RM; r++ {
		for q := 0; q < k.RN/4; q++ {
			p("    part[lid * NV + %du] = a%d_%d;\n", r*k.RN/4+q, r, q)
		}
	}
	p("    workgroupBarrier();\n")
	p("    for (var s = WG / 2u; s > 0u; s = s / 2u) {\n")
	p("        if (lid < s) {\n")
	p("            for (var e = 0u; e < NV; e = e + 1u) {\n")
	p("                part[lid * NV + e] = part[lid * NV + e] + part[(lid + s) * NV + e];\n")
	p("            }\n        }\n        workgroupBarrier();\n    }\n")
	p("    if (lid < NV) {\n")
	p("        put(r0 + lid / %du, j0 + 4u * (lid %% %du), part[lid]);\n", k.RN/4, k.RN/4)
	p("    }\n}\n")
}

// lowRankExpand writes the expand: a workgroup owns RM rows and WG*RN
// columns, each invocation RM rows x RN columns.
func lowRankExpand(p func(string, ...any), k wgsl.LowRankKernel) {
	p("// %s: the expand of the per-cluster low-rank update, generated by\n", k.Name)
	p("// wgsl/internal/gen/lowrank.go (edit the generator, not this file):\n")
	p("//   dst[m, v] += sum_j u[m, j] * B_c[v, j],  c = cluster[m],\n")
	p("// the second half of y[m] += alpha B_c (A_c h[m]) after the plain matmul\n")
	p("// wrote y (lowrank_add's op, tiled). Rows whose cluster lies outside\n")
	p("// [0, K) are left as they are. A workgroup owns RM rows and WG * RN\n")
	p("// columns, each invocation RM x RN of them: per rank it loads RN values of\n")
	p("// B_c and RM of u for RM*RN products (lowrank_add loads 5 per 4), and\n")
	p("// each output is read and written once. The rows of a block may belong\n")
	p("// to different clusters (the SGMV case): one pass over the ranks per\n")
	p("// distinct cluster among them (the same for every lane of a workgroup).\n")
	p("// Factor layout: B_k[v, j] = b[b_off + k * b_stride + v * R + j].\n")
	p("// Bindings: u(M,R) f32 (already scaled by alpha), cluster(M) i32 (any\n")
	p("// tensor when has_cluster = 0: every row uses cluster 0), b f32 read;\n")
	p("// dst(M,N) f32 read-write.\n")
	p("// Meta: M (rows in this dispatch), N, R, K, b_off, b_stride, has_cluster,\n")
	p("// row_base (the dispatch covers rows row_base .. row_base+M-1), tiles_n =\n")
	p("// ceil(N / (WG * RN)).\n")
	p("// Dispatch: ceil(M / RM) * tiles_n workgroups over (x, y); tile t =\n")
	p("// wid.y * nwg.x + wid.x covers rows row_base + (t / tiles_n) * RM.. and\n")
	p("// columns (t %% tiles_n) * WG * RN..; columns past N are clamped for\n")
	p("// loading and not stored.\n")
	p("const WG: u32 = %du; // invocations per workgroup, along N\n", k.WG)
	p("const RM: u32 = %du; // rows per workgroup\n", k.RM)
	p("const RN: u32 = %du; // columns per invocation\n", k.RN)
	p("const NONE: u32 = 0xffffffffu; // cluster of a row that gets no update\n\n")
	p("struct Meta { m: u32, n: u32, r: u32, k: u32, b_off: u32, b_stride: u32, has_cluster: u32, row_base: u32, tiles_n: u32 }\n\n")
	p("@group(0) @binding(0) var<storage, read> u: array<f32>;\n")
	p("@group(0) @binding(1) var<storage, read> cluster: array<i32>;\n")
	p("@group(0) @binding(2) var<storage, read> b: array<f32>;\n")
	p("@group(0) @binding(3) var<storage, read_write> dst: array<f32>;\n")
	p("@group(1) @binding(0) var<uniform> params: Meta;\n\n")
	lowRankClusters(p, k, "params.row_base + params.m")
	p("// add adds v to columns c..c+3 of row r, those that exist.\n")
	p("fn add(r: u32, c: u32, v: vec4<f32>) {\n")
	p("    for (var q = 0u; q < 4u; q = q + 1u) {\n")
	p("        if (c + q < params.n) {\n")
	p("            dst[r * params.n + c + q] = dst[r * params.n + c + q] + v[q];\n")
	p("        }\n    }\n}\n\n")
	p("@compute @workgroup_size(WG)\n")
	p("fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,\n")
	p("        @builtin(local_invocation_index) lid: u32) {\n")
	p("    let t = wid.y * nwg.x + wid.x;\n")
	p("    let r0 = params.row_base + (t / params.tiles_n) * RM;\n")
	p("    let c0 = (t %% params.tiles_n) * WG * RN + lid * RN;\n")
	p("    if (c0 >= params.n) {\n        return;\n    }\n")
	p("    let rr = params.r;\n")
	lowRankOffsets(p, k, "c0", "params.n - 1u", "rr")
	lowRankPassOpen(p, k, "    ", "a")
	p("        let bb = params.b_off + c * params.b_stride;\n")
	p("        for (var j = 0u; j < rr; j = j + 1u) {\n")
	lowRankGather(p, k, "            ", "b", "bb + j")
	lowRankFMA(p, k, "            ", "a", func(r int) string { return fmt.Sprintf("u[(r0 + %du) * rr + j]", r) })
	p("        }\n    }\n")
	for r := 0; r < k.RM; r++ {
		p("    if (cl[%d] != NONE) {\n", r)
		for q := 0; q < k.RN/4; q++ {
			p("        add(r0 + %du, c0 + %du, a%d_%d);\n", r, 4*q, r, q)
		}
		p("    }\n")
	}
	p("}\n")
}
