// gate_rows: per-cluster gates on the rows of a shared low-rank basis (the
// gated-basis hyper adapter, adapt/ops_gate.go):
//   dst[n, j, i] = x[xn, j, i] * (1 + g[k, j])
// with xn = n when x_per_n != 0, else 0 (one x shared by every n), and
// k = n when has_cluster = 0, else cluster[n]; a k outside [0, K) writes 0.
// Materialising each cluster's gated factor A_k = diag(1 + g_k) A is N = K,
// W = C, x_per_n = 0, has_cluster = 0; scaling rows of u (M, R) by their
// cluster's gate is N = M, W = 1, x_per_n = 1, has_cluster = 1.
// Bindings: x f32, g(K,R) f32, cluster(N) i32 read; dst(N,R,W) f32 write.
// Meta: N, R, W, K, x_per_n, has_cluster.
// Dispatch: one invocation per (n, j, i), ceil(N*R*W / WG) workgroups over
// (x, y); linear id = wid.y * nwg.x + wid.x.
const WG: u32 = 64u;

struct Meta { n: u32, r: u32, w: u32, k: u32, x_per_n: u32, has_cluster: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> cluster: array<i32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = (wid.y * nwg.x + wid.x) * WG + lid;
    let rw = params.r * params.w;
    if (t >= params.n * rw) {
        return;
    }
    let n = t / rw;
    let j = (t % rw) / params.w;
    let within = t % rw;
    var k = i32(n);
    if (params.has_cluster != 0u) {
        k = cluster[n];
    }
    if (k < 0 || u32(k) >= params.k) {
        dst[t] = 0.0;
        return;
    }
    let xn = select(0u, n, params.x_per_n != 0u);
    dst[t] = x[xn * rw + within] * (1.0 + g[u32(k) * params.r + j]);
}
