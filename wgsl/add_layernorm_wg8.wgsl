// add_layernorm_wg8: a residual add and the layer norm that reads it, one
// dispatch: sum = a + b, dst[m,:] = (sum[m,:] - mean) / sqrt(var + eps) *
// gamma + beta over rows of C values; population variance, as GPT-2. Each
// value of the sum is recomputed where layernorm.wgsl would read it, so the
// results equal add.wgsl then layernorm.wgsl bit for bit.
// Bindings: a(M,C), b(M,C), gamma(C), beta(C) read; sum(M,C), dst(M,C)
// write. Meta: rows M, C, eps.
// Dispatch: one workgroup per row, over (x, y); linear id = wid.y * nwg.x + wid.x.
// Two passes over the row (mean, then centred variance) for accuracy.
// This variant runs 8 invocations per row, one SIMD vector on lavapipe,
// where the barriers of a larger workgroup cost more than the row's
// arithmetic (1.4-2x faster than add_layernorm.wgsl there).
//#include add_layernorm WGSIZE=8u
