// ncache_mix: the neural cache's mixture (adapt/ncache.go), in place over
// rows of V log-probabilities (cache_mix's output, or log-softmax's):
//   dst[m,j] = log((1 - c - d) exp(dst[m,j]) + c q_own(j) + d q_pool(j)),
//   q(j)     = sum_{k in range, vals[k] = j} e_k / sum_{k in range} e_k,
//   e_k      = exp(theta (u . keys[k] - 1)),   u = h[m] / |h[m]| (zero stays zero),
// q_own over row m's own keys [own_off, own_off + own_len), q_pool over
// its pool keys [pool_off, pool_off + pool_len). A key whose value is
// outside [0, V) counts in its denominator only. The host passes effective
// weights (c = 0 for a row without own keys, d = 0 without pool keys):
// nothing is given back to p here.
// Bindings: h(M, C) f32, vals(Kn) i32, rp(M, 8) f32 read; keys(Kn, C) f32,
// scratch(M, S) f32, dst(M, V) f32 read_write. rp per row: own_off,
// own_len, pool_off, pool_len, theta, c, d, slot (f32; indices exact below
// 2^24). slot >= 0: the row's unit query u is written to keys[slot] (its
// next own key, once the host knows its value); a slot must lie outside
// every row's key ranges of the same dispatch. Ranges are clamped to
// [0, Kn) and own_len + pool_len to S. Rows with c = d = 0 and no slot
// are left untouched; c = d = 0 with a slot only writes the slot.
// Meta: rows, c (<= CMAX), v, s, kn.
// Dispatch: one workgroup per row over (x, y); row = wid.y * nwg.x + wid.x.
// The row's query sits in workgroup memory (8 KiB at CMAX, 12 KiB in all);
// each invocation forms the scaled similarities t_k = theta (u . k - 1) of
// a strided share of the keys into scratch, with running (max, sum of
// exp(t - max)) pairs for the own and pool ranges merged by one tree
// reduction (no underflow at any theta). Each vocabulary entry j is owned
// by invocation j % WG: it turns its entries into probabilities, then
// walks every key of the row adding exp(t_k - max) c / sum (or d / sum)
// to the entries it owns, in key order, then takes the logs: no atomics,
// deterministic, each row independent of the others (batch-invariant).
// Per invocation the loops run 2 ceil(C/WG) + ceil(n/WG) C + n +
// 2 ceil(V/WG) iterations for n = own_len + pool_len: the host keeps that
// under lavapipe's 65,535 (Ops.NeuralMix).
const WG: u32 = 256u;
const CMAX: u32 = 2048u;
const LOWEST: f32 = -3.40282346e38;

struct Meta { rows: u32, c: u32, v: u32, s: u32, kn: u32 }

@group(0) @binding(0) var<storage, read> h: array<f32>;
@group(0) @binding(1) var<storage, read> vals: array<i32>;
@group(0) @binding(2) var<storage, read> rp: array<f32>;
@group(0) @binding(3) var<storage, read_write> keys: array<f32>;
@group(0) @binding(4) var<storage, read_write> scratch: array<f32>;
@group(0) @binding(5) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

var<workgroup> uq: array<f32, CMAX>;
var<workgroup> red: array<vec4<f32>, WG>;
var<workgroup> mode_sh: u32;

// merge combines two (max, sum of exp(x - max)) pairs.
fn merge(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    let mx = max(a.x, b.x);
    return vec2<f32>(mx, a.y * exp(a.x - mx) + b.y * exp(b.x - mx));
}

// push adds x to a (max, sum) pair.
fn push(a: vec2<f32>, x: f32) -> vec2<f32> {
    if (x > a.x) {
        return vec2<f32>(x, a.y * exp(a.x - x) + 1.0);
    }
    return vec2<f32>(a.x, a.y + exp(x - a.x));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * nwg.x + wid.x;
    if (row >= params.rows) {
        return; // uniform per workgroup
    }
    let rb = row * 8u;
    let theta = rp[rb + 4u];
    let cw = rp[rb + 5u];
    let dw = rp[rb + 6u];
    let slot = rp[rb + 7u];
    if (lid == 0u) {
        mode_sh = select(0u, 1u, slot >= 0.0) | select(0u, 2u, cw != 0.0 || dw != 0.0);
    }
    let mode = workgroupUniformLoad(&mode_sh);
    if (mode == 0u) {
        return; // uniform: mode came through workgroupUniformLoad
    }
    let kn = params.kn;
    let oo = min(u32(max(rp[rb], 0.0)), kn);
    let ol = min(min(u32(max(rp[rb + 1u], 0.0)), kn - oo), params.s);
    let po = min(u32(max(rp[rb + 2u], 0.0)), kn);
    let pl = min(min(u32(max(rp[rb + 3u], 0.0)), kn - po), params.s - ol);

    // The unit query.
    let hb = row * params.c;
    var ss = 0.0;
    for (var i = lid; i < params.c; i = i + WG) {
        let x = h[hb + i];
        uq[i] = x;
        ss = ss + x * x;
    }
    red[lid] = vec4<f32>(ss, 0.0, 0.0, 0.0);
    workgroupBarrier();
    for (var st = WG / 2u; st > 0u; st = st >> 1u) {
        if (lid < st) {
            red[lid] = red[lid] + red[lid + st];
        }
        workgroupBarrier();
    }
    let tot = red[0].x;
    let inv = select(0.0, inverseSqrt(tot), tot > 0.0);
    for (var i = lid; i < params.c; i = i + WG) {
        let x = uq[i] * inv;
        uq[i] = x;
        if ((mode & 1u) != 0u) {
            keys[u32(slot) * params.c + i] = x;
        }
    }
    workgroupBarrier();
    if ((mode & 2u) == 0u) {
        return; // uniform
    }

    // Scaled similarities into scratch, running (max, sum) per range.
    let sb = row * params.s;
    let n = ol + pl;
    var ao = vec2<f32>(LOWEST, 0.0);
    var ap = vec2<f32>(LOWEST, 0.0);
    for (var k = lid; k < n; k = k + WG) {
        var key = oo + k;
        if (k >= ol) {
            key = po + (k - ol);
        }
        let kb = key * params.c;
        var dot = 0.0;
        for (var i = 0u; i < params.c; i = i + 1u) {
            dot = dot + uq[i] * keys[kb + i];
        }
        let t = theta * (dot - 1.0);
        scratch[sb + k] = t;
        if (k < ol) {
            ao = push(ao, t);
        } else {
            ap = push(ap, t);
        }
    }
    red[lid] = vec4<f32>(ao, ap);
    storageBarrier();
    workgroupBarrier();
    for (var st = WG / 2u; st > 0u; st = st >> 1u) {
        if (lid < st) {
            let a = red[lid];
            let b = red[lid + st];
            red[lid] = vec4<f32>(merge(a.xy, b.xy), merge(a.zw, b.zw));
        }
        workgroupBarrier();
    }
    let r = red[0];
    var so = 0.0;
    if (ol > 0u) {
        so = cw / r.y;
    }
    var sp = 0.0;
    if (pl > 0u) {
        sp = dw / r.w;
    }

    // Each invocation mixes the vocabulary entries it owns (j % WG == lid).
    let db = row * params.v;
    let keep = 1.0 - cw - dw;
    for (var j = lid; j < params.v; j = j + WG) {
        dst[db + j] = keep * exp(dst[db + j]);
    }
    for (var k = 0u; k < n; k = k + 1u) {
        var y = 0;
        var mx = r.x;
        var sc = so;
        if (k < ol) {
            y = vals[oo + k];
        } else {
            y = vals[po + (k - ol)];
            mx = r.z;
            sc = sp;
        }
        if (y >= 0 && u32(y) < params.v && u32(y) % WG == lid) {
            dst[db + u32(y)] = dst[db + u32(y)] + exp(scratch[sb + k] - mx) * sc;
        }
    }
    for (var j = lid; j < params.v; j = j + WG) {
        dst[db + j] = log(dst[db + j]);
    }
}
