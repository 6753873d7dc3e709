package gen

import "strings"

// The header comments of the register-blocked kernels (reg.go).

// regDoc writes the header of an f32 or f16 matmul_reg kernel.
func regDoc(p func(string, ...any), k regKernel) {
	p("// %s: dst(M,N) = x(M,K) · w(N,K)ᵀ + bias(N), the CPU-adapter\n", k.Name)
	p("// variant: no workgroup memory, no barriers. Each invocation accumulates a\n")
	p("// %d x 16 block of outputs in registers (%d rows of x, 16 rows of w), so\n", k.RM, k.RM)
	p("// every element it loads feeds 16 or %d FMAs. On lavapipe the %d\n", k.RM, regTX)
	p("// invocations of a workgroup are the SIMD lanes of one thread and every\n")
	p("// storage load costs one scalar load per lane, so loads, not FMAs, bound\n")
	p("// the speed: the block is as large as the compiler handles well.\n")
	p("// The body is written out unrolled (accumulators a<row>_<column/4>, vec4\n")
	p("// over 4 columns) because the driver's compiler does not unroll loops.\n")
	if k.W == "f16" {
		p("// Weights are f16, packed two halves per u32 with rows padded to an even\n")
		p("// length (kw = ceil(K/2) words), read with unpack2x16float (core WGSL, no\n")
		p("// shader-f16 needed): one load brings two weights.\n")
		p("// Bindings: x(M,K) f32, w(n_count,kw) u32 (the chunk of w's rows starting\n")
		p("// at n_base), bias(N) f32 (any tensor when has_bias = 0) read; dst(M,N) f32\n")
		p("// write. Meta: M, K, N, n_base, n_count, has_bias, tiles_n, kw, tile_base.\n")
	} else {
		p("// Bindings: x(M,K) f32, w(n_count,K) f32 (the chunk of w's rows starting\n")
		p("// at n_base), bias(N) f32 (any tensor when has_bias = 0) read; dst(M,N) f32\n")
		p("// write. Meta: M, K, N, n_base, n_count, has_bias, tiles_n, kw (unused),\n")
		p("// tile_base.\n")
	}
	p("// Dispatch: workgroups over (x, y); tile t = tile_base + wid.y * nwg.x +\n")
	p("// wid.x covers rows (t / tiles_n)*BM.. and columns (t %% tiles_n)*BN..,\n")
	p("// tiles_n = ceil(n_count / BN). Rows and columns past the ends are clamped\n")
	p("// for loading and skipped when storing, so any M, K, N work.\n")
}

// regQuantDoc writes the header of a quantized matmul_reg kernel.
func regQuantDoc(p func(string, ...any), k regKernel) {
	up := strings.ToUpper(k.W[:1]) + k.W[1:2] + "_" + strings.ToUpper(k.W[3:])
	p("// %s: dst(M,N) = x(M,K) · w(N,K)ᵀ + bias(N), the CPU-adapter\n", k.Name)
	p("// variant (no workgroup memory, no barriers). Each invocation accumulates\n")
	p("// a %d x %d block of outputs (%d rows of x, %d rows of w), written out\n", k.RM, k.rn(), k.RM, k.rn())
	p("// unrolled (accumulators a<row>_<column/4>) because lavapipe's compiler\n")
	p("// does not unroll loops; per group of 8 k it dequantizes %d columns'\n", k.rn())
	p("// weights once and feeds each to %d rows. w is in %s blocks dequantized\n", k.RM, up)
	p("// in registers (wgsl/quant_%s.wgsli; layout in gpu/quant_layout.go).\n", k.W)
	p("// Bindings: x(M,K) f32 read as vec4, w(n_count, kw) u32 (the chunk of w's\n")
	p("// packed rows starting at n_base), bias(N) f32 (any tensor when has_bias =\n")
	p("// 0) read; dst(M,N) f32 write. Meta: M, K (a multiple of 32), N, n_base,\n")
	p("// n_count, has_bias, tiles_n, kw (row stride in words), tile_base.\n")
	p("// Dispatch: workgroups over (x, y); tile t = tile_base + wid.y * nwg.x +\n")
	p("// wid.x covers rows (t / tiles_n)*%d.. and columns (t %% tiles_n)*%d..,\n", k.RM, regTX*k.rn())
	p("// tiles_n = ceil(n_count / %d). Rows and columns past the ends are clamped\n", regTX*k.rn())
	p("// for loading and skipped when storing, so any M and N work.\n")
}

// lowRankMatMulDoc writes the header of a fused low-rank logits kernel.
func lowRankMatMulDoc(p func(string, ...any), k regKernel) {
	f16 := k.W == "f16"
	p("// %s: the output projection with the per-cluster low-rank\n", k.Name)
	p("// update fused in, for a batch whose rows belong to different clusters (the\n")
	p("// SGMV idea of Punica/S-LoRA, for generated adapters):\n")
	p("//   dst[m, v] = sum_k x[m, k] w[v, k] + bias[v] + sum_j u[m, j] B_c[v, j],\n")
	p("// c = cluster[m], u = alpha * A_c x (lowrank_u, run before). Weights are\n")
	p("// %s; the base part is matmul_reg_%s's register block (%d rows x 16\n", map[bool]string{false: "f32", true: "packed f16"}[f16], k.W, k.RM)
	p("// columns per invocation, no workgroup memory, no barriers: the CPU-adapter\n")
	p("// design). The update is an epilogue on the accumulators before they are\n")
	p("// stored: for each distinct cluster among the block's %d rows (a uniform\n", k.RM)
	p("// loop: all lanes of a workgroup share the rows), stream B_c[cols, j] for the\n")
	p("// invocation's 16 columns and add u[row, j] * B_c into the rows of that\n")
	p("// cluster. A block whose rows share one cluster pays R*(16 + %d) loads for\n", k.RM)
	wLoads := 16 // per k, one per column; packed f16: one per column and pair of k
	if f16 {
		wLoads = 8
	}
	p("// the update against the main loop's %d*K; every further distinct cluster\n", k.RM+wLoads)
	p("// adds 16*R. Rows whose cluster is outside [0, n_clusters) get no update.\n")
	p("// Factor layout: B_k[v, j] = b[b_off + k * b_stride + v * R + j].\n")
	if f16 {
		p("// Bindings: x(M,K) f32, w(N,kw) u32 (f16 pairs, kw = ceil(K/2)),\n")
	} else {
		p("// Bindings: x(M,K) f32, w(N,K) f32,\n")
	}
	p("// bias(N) f32 (any tensor when has_bias = 0), u(M,R) f32, cluster(M) i32\n")
	p("// (any tensor when has_cluster = 0: every row uses cluster 0), b f32 read;\n")
	p("// dst(M,N) f32 write.\n")
	p("// Meta: M, K, N, has_bias, tiles_n, kw, tile_base, R, n_clusters, b_off,\n")
	p("// b_stride, has_cluster.\n")
	p("// Dispatch: workgroups over (x, y); tile t = tile_base + wid.y * nwg.x +\n")
	p("// wid.x covers rows (t / tiles_n)*BM.. and columns (t %% tiles_n)*BN..,\n")
	p("// tiles_n = ceil(N / BN). Rows and columns past the ends are clamped for\n")
	p("// loading and skipped when storing, so any M, K, N, R work.\n")
	p("// Portability: the rank loop runs at most R times per distinct cluster of a\n")
	p("// block (BM * R <= %d * 1024 with adapt's rank limit), under lavapipe's 65,535.\n", k.RM)
}
