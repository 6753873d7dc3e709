// matmul_coop_f32: dst(M,N) = x(M,K) · w(N,K)ᵀ + bias(N) for small M
// (decode) on GPUs, where reading w once, at full memory bandwidth, is the
// whole cost. A workgroup owns RN = 4 output columns and up to MB = 8 rows
// of x; its WG invocations split K between them, so that neighbouring
// invocations read neighbouring 16-byte words of a row of w (coalesced
// loads, unlike matmul_gemv's one-row-per-invocation walk), then sum their
// partial dot products in workgroup memory.
// Weights are f32; the host sends only K % 4 == 0 here (rows of whole
// vec4 words), other K go to matmul_gemv_f32.
// Bindings: x(M,K) f32 (read as vec4), w(n_count,K) f32 (read as vec4; the
// chunk of w's rows starting at n_base), bias(N) f32 (any
// tensor when has_bias = 0) read; dst(M,N) f32 write. Meta: M, K, N,
// n_base, n_count, has_bias, tiles_n, kw, tile_base.
// Dispatch: tiles_n * ceil(M/MB) workgroups over (x, y), tiles_n =
// ceil(n_count / RN); tile t = tile_base + wid.y * nwg.x + wid.x covers
// columns (t % tiles_n)*RN .. +RN and rows (t / tiles_n)*MB .. +MB.
// Portability: 8 KiB of workgroup memory, log2(WG) + 1 barriers, each
// reached in workgroup-uniform control flow.
//#include matmul_coop_decl W_ELEM=vec4<f32>

//#include matmul_coop_start Q_WORDS=params.k/4u
    for (var i = lid; i < q; i = i + WG) {
        let h = mat4x4<f32>(w[w0 + i], w[w1 + i], w[w2 + i], w[w3 + i]);
        for (var r = 0u; r < MB; r = r + 1u) {
            if (r < nr) {
                acc[r] = acc[r] + x[(rb + r) * q + i] * h;
            }
        }
    }
//#include matmul_coop_reduce
}
