// crossentropy_pair: a row's cross-entropy under two sets of logits, z and
// z + d, from one read of both (the self-check's base and adapted losses,
// adapt.Ops.CrossEntropyPair: d is the low-rank update's logits, so the
// adapted logits are never written):
//   base[m]    = logsumexp(z[m, :])         - z[m, t]
//   adapted[m] = logsumexp(z[m, :] + d[m, :]) - (z[m, t] + d[m, t])
// with t = targets[m]. A negative target masks the row (both 0, the row
// not read); a target >= V writes NaN to both, as crossentropy does.
// Bindings: z(M, V), d(M, V) f32, targets(M) i32 read; base(M),
// adapted(M) f32 write. Meta: M, V.
// Dispatch: one workgroup per row, over (x, y); linear id = wid.y * nwg.x +
// wid.x. Each invocation keeps two running (max, sum of exp(x - max))
// pairs over every WG-th group of four values, merged by one tree
// reduction; each loss is formed as log(sum) - (x_t - max), as in
// crossentropy.
const WG: u32 = 256u;
const LOWEST: f32 = -3.40282346e38;

struct Meta { rows: u32, v: u32 }

@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read> d: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<i32>;
@group(0) @binding(3) var<storage, read_write> base: array<f32>;
@group(0) @binding(4) var<storage, read_write> adapted: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

var<workgroup> red_m: array<f32, WG>;
var<workgroup> red_s: array<f32, WG>;
var<workgroup> red_m2: array<f32, WG>;
var<workgroup> red_s2: array<f32, WG>;
var<workgroup> target_sh: i32;

// zd is element j of the row at offset o of z and of z + d, or LOWEST for
// both past the row's params.v values.
fn zd(o: u32, j: u32) -> vec2<f32> {
    if (j < params.v) {
        let x = z[o + j];
        return vec2<f32>(x, x + d[o + j]);
    }
    return vec2<f32>(LOWEST, LOWEST);
}

// merge folds the pair at k into the pair at i of (red_m, red_s) and of
// (red_m2, red_s2), rescaling each sum to the larger max.
fn merge(i: u32, k: u32) {
    let m1 = red_m[i];
    let m2 = red_m[k];
    let mn = max(m1, m2);
    red_s[i] = red_s[i] * exp(m1 - mn) + red_s[k] * exp(m2 - mn);
    red_m[i] = mn;
    let a1 = red_m2[i];
    let a2 = red_m2[k];
    let an = max(a1, a2);
    red_s2[i] = red_s2[i] * exp(a1 - an) + red_s2[k] * exp(a2 - an);
    red_m2[i] = an;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * nwg.x + wid.x;
    if (row >= params.rows) {
        return; // uniform per workgroup
    }
    if (lid == 0u) {
        target_sh = targets[row];
    }
    let t = workgroupUniformLoad(&target_sh);
    if (t < 0 || u32(t) >= params.v) {
        if (lid == 0u) {
            let v = select(bitcast<f32>(0x7fc00000u + 0u * u32(t)), 0.0, t < 0); // a runtime NaN: browsers (Tint) reject a constant one
            base[row] = v;
            adapted[row] = v;
        }
        return; // uniform: t came through workgroupUniformLoad
    }
    let o = row * params.v;
    var m = vec2<f32>(LOWEST, LOWEST);
    var s = vec2<f32>(0.0, 0.0);
    for (var j = lid; j < params.v; j = j + 4u * WG) {
        let x0 = zd(o, j);
        let x1 = zd(o, j + WG);
        let x2 = zd(o, j + 2u * WG);
        let x3 = zd(o, j + 3u * WG);
        let mn = max(m, max(max(x0, x1), max(x2, x3)));
        s = s * exp(m - mn) + ((exp(x0 - mn) + exp(x1 - mn)) + (exp(x2 - mn) + exp(x3 - mn)));
        m = mn;
    }
    red_m[lid] = m.x;
    red_s[lid] = s.x;
    red_m2[lid] = m.y;
    red_s2[lid] = s.y;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k = k / 2u) {
        if (lid < k) {
            merge(lid, lid + k);
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        let xt = z[o + u32(t)];
        base[row] = log(red_s[0]) - (xt - red_m[0]);
        adapted[row] = log(red_s2[0]) - ((xt + d[o + u32(t)]) - red_m2[0]);
    }
}
