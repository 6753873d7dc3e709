package gen

import (
	"fmt"
	"strings"

	"github.com/chameleon-llm/chameleon/wgsl"
)

// fmaChain is acc + sum of the products of the vec4 pairs, one fma per
// element in k order: every kernel, whatever its block, then rounds each
// output identically, so a row's result does not depend on how many rows
// share the call (a batch equals its requests served alone, bit for bit).
func fmaChain(acc string, pairs ...[2]string) string {
	out := acc
	for _, pr := range pairs {
		for _, c := range []string{"x", "y", "z", "w"} {
			out = fmt.Sprintf("fma(%s.%s, %s.%s, %s)", pr[0], c, pr[1], c, out)
		}
	}
	return out
}

// texMatMul returns the WGSL source of kernel k.
func texMatMul(k wgsl.TexKernel) string {
	if wgsl.TexBlock%k.RN != 0 {
		panic(fmt.Sprintf("wgsl: %s: %d columns per invocation do not divide the weights' %d-row blocks", k.Name, k.RN, wgsl.TexBlock))
	}
	var s strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&s, format, a...) }
	texHeader(p, k)
	texMain(p, k)
	return s.String()
}

// texHeader writes the header comment, constants, bindings and helper
// functions of kernel k.
func texHeader(p func(string, ...any), k wgsl.TexKernel) {
	texDoc(p, k)
	p("const TX: u32 = %du; // invocations per workgroup, along N\n", k.WG)
	p("const BM: u32 = %du; // rows per workgroup\n", k.RM)
	p("const BN: u32 = %du; // columns per workgroup (TX * %d)\n\n", k.WG*k.RN, k.RN)
	meta := "m: u32, n: u32, kt: u32, x_rows_per: u32, w_width: u32, has_bias: u32, tiles_n: u32, tile_base: u32"
	switch k.Epi {
	case "gelu":
		p("const SQRT_2_OVER_PI: f32 = 0.7978845608028654;\n\n")
		p("struct Meta { %s, out_rows_per: u32 }\n\n", meta)
	case "kv":
		p("struct Meta { %s, c: u32, tq: u32, tmax: u32, kv_w: u32 }\n\n", meta)
	case "lr":
		p("const RM: u32 = BM; // rows of the block's low-rank passes\n")
		p("const NONE: u32 = 0xffffffffu; // cluster of a row that gets no update\n\n")
		p("struct Meta { %s, r: u32, k: u32, b_off: u32, b_stride: u32, has_cluster: u32 }\n\n", meta)
	default:
		p("struct Meta { %s }\n\n", meta)
	}
	p("@group(0) @binding(0) var<storage, read> bias: array<f32>;\n")
	if k.Epi == "kv" {
		p("@group(0) @binding(1) var<storage, read> start: array<i32>;\n")
		p("@group(0) @binding(2) var<storage, read> qlen: array<i32>;\n")
		p("@group(0) @binding(3) var<storage, read_write> dst: array<f32>;\n")
		p("@group(0) @binding(4) var<storage, read_write> kcache: array<f32>;\n")
		p("@group(0) @binding(5) var<storage, read_write> vcache: array<f32>;\n")
	} else if k.Epi == "lr" {
		p("@group(0) @binding(1) var<storage, read> u: array<f32>;\n")
		p("@group(0) @binding(2) var<storage, read> cluster: array<i32>;\n")
		p("@group(0) @binding(3) var<storage, read> lrb: array<f32>;\n")
		p("@group(0) @binding(4) var<storage, read_write> dst: array<f32>;\n")
	} else {
		p("@group(0) @binding(1) var<storage, read_write> dst: array<f32>;\n")
	}
	p("@group(1) @binding(0) var<uniform> params: Meta;\n")
	p("@group(2) @binding(0) var xt: texture_storage_2d<rgba32uint, read>;\n")
	p("@group(2) @binding(1) var wt: texture_storage_2d<rgba32uint, read>;\n")
	switch k.Epi {
	case "gelu":
		p("@group(2) @binding(2) var xo: texture_storage_2d<rgba32uint, write>;\n")
	case "kv":
		p("@group(2) @binding(2) var ktex: texture_storage_2d<rgba32uint, write>;\n")
		p("@group(2) @binding(3) var vtex: texture_storage_2d<rgba32uint, write>;\n")
	}
	p("\n// at is the first texel of row r in a texture holding rows_per rows per\n")
	p("// texture row of kt texels each.\n")
	p("fn at(r: u32, rows_per: u32, kt: u32) -> vec2<u32> {\n")
	p("    return vec2<u32>((r %% rows_per) * kt, r / rows_per);\n}\n\n")
	switch k.Epi {
	case "gelu":
		texPutGELU(p, k)
		return
	case "kv":
		texPutKV(p, k)
		return
	case "lr":
		texPutLR(p, k)
		return
	}
	p("// put stores row r of the block (the columns c0.. that exist) plus the bias.\n")
	p("fn put(r: u32, c0: u32, v: array<f32, %d>, b: array<f32, %d>) {\n", k.RN, k.RN)
	p("    if (r >= params.m) {\n        return;\n    }\n")
	p("    var vv = v; // a local copy: naga indexes arrays dynamically only through a variable\n")
	p("    var bb = b;\n")
	p("    for (var j = 0u; j < %du; j = j + 1u) {\n", k.RN)
	p("        if (c0 + j < params.n) {\n")
	p("            dst[r * params.n + c0 + j] = vv[j] + bb[j];\n")
	p("        }\n")
	p("    }\n}\n\n")
}

// texMain writes the entry point of kernel k: the block's loads, its main
// loop over k (texPass) and the stores.
func texMain(p func(string, ...any), k wgsl.TexKernel) {
	kstep := "4"
	if k.F16 {
		kstep = "8"
	}
	tileStart(p, k.RN)
	p("    if (r0 >= params.m || c0 >= params.n) {\n        return;\n    }\n")
	p("    let lr = params.m - 1u;\n    let lc = params.n - 1u;\n")
	xkt := "params.kt"
	if k.F16 {
		xkt = "2u * params.kt"
	}
	p("    let xkt = %s;\n", xkt)
	for r := 0; r < k.RM; r++ {
		p("    let xp%d = at(min(r0 + %du, lr), params.x_rows_per, xkt);\n", r, r)
	}
	p("    // This invocation's columns c0.. are texels wx.. of row wy at each k\n")
	p("    // (c0 %% %d == 0 and %d divides %d: they never cross a block).\n", k.RN, k.RN, wgsl.TexBlock)
	p("    let wl = (c0 / %du) * %du * params.kt + c0 %% %du;\n", wgsl.TexBlock, wgsl.TexBlock, wgsl.TexBlock)
	for r := 0; r < k.RM; r++ {
		p("   ")
		for j := 0; j < k.RN; j++ {
			p(" var a%d_%d = 0.0;", r, j)
		}
		p("\n")
	}
	if k.KU > 1 {
		p("    // %d w texels per column and %d x %s k per pass while %d texels remain,\n", k.KU, k.KU, kstep, k.KU)
		p("    // then one at a time: each output still takes its products in k order\n")
		p("    var k = 0u;\n")
		p("    for (; k + %du <= params.kt; k = k + %du) {\n", k.KU, k.KU)
		texPass(p, k, k.KU)
		p("    }\n")
		p("    for (; k < params.kt; k = k + 1u) {\n")
	} else {
		p("    // one w texel per column and %s k per pass\n", kstep)
		p("    for (var k = 0u; k < params.kt; k = k + 1u) {\n")
	}
	texPass(p, k, 1)
	p("    }\n")
	p("    var b = array<f32, %d>();\n", k.RN)
	p("    if (params.has_bias != 0u) {\n")
	p("        for (var j = 0u; j < %du; j = j + 1u) {\n", k.RN)
	p("            b[j] = bias[min(c0 + j, lc)];\n")
	p("        }\n    }\n")
	if k.Epi == "lr" {
		texLowRank(p, k)
	}
	for r := 0; r < k.RM; r++ {
		p("    put(r0 + %du, c0, array<f32, %d>(", r, k.RN)
		for j := 0; j < k.RN; j++ {
			if j > 0 {
				p(", ")
			}
			p("a%d_%d", r, j)
		}
		if k.Epi == "lr" {
			p("), b, cl[%d] != NONE, array<f32, %d>(", r, k.RN)
			for j := 0; j < k.RN; j++ {
				if j > 0 {
					p(", ")
				}
				p("l%d_%d.%c", r, j/4, "xyzw"[j%4])
			}
			p("));\n")
			continue
		}
		p("), b);\n")
	}
	p("}\n")
}

// texPass writes the body of one pass over ku texels of k (k, k+1, ...):
// the w texels of every column, then per row its x texels and the fma
// chains of its outputs, texel by texel.
func texPass(p func(string, ...any), k wgsl.TexKernel, ku int) {
	for u := 0; u < ku; u++ {
		p("        let wk%d = wl + (k + %du) * %du;\n", u, u, wgsl.TexBlock)
		p("        let wx%d = wk%d %% params.w_width;\n", u, u)
		p("        let wy%d = wk%d / params.w_width;\n", u, u)
		for j := 0; j < k.RN; j++ {
			if k.F16 {
				p("        let h%d_%d = textureLoad(wt, vec2<u32>(wx%d + %du, wy%d));\n", j, u, u, j, u)
				p("        let w%da%d = vec4<f32>(unpack2x16float(h%d_%d.x), unpack2x16float(h%d_%d.y));\n", j, u, j, u, j, u)
				p("        let w%db%d = vec4<f32>(unpack2x16float(h%d_%d.z), unpack2x16float(h%d_%d.w));\n", j, u, j, u, j, u)
			} else {
				p("        let w%d_%d = bitcast<vec4<f32>>(textureLoad(wt, vec2<u32>(wx%d + %du, wy%d)));\n", j, u, u, j, u)
			}
		}
	}
	for r := 0; r < k.RM; r++ {
		for u := 0; u < ku; u++ {
			if k.F16 {
				p("        let xa%d_%d = bitcast<vec4<f32>>(textureLoad(xt, vec2<u32>(xp%d.x + 2u * (k + %du), xp%d.y)));\n", r, u, r, u, r)
				p("        let xb%d_%d = bitcast<vec4<f32>>(textureLoad(xt, vec2<u32>(xp%d.x + 2u * (k + %du) + 1u, xp%d.y)));\n", r, u, r, u, r)
			} else {
				p("        let x%d_%d = bitcast<vec4<f32>>(textureLoad(xt, vec2<u32>(xp%d.x + k + %du, xp%d.y)));\n", r, u, r, u, r)
			}
		}
		for j := 0; j < k.RN; j++ {
			var pairs [][2]string
			for u := 0; u < ku; u++ {
				if k.F16 {
					pairs = append(pairs, [2]string{fmt.Sprintf("xa%d_%d", r, u), fmt.Sprintf("w%da%d", j, u)},
						[2]string{fmt.Sprintf("xb%d_%d", r, u), fmt.Sprintf("w%db%d", j, u)})
				} else {
					pairs = append(pairs, [2]string{fmt.Sprintf("x%d_%d", r, u), fmt.Sprintf("w%d_%d", j, u)})
				}
			}
			p("        a%d_%d = %s;\n", r, j, fmaChain(fmt.Sprintf("a%d_%d", r, j), pairs...))
		}
	}
}

// texPutGELU writes put for the GELU kernels: bias, then gelu.wgsl's
// expression, stored into dst and, four columns a texel, into xo. The
// block is written out with constant indices (a private array indexed
// in a loop costs lavapipe ~0.5 ms a call at 8 rows, more than the
// dispatch it saves).
func texPutGELU(p func(string, ...any), k wgsl.TexKernel) {
	p("// gelu is gelu.wgsl's, expression for expression.\n")
	p("fn gelu(v: f32) -> f32 {\n")
	p("    let u = clamp(SQRT_2_OVER_PI * (v + 0.044715 * v * v * v), -15.0, 15.0);\n")
	p("    return 0.5 * v * (1.0 + tanh(u));\n}\n\n")
	p("// put stores gelu of row r of the block plus the bias (the columns c0..\n")
	p("// that exist) into dst and into xo.\n")
	p("fn put(r: u32, c0: u32, v: array<f32, %d>, b: array<f32, %d>) {\n", k.RN, k.RN)
	p("    if (r >= params.m) {\n        return;\n    }\n")
	p("    let o = at(r, params.out_rows_per, params.n / 4u);\n")
	p("    let row = r * params.n + c0;\n")
	for q := 0; q < k.RN/4; q++ {
		p("    if (c0 + %du < params.n) {\n", 4*q)
		p("        let t = vec4<f32>(gelu(v[%d] + b[%d]), gelu(v[%d] + b[%d]), gelu(v[%d] + b[%d]), gelu(v[%d] + b[%d]));\n",
			4*q, 4*q, 4*q+1, 4*q+1, 4*q+2, 4*q+2, 4*q+3, 4*q+3)
		p("        dst[row + %du] = t.x; dst[row + %du] = t.y; dst[row + %du] = t.z; dst[row + %du] = t.w;\n", 4*q, 4*q+1, 4*q+2, 4*q+3)
		p("        textureStore(xo, vec2<u32>(o.x + c0 / 4u + %du, o.y), bitcast<vec4<u32>>(t));\n", q)
		p("    }\n")
	}
	p("}\n\n")
}

// texPutKV writes put for the KV kernels: dst as the plain kernel stores
// it, then a key or value block into its cache row and texture copy,
// written out with constant indices (see texPutGELU).
func texPutKV(p func(string, ...any), k wgsl.TexKernel) {
	p("// put stores row r of the block (the columns c0.. that exist) plus the\n")
	p("// bias into dst and, for key and value columns of a row that is stored,\n")
	p("// into the cache and its texture copy.\n")
	p("fn put(r: u32, c0: u32, v: array<f32, %d>, b: array<f32, %d>) {\n", k.RN, k.RN)
	p("    if (r >= params.m) {\n        return;\n    }\n")
	p("    let row = r * params.n + c0;\n")
	for q := 0; q < k.RN/4; q++ {
		p("    let y%d = vec4<f32>(v[%d] + b[%d], v[%d] + b[%d], v[%d] + b[%d], v[%d] + b[%d]);\n",
			q, 4*q, 4*q, 4*q+1, 4*q+1, 4*q+2, 4*q+2, 4*q+3, 4*q+3)
		p("    if (c0 + %du < params.n) {\n", 4*q)
		p("        dst[row + %du] = y%d.x; dst[row + %du] = y%d.y; dst[row + %du] = y%d.z; dst[row + %du] = y%d.w;\n",
			4*q, q, 4*q+1, q, 4*q+2, q, 4*q+3, q)
		p("    }\n")
	}
	p("    let c = params.c;\n")
	p("    let seq = r / params.tq;\n")
	p("    let i = r %% params.tq;\n")
	p("    if (c0 < c || i32(i) >= qlen[seq]) {\n        return; // query columns, or a padding row\n    }\n")
	p("    let pos = start[seq] + i32(i);\n")
	p("    if (pos < 0 || pos >= i32(params.tmax)) {\n        return;\n    }\n")
	p("    let isv = c0 >= 2u * c;\n")
	p("    let cell = (seq * params.tmax + u32(pos)) * c + c0 - select(c, 2u * c, isv);\n")
	p("    if (isv) {\n")
	for q := 0; q < k.RN/4; q++ {
		p("        vcache[cell + %du] = y%d.x; vcache[cell + %du] = y%d.y; vcache[cell + %du] = y%d.z; vcache[cell + %du] = y%d.w;\n",
			4*q, q, 4*q+1, q, 4*q+2, q, 4*q+3, q)
		p("        textureStore(vtex, vec2<u32>((cell / 4u + %du) %% params.kv_w, (cell / 4u + %du) / params.kv_w), bitcast<vec4<u32>>(y%d));\n", q, q, q)
	}
	p("    } else {\n")
	for q := 0; q < k.RN/4; q++ {
		p("        kcache[cell + %du] = y%d.x; kcache[cell + %du] = y%d.y; kcache[cell + %du] = y%d.z; kcache[cell + %du] = y%d.w;\n",
			4*q, q, 4*q+1, q, 4*q+2, q, 4*q+3, q)
		p("        textureStore(ktex, vec2<u32>((cell / 4u + %du) %% params.kv_w, (cell / 4u + %du) / params.kv_w), bitcast<vec4<u32>>(y%d));\n", q, q, q)
	}
	p("    }\n}\n\n")
}

// texDoc writes the header comment of kernel k.
func texDoc(p func(string, ...any), k wgsl.TexKernel) {
	wdesc := "f32, 4 per texel"
	if k.F16 {
		wdesc = "f16, 8 per texel (4 u32 words of 2 halves)"
	}
	switch k.Epi {
	case "lr":
		texDocLR(p, k, strings.TrimSuffix(k.Name, "_lr"))
	case "kv":
		p("// %s: qkv(M,N) = x(M,K) · w(N,K)ᵀ + bias(N) from textures, the\n", k.Name)
		p("// CPU-adapter MatMulKVStore, generated by wgsl/internal/gen/tex.go: edit\n")
		p("// the generator, not this file. It is %s, and each\n", strings.TrimSuffix(k.Name, "_kv"))
		p("// output row r = b * Tq + i with i < qlen[b] also goes, as kvstore_tex.wgsl\n")
		p("// stores it, into the KV cache at position p = start[b] + i (skipped\n")
		p("// outside [0, Tmax)): columns C..2C into kcache[b,p,:], 2C..3C into\n")
		p("// vcache[b,p,:], and texel L = ((b * Tmax + p) * C + 4t) / 4 of their\n")
		p("// copies ktex, vtex at (L %% kv_w, L / kv_w). N = 3C with C a multiple of\n")
		p("// %d, so an invocation's columns are all query, key or value columns.\n", k.RN)
	case "gelu":
		p("// %s: dst(M,N) = gelu(x(M,K) · w(N,K)ᵀ + bias(N)) from textures, the\n", k.Name)
		p("// CPU-adapter MatMulGELU, generated by wgsl/internal/gen/tex.go: edit the\n")
		p("// generator, not this file. It is %s with GPT-2's tanh\n", strings.TrimSuffix(k.Name, "_gelu"))
		p("// GELU (gelu.wgsl's expression) applied to each output, which it also\n")
		p("// stores into the texture xo in the x layout below (rows_per =\n")
		p("// out_rows_per, N/4 texels a row; N a multiple of 4), where the next\n")
		p("// matmul reads it without a copy (gpu/xtex.go).\n")
	default:
		p("// %s: dst(M,N) = x(M,K) · w(N,K)ᵀ + bias(N) from textures, the CPU-adapter\n", k.Name)
		p("// matmul, generated by wgsl/internal/gen/tex.go: edit the generator, not this file.\n")
	}
	p("// On lavapipe a storage-buffer load costs a bounds-checked scalar load per\n")
	p("// SIMD lane, while an image load is a vector gather of 16 bytes per lane,\n")
	p("// so x and w are read from rgba32uint storage textures (read-only: a\n")
	p("// sampled texture's textureLoad carries per-lane mip-level work there)\n")
	p("// that gpu fills from their buffers (tex_pack.wgsl, or a queue copy for x\n")
	p("// of more than 8 rows with K a multiple of 64; w once per weight version,\n")
	p("// x per call).\n")
	p("// Texture layouts: x row r with kt texels per row sits at texel\n")
	p("// ((r %% rows_per) * kt + t, r / rows_per), rows_per = the rows that fit one\n")
	p("// texture row. w is blocked: rows in blocks of 32, texel t of row r at\n")
	p("// linear index L = (r / 32) * 32 * kt + t * 32 + r %% 32, i.e. (L %% w_width,\n")
	p("// L / w_width) with w_width a multiple of 32, so an invocation's columns\n")
	p("// are neighbouring texels at each k (one memory stream per invocation,\n")
	p("// 1.05-1.3x faster on lavapipe than rows laid end to end). Texels past K\n")
	p("// hold zeros. Weights: %s;\n", wdesc)
	p("// x: f32, 4 per texel (two x texels per w texel for f16 weights).\n")
	p("// Each invocation accumulates a %d x %d block of outputs (rows x columns);\n", k.RM, k.RN)
	p("// %d invocations per workgroup side by side along N.\n", k.WG)
	p("// Bindings: group 0 bias(N) f32 (any tensor when has_bias = 0) read, dst\n")
	switch k.Epi {
	case "lr":
		p("// (M,N) f32 write (group 0 order: bias, u, cluster, lrb, dst; u and lrb\n")
		p("// f32, cluster(M) i32, any tensor when has_cluster = 0: every row in\n")
		p("// cluster 0); group 2 x texture, w texture.\n")
		p("// Meta: M, N, kt (w texels per row), x_rows_per, w_width, has_bias,\n")
		p("// tiles_n, tile_base, R, K, b_off, b_stride, has_cluster. Dispatch:\n")
		p("// workgroups over (x, y); tile t =\n")
	case "kv":
		p("// (M,N) f32 write; then start(B) i32, qlen(B) i32 read, kcache, vcache\n")
		p("// (B,Tmax,C) write (group 0 order: bias, start, qlen, dst, kcache, vcache);\n")
		p("// group 2 x texture, w texture, ktex, vtex (written).\n")
		p("// Meta: M, N, kt (w texels per row), x_rows_per, w_width, has_bias,\n")
		p("// tiles_n, tile_base, C, Tq, Tmax, kv_w. Dispatch: workgroups over (x, y); tile t =\n")
	case "gelu":
		p("// (M,N) f32 write; group 2 x texture, w texture, xo texture (written).\n")
		p("// Meta: M, N, kt (w texels per row), x_rows_per, w_width, has_bias,\n")
		p("// tiles_n, tile_base, out_rows_per. Dispatch: workgroups over (x, y); tile t =\n")
	default:
		p("// (M,N) f32 write; group 2 x texture, w texture.\n")
		p("// Meta: M, N, kt (w texels per row), x_rows_per, w_width, has_bias,\n")
		p("// tiles_n, tile_base. Dispatch: workgroups over (x, y); tile t =\n")
	}
	p("// tile_base + wid.y * nwg.x + wid.x covers rows (t / tiles_n)*BM.. and\n")
	p("// columns (t %% tiles_n)*BN..; rows and columns past the ends are clamped\n")
	p("// for loading and skipped when storing.\n")
}
