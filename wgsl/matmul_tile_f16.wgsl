// matmul_tile_f16: dst(M,N) = x(M,K) · w(N,K)ᵀ + bias(N), the GPU variant:
// each workgroup stages a BM x TK block of x and a BN x TK block of w in
// workgroup memory per step along K and every invocation accumulates a
// 4 x 4 block of outputs from them (16 FMAs per 8 workgroup-memory reads).
// Weights are f16, packed two halves per u32 with rows padded to an even
// length, read with unpack2x16float (core WGSL, no shader-f16 needed).
// Bindings: x(M,K) f32, w(n_count,kw) u32 (the chunk of w's rows starting
// at n_base), bias(N) f32 (any tensor when has_bias = 0) read; dst(M,N) f32
// write. Meta: M, K, N, n_base, n_count, has_bias, tiles_n, kw (w's row
// stride in u32 words, ceil(K/2)), tile_base.
// Dispatch: tiles_n * ceil(M/BM) workgroups over (x, y); linear id
// t = tile_base + wid.y * nwg.x + wid.x is tile (t % tiles_n, t / tiles_n).
// Portability: 2 x 4 KiB of workgroup memory, 256 invocations; every
// barrier is reached in uniform control flow. Out-of-range rows and k are
// staged as zeros, so any M, K, N work.
//#include matmul_tile_body W_ELEM=u32

// w_at is w[row, k] of the bound chunk, unpacked from its f16 pair.
fn w_at(row: u32, k: u32) -> f32 {
    return unpack2x16float(w[row * params.kw + k / 2u])[k & 1u];
}
