// matmul_qtex1_q4_k: dst(row,:) = x(row,:) · w(N,K)ᵀ + bias(N) for one row of x
// from textures, the CPU-adapter mat-vec for decode (one dispatch per row), w in Q4_K blocks dequantized in
// registers (wgsl/quant_tex_q4_k.wgsli). On lavapipe an image load is a
// 16-byte vector gather per SIMD lane and a storage load a bounds-checked
// scalar load, so x and the packed blocks are read from rgba32uint storage
// textures that gpu fills from their buffers (tex_pack.wgsl: the packed
// rows of gpu/quant_layout.go, kw words each, as kt = ceil(kw/4) texels in
// the texture matmuls' blocked layout, once per weight version; x per call,
// row r's K/4 texels at texture row r).
// Bindings: group 0 bias(N) f32 (any tensor when has_bias = 0) read, dst
// (M,N) f32 write; group 2 x texture, w texture. Meta: N, K (a multiple of
// 32), kt, w_width, has_bias, tiles_n, tile_base, row. Dispatch: workgroups over
// (x, y); tile t = tile_base + wid.y * nwg.x + wid.x covers columns
// (t % tiles_n)*64 .. +64, tiles_n = ceil(N/64).
//#include quant_tex_q4_k
//#include matmul_qtex1
}
