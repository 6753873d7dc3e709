// layernorm_wg8: dst[m,:] = (x[m,:] - mean) / sqrt(var + eps) * gamma + beta over
// rows of C values; population variance, as GPT-2.
// Bindings: x(M,C), gamma(C), beta(C) read; dst(M,C) write. Meta: rows M, C, eps.
// Dispatch: one workgroup per row, over (x, y); linear id = wid.y * nwg.x + wid.x.
// Two passes over the row (mean, then centred variance) for accuracy.
// This variant runs 8 invocations per row, one SIMD vector on lavapipe,
// where the barriers of a larger workgroup cost more than the row's
// arithmetic (1.4-2x faster than layernorm.wgsl there).
//#include layernorm WGSIZE=8u
