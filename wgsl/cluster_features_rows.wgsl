// cluster_features_rows: per-sequence sums of already gathered embedding
// rows, for tables too large for one storage binding (the host gathers them
// with the Embed op, which splits the table, then runs this kernel).
//   dst[b, j] = sum over t < lengths[b] with 0 <= tokens[b, t] < V of rows[b, t, j]
// Rows of padding or of ids outside the vocabulary are never read, so they
// may hold anything.
// Bindings: rows(B, T, C) f32, tokens(B, T) i32, lengths(B) i32 read;
// dst(B, C) f32 write.
// Meta: B, T, C, V; lengths are clamped to [0, T].
// Dispatch: ceil(B*C / WG) workgroups over (x, y), one invocation per (b, j).
const WG: u32 = 64u;

struct Meta { b: u32, t: u32, c: u32, v: u32 }

@group(0) @binding(0) var<storage, read> rows: array<f32>;
@group(0) @binding(1) var<storage, read> tokens: array<i32>;
@group(0) @binding(2) var<storage, read> lengths: array<i32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

//#include feature_sum_start
    let len = u32(clamp(lengths[s], 0, i32(params.t)));
    var acc = 0.0;
    for (var t = 0u; t < len; t = t + 1u) {
        let m = s * params.t + t;
        if (u32(tokens[m]) < params.v) {
            acc = acc + rows[m * params.c + j];
        }
    }
    dst[i] = acc;
}
