// lowrank_add_t: dst[m, i] += alpha * sum_j du[m, j] * A_c[j, i] with
// c = cluster[m]: the input gradient of a per-row low-rank update
// y[m] += alpha * B_c (A_c x[m]) inside a decoder layer, given
// du[m] = B_cᵀ dy[m] (lowrank_grad_u or a matmul backward). Rows whose
// cluster lies outside [0, K) are left as they are.
// Factor layout: A_k[j, i] = a[a_off + k * a_stride + j * C + i], so A may be
// a (K, R, C) tensor or the rows of a packed hyper-network output.
// Bindings: du(M,R) f32, cluster(M) i32 (any tensor when has_cluster = 0:
// every row uses cluster 0), a f32 read; dst(M,C) f32 read-write.
// Meta: M, C, R, K, a_off, a_stride, has_cluster, alpha.
// Dispatch: one invocation per output element, ceil(M * C / WG) workgroups
// over (x, y); linear id = wid.y * nwg.x + wid.x.
const WG: u32 = 64u;

struct Meta { m: u32, c: u32, r: u32, k: u32, a_off: u32, a_stride: u32, has_cluster: u32, alpha: f32 }

@group(0) @binding(0) var<storage, read> du: array<f32>;
@group(0) @binding(1) var<storage, read> cluster: array<i32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let e = (wid.y * nwg.x + wid.x) * WG + lid;
    if (e >= params.m * params.c) {
        return;
    }
    let m = e / params.c;
    let i = e % params.c;
    var k = 0;
    if (params.has_cluster != 0u) {
        k = cluster[m];
    }
    if (k < 0 || u32(k) >= params.k) {
        return;
    }
    let ab = params.a_off + u32(k) * params.a_stride + i;
    let ub = m * params.r;
    var s = 0.0;
    for (var j = 0u; j < params.r; j = j + 1u) {
        s = fma(du[ub + j], a[ab + j * params.c], s);
    }
    dst[e] = dst[e] + params.alpha * s;
}
