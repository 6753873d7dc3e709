// lowrank_grad_b: the gradient of every cluster's B factor of the low-rank
// update logits[m] += B_c u[m], summed over the cluster's rows:
//   dB_c[v, j] = sum_{m in c} dlogits[m, v] * u[m, j]
// The rows of cluster c are order[offsets[c] .. offsets[c+1]] (the host
// sorts rows by cluster), so each invocation visits only its own rows.
// A cluster with no rows gets dB_c = 0. Written, not accumulated.
// Output layout: dB_k[v, j] = db[db_off + k * db_stride + v * R + j] (a
// (K, V, R) tensor or the B part of a packed hyper-network output).
// Bindings: dlogits(M,V), u(M,R) f32, order(M), offsets(K+1) i32 read; db f32 write.
// Meta: V, R, K, db_off, db_stride.
// Dispatch: one invocation per (c, v, j), ceil(K*V*R / WG) workgroups over
// (x, y); linear id = wid.y * nwg.x + wid.x. Each loops over its cluster's
// rows: at most 65,535 rows per call (the op checks).
const WG: u32 = 64u;

struct Meta { v: u32, r: u32, k: u32, db_off: u32, db_stride: u32 }

@group(0) @binding(0) var<storage, read> dlogits: array<f32>;
@group(0) @binding(1) var<storage, read> u: array<f32>;
@group(0) @binding(2) var<storage, read> order: array<i32>;
@group(0) @binding(3) var<storage, read> offsets: array<i32>;
@group(0) @binding(4) var<storage, read_write> db: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    let vr = params.v * params.r;
    if (i >= params.k * vr) {
        return;
    }
    let c = i / vr;
    let v = (i % vr) / params.r;
    let j = i % params.r;
    var s = 0.0;
    let end = u32(offsets[c + 1u]);
    for (var p = u32(offsets[c]); p < end; p = p + 1u) {
        let m = u32(order[p]);
        s = fma(dlogits[m * params.v + v], u[m * params.r + j], s);
    }
    db[params.db_off + c * params.db_stride + v * params.r + j] = s;
}
