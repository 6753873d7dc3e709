// layernorm: dst[m,:] = (x[m,:] - mean) / sqrt(var + eps) * gamma + beta over
// rows of C values; population variance, as GPT-2.
// Bindings: x(M,C), gamma(C), beta(C) read; dst(M,C) write. Meta: rows M, C, eps.
// Dispatch: one workgroup per row, over (x, y); linear id = wid.y * nwg.x + wid.x.
// Two passes over the row (mean, then centred variance) for accuracy.
// Its 8-invocation twin layernorm_wg8.wgsl is generated from this file.
const WG: u32 = 256u; // invocations per row

struct Meta { rows: u32, c: u32, eps: f32 }

//#include layernorm_head
    for (var j = lid; j < params.c; j = j + WG) {
        dst[base + j] = (x[base + j] - mean) * rstd * gamma[j] + beta[j];
    }
}
