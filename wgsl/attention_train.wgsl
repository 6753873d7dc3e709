// attention_train: the training forward of causal self-attention, no KV
// cache: every sequence starts at position 0 and q, k, v are the thirds of
// qkv. For query row (b, i < qlen[b]) and head h, D = C/H:
//   s_j = q_i·k_j / sqrt(D),  j = 0..i
//   dst[b,i,hD:(h+1)D] = softmax_j(s) · V,   lse[b,h,i] = log sum_j exp(s_j)
// Padding rows (i >= qlen[b]) get dst = 0 and lse = 0. lse lets
// attention_backward_*.wgsl recompute the probabilities exactly.
// Bindings: qkv(nseq,T,3C), a chunk of sequences starting at seq_base,
// qlen(B) i32 (whole) read; dst(nseq,T,C), lse(B,H,T) write
// (bound whole: it is small, and its rows per sequence need not be aligned).
// Meta: nseq, seq_base, T, C, H, D, nqb (query blocks per sequence), scale.
// Dispatch: one workgroup per (sequence of the chunk, head, block of WG
// queries), over (x, y); linear id = wid.y*nwg.x + wid.x.
// One invocation per query with an online softmax over blocks of KB keys,
// as attention.wgsl; the key loop bound is the block's last real query, so
// every key load is the same address in all lanes (a broadcast), and keys
// after a query's own position are masked. No barriers.
// Portability: lavapipe stops an invocation's loops after 65,535 iterations
// in all; a query costs ~ (i/KB)*(2*ceil(D/4)+1), enough for ~31k tokens at D = 64.
const WG: u32 = 64u;
const DMAX4: u32 = 32u; // head size up to 128, as vec4s
const KB: u32 = 16u;
const NEG: f32 = -3.0e38;

struct Meta { nseq: u32, seq_base: u32, tq: u32, c: u32, nhead: u32, d: u32, nqb: u32, scale: f32 }

@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> qlen: array<i32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read_write> lse: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

// Four head columns e..e+3 at word offset row (clamped to the head's last column dm1).
//#include attention_ld4 LD4NAME=ld4 LD4BUF=qkv

//#include attention_train_block QBLK=qb QROW=i
    let d = params.d;
    let d4 = (d + 3u) / 4u;
    let dm1 = d - 1u;
    let out = (bl * tq + i) * c + h * d;
    let lo = ((params.seq_base + bl) * nh + h) * tq + i; // lse is bound whole
    let ql = u32(clamp(qlen[params.seq_base + bl], 0, i32(tq)));
    if (i >= ql) {
        for (var e = 0u; e < d; e++) {
            dst[out + e] = 0.0;
        }
        lse[lo] = 0.0;
        return;
    }
    let pmax = min(ql, (qb + 1u) * WG) - 1u; // the block's last real query
    let c3 = 3u * c;
    let qrow = (bl * tq + i) * c3 + h * d;
    var q: array<vec4<f32>, DMAX4>;
    var acc: array<vec4<f32>, DMAX4>;
    for (var e4 = 0u; e4 < d4; e4++) {
        let e = 4u * e4;
        let valid = vec4<u32>(e, e + 1u, e + 2u, e + 3u) < vec4<u32>(d);
        q[e4] = select(vec4<f32>(0.0), ld4(qrow, e, dm1) * params.scale, valid);
        acc[e4] = vec4<f32>(0.0);
    }
    let kbase = bl * tq * c3 + c + h * d; // k of row 0; v is C further
    var m = NEG;
    var l = 0.0;
    for (var j0 = 0u; j0 <= pmax; j0 += KB) {
        var s: array<f32, KB>;
        for (var k = 0u; k < KB; k++) {
            s[k] = 0.0;
        }
        for (var e4 = 0u; e4 < d4; e4++) {
            let qe = q[e4];
            for (var k = 0u; k < KB; k++) {
                s[k] += dot(qe, ld4(kbase + min(j0 + k, pmax) * c3, 4u * e4, dm1));
            }
        }
        var bm = m;
        for (var k = 0u; k < KB; k++) {
            s[k] = select(s[k], NEG, j0 + k > i);
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
                a += s[k] * ld4(kbase + c + min(j0 + k, pmax) * c3, 4u * e4, dm1);
            }
            acc[e4] = a;
        }
        m = bm;
    }
    let inv = 1.0 / l;
    for (var e = 0u; e < d; e++) {
        dst[out + e] = acc[e / 4u][e % 4u] * inv;
    }
    lse[lo] = m + log(l);
}
