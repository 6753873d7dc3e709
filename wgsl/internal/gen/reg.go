package gen

import (
	"fmt"
	"strings"
)

// The register-blocked CPU-adapter matmuls (the gpu package's "reg" family)
// and the fused low-rank logits kernel built on the same block: no
// workgroup memory, no barriers, each invocation's RM x RN block of outputs
// in named vec4 accumulators a<row>_<column/4>, written out unrolled
// because lavapipe's compiler does not unroll loops. One description per
// weight format; the f32, f16 and quantized kernels differ only in how a
// step of the main loop loads w.

// regKernel describes one generated register-blocked kernel.
type regKernel struct {
	Name string
	// W is the weight format: "f32", "f16" (two halves per u32) or a
	// quantized one ("q8_0", "q4_0", "q4_k": 32-weight blocks dequantized
	// in registers by the quant_<W> fragment).
	W  string
	RM int // output rows per invocation (and per workgroup)
	// LowRank: the fused low-rank logits kernel (lowrank_matmul_*): the
	// base block plus the per-cluster update as an epilogue, its own
	// bindings, and all of N (no weight chunks).
	LowRank bool
	// Site: the plain kernel with a decoder site's low-rank expand as its
	// epilogue (matmul_reg_*_lr, gpu.WebGPU.MatMulLowRank; reg_lr.go).
	Site bool
}

// regTX is the invocations of a workgroup, along N.
const regTX = 8

// regKernels are the generated kernels. The blocks must match the gpu
// package's matKernels["reg"] and adapt's logits kernel table. Blocks from
// lavapipe's cost model (every storage load costs one scalar load per lane,
// FMAs are nearly free): 16 x 16 for f32; 8 x 16 for f16, because
// lavapipe's compiler crashes on the larger f16 body; 8 x 8 for the
// quantized formats, whose dequantization needs registers too.
var regKernels = []regKernel{
	{Name: "matmul_reg_f32", W: "f32", RM: 16},
	{Name: "matmul_reg_f16", W: "f16", RM: 8},
	{Name: "matmul_reg_q8_0", W: "q8_0", RM: 8},
	{Name: "matmul_reg_q4_0", W: "q4_0", RM: 8},
	{Name: "matmul_reg_q4_k", W: "q4_k", RM: 8},
	{Name: "lowrank_matmul_f32", W: "f32", RM: 16, LowRank: true},
	{Name: "lowrank_matmul_f16", W: "f16", RM: 8, LowRank: true},
	{Name: "matmul_reg_f32_lr", W: "f32", RM: 16, Site: true},
	{Name: "matmul_reg_f16_lr", W: "f16", RM: 8, Site: true},
	{Name: "matmul_reg_q8_0_lr", W: "q8_0", RM: 8, Site: true},
	{Name: "matmul_reg_q4_0_lr", W: "q4_0", RM: 8, Site: true},
	{Name: "matmul_reg_q4_k_lr", W: "q4_k", RM: 8, Site: true},
}

func (k regKernel) quantized() bool { return k.W != "f32" && k.W != "f16" }

// rn is the output columns per invocation.
func (k regKernel) rn() int {
	if k.quantized() {
		return 8
	}
	return 16
}

// nCols is the kernel's column count: a weight chunk's, or all of N.
func (k regKernel) nCols() string {
	if k.LowRank {
		return "params.n"
	}
	return "params.n_count"
}

// regMatMul returns the WGSL source of kernel k.
func regMatMul(k regKernel) string {
	if k.LowRank && k.quantized() || k.RM < 1 || k.RM > 32 {
		panic(fmt.Sprintf("wgsl: %s: %s weights, %d rows: the low-rank kernel takes f32 or f16 weights, RM must be in 1..32", k.Name, k.W, k.RM))
	}
	var s strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&s, format, a...) }
	switch {
	case k.Site:
		regSiteDoc(p, k)
	case k.LowRank:
		lowRankMatMulDoc(p, k)
	case k.quantized():
		regQuantDoc(p, k)
	default:
		regDoc(p, k)
	}
	regDecl(p, k)
	tileStart(p, k.rn())
	p("    if (r0 >= params.m || c0 >= %s) {\n        return;\n    }\n", k.nCols())
	p("    let lc = %s - 1u;\n", k.nCols())
	p("    let lr = params.m - 1u;\n")
	switch k.W {
	case "f32":
		regLoopF32(p, k)
	case "f16":
		regLoopF16(p, k)
	default:
		regLoopQuant(p, k)
	}
	if k.LowRank {
		lowRankMatMulEpilogue(p, k)
	}
	if k.Site {
		regSiteEpilogue(p, k)
		p("}\n")
		return s.String()
	}
	for r := 0; r < k.RM; r++ {
		for q := 0; q < k.rn()/4; q++ {
			p("    put(r0 + %du, c0 + %du, a%d_%d);\n", r, 4*q, r, q)
		}
	}
	p("}\n")
	return s.String()
}

// regDecl writes the constants, Meta, bindings and helpers before main.
func regDecl(p func(string, ...any), k regKernel) {
	switch {
	case k.Site:
		regSiteDecl(p, k)
		return
	case k.quantized():
		// The Meta and bindings of every quantized matmul, then the format's
		// dequantization (q_sc, q_deq, q_klo, q_khi), shared with the tile
		// and mat-vec kernels.
		p("//#include matmul_q_decl\n//#include quant_%s\n", k.W)
		p("const TX: u32 = %du;   // invocations per workgroup, along N\n", regTX)
		p("const BM: u32 = %du;   // rows per workgroup\n", k.RM)
		p("const BN: u32 = %du;  // columns per workgroup (TX * %d)\n\n", regTX*k.rn(), k.rn())
	case k.LowRank:
		p("const TX: u32 = %du; // invocations per workgroup, along N\n", regTX)
		p("const BM: u32 = %du; // rows per workgroup\n", k.RM)
		p("const BN: u32 = %du; // columns per workgroup (TX * %d)\n", regTX*k.rn(), k.rn())
		p("const NONE: u32 = 0xffffffffu; // cluster of a row that gets no update\n\n")
		p("struct Meta { m: u32, k: u32, n: u32, has_bias: u32, tiles_n: u32, kw: u32, tile_base: u32, r: u32, n_clusters: u32, b_off: u32, b_stride: u32, has_cluster: u32 }\n\n")
		p("@group(0) @binding(0) var<storage, read> x: array<f32>;\n")
		p("@group(0) @binding(1) var<storage, read> w: array<%s>;\n", map[bool]string{false: "f32", true: "u32"}[k.W == "f16"])
		p("@group(0) @binding(2) var<storage, read> bias: array<f32>;\n")
		p("@group(0) @binding(3) var<storage, read> u: array<f32>;\n")
		p("@group(0) @binding(4) var<storage, read> cluster: array<i32>;\n")
		p("@group(0) @binding(5) var<storage, read> b: array<f32>;\n")
		p("@group(0) @binding(6) var<storage, read_write> dst: array<f32>;\n")
		p("@group(1) @binding(0) var<uniform> params: Meta;\n\n")
	default:
		p("const TX: u32 = %du; // invocations per workgroup, along N\n", regTX)
		p("const BM: u32 = %du; // rows per workgroup\n", k.RM)
		p("const BN: u32 = %du; // columns per workgroup (TX * %d)\n\n", regTX*k.rn(), k.rn())
		p("struct Meta { m: u32, k: u32, n: u32, n_base: u32, n_count: u32, has_bias: u32, tiles_n: u32, kw: u32, tile_base: u32 }\n\n")
		p("@group(0) @binding(0) var<storage, read> x: array<f32>;\n")
		p("@group(0) @binding(1) var<storage, read> w: array<%s>;\n", map[bool]string{false: "f32", true: "u32"}[k.W == "f16"])
		p("@group(0) @binding(2) var<storage, read> bias: array<f32>;\n")
		p("@group(0) @binding(3) var<storage, read_write> dst: array<f32>;\n")
		p("@group(1) @binding(0) var<uniform> params: Meta;\n\n")
	}
	col := "params.n_base + c + j"
	if k.LowRank {
		col = "c + j"
	}
	p("// put stores four columns c.. of row r, those that exist, adding the bias.\n")
	p("fn put(r: u32, c: u32, v: vec4<f32>) {\n")
	p("    if (r >= params.m) {\n        return;\n    }\n")
	p("    for (var j = 0u; j < 4u; j = j + 1u) {\n")
	p("        if (c + j < %s) {\n", k.nCols())
	p("            let col = %s;\n", col)
	p("            var o = v[j];\n")
	p("            if (params.has_bias != 0u) {\n                o = o + bias[col];\n            }\n")
	p("            dst[r * params.n + col] = o;\n")
	p("        }\n    }\n}\n\n")
	if k.LowRank {
		p("// cluster_of is row r's cluster, or NONE for a row past the end or outside\n")
		p("// [0, n_clusters).\n")
		p("fn cluster_of(r: u32) -> u32 {\n")
		p("    if (r >= params.m) {\n        return NONE;\n    }\n")
		p("    var c = 0;\n    if (params.has_cluster != 0u) {\n        c = cluster[r];\n    }\n")
		p("    if (c < 0 || u32(c) >= params.n_clusters) {\n        return NONE;\n    }\n")
		p("    return u32(c);\n}\n\n")
	}
}

// regOffsets writes the row offsets name<i> = min(base + i, last) * stride
// for i < n.
func regOffsets(p func(string, ...any), name, base, last, stride string, n int) {
	for i := 0; i < n; i++ {
		p("    let %s%d = min(%s + %du, %s) * %s;\n", name, i, base, i, last, stride)
	}
}

// regAccumulators declares the zeroed accumulators a<r>_<q>.
func regAccumulators(p func(string, ...any), k regKernel) {
	for r := 0; r < k.RM; r++ {
		p("   ")
		for q := 0; q < k.rn()/4; q++ {
			p(" var a%d_%d = vec4<f32>(0.0);", r, q)
		}
		p("\n")
	}
}

// regFMARows writes, for every row r, v<r> = vec4(x[x<r> + k]) and its
// fma into the row's four accumulators with b0..b3.
func regFMARows(p func(string, ...any), k regKernel, indent string) {
	regFMARowsOf(p, k.RM, indent, func(r int) string { return fmt.Sprintf("x[x%d + k]", r) })
}

// regFMARowsOf is regFMARows over rows rows, row r's value load(r).
func regFMARowsOf(p func(string, ...any), rows int, indent string, load func(r int) string) {
	for r := 0; r < rows; r++ {
		p("%slet v%d = vec4<f32>(%s);\n", indent, r, load(r))
		p("%s%s\n", indent, rowUpdate(func(q int) string { return fmt.Sprintf("a%d_%d = fma(v%d, b%d, a%d_%d);", r, q, r, q, r, q) }))
	}
}

// rowUpdate is the statements f(q) of a row's four accumulators, on one
// line.
func rowUpdate(f func(q int) string) string {
	st := make([]string, 4)
	for q := range st {
		st[q] = f(q)
	}
	return strings.Join(st, " ")
}

// regColumns writes name<q> = ctor(elem(4q), ..., elem(4q+3)) for the
// invocation's four groups of four columns.
func regColumns(p func(string, ...any), indent, name, ctor string, elem func(c int) string) {
	for q := 0; q < 4; q++ {
		els := make([]string, 4)
		for e := range els {
			els[e] = elem(4*q + e)
		}
		p("%slet %s%d = %s(%s);\n", indent, name, q, ctor, strings.Join(els, ", "))
	}
}

// regFloatStart writes the offsets of the invocation's 16 rows of w (wRow
// words or elements apart) and of its rows of x, and the zeroed
// accumulators, for f32 and f16 weights.
func regFloatStart(p func(string, ...any), k regKernel, wRow string) {
	p("    let kk = params.k;\n")
	regOffsets(p, "w", "c0", "lc", wRow, 16)
	regOffsets(p, "x", "r0", "lr", "kk", k.RM)
	regAccumulators(p, k)
}

// regLoopF32 writes the offsets, accumulators and main loop of f32 weights:
// per k one load of each of the 16 columns' weights and of each row's x.
func regLoopF32(p func(string, ...any), k regKernel) {
	regFloatStart(p, k, "kk")
	p("    for (var k = 0u; k < kk; k = k + 1u) {\n")
	regColumns(p, "        ", "b", "vec4<f32>", func(c int) string { return fmt.Sprintf("w[w%d + k]", c) })
	regFMARows(p, k, "        ")
	p("    }\n")
}

// regLoopF16 writes the offsets, accumulators and main loop of packed f16
// weights: per pair of k one u32 load per column (two weights) and a
// mat4x2 product per row and four columns; an odd K's last k after it.
func regLoopF16(p func(string, ...any), k regKernel) {
	regFloatStart(p, k, "params.kw")
	p("    let kp = kk / 2u; // whole pairs; an odd K leaves k = K-1 in word kp\n")
	p("    for (var q = 0u; q < kp; q = q + 1u) {\n")
	p("        // h<j> holds columns 4j..4j+3 at k = 2q, 2q+1: u * h<j> is their dot products.\n")
	regColumns(p, "        ", "h", "mat4x2<f32>", func(c int) string { return fmt.Sprintf("unpack2x16float(w[w%d + q])", c) })
	p("        let k = 2u * q;\n")
	for r := 0; r < k.RM; r++ {
		p("        let u%d = vec2<f32>(x[x%d + k], x[x%d + k + 1u]);\n", r, r, r)
		p("        %s\n", rowUpdate(func(q int) string { return fmt.Sprintf("a%d_%d = a%d_%d + u%d * h%d;", r, q, r, q, r, q) }))
	}
	p("    }\n")
	p("    if (kp < params.kw) {\n")
	p("        let k = kk - 1u;\n")
	regColumns(p, "        ", "b", "vec4<f32>", func(c int) string { return fmt.Sprintf("unpack2x16float(w[w%d + kp]).x", c) })
	regFMARows(p, k, "        ")
	p("    }\n")
}

// regLoopQuant writes the offsets, accumulators and main loop of quantized
// weights: per 32-weight block each column's scales once, then per group
// of 8 k its weights dequantized once (two mat4x4 of 4 columns x 4 k) and
// fed to every row.
func regLoopQuant(p func(string, ...any), k regKernel) {
	p("    let kq = params.k / 4u;\n")
	p("    let nb = params.k / 32u;\n")
	regOffsets(p, "w", "c0", "lc", "params.kw", 8)
	regOffsets(p, "x", "r0", "lr", "kq", k.RM)
	regAccumulators(p, k)
	p("    for (var b = 0u; b < nb; b = b + 1u) {\n")
	for c := 0; c < 8; c++ {
		p("        let s%d = q_sc(w%d, b);\n", c, c)
	}
	p("        for (var g = 0u; g < 4u; g = g + 1u) {\n")
	for c := 0; c < 8; c++ {
		p("            let d%d = q_deq(w%d, b, g, s%d);\n", c, c, c)
	}
	p("            let l0 = mat4x4<f32>(d0[0], d1[0], d2[0], d3[0]);\n")
	p("            let h0 = mat4x4<f32>(d0[1], d1[1], d2[1], d3[1]);\n")
	p("            let l1 = mat4x4<f32>(d4[0], d5[0], d6[0], d7[0]);\n")
	p("            let h1 = mat4x4<f32>(d4[1], d5[1], d6[1], d7[1]);\n")
	p("            let kl = 8u * b + q_klo(g) / 4u;\n")
	p("            let kh = 8u * b + q_khi(g) / 4u;\n")
	for r := 0; r < k.RM; r++ {
		p("            let u%d = x[x%d + kl]; let v%d = x[x%d + kh];\n", r, r, r, r)
		p("            a%d_0 = a%d_0 + u%d * l0 + v%d * h0; a%d_1 = a%d_1 + u%d * l1 + v%d * h1;\n", r, r, r, r, r, r, r, r)
	}
	p("        }\n    }\n")
}

// lowRankMatMulEpilogue writes the low-rank update of the accumulators: one
// pass per distinct cluster of the block's rows, streaming B_c's rows of
// the invocation's 16 columns and adding u[row, j] * B_c into the rows of
// that cluster.
func lowRankMatMulEpilogue(p func(string, ...any), k regKernel) {
	p("    // Low-rank update, one pass per distinct cluster of the block's rows.\n")
	p("    var cl: array<u32, %d>;\n", k.RM)
	p("    var todo = 0u; // bit i: row r0+i still waits for its update\n")
	p("    for (var i = 0u; i < BM; i = i + 1u) {\n")
	p("        cl[i] = cluster_of(r0 + i);\n")
	p("        if (cl[i] != NONE) {\n            todo = todo | (1u << i);\n        }\n    }\n")
	p("    let rr = params.r;\n")
	regOffsets(p, "o", "c0", "lc", "rr", 16)
	p("    loop {\n")
	p("        if (todo == 0u) {\n            break;\n        }\n")
	p("        let c = cl[firstTrailingBit(todo)];\n")
	p("        var sel = 0u; // rows of cluster c\n")
	p("        for (var i = 0u; i < BM; i = i + 1u) {\n")
	p("            if (cl[i] == c) {\n                sel = sel | (1u << i);\n            }\n        }\n")
	p("        todo = todo & ~sel;\n")
	p("        let bb = params.b_off + c * params.b_stride;\n")
	p("        for (var j = 0u; j < rr; j = j + 1u) {\n")
	regColumns(p, "            ", "b", "vec4<f32>", func(c int) string { return fmt.Sprintf("b[bb + o%d + j]", c) })
	for r := 0; r < k.RM; r++ {
		p("            if ((sel & %du) != 0u) {\n", 1<<r)
		p("                let v = vec4<f32>(u[(r0 + %du) * rr + j]);\n", r)
		p("                %s\n", rowUpdate(func(q int) string { return fmt.Sprintf("a%d_%d = fma(v, b%d, a%d_%d);", r, q, q, r, q) }))
		p("            }\n")
	}
	p("        }\n    }\n")
}
