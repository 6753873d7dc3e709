// matmul_coop_f16: dst(M,N) = x(M,K) · w(N,K)ᵀ + bias(N) for small M
// (decode) on GPUs, where reading w once, at full memory bandwidth, is the
// whole cost. A workgroup owns RN = 4 output columns and up to MB = 8 rows
// of x; its WG invocations split K between them, so that neighbouring
// invocations read neighbouring 16-byte words of a row of w (coalesced
// loads, unlike matmul_gemv's one-row-per-invocation walk), then sum their
// partial dot products in workgroup memory.
// Weights are f16, packed two halves per u32 (core WGSL, no shader-f16);
// the host sends only K % 8 == 0 here (a row is whole vec4<u32> words of 8
// halves), other K go to matmul_gemv_f16.
// Bindings: x(M,K) f32 (read as vec4), w(n_count, K/2) u32 (read as
// vec4<u32>; the chunk of w's rows starting at n_base), bias(N) f32 (any
// tensor when has_bias = 0) read; dst(M,N) f32 write. Meta: M, K, N,
// n_base, n_count, has_bias, tiles_n, kw, tile_base.
// Dispatch: tiles_n * ceil(M/MB) workgroups over (x, y), tiles_n =
// ceil(n_count / RN); tile t = tile_base + wid.y * nwg.x + wid.x covers
// columns (t % tiles_n)*RN .. +RN and rows (t / tiles_n)*MB .. +MB.
// Portability: 8 KiB of workgroup memory, log2(WG) + 1 barriers, each
// reached in workgroup-uniform control flow.
//#include matmul_coop_decl W_ELEM=vec4<u32>

// h4 is the four f16 weights packed in words a and b, in order.
fn h4(a: u32, b: u32) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(a), unpack2x16float(b));
}

//#include matmul_coop_start Q_WORDS=params.k/8u
    let xq = params.k / 4u; // vec4<f32> per row of x
    for (var i = lid; i < q; i = i + WG) {
        let a = w[w0 + i];
        let b = w[w1 + i];
        let d = w[w2 + i];
        let e = w[w3 + i];
        // Columns' weights at k = 8i .. 8i+3 (lo) and 8i+4 .. 8i+7 (hi).
        let lo = mat4x4<f32>(h4(a.x, a.y), h4(b.x, b.y), h4(d.x, d.y), h4(e.x, e.y));
        let hi = mat4x4<f32>(h4(a.z, a.w), h4(b.z, b.w), h4(d.z, d.w), h4(e.z, e.w));
        for (var r = 0u; r < MB; r = r + 1u) {
            if (r < nr) {
                let xr = (rb + r) * xq + 2u * i;
                acc[r] = acc[r] + x[xr] * lo + x[xr + 1u] * hi;
            }
        }
    }
//#include matmul_coop_reduce
}
