// sample: dst[row_base+m] = one token drawn from row m of logits(rows, V) with
// the row's uniform u = uniforms[row_base+m] in [0, 1), under temperature,
// top-k and top-p, without sorting the row.
//
// Algorithm (gpu/ref/vocab.go runs the same steps in plain Go):
//  1. max pass: mx and its lowest index g (NaN never wins). A row whose max
//     is not finite gets g (greedy).
//  2. Logits are ranked by key(x), the monotone u32 image of the f32 bits
//     (NaN maps to 0 and has weight 0). A threshold search finds the largest
//     key t with W(t) >= goal, where W(t) sums a weight over the tokens with
//     key >= t. It builds t three bits at a time (two in the top digit):
//     each pass over the row accumulates W at the 7 candidate digits at
//     once, per invocation over a strided slice, reduced in two levels (G
//     invocations each sum WG/G partials, then every invocation sums the G
//     results in order). The answer lies between a lower bound lo and the
//     max's key, so the digits above their highest differing bit come from
//     lo and the search starts at the digit holding that bit (11 passes at
//     most); tokens below the current prefix cost almost nothing.
//       top-k (0 < k < V): weight 1, goal k, lo = the smallest of the
//       invocations' max keys if at least k invocations saw a number (their
//       maxima are k distinct tokens), else the row's min. W counts tokens,
//       exact in f32, so t is the key of the k-th largest logit: every
//       token tied with the k-th value is kept (the kept set may exceed k).
//       top-p (top_p < 1): weight p = exp((x - mx) * inv_t) for tokens kept
//       by top-k, else 0; lo = the top-k threshold (or the row's min); goal
//       top_p * Z with Z = W(start) from the first pass. The result is the
//       smallest set of highest-probability tokens (ties included) whose
//       mass reaches top_p * Z.
//  3. Inverse CDF in index order over the kept tokens (key >= t): invocation
//     i sums p over its contiguous chunk i*C..(i+1)*C (C = ceil(V / WG)), a
//     two-level exclusive scan of the partials (within groups of G lanes,
//     then over the G group sums) gives the chunk offsets and the total,
//     r = u * total, and the last invocation with a positive partial
//     whose offset is <= r walks its chunk for the first token whose running
//     sum exceeds r - offset (its last positive-weight token if rounding
//     leaves none).
// Bindings: logits(rows, V) f32 (a row chunk starting at row row_base),
// uniforms(M) f32 read; dst(M) i32 write.
// Meta: rows (in this chunk), V (< 2^24, so counts are exact in f32),
// row_base, k (0: no top-k), top_p (>= 1: no top-p), inv_t = 1/temperature,
// first (the chunk row of workgroup 0: the host may split a chunk's rows
// over several dispatches).
// Greedy sampling (temperature <= 0, or k == 1) is dispatched to argmax.wgsl.
// The host compiles this file with WG = 64 for CPU adapters (gpu/ops_vocab.go);
// WG must be a multiple of G.
// Dispatch: one workgroup per row, over (x, y); linear id = wid.y * nwg.x + wid.x.
// Portability: NaN is detected from its bits (WGSL lets compilers assume
// x != x is false); workgroupUniformLoad makes the row's max a uniform value.
// Two-level reductions keep barriers few (2 per pass): lavapipe runs each
// barrier as a switch through every invocation's coroutine.
// Workgroup memory: 2 x WG vec4 + 5 x WG scalars + 2 x G vec4 + 5 x G ~ 14.2 KiB.
const WG: u32 = 256u;
const G: u32 = 16u; // reductions and the scan run in two levels of G groups
const GS: u32 = WG / G; // lanes per group
const NONE: u32 = 0xffffffffu;

struct Meta { rows: u32, v: u32, row_base: u32, k: u32, top_p: f32, inv_t: f32, first: u32 }

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> uniforms: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<i32>;
@group(1) @binding(0) var<uniform> params: Meta;

var<workgroup> acc_lo: array<vec4<f32>, WG>; // W at candidate digits 0..3
var<workgroup> acc_hi: array<vec4<f32>, WG>; // W at candidate digits 4..7
var<workgroup> part_lo: array<vec4<f32>, G>;
var<workgroup> part_hi: array<vec4<f32>, G>;
var<workgroup> group_v: array<f32, G>;
var<workgroup> group_i: array<u32, G>;
var<workgroup> min_k: array<u32, WG>;
var<workgroup> lane_k: array<u32, WG>;
var<workgroup> group_k: array<u32, G>;
var<workgroup> group_lk: array<u32, G>;
var<workgroup> group_n: array<u32, G>;
var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;
var<workgroup> scan: array<f32, WG>;
var<workgroup> mx_sh: f32;
var<workgroup> key_sh: u32; // hands a key to workgroupUniformLoad
var<workgroup> owner: atomic<u32>;

fn is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

fn is_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// key maps f32 to u32 preserving order (-inf < ... < -0 < +0 < ... < +inf);
// NaN maps to 0, below every number.
fn key(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    if (is_nan(x)) {
        return 0u;
    }
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

// beats reports whether candidate (x, j) replaces the current best (v, i).
fn beats(x: f32, j: u32, v: f32, i: u32) -> bool {
    if (j == NONE || is_nan(x)) {
        return false;
    }
    if (i == NONE) {
        return true;
    }
    return x > v || (x == v && j < i);
}

// prob is the unnormalised probability of logit x: exp((x - mx) / T).
fn prob(x: f32, mx: f32) -> f32 {
    return select(exp((x - mx) * params.inv_t), 0.0, is_nan(x));
}

// search returns the largest key t with W(t) >= goal and W(t) > 0 (or its
// start if none). mass selects the weight: false counts tokens, true sums
// prob over tokens with key >= floor and sets the goal to top_p times their
// total. The answer lies in [lo, hi] (keys of the smallest candidate and of
// the max), so the digits above the highest bit where lo and hi differ are
// taken from lo and the search starts at the digit holding that bit.
fn search(base: u32, lid: u32, mx: f32, mass: bool, floor: u32, count_goal: f32, lo_key: u32, hi_key: u32) -> u32 {
    let diff = lo_key ^ hi_key;
    let hb = select(31 - i32(countLeadingZeros(diff)), 0, diff == 0u);
    let sh0 = select(hb / 3 * 3, 30, hb >= 30);
    var t = 0u;
    if (sh0 < 30) {
        t = lo_key & ~((1u << u32(sh0 + 3)) - 1u);
    }
    var goal = count_goal;
    for (var sh: i32 = sh0; sh >= 0; sh = sh - 3) {
        let s = u32(sh);
        var lo = vec4<f32>(0.0);
        var hi = vec4<f32>(0.0);
        for (var j = lid; j < params.v; j = j + WG) {
            let x = logits[base + j];
            let kk = key(x);
            if (kk >= t) {
                var w = select(1.0, 0.0, is_nan(x));
                if (mass) {
                    w = 0.0;
                    if (kk >= floor) {
                        w = prob(x, mx); // skipped below the floor: exp is the costly part
                    }
                }
                let e = vec4<u32>(min((kk - t) >> s, 8u));
                lo = lo + select(vec4<f32>(0.0), vec4<f32>(w), e >= vec4<u32>(0u, 1u, 2u, 3u));
                hi = hi + select(vec4<f32>(0.0), vec4<f32>(w), e >= vec4<u32>(4u, 5u, 6u, 7u));
            }
        }
        acc_lo[lid] = lo;
        acc_hi[lid] = hi;
        workgroupBarrier();
        if (lid < G) {
            var sl = vec4<f32>(0.0);
            var sh4 = vec4<f32>(0.0);
            for (var i = 0u; i < GS; i = i + 1u) {
                sl = sl + acc_lo[lid + G * i];
                sh4 = sh4 + acc_hi[lid + G * i];
            }
            part_lo[lid] = sl;
            part_hi[lid] = sh4;
        }
        workgroupBarrier();
        var a = vec4<f32>(0.0);
        var b = vec4<f32>(0.0);
        for (var q = 0u; q < G; q = q + 1u) {
            a = a + part_lo[q];
            b = b + part_hi[q];
        }
        if (mass && sh == sh0) {
            goal = params.top_p * a.x; // a.x = W(start) = Z
        }
        // The largest candidate digit d whose W still reaches the goal (W
        // does not grow with d); written as selects, not an indexed array,
        // which lavapipe spills to memory.
        let ok_lo = (a >= vec4<f32>(goal)) & (a > vec4<f32>(0.0));
        let ok_hi = (b >= vec4<f32>(goal)) & (b > vec4<f32>(0.0)) & vec4<bool>(sh != 30);
        var best = 0u;
        best = select(best, 1u, ok_lo.y);
        best = select(best, 2u, ok_lo.z);
        best = select(best, 3u, ok_lo.w);
        best = select(best, 4u, ok_hi.x);
        best = select(best, 5u, ok_hi.y);
        best = select(best, 6u, ok_hi.z);
        best = select(best, 7u, ok_hi.w);
        t = t + (best << s);
    }
    // Every invocation holds the same t; loading it back makes that visible
    // to the uniformity analysis (the next search loops on it).
    if (lid == 0u) {
        key_sh = t;
    }
    return workgroupUniformLoad(&key_sh);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = params.first + wid.y * nwg.x + wid.x;
    if (row >= params.rows) {
        return; // uniform per workgroup
    }
    let out = params.row_base + row;
    let base = row * params.v;
    let v = params.v;
    if (lid == 0u) {
        atomicStore(&owner, 0u);
    }

    // 1. max, greedy index and the smallest key of a number.
    var bv = 0.0;
    var bi = NONE;
    var mk = NONE;
    for (var j = lid; j < v; j = j + WG) {
        let x = logits[base + j];
        if (beats(x, j, bv, bi)) {
            bv = x;
            bi = j;
        }
        if (!is_nan(x)) {
            mk = min(mk, key(x));
        }
    }
    best_v[lid] = bv;
    best_i[lid] = bi;
    min_k[lid] = mk;
    lane_k[lid] = select(key(bv), NONE, bi == NONE);
    workgroupBarrier();
    if (lid < G) {
        var gv = 0.0;
        var gi = NONE;
        var gk = NONE;
        var glk = NONE;
        var gn = 0u;
        for (var i = 0u; i < GS; i = i + 1u) {
            let k = lid + G * i;
            if (beats(best_v[k], best_i[k], gv, gi)) {
                gv = best_v[k];
                gi = best_i[k];
            }
            gk = min(gk, min_k[k]);
            glk = min(glk, lane_k[k]);
            gn = gn + select(1u, 0u, lane_k[k] == NONE);
        }
        group_v[lid] = gv;
        group_i[lid] = gi;
        group_k[lid] = gk;
        group_lk[lid] = glk;
        group_n[lid] = gn;
    }
    workgroupBarrier();
    bv = 0.0;
    bi = NONE;
    var kmin = NONE;  // smallest key of a number in the row
    var lkmin = NONE; // smallest of the invocations' max keys
    var lanes = 0u;   // invocations that saw a number
    for (var q = 0u; q < G; q = q + 1u) {
        if (beats(group_v[q], group_i[q], bv, bi)) {
            bv = group_v[q];
            bi = group_i[q];
        }
        kmin = min(kmin, group_k[q]);
        lkmin = min(lkmin, group_lk[q]);
        lanes = lanes + group_n[q];
    }
    let greedy = i32(select(bi, 0u, bi == NONE));
    if (lid == 0u) {
        // +inf; "+ 0u * bi" keeps it a runtime value: browsers (Tint) reject a
        // constant expression that evaluates to infinity
        mx_sh = select(bitcast<f32>(0x7f800000u + 0u * bi), bv, bi != NONE);
    }
    let mx = workgroupUniformLoad(&mx_sh);
    if (!is_finite(mx)) {
        if (lid == 0u) {
            dst[out] = greedy;
        }
        return; // uniform: mx came through workgroupUniformLoad
    }

    // 2. thresholds.
    // The k-th largest key is at least the smallest of the invocations' max
    // keys when at least k invocations saw a number (their maxima are k
    // distinct tokens): a much tighter start for the top-k search than the
    // row's min, and tokens below it cost no work in the search passes.
    if (lid == 0u) {
        key_sh = select(kmin, lkmin, params.k <= lanes);
    }
    let klo = workgroupUniformLoad(&key_sh);
    workgroupBarrier(); // key_sh is written again below
    if (lid == 0u) {
        key_sh = kmin;
    }
    let kmin_u = workgroupUniformLoad(&key_sh);
    let kmax = key(mx);
    var thr = 0u;
    if (params.k > 0u && params.k < v) {
        thr = search(base, lid, mx, false, 0u, f32(params.k), klo, kmax);
    }
    if (params.top_p < 1.0) {
        thr = search(base, lid, mx, true, thr, 0.0, max(thr, kmin_u), kmax);
    }

    // 3. inverse CDF over the kept tokens in index order.
    let c = (v + WG - 1u) / WG;
    let start = min(lid * c, v);
    let end = min(start + c, v);
    var part = 0.0;
    for (var j = start; j < end; j = j + 1u) {
        let x = logits[base + j];
        if (key(x) >= thr) {
            part = part + prob(x, mx);
        }
    }
    scan[lid] = part;
    workgroupBarrier();
    if (lid < G) {
        // In-group exclusive prefix over lanes GS*lid .. GS*lid+GS-1, and the group's sum.
        var run = 0.0;
        for (var i = 0u; i < GS; i = i + 1u) {
            let k = GS * lid + i;
            let pv = scan[k];
            scan[k] = run;
            run = run + pv;
        }
        part_lo[lid].x = run;
    }
    workgroupBarrier();
    var excl = 0.0;
    var total = 0.0;
    for (var q = 0u; q < G; q = q + 1u) {
        if (q == lid / GS) {
            excl = total;
        }
        total = total + part_lo[q].x;
    }
    excl = excl + scan[lid];
    let r = uniforms[out] * total;
    if (part > 0.0 && excl <= r) {
        atomicMax(&owner, lid + 1u);
    }
    workgroupBarrier();
    let own = atomicLoad(&owner);
    if (own == 0u) {
        if (lid == 0u) {
            dst[out] = greedy; // no positive mass: unreachable with a finite max
        }
        return;
    }
    if (lid + 1u != own) {
        return;
    }
    let rl = r - excl;
    var run = 0.0;
    var pick = NONE;
    var last = NONE;
    for (var j = start; j < end; j = j + 1u) {
        let x = logits[base + j];
        if (key(x) >= thr) {
            let p = prob(x, mx);
            if (p > 0.0) {
                run = run + p;
                last = j;
                if (run > rl) {
                    pick = j;
                    break;
                }
            }
        }
    }
    if (pick == NONE) {
        pick = last;
    }
    dst[out] = i32(pick);
}
