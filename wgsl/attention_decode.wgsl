// attention_decode: attention for one new token per sequence (Tq = 1):
// decode of many sequences, each at its own position. For sequence b with
// qlen[b] >= 1, p = start[b], head h, D = C/H:
//   dst[b,0,hD:(h+1)D] = softmax_j(q·K[b,j,hD:(h+1)D] / sqrt(D)) · V[b,j,hD:(h+1)D],  j = 0..p
// with q = qkv[b,0,hD:(h+1)D]; a sequence with qlen[b] <= 0 gets zeros.
// Bindings: qkv(B,1,3C), kCache, vCache (bound to sequences
// [seq_base, seq_base+nseq): (nseq,Tmax,C)), start(B) i32, qlen(B) i32 read;
// dst(B,1,C) write.
// Meta: nseq, seq_base, Tq (= 1), C, Tmax, H, D, nqb (unused, 1), scale.
// Dispatch: one workgroup per (sequence of the chunk, head): nseq*H
// workgroups over (x, y); linear id = wid.y * nwg.x + wid.x.
// The keys are dealt round-robin to the WG invocations; each keeps its own
// online softmax (running max, sum, f32 accumulator over D) over KB keys at
// a time, and the WG partial results are merged once at the end through
// workgroup memory (a handful of barriers per workgroup, whatever the context).
// Bounds: p is clamped into [0, Tmax-1], so a caller breaking
// start[b]+qlen[b] <= Tmax never makes the kernel read out of bounds.
// D <= 4*DMAX4 (the host checks); head columns past D are read clamped and
// multiplied by zero.
// Portability: llvmpipe/lavapipe stops every loop of an invocation after
// 65535 iterations in total (LP_MAX_TGSI_LOOP_ITERATIONS); an invocation
// here runs ~ (p/(KB*WG))*(2*ceil(D/4)+1) iterations, enough for ~500k keys at D = 64.
const WG: u32 = 64u;
const DMAX4: u32 = 32u; // head size up to 128, as vec4s
const KB: u32 = 4u;
const DC: u32 = 16u; // accumulator columns merged per round
const WGDC: u32 = 1024u; // WG * DC (a template argument cannot be an expression in naga)
const NEG: f32 = -3.0e38; // a finite -infinity: exp(NEG - m) == 0, NEG - NEG == 0

struct Meta { nseq: u32, seq_base: u32, tq: u32, c: u32, tmax: u32, nhead: u32, d: u32, nqb: u32, scale: f32 }

@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> kcache: array<f32>;
@group(0) @binding(2) var<storage, read> vcache: array<f32>;
@group(0) @binding(3) var<storage, read> start: array<i32>;
@group(0) @binding(4) var<storage, read> qlen: array<i32>;
@group(0) @binding(5) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

var<workgroup> red_m: array<f32, WG>;
var<workgroup> red_l: array<f32, WG>;
var<workgroup> red_a: array<f32, WGDC>;

//#include attention_kv4

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let id = wid.y * nwg.x + wid.x;
    let nh = params.nhead;
    if (id >= params.nseq * nh) {
        return; // uniform per workgroup: barriers stay in uniform control flow
    }
    let h = id % nh;
    let bl = id / nh;
    let b = params.seq_base + bl;
    let c = params.c;
    let d = params.d;
    let tmax = params.tmax;
    let out = b * c + h * d;
    if (qlen[b] <= 0 || tmax == 0u) {
        for (var e = lid; e < d; e += WG) {
            dst[out + e] = 0.0;
        }
        return; // uniform per workgroup
    }
    let p = u32(clamp(start[b], 0, i32(tmax) - 1));

    let d4 = (d + 3u) / 4u;
    let dm1 = d - 1u;
    var q: array<vec4<f32>, DMAX4>;
    var acc: array<vec4<f32>, DMAX4>;
    let qrow = b * 3u * c + h * d;
    for (var e4 = 0u; e4 < d4; e4++) {
        let e = 4u * e4;
        let valid = vec4<u32>(e, e + 1u, e + 2u, e + 3u) < vec4<u32>(d);
        let x = vec4<f32>(qkv[qrow + min(e, dm1)], qkv[qrow + min(e + 1u, dm1)],
                          qkv[qrow + min(e + 2u, dm1)], qkv[qrow + min(e + 3u, dm1)]);
        q[e4] = select(vec4<f32>(0.0), x * params.scale, valid);
        acc[e4] = vec4<f32>(0.0);
    }
    let base = bl * tmax * c + h * d; // K[bl, 0, hD]
    var m = NEG;
    var l = 0.0;
    // Keys j0 + lid + k*WG, k < KB, for j0 = 0, KB*WG, ...
    for (var j0 = 0u; j0 <= p; j0 += KB * WG) {
        var s: array<f32, KB>;
        for (var k = 0u; k < KB; k++) {
            s[k] = 0.0; // explicitly: naga may hoist the declaration out of the loop
        }
        for (var e4 = 0u; e4 < d4; e4++) {
            let qe = q[e4];
            for (var k = 0u; k < KB; k++) {
                s[k] += dot(qe, k4(base + min(j0 + lid + k * WG, p) * c, 4u * e4, dm1));
            }
        }
        var bm = m;
        for (var k = 0u; k < KB; k++) {
            s[k] = select(s[k], NEG, j0 + lid + k * WG > p);
            bm = max(bm, s[k]);
        }
        let corr = exp(m - bm);
        l *= corr;
        for (var k = 0u; k < KB; k++) {
            s[k] = exp(s[k] - bm);
            l += s[k];
        }
        for (var e4 = 0u; e4 < d4; e4++) {
            var a = acc[e4] * corr;
            for (var k = 0u; k < KB; k++) {
                a += s[k] * v4(base + min(j0 + lid + k * WG, p) * c, 4u * e4, dm1);
            }
            acc[e4] = a;
        }
        m = bm;
    }

    // Merge the WG partial softmaxes: global max, rescaled sums and accumulators.
    red_m[lid] = m;
    workgroupBarrier();
    var gm = NEG;
    for (var t = 0u; t < WG; t++) {
        gm = max(gm, red_m[t]);
    }
    let f = exp(m - gm); // 0 for an invocation that saw no key
    red_l[lid] = l * f;
    workgroupBarrier();
    var gl = 0.0;
    for (var t = 0u; t < WG; t++) {
        gl += red_l[t];
    }
    let inv = 1.0 / gl;
    for (var e0 = 0u; e0 < d; e0 += DC) {
        for (var k = 0u; k < DC; k++) {
            let e = min(e0 + k, 4u * DMAX4 - 1u);
            red_a[lid * DC + k] = acc[e / 4u][e % 4u] * f;
        }
        workgroupBarrier();
        if (lid < DC && e0 + lid < d) {
            var a = 0.0;
            for (var t = 0u; t < WG; t++) {
                a += red_a[t * DC + lid];
            }
            dst[out + e0 + lid] = a * inv;
        }
        workgroupBarrier();
    }
}
