// lowrank_grad_a: the gradient of every cluster's A factor of the low-rank
// update (u[m] = alpha * A_c h[m]), summed over the cluster's rows:
//   dA_c[j, i] = alpha * sum_{m in c} du[m, j] * h[m, i]
// Rows of cluster c are order[offsets[c] .. offsets[c+1]]; a cluster with
// no rows gets dA_c = 0. Written, not accumulated.
// Output layout: dA_k[j, i] = da[da_off + k * da_stride + j * C + i].
// Bindings: du(M,R), h(M,C) f32, order(M), offsets(K+1) i32 read; da f32 write.
// Meta: C, R, K, da_off, da_stride, alpha.
// Dispatch: one invocation per (c, j, i), ceil(K*R*C / WG) workgroups over
// (x, y); linear id = wid.y * nwg.x + wid.x. At most 65,535 rows per call.
const WG: u32 = 64u;

struct Meta { c: u32, r: u32, k: u32, da_off: u32, da_stride: u32, alpha: f32 }

@group(0) @binding(0) var<storage, read> du: array<f32>;
@group(0) @binding(1) var<storage, read> h: array<f32>;
@group(0) @binding(2) var<storage, read> order: array<i32>;
@group(0) @binding(3) var<storage, read> offsets: array<i32>;
@group(0) @binding(4) var<storage, read_write> da: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    let rc = params.r * params.c;
    if (i >= params.k * rc) {
        return;
    }
    let cl = i / rc;
    let j = (i % rc) / params.c;
    let x = i % params.c;
    var s = 0.0;
    let end = u32(offsets[cl + 1u]);
    for (var p = u32(offsets[cl]); p < end; p = p + 1u) {
        let m = u32(order[p]);
        s = fma(du[m * params.r + j], h[m * params.c + x], s);
    }
    da[params.da_off + cl * params.da_stride + j * params.c + x] = params.alpha * s;
}
