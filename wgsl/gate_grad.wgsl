// gate_grad: the gradient of the gated-basis adapter's per-cluster gates
// (adapt/ops_gate.go), summed over each cluster's rows:
//   dg[k, j] = sum_{m in k} du[m, j] * u[m, j]
// where du = Bᵀ dlogits is the gradient of the gated shrink and u = alpha
// A h the ungated one. Rows of cluster k are order[offsets[k] ..
// offsets[k+1]]; a cluster with no rows gets 0. Written, not accumulated.
// Bindings: du(M,R), u(M,R) f32, order(M), offsets(K+1) i32 read; dg(K,R) f32 write.
// Meta: R, K.
// Dispatch: one invocation per (k, j), ceil(K*R / WG) workgroups over
// (x, y); linear id = wid.y * nwg.x + wid.x. At most 65,535 rows per call.
const WG: u32 = 64u;

struct Meta { r: u32, k: u32 }

@group(0) @binding(0) var<storage, read> du: array<f32>;
@group(0) @binding(1) var<storage, read> u: array<f32>;
@group(0) @binding(2) var<storage, read> order: array<i32>;
@group(0) @binding(3) var<storage, read> offsets: array<i32>;
@group(0) @binding(4) var<storage, read_write> dg: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = (wid.y * nwg.x + wid.x) * WG + lid;
    if (t >= params.k * params.r) {
        return;
    }
    let k = t / params.r;
    let j = t % params.r;
    var s = 0.0;
    let end = u32(offsets[k + 1u]);
    for (var p = u32(offsets[k]); p < end; p = p + 1u) {
        let m = u32(order[p]);
        s = fma(du[m * params.r + j], u[m * params.r + j], s);
    }
    dg[t] = s;
}
