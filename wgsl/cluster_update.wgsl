// cluster_update: the k-means centroid step. Centroid k becomes the mean of
// its member points; the host lists them, grouped by cluster, in order
// (order[offsets[k] .. offsets[k+1]) are the point indices of cluster k).
// The sum runs over offsets from the first member x0 (mean = x0 + sum(x - x0)
// / count): exact when the members are identical, so identical inputs give
// zero distances and k-means stops, and less cancellation otherwise.
// An empty cluster takes point reseed[k] when reseed[k] >= 0 (the host's
// farthest-point re-seeding) and otherwise keeps its previous centroid.
//   dst[k, j] = mean over members n of x[n, j]   (or x[reseed[k], j], or prev[k, j])
// Long clusters are summed in several parts of at most seg members: part
// p > 0 adds to the partial sum(x - x0) in dst, and the last part
// (part + 1 == parts) forms the mean.
// Bindings: x(N, C) f32, prev(K, C) f32, order(N) i32, offsets(K+1) i32,
// reseed(K) i32 read; dst(K, C) f32 read-write.
// Meta: K, C, seg, part, parts.
// Dispatch: ceil(K*C / WG) workgroups over (x, y), one invocation per (k, j);
// neighbouring lanes read neighbouring columns of one point. Each invocation
// loops at most seg (32,768) times: under lavapipe's 65,535 cap.
const WG: u32 = 64u;

struct Meta { k: u32, c: u32, seg: u32, part: u32, parts: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> prev: array<f32>;
@group(0) @binding(2) var<storage, read> order: array<i32>;
@group(0) @binding(3) var<storage, read> offsets: array<i32>;
@group(0) @binding(4) var<storage, read> reseed: array<i32>;
@group(0) @binding(5) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i >= params.k * params.c) {
        return;
    }
    let k = i / params.c;
    let j = i % params.c;
    let lo = u32(offsets[k]);
    let hi = u32(offsets[k + 1u]);
    let s0 = min(hi, lo + params.part * params.seg);
    let s1 = min(hi, s0 + params.seg);
    var x0 = 0.0;
    if (hi > lo) {
        x0 = x[u32(order[lo]) * params.c + j];
    }
    var acc = 0.0;
    if (params.part > 0u) {
        acc = dst[i];
    }
    for (var m = s0; m < s1; m = m + 1u) {
        acc = acc + (x[u32(order[m]) * params.c + j] - x0);
    }
    if (params.part + 1u == params.parts) {
        if (hi > lo) {
            acc = x0 + acc / f32(hi - lo);
        } else if (reseed[k] >= 0) {
            acc = x[u32(reseed[k]) * params.c + j];
        } else {
            acc = prev[i];
        }
    }
    dst[i] = acc;
}
