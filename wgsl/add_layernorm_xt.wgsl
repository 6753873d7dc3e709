// add_layernorm_xt: add_layernorm with a texture copy of dst: a residual add and the
// layer norm that reads it, one dispatch: sum = a + b, dst[m,:] = (sum[m,:] - mean) / sqrt(var + eps) *
// gamma + beta over rows of C values; population variance, as GPT-2. Each
// value of the sum is recomputed where layernorm.wgsl would read it, so the
// results equal add.wgsl then layernorm.wgsl bit for bit.
// Bindings: a(M,C), b(M,C), gamma(C), beta(C) read; sum(M,C), dst(M,C)
// write. Meta: rows M, C, eps, rows_per.
// Dispatch: one workgroup per row, over (x, y); linear id = wid.y * nwg.x + wid.x.
// Two passes over the row (mean, then centred variance) for accuracy.
// It also writes dst into the group 2 texture xt as texture matmuls read x
// (gpu/xtex.go): row r's texel t (channels 4t..4t+3) at ((r % rows_per) *
// C/4 + t, r / rows_per). C must be a multiple of 4.
//#include add_layernorm_xt WGSIZE=256u
