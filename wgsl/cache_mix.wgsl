// cache_mix: the token cache's mixture (adapt.CacheWeights), elementwise
// over rows of V log-probabilities:
//   dst[m,v] = log((1 - wo - wp) exp(lp[m,v]) + wo q_own + wp q_pool),
//   q = (count[v] + beta prior[v]) / (total + beta),
// where row m's own counts are own[orow, :] and its pool's pool[prow, :]
// (a negative row index: no such counts, and that weight is 0).
// Bindings: lp(M, V), own(S, V), pool(K, V), prior(V), rp(M, 6) read;
// dst(M, V) write. rp per row: orow, prow, wo, wp, own total, pool total
// (f32; indices exact below 2^24). Meta: rows, v, beta.
// Dispatch: ceil(M * V / WG) workgroups over (x, y); linear id = wid.y * nwg.x + wid.x.
const WG: u32 = 256u;

struct Meta { rows: u32, v: u32, beta: f32 }

@group(0) @binding(0) var<storage, read> lp: array<f32>;
@group(0) @binding(1) var<storage, read> own: array<f32>;
@group(0) @binding(2) var<storage, read> pool: array<f32>;
@group(0) @binding(3) var<storage, read> prior: array<f32>;
@group(0) @binding(4) var<storage, read> rp: array<f32>;
@group(0) @binding(5) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i >= params.rows * params.v) {
        return;
    }
    let m = i / params.v;
    let j = i - m * params.v;
    let orow = rp[m * 6u];
    let prow = rp[m * 6u + 1u];
    var wo = rp[m * 6u + 2u];
    var wp = rp[m * 6u + 3u];
    let bu = params.beta * prior[j];
    var qo = 0.0;
    var qp = 0.0;
    if (orow >= 0.0) {
        qo = (own[u32(orow) * params.v + j] + bu) / (rp[m * 6u + 4u] + params.beta);
    } else {
        wo = 0.0;
    }
    if (prow >= 0.0) {
        qp = (pool[u32(prow) * params.v + j] + bu) / (rp[m * 6u + 5u] + params.beta);
    } else {
        wp = 0.0;
    }
    dst[i] = log((1.0 - wo - wp) * exp(lp[i]) + wo * qo + wp * qp);
}
