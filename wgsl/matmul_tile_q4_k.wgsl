// matmul_tile_q4_k: dst(M,N) = x(M,K) · w(N,K)ᵀ + bias(N), the GPU variant
// (matmul_tile_body: BM x TK and BN x TK blocks staged in workgroup memory,
// 4 x 4 outputs per invocation), w in Q4_K blocks: each weight is
// dequantized as it is staged (wgsl/quant_q4_k.wgsli; layout in
// gpu/quant_layout.go).
// Bindings: x(M,K) f32, w(n_count, kw) u32 (the chunk of w's packed rows
// starting at n_base), bias(N) f32 (any tensor when has_bias = 0) read;
// dst(M,N) f32 write. Meta: M, K (a multiple of 32), N, n_base, n_count,
// has_bias, tiles_n, kw (row stride in words), tile_base.
// Dispatch: tiles_n * ceil(M/BM) workgroups over (x, y); linear id
// t = tile_base + wid.y * nwg.x + wid.x is tile (t % tiles_n, t / tiles_n).
// Portability: 2 x 4 KiB of workgroup memory, 256 invocations; every
// barrier is reached in uniform control flow.
//#include matmul_tile_body W_ELEM=u32
//#include quant_q4_k

// w_at is w[row, k] of the bound chunk, dequantized.
fn w_at(row: u32, k: u32) -> f32 {
    return q_at(row * params.kw, k);
}
