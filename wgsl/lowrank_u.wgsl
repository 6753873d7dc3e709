// lowrank_u: the rank-space projection of the per-cluster low-rank update,
// u[m, j] = alpha * sum_i A_c[j, i] * h[m, i] with c = cluster[m]: the first
// half of alpha * B_c (A_c h). Rows whose cluster lies outside [0, K) get
// u = 0 (no adaptation, e.g. padding rows).
// Factor layout: A_k[j, i] = a[a_off + k * a_stride + j * C + i], so A may be
// a (K, R, C) tensor (a_off = 0, a_stride = R*C) or the rows of a
// hyper-network output that packs A_k and B_k per cluster.
// Bindings: h(M,C) f32, a f32, cluster(M) i32 (any tensor when has_cluster
// = 0: every row then uses cluster 0) read; u(M,R) f32 write.
// Meta: M, C, R, K, a_off, a_stride, has_cluster, alpha.
// Dispatch: one invocation per element of u, ceil(M*R / WG) workgroups over
// (x, y); linear id = wid.y * nwg.x + wid.x. Each invocation loops C times
// (far under lavapipe's 65,535-iteration budget for any model width).
const WG: u32 = 64u;

struct Meta { m: u32, c: u32, r: u32, k: u32, a_off: u32, a_stride: u32, has_cluster: u32, alpha: f32 }

@group(0) @binding(0) var<storage, read> h: array<f32>;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> cluster: array<i32>;
@group(0) @binding(3) var<storage, read_write> u: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

//#include lowrank_rank_entry
    if (c >= 0 && u32(c) < params.k) {
        let ab = params.a_off + u32(c) * params.a_stride + j * params.c;
        let hb = m * params.c;
        for (var k = 0u; k < params.c; k = k + 1u) {
            s = fma(h[hb + k], a[ab + k], s);
        }
    }
    u[i] = params.alpha * s;
}
