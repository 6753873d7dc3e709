// seq_sums: per-sequence sums of rows, the numerators of the mean final
// hidden states a plan made inside a prefill conditions on (adapt.Ops.
// SequenceSums), so that only B x C sums, not every row, come back:
//   dst[b, j] = sum over t < lengths[b] of rows[b, t, j]
// Lengths are clamped to [0, T]; rows past them are never read.
// Bindings: rows(B, T, C) f32, lengths(B) i32 read; dst(B, C) f32 write.
// Meta: B, T, C.
// Dispatch: ceil(B*C / WG) workgroups over (x, y), one invocation per
// (b, j) adding its rows in order (deterministic, no atomics);
// neighbouring invocations read neighbouring columns.
const WG: u32 = 64u;

struct Meta { b: u32, t: u32, c: u32 }

@group(0) @binding(0) var<storage, read> rows: array<f32>;
@group(0) @binding(1) var<storage, read> lengths: array<i32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i >= params.b * params.c) {
        return;
    }
    let b = i / params.c;
    let n = u32(clamp(lengths[b], 0, i32(params.t)));
    var at = b * params.t * params.c + i % params.c;
    var s = 0.0;
    for (var t = 0u; t < n; t = t + 1u) {
        s = s + rows[at];
        at = at + params.c;
    }
    dst[i] = s;
}
