// layernorm_xt: layernorm with a texture copy of dst: dst[m,:] = (x[m,:] - mean) / sqrt(var + eps) * gamma + beta over
// rows of C values; population variance, as GPT-2.
// Bindings: x(M,C), gamma(C), beta(C) read; dst(M,C) write. Meta: rows M, C, eps, rows_per.
// Dispatch: one workgroup per row, over (x, y); linear id = wid.y * nwg.x + wid.x.
// Two passes over the row (mean, then centred variance) for accuracy.
// It also writes dst into the group 2 texture xt as texture matmuls read x
// (gpu/xtex.go): row r's texel t (channels 4t..4t+3) at ((r % rows_per) *
// C/4 + t, r / rows_per). C must be a multiple of 4.
// Its 8-invocation twin layernorm_xt_wg8.wgsl is generated from this file.
const WG: u32 = 256u; // invocations per row

struct Meta { rows: u32, c: u32, eps: f32, rows_per: u32 }

@group(2) @binding(0) var xt: texture_storage_2d<rgba32uint, write>;

//#include layernorm_head
    // Four channels a texel; each value is the expression layernorm.wgsl
    // stores, so dst holds the same bits.
//#include layernorm_xt_store XIN=x[base+j]
}
