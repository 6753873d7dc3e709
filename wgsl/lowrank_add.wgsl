// lowrank_add: dst[m, v] += sum_j u[m, j] * B_c[v, j] with c = cluster[m],
// the second half of the per-cluster low-rank update applied after a plain
// matmul wrote the base logits into dst (the unfused variant; the fused one
// is lowrank_matmul_*). Rows whose cluster lies outside [0, K) are left as
// they are.
// Factor layout: B_k[v, j] = b[b_off + k * b_stride + v * R + j], so B may be
// a (K, V, R) tensor or the rows of a packed hyper-network output.
// Bindings: u(M,R) f32 (already scaled by alpha), cluster(M) i32 (any tensor
// when has_cluster = 0: every row uses cluster 0), b f32 read; dst(M,N)
// f32 read-write.
// Meta: M (rows in this dispatch), N, R, K, b_off, b_stride, has_cluster,
// row_base (the dispatch covers rows row_base .. row_base+M-1).
// Dispatch: one invocation per row and run of 4 columns, ceil(M *
// ceil(N/4) / WG) workgroups over (x, y); linear id = wid.y * nwg.x + wid.x.
// Each u value loaded feeds 4 columns.
const WG: u32 = 64u;

struct Meta { m: u32, n: u32, r: u32, k: u32, b_off: u32, b_stride: u32, has_cluster: u32, row_base: u32 }

@group(0) @binding(0) var<storage, read> u: array<f32>;
@group(0) @binding(1) var<storage, read> cluster: array<i32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    let quads = (params.n + 3u) / 4u;
    if (i >= params.m * quads) {
        return;
    }
    let m = params.row_base + i / quads;
    let v0 = (i % quads) * 4u;
    var c = 0;
    if (params.has_cluster != 0u) {
        c = cluster[m];
    }
    if (c < 0 || u32(c) >= params.k) {
        return;
    }
    // Columns past the end are clamped for loading and skipped when storing.
    let ln = params.n - 1u;
    let bb = params.b_off + u32(c) * params.b_stride;
    let b0 = bb + min(v0, ln) * params.r;
    let b1 = bb + min(v0 + 1u, ln) * params.r;
    let b2 = bb + min(v0 + 2u, ln) * params.r;
    let b3 = bb + min(v0 + 3u, ln) * params.r;
    let ub = m * params.r;
    var s = vec4<f32>(0.0);
    for (var j = 0u; j < params.r; j = j + 1u) {
        s = fma(vec4<f32>(u[ub + j]), vec4<f32>(b[b0 + j], b[b1 + j], b[b2 + j], b[b3 + j]), s);
    }
    let d = m * params.n + v0;
    for (var q = 0u; q < 4u; q = q + 1u) {
        if (v0 + q < params.n) {
            dst[d + q] = dst[d + q] + s[q];
        }
    }
}
