// layernorm_xt_wg8: layernorm with a texture copy of dst: dst[m,:] = (x[m,:] - mean) / sqrt(var + eps) * gamma + beta over
// rows of C values; population variance, as GPT-2.
// Bindings: x(M,C), gamma(C), beta(C) read; dst(M,C) write. Meta: rows M, C, eps, rows_per.
// Dispatch: one workgroup per row, over (x, y); linear id = wid.y * nwg.x + wid.x.
// Two passes over the row (mean, then centred variance) for accuracy.
// It also writes dst into the group 2 texture xt as texture matmuls read x
// (gpu/xtex.go): row r's texel t (channels 4t..4t+3) at ((r % rows_per) *
// C/4 + t, r / rows_per). C must be a multiple of 4.
// This variant runs 8 invocations per row, one SIMD vector on lavapipe
// (see layernorm_wg8.wgsl).
//#include layernorm_xt WGSIZE=8u
