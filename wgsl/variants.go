package wgsl

//go:generate go run ./internal/wgslgen

// Generated kernels. `go generate ./wgsl` runs wgsl/internal/wgslgen, the
// one generator of kernel variants, which writes (each file marked "Code
// generated ... DO NOT EDIT"):
//   - NAME_f32.wgsl and NAME_f16.wgsl from each NAME.wgsl.tmpl, a Go
//     text/template whose .F16 selects the weight type (the f16/f32 twins
//     share one source);
//   - NAME_q8_0.wgsl, NAME_q4_0.wgsl and NAME_q4_k.wgsl from each
//     NAME_q.wgsl.tmpl (.DT and .QDT name the format);
//   - the fused variants of templates listed in gen.Fusions, among them the
//     decoder sites' low-rank twins matmul_tile_*_lr, matmul_coop_*_lr
//     and matmul_gemv_*_lr (every weight type; their epilogue is the
//     matmul_lr.wgsli fragment);
//   - the texture matmul kernels of TexKernels below: register blocks of up
//     to 32 x 16 outputs per invocation written out in full;
//   - the register-blocked CPU-adapter matmuls matmul_reg_* (f32, f16 and
//     the quantized formats), the fused low-rank logits kernels
//     lowrank_matmul_f32/f16 built on the same block
//     (wgsl/internal/gen/reg.go) and the decoder sites' twins with the
//     low-rank expand as the epilogue, matmul_reg_*_lr (reg_lr.go; the
//     texture kernels' "lr" twins and matmul_tile_*_lr are their
//     counterparts);
//   - the tiled low-rank kernels of LowRankKernels (lowrank.go);
//   - the quantized texture mat-vecs of QTexKernels and their low-rank
//     twins (qtex.go, wgsl/internal/gen/qtex.go and qtex_lr.go), on the
//     quant_tex_* dequant fragments;
//   - workgroup-size variants of plain kernels (sample_wg64.wgsl, the
//     layernorms' _wg8 copies).
// TestGenerated fails when a committed file differs from what the generator
// writes. The tables the gpu package dispatches by (TexKernels) live here,
// so the grid always matches the kernel; the generator code is not linked
// into any binary.

// TexBlock is the row block of the weights' texture layout (see the
// kernels' header); every kernel's RN must divide it.
const TexBlock = 32

// TexKernel describes one generated texture matmul kernel.
type TexKernel struct {
	Name   string
	F16    bool // weights packed as 8 halves per texel (else 4 f32)
	RM, RN int  // output rows and columns per invocation
	WG     int  // invocations per workgroup, along N
	KU     int  // texels of k per pass of the main loop (then one at a time)
	// Epi names the epilogue: "" stores x·wᵀ + bias; "gelu" (MatMulGELU)
	// stores gelu of it into dst and, as the next matmul's x, into a third
	// texture (N a multiple of 8); "kv" (MatMulKVStore) also stores the key
	// and value columns of qkv into the KV cache and its texture copies;
	// "lr" (MatMulLowRank) adds each row's low-rank update B_c u after the
	// bias (a decoder site's expand in its matmul's epilogue).
	Epi string
}

// TexKernels are the generated kernels: one for single-row products
// (decode at batch 1), one for up to 8 rows, one for everything larger;
// then the same blocks with the GELU epilogue, with the KV store, and
// with the low-rank update.
// Blocks and texels per pass chosen by interleaved timings on lavapipe
// (BENCHMARKS.md): two f32 texels per pass pay at 16 x 16 (the loop's
// per-output load, blend and store then serve 8 products, not 4), not at
// 32 x 16 or with f16 weights, whose texels already hold 8 k.
var TexKernels = []TexKernel{
	{"matmul_tex1_f32", false, 1, 32, 8, 1, ""},
	{"matmul_tex8_f32", false, 8, 32, 8, 1, ""},
	{"matmul_tex_f32", false, 16, 16, 8, 2, ""},
	{"matmul_tex1_f16", true, 1, 32, 8, 1, ""},
	{"matmul_tex8_f16", true, 8, 32, 8, 1, ""},
	{"matmul_tex_f16", true, 32, 16, 8, 1, ""},
	{"matmul_tex1_f32_gelu", false, 1, 32, 8, 1, "gelu"},
	{"matmul_tex8_f32_gelu", false, 8, 32, 8, 1, "gelu"},
	{"matmul_tex_f32_gelu", false, 16, 16, 8, 2, "gelu"},
	{"matmul_tex1_f16_gelu", true, 1, 32, 8, 1, "gelu"},
	{"matmul_tex8_f16_gelu", true, 8, 32, 8, 1, "gelu"},
	{"matmul_tex_f16_gelu", true, 32, 16, 8, 1, "gelu"},
	{"matmul_tex1_f32_kv", false, 1, 32, 8, 1, "kv"},
	{"matmul_tex8_f32_kv", false, 8, 32, 8, 1, "kv"},
	{"matmul_tex_f32_kv", false, 16, 16, 8, 2, "kv"},
	{"matmul_tex1_f16_kv", true, 1, 32, 8, 1, "kv"},
	{"matmul_tex8_f16_kv", true, 8, 32, 8, 1, "kv"},
	{"matmul_tex_f16_kv", true, 32, 16, 8, 1, "kv"},
	{"matmul_tex1_f32_lr", false, 1, 32, 8, 1, "lr"},
	{"matmul_tex8_f32_lr", false, 8, 32, 8, 1, "lr"},
	{"matmul_tex_f32_lr", false, 16, 16, 8, 2, "lr"},
	{"matmul_tex1_f16_lr", true, 1, 32, 8, 1, "lr"},
	{"matmul_tex8_f16_lr", true, 8, 32, 8, 1, "lr"},
	{"matmul_tex_f16_lr", true, 32, 16, 8, 1, "lr"},
}
