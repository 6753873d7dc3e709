// add_layernorm: a residual add and the layer norm that reads it, one
// dispatch: sum = a + b, dst[m,:] = (sum[m,:] - mean) / sqrt(var + eps) *
// gamma + beta over rows of C values; population variance, as GPT-2. Each
// value of the sum is recomputed where layernorm.wgsl would read it, so the
// results equal add.wgsl then layernorm.wgsl bit for bit.
// Bindings: a(M,C), b(M,C), gamma(C), beta(C) read; sum(M,C), dst(M,C)
// write. Meta: rows M, C, eps.
// Dispatch: one workgroup per row, over (x, y); linear id = wid.y * nwg.x + wid.x.
// Two passes over the row (mean, then centred variance) for accuracy.
const WG: u32 = 256u;

struct Meta { rows: u32, c: u32, eps: f32 }

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> sum: array<f32>;
@group(0) @binding(5) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

var<workgroup> red: array<f32, WG>;

fn reduce_sum(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            red[lid] = red[lid] + red[lid + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * nwg.x + wid.x;
    if (row >= params.rows) {
        return; // uniform per workgroup: barriers stay in uniform control flow
    }
    let base = row * params.c;
    var s = 0.0;
    for (var j = lid; j < params.c; j = j + WG) {
        let x = a[base + j] + b[base + j];
        sum[base + j] = x;
        s = s + x;
    }
    let mean = reduce_sum(s, lid) / f32(params.c);
    var v = 0.0;
    for (var j = lid; j < params.c; j = j + WG) {
        let d = a[base + j] + b[base + j] - mean;
        v = v + d * d;
    }
    let rstd = inverseSqrt(reduce_sum(v, lid) / f32(params.c) + params.eps);
    for (var j = lid; j < params.c; j = j + WG) {
        dst[base + j] = (a[base + j] + b[base + j] - mean) * rstd * gamma[j] + beta[j];
    }
}
