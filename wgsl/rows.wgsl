// rows: dst[r, :] = x[idx[r], :], a row gather; rows whose index lies
// outside [0, M) are written as zeros.
// Bindings: x(M, C) f32, idx(R) i32 read; dst(R, C) f32 write. Meta: R, C, M.
// Dispatch: ceil(R*C / WG) workgroups over (x, y); linear id = wid.y * nwg.x + wid.x.
const WG: u32 = 256u;

struct Meta { r: u32, c: u32, m: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> idx: array<i32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i >= params.r * params.c) {
        return;
    }
    let r = i / params.c;
    let j = i % params.c;
    let src = idx[r];
    var v = 0.0;
    if (src >= 0 && u32(src) < params.m) {
        v = x[u32(src) * params.c + j];
    }
    dst[i] = v;
}
