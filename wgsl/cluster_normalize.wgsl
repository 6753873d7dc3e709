// cluster_normalize: turns per-sequence embedding sums into clustering
// features: the mean over the sequence's real tokens, scaled to unit L2 norm.
//   mean = sums[b, :] / lengths[b];  dst[b, :] = mean / |mean|
// Defined edge cases: lengths[b] <= 0 or an all-zero mean give a zero row;
// any non-finite value (NaN or Inf, e.g. from a NaN in the table) makes the
// whole row NaN, so the host's finiteness check catches it. The norm is taken
// of mean / max|mean| so tiny means neither underflow nor lose precision.
// Bindings: sums(B, C) f32, lengths(B) i32 read; dst(B, C) f32 write.
// Meta: B, T, C (lengths clamped to [0, T]).
// Dispatch: ceil(B / WG) workgroups over (x, y), one invocation per row: three
// passes of C iterations (C <= 21,000 stays under lavapipe's 65,535 loop cap).
// A row per invocation avoids workgroup barriers, which cost ~50 us each on
// CPU adapters; B x C is small (B rows of one batch).
const WG: u32 = 64u;

struct Meta { b: u32, t: u32, c: u32 }

@group(0) @binding(0) var<storage, read> sums: array<f32>;
@group(0) @binding(1) var<storage, read> lengths: array<i32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

const FLT_MAX: f32 = 3.40282346e38;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let s = (wid.y * nwg.x + wid.x) * WG + lid;
    if (s >= params.b) {
        return;
    }
    let base = s * params.c;
    let len = clamp(lengths[s], 0, i32(params.t));
    let inv = 1.0 / f32(max(len, 1));
    var big = 0.0;
    var bad = false;
    for (var j = 0u; j < params.c; j = j + 1u) {
        let a = abs(sums[base + j] * inv);
        // !(a <= FLT_MAX) is true for NaN and Inf alike.
        bad = bad || !(a <= FLT_MAX);
        big = max(big, a);
    }
    var scale = 0.0; // zero row: empty sequence or all-zero mean
    if (bad) {
        // quiet NaN; "+ 0u * u32(len)" keeps it a runtime value: browsers (Tint)
        // reject a constant expression that evaluates to NaN
        scale = bitcast<f32>(0x7fc00000u + 0u * u32(len));
    } else if (len > 0 && big > 0.0) {
        var ss = 0.0;
        for (var j = 0u; j < params.c; j = j + 1u) {
            let v = sums[base + j] * inv / big;
            ss = ss + v * v;
        }
        scale = inv / (big * sqrt(ss));
    }
    for (var j = 0u; j < params.c; j = j + 1u) {
        dst[base + j] = sums[base + j] * scale;
    }
}
