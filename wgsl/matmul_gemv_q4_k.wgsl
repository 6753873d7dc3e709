// matmul_gemv_q4_k: dst(M,N) = x(M,K) · w(N,K)ᵀ + bias(N) for small M
// (decode on CPU adapters, M <= 2 by default), w in Q4_K blocks dequantized in
// registers (wgsl/quant_q4_k.wgsli; layout in gpu/quant_layout.go). Each
// invocation owns 4 output columns and streams their rows of w once per
// pass over up to 4 rows of x.
// Bindings: x(M,K) f32 read as vec4, w(n_count, kw) u32 (the chunk of w's
// packed rows starting at n_base), bias(N) f32 (any tensor when has_bias =
// 0) read; dst(M,N) f32 write. Meta: M, K (a multiple of 32), N, n_base,
// n_count, has_bias, tiles_n, kw (row stride in words), tile_base.
// Dispatch: tiles_n * ceil(M/8) workgroups over (x, y), tiles_n =
// ceil(n_count / 256); tile t = tile_base + wid.y * nwg.x + wid.x covers
// columns (t % tiles_n)*256.. and rows (t / tiles_n)*8 .. +8.
// Portability: no workgroup memory, no barriers.
//#include matmul_q_decl
//#include quant_q4_k
//#include matmul_gemv_q
}
