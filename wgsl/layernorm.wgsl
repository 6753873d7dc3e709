// layernorm: dst[m,:] = (x[m,:] - mean) / sqrt(var + eps) * gamma + beta over
// rows of C values; population variance, as GPT-2.
// Bindings: x(M,C), gamma(C), beta(C) read; dst(M,C) write. Meta: rows M, C, eps.
// Dispatch: one workgroup per row, over (x, y); linear id = wid.y * nwg.x + wid.x.
// Two passes over the row (mean, then centred variance) for accuracy.
//#include layernorm WGSIZE=256u
