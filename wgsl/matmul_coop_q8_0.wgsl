// matmul_coop_q8_0: dst(M,N) = x(M,K) · w(N,K)ᵀ + bias(N) for small M
// (decode) on GPUs, w in Q8_0 blocks dequantized in registers
// (wgsl/quant_q8_0.wgsli; layout in gpu/quant_layout.go). A workgroup owns
// RN = 4 output columns and up to MB = 8 rows of x; its WG invocations
// split the rows' groups of 8 weights between them and sum their partial
// dot products in workgroup memory (as matmul_coop_f16).
// Bindings: x(M,K) f32 read as vec4, w(n_count, kw) u32 (the chunk of w's
// packed rows starting at n_base), bias(N) f32 (any tensor when has_bias =
// 0) read; dst(M,N) f32 write. Meta: M, K (a multiple of 32), N, n_base,
// n_count, has_bias, tiles_n, kw (row stride in words), tile_base.
// Dispatch: tiles_n * ceil(M/MB) workgroups over (x, y), tiles_n =
// ceil(n_count / RN); tile t = tile_base + wid.y * nwg.x + wid.x covers
// columns (t % tiles_n)*RN .. +RN and rows (t / tiles_n)*MB .. +MB.
// Portability: 8 KiB of workgroup memory, log2(WG) + 1 barriers, each
// reached in workgroup-uniform control flow.
//#include matmul_coop_decl W_ELEM=u32 DST_BINDING=3
//#include quant_q8_0
//#include matmul_coop_start Q_WORDS=params.kw
//#include matmul_coop_q_body
//#include matmul_coop_reduce EPILOGUE=o
}
