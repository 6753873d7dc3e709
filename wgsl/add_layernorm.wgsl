// add_layernorm: a residual add and the layer norm that reads it, one
// dispatch: sum = a + b, dst[m,:] = (sum[m,:] - mean) / sqrt(var + eps) *
// gamma + beta over rows of C values; population variance, as GPT-2. Each
// value of the sum is recomputed where layernorm.wgsl would read it, so the
// results equal add.wgsl then layernorm.wgsl bit for bit.
// Bindings: a(M,C), b(M,C), gamma(C), beta(C) read; sum(M,C), dst(M,C)
// write. Meta: rows M, C, eps.
// Dispatch: one workgroup per row, over (x, y); linear id = wid.y * nwg.x + wid.x.
// Two passes over the row (mean, then centred variance) for accuracy.
// Its 8-invocation twin add_layernorm_wg8.wgsl is generated from this file.
const WG: u32 = 256u; // invocations per row

struct Meta { rows: u32, c: u32, eps: f32 }

//#include add_layernorm_head
    for (var j = lid; j < params.c; j = j + WG) {
        dst[base + j] = (a[base + j] + b[base + j] - mean) * rstd * gamma[j] + beta[j];
    }
}
