// lowrank_grad_u: the gradient of the rank-space vector u of the low-rank
// update logits[m] += B_c u[m] (c = cluster[m]):
//   du[m, j] = sum_v dlogits[m, v] * B_c[v, j]
// Rows whose cluster lies outside [0, K) get du = 0 (they had no update).
// Factor layout as lowrank_add: B_k[v, j] = b[b_off + k * b_stride + v * R + j].
// Bindings: dlogits(M,V) f32, b f32, cluster(M) i32 (any tensor when
// has_cluster = 0: every row uses cluster 0) read; du(M,R) f32 write.
// Meta: M, V, R, K, b_off, b_stride, has_cluster.
// Dispatch: one invocation per element of du, ceil(M*R / WG) workgroups
// over (x, y); linear id = wid.y * nwg.x + wid.x. Each invocation loops V
// times: V must stay under lavapipe's 65,535-iteration budget (the op
// checks).
const WG: u32 = 64u;

struct Meta { m: u32, v: u32, r: u32, k: u32, b_off: u32, b_stride: u32, has_cluster: u32 }

@group(0) @binding(0) var<storage, read> dlogits: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> cluster: array<i32>;
@group(0) @binding(3) var<storage, read_write> du: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

//#include lowrank_rank_entry
    if (c >= 0 && u32(c) < params.k) {
        let bb = params.b_off + u32(c) * params.b_stride + j;
        let db = m * params.v;
        for (var v = 0u; v < params.v; v = v + 1u) {
            s = fma(dlogits[db + v], b[bb + v * params.r], s);
        }
    }
    du[i] = s;
}
