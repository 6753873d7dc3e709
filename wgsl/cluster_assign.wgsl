// cluster_assign: the k-means assignment step. Each point takes the nearest
// of centroid rows [k0, k1) by squared Euclidean distance; row k has label
// label0 + k. Ties go to the lowest label: rows are scanned in order and
// only a strictly smaller distance replaces the best so far. With merge = 1
// the scan starts from the (assign, dist) already stored, which must carry
// labels lower than those scanned now (the host splits the centroids into
// row ranges this way, and k-means++ seeding adds one centroid at a time).
//   assign[n] = argmin_k |x[n,:] - cents[k,:]|^2,  dist[n] = that minimum
// Bindings: x(N, C) f32, cents(K, C) f32 read; assign(N) i32, dist(N) f32
// read-write.
// Meta: N, C, k0, k1, label0, merge.
// Dispatch: ceil(N / WG) workgroups over (x, y), one invocation per point.
// Portability: the loop runs (k1-k0) * (C+1) times; the host keeps that under
// 32,768 per dispatch because lavapipe ends an invocation's loops after
// 65,535 iterations in total. Every lane reads the same centroid element at
// once (a broadcast on GPUs).
const WG: u32 = 64u;

struct Meta { n: u32, c: u32, k0: u32, k1: u32, label0: u32, merge: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> cents: array<f32>;
@group(0) @binding(2) var<storage, read_write> assign: array<i32>;
@group(0) @binding(3) var<storage, read_write> dist: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i >= params.n) {
        return;
    }
    var best = 0.0;
    var label = -1;
    if (params.merge != 0u) {
        best = dist[i];
        label = assign[i];
    }
    let xb = i * params.c;
    for (var k = params.k0; k < params.k1; k = k + 1u) {
        let cb = k * params.c;
        var d = 0.0;
        for (var j = 0u; j < params.c; j = j + 1u) {
            let e = x[xb + j] - cents[cb + j];
            d = d + e * e;
        }
        if (label < 0 || d < best) {
            best = d;
            label = i32(params.label0 + k);
        }
    }
    assign[i] = label;
    dist[i] = best;
}
