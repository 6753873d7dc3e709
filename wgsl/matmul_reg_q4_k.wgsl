// matmul_reg_q4_k: dst(M,N) = x(M,K) · w(N,K)ᵀ + bias(N), the CPU-adapter
// variant (no workgroup memory, no barriers; 8 x 8 outputs per invocation,
// see matmul_reg_q.wgsli), w in Q4_K blocks dequantized in registers
// (wgsl/quant_q4_k.wgsli; layout in gpu/quant_layout.go).
// Bindings: x(M,K) f32 read as vec4, w(n_count, kw) u32 (the chunk of w's
// packed rows starting at n_base), bias(N) f32 (any tensor when has_bias =
// 0) read; dst(M,N) f32 write. Meta: M, K (a multiple of 32), N, n_base,
// n_count, has_bias, tiles_n, kw (row stride in words), tile_base.
// Dispatch: workgroups over (x, y); tile t = tile_base + wid.y * nwg.x +
// wid.x covers rows (t / tiles_n)*8.. and columns (t % tiles_n)*64..,
// tiles_n = ceil(n_count / 64). Rows and columns past the ends are clamped
// for loading and skipped when storing, so any M and N work.
//#include matmul_q_decl
//#include quant_q4_k
//#include matmul_reg_q
}
