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
// Its 8-invocation twin add_layernorm_xt_wg8.wgsl is generated from this file.
const WG: u32 = 256u; // invocations per row

struct Meta { rows: u32, c: u32, eps: f32, rows_per: u32 }

@group(2) @binding(0) var xt: texture_storage_2d<rgba32uint, write>;

//#include add_layernorm_head
    // Four channels a texel; each value is the expression add_layernorm.wgsl
    // stores, so dst holds the same bits.
//#include layernorm_xt_store XIN=a[base+j]+b[base+j]
}
