// cluster_features_f16: cluster_features_f32 for an f16 embedding table,
// stored packed two halves per u32 with rows padded to an even length CP.
//   dst[b, j] (+)= sum over t < lengths[b] of wte[tokens[b, t], j]
// Padding (t >= lengths[b]) is never read. Ids outside [row_base,
// row_base+row_count) add nothing (accumulate = 1 adds to dst).
// Bindings: wte(row_count, CP/2) u32, tokens(B, T) i32, lengths(B) i32 read;
// dst(B, C) f32 read-write.
// Meta: B, T, C, row_base, row_count, accumulate; lengths clamped to [0, T].
// Dispatch: ceil(B*C / WG) workgroups over (x, y), one invocation per (b, j).
// Portability: unpack2x16float is core WGSL, so no shader-f16 is needed.
const WG: u32 = 64u;

struct Meta { b: u32, t: u32, c: u32, row_base: u32, row_count: u32, accumulate: u32 }

@group(0) @binding(0) var<storage, read> wte: array<u32>;
@group(0) @binding(1) var<storage, read> tokens: array<i32>;
@group(0) @binding(2) var<storage, read> lengths: array<i32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i >= params.b * params.c) {
        return;
    }
    let s = i / params.c;
    let j = i % params.c;
    let cp = (params.c + 1u) / 2u * 2u;
    let len = u32(clamp(lengths[s], 0, i32(params.t)));
    var acc = 0.0;
    if (params.accumulate != 0u) {
        acc = dst[i];
    }
    for (var t = 0u; t < len; t = t + 1u) {
        let row = u32(tokens[s * params.t + t]) - params.row_base;
        if (row < params.row_count) {
            let e = row * cp + j;
            acc = acc + unpack2x16float(wte[e / 2u])[e & 1u];
        }
    }
    dst[i] = acc;
}
