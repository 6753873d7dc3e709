// cluster_features_f32: per-sequence sums of token embeddings over each
// sequence's real tokens, the first step of the clustering feature (mean,
// then L2 norm, in cluster_normalize).
//   dst[b, j] (+)= sum over t < lengths[b] of wte[tokens[b, t], j]
// Padding (t >= lengths[b]) is never read, so its ids may be anything. Ids
// outside [row_base, row_base+row_count) add nothing: that skips ids outside
// the vocabulary and lets the host split a large table into row ranges
// (accumulate = 1 adds to dst instead of overwriting it).
// Bindings: wte(row_count, C) f32, tokens(B, T) i32, lengths(B) i32 read;
// dst(B, C) f32 read-write.
// Meta: B, T, C, row_base, row_count, accumulate; lengths are clamped to [0, T].
// Dispatch: ceil(B*C / WG) workgroups over (x, y); one invocation per (b, j),
// so neighbouring lanes read neighbouring columns of one embedding row. The
// loop runs lengths[b] <= T times, far below lavapipe's 65,535 cap.
const WG: u32 = 64u;

struct Meta { b: u32, t: u32, c: u32, row_base: u32, row_count: u32, accumulate: u32 }

@group(0) @binding(0) var<storage, read> wte: array<f32>;
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
    let len = u32(clamp(lengths[s], 0, i32(params.t)));
    var acc = 0.0;
    if (params.accumulate != 0u) {
        acc = dst[i];
    }
    for (var t = 0u; t < len; t = t + 1u) {
        // Negative ids wrap to huge values and fall outside the range.
        let row = u32(tokens[s * params.t + t]) - params.row_base;
        if (row < params.row_count) {
            acc = acc + wte[row * params.c + j];
        }
    }
    dst[i] = acc;
}
