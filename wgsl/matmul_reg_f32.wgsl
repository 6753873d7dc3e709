// experimental v1
const TX: u32 = 8u;
const TY: u32 = 8u;
const RM: u32 = 4u;
const RN: u32 = 8u;
const BM: u32 = 32u;
const BN: u32 = 64u;

struct Meta { m: u32, k: u32, n: u32, n_base: u32, n_count: u32, has_bias: u32, tiles_n: u32, kw: u32 }

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

fn put(r: u32, c: u32, v: f32) {
    if (r < params.m && c < params.n_count) {
        let col = params.n_base + c;
        var b = 0.0;
        if (params.has_bias != 0u) {
            b = bias[col];
        }
        dst[r * params.n + col] = v + b;
    }
}

@compute @workgroup_size(TX, TY)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let tile = wid.y * nwg.x + wid.x;
    let tn = tile % params.tiles_n;
    let tm = tile / params.tiles_n;
    if (tm * BM >= params.m) {
        return;
    }
    let c0 = tn * BN + lid.x * RN;
    let r0 = tm * BM + lid.y * RM;
    let lc = params.n_count - 1u;
    let lr = params.m - 1u;
    let k4 = params.k / 4u;
    let w0 = min(c0, lc) * k4;
    let w1 = min(c0 + 1u, lc) * k4;
    let w2 = min(c0 + 2u, lc) * k4;
    let w3 = min(c0 + 3u, lc) * k4;
    let w4 = min(c0 + 4u, lc) * k4;
    let w5 = min(c0 + 5u, lc) * k4;
    let w6 = min(c0 + 6u, lc) * k4;
    let w7 = min(c0 + 7u, lc) * k4;
    let x0 = min(r0, lr) * k4;
    let x1 = min(r0 + 1u, lr) * k4;
    let x2 = min(r0 + 2u, lr) * k4;
    let x3 = min(r0 + 3u, lr) * k4;
    var a00 = vec4<f32>(0.0);
    var a01 = vec4<f32>(0.0);
    var a10 = vec4<f32>(0.0);
    var a11 = vec4<f32>(0.0);
    var a20 = vec4<f32>(0.0);
    var a21 = vec4<f32>(0.0);
    var a30 = vec4<f32>(0.0);
    var a31 = vec4<f32>(0.0);
    for (var k = 0u; k < k4; k = k + 1u) {
        let wa = mat4x4<f32>(w[w0 + k], w[w1 + k], w[w2 + k], w[w3 + k]);
        let wb = mat4x4<f32>(w[w4 + k], w[w5 + k], w[w6 + k], w[w7 + k]);
        let v0 = x[x0 + k];
        a00 = a00 + v0 * wa;
        a01 = a01 + v0 * wb;
        let v1 = x[x1 + k];
        a10 = a10 + v1 * wa;
        a11 = a11 + v1 * wb;
        let v2 = x[x2 + k];
        a20 = a20 + v2 * wa;
        a21 = a21 + v2 * wb;
        let v3 = x[x3 + k];
        a30 = a30 + v3 * wa;
        a31 = a31 + v3 * wb;
    }
    for (var j = 0u; j < 4u; j = j + 1u) {
        put(r0, c0 + j, a00[j]);
        put(r0, c0 + 4u + j, a01[j]);
        put(r0 + 1u, c0 + j, a10[j]);
        put(r0 + 1u, c0 + 4u + j, a11[j]);
        put(r0 + 2u, c0 + j, a20[j]);
        put(r0 + 2u, c0 + 4u + j, a21[j]);
        put(r0 + 3u, c0 + j, a30[j]);
        put(r0 + 3u, c0 + 4u + j, a31[j]);
    }
}
