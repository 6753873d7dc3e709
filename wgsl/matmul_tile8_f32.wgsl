// matmul_tile8_f32: dst(M,N) = x(M,K) · w(N,K)ᵀ + bias(N), the GPU variant for
// larger products: each workgroup stages a 128 x 8 block of x and of w in
// workgroup memory per step along K and every invocation accumulates an
// 8 x 8 block of outputs (two 4 x 4 quadrants in each direction, 64 FMAs per
// 4 vec4 workgroup-memory reads; matmul_tile_f32's 4 x 4 does 16 per 8).
// Each output is one fma chain in k order, as in matmul_tile_f32, so the
// two kernels agree bit for bit.
// Weights are f32.
// Bindings: x(M,K) f32, w(n_count,kw) f32 (the chunk of w's rows starting
// at n_base), bias(N) f32 (any tensor when has_bias = 0) read; dst(M,N) f32
// write. Meta: M, K, N, n_base, n_count, has_bias, tiles_n, kw, tile_base.
// Dispatch: tiles_n * ceil(M/128) workgroups over (x, y); linear id
// t = tile_base + wid.y * nwg.x + wid.x is tile (t % tiles_n, t / tiles_n).
// Portability: 2 x 4 KiB of workgroup memory, 256 invocations; every
// barrier is reached in uniform control flow. Out-of-range rows and k are
// staged as zeros, so any M, K, N work.
//#include matmul_tile8_body W_ELEM=f32

// w_at is w[row, k] of the bound chunk.
fn w_at(row: u32, k: u32) -> f32 {
    return w[row * params.k + k];
}
