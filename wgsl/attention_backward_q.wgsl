// attention_backward_q: the query half of attention_train's backward, flash
// attention style (probabilities recomputed from lse, never stored). For
// query row (b, i < qlen[b]) and head h, with s_j = q_i·k_j * scale:
//   P_j = exp(s_j - lse[b,h,i]) for j <= i,  dP_j = dO_i·v_j
//   delta_i = dO_i·O_i  (= sum_j P_j dP_j)
//   dq_i = scale * sum_j P_j (dP_j - delta_i) k_j
// written to dqkv[b,i,hD:(h+1)D]; delta_i is saved in delta[b,h,i] for
// attention_backward_kv.wgsl. Padding rows get dq = 0 and delta = 0.
// Bindings: qkv(nseq,T,3C), dout(nseq,T,C), out(nseq,T,C) (chunks of
// sequences starting at seq_base), lse(B,H,T), qlen(B) i32 (whole) read;
// dqkv(nseq,T,3C) (chunk), delta(B,H,T) (whole) write.
// Meta: nseq, seq_base, T, C, H, D, nqb, scale.
// Dispatch: one workgroup per (sequence, head, block of WG queries) over
// (x, y); one invocation per query walks the keys KB at a time up to the
// block's last real query (broadcast loads; later keys masked). No barriers.
// Portability: ~ (i/KB)*(3*ceil(D/4)+2) loop iterations per query, well under
// lavapipe's 65,535 for T = 1024.
const WG: u32 = 64u;
const DMAX4: u32 = 32u;
const KB: u32 = 16u;

struct Meta { nseq: u32, seq_base: u32, tq: u32, c: u32, nhead: u32, d: u32, nqb: u32, scale: f32 }

@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> out: array<f32>;
@group(0) @binding(3) var<storage, read> lse: array<f32>;
@group(0) @binding(4) var<storage, read> qlen: array<i32>;
@group(0) @binding(5) var<storage, read_write> dqkv: array<f32>;
@group(0) @binding(6) var<storage, read_write> delta: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

//#include attention_ld4 LD4NAME=ldqkv LD4BUF=qkv

//#include attention_train_block QBLK=qb QROW=i
    let c3 = 3u * c;
    let d = params.d;
    let d4 = (d + 3u) / 4u;
    let dm1 = d - 1u;
    let qrow = (bl * tq + i) * c3 + h * d;
    let orow = (bl * tq + i) * c + h * d;
    let lo = ((params.seq_base + bl) * nh + h) * tq + i; // lse is bound whole
    let ql = u32(clamp(qlen[params.seq_base + bl], 0, i32(tq)));
    if (i >= ql) {
        for (var e = 0u; e < d; e++) {
            dqkv[qrow + e] = 0.0;
        }
        delta[lo] = 0.0;
        return;
    }
    let pmax = min(ql, (qb + 1u) * WG) - 1u;
    var q: array<vec4<f32>, DMAX4>;
    var g: array<vec4<f32>, DMAX4>;
    var acc: array<vec4<f32>, DMAX4>;
    var dd = 0.0;
    for (var e4 = 0u; e4 < d4; e4++) {
        let e = 4u * e4;
        let valid = vec4<u32>(e, e + 1u, e + 2u, e + 3u) < vec4<u32>(d);
        q[e4] = select(vec4<f32>(0.0), ldqkv(qrow, e, dm1) * params.scale, valid);
        let ge = select(vec4<f32>(0.0), vec4<f32>(dout[orow + min(e, dm1)], dout[orow + min(e + 1u, dm1)],
                        dout[orow + min(e + 2u, dm1)], dout[orow + min(e + 3u, dm1)]), valid);
        g[e4] = ge;
        dd += dot(ge, vec4<f32>(out[orow + min(e, dm1)], out[orow + min(e + 1u, dm1)],
                               out[orow + min(e + 2u, dm1)], out[orow + min(e + 3u, dm1)]));
        acc[e4] = vec4<f32>(0.0);
    }
    let li = lse[lo];
    let kbase = bl * tq * c3 + c + h * d;
    for (var j0 = 0u; j0 <= pmax; j0 += KB) {
        var s: array<f32, KB>;
        var dp: array<f32, KB>;
        for (var k = 0u; k < KB; k++) {
            s[k] = 0.0;
            dp[k] = 0.0;
        }
        for (var e4 = 0u; e4 < d4; e4++) {
            let qe = q[e4];
            let ge = g[e4];
            for (var k = 0u; k < KB; k++) {
                let row = kbase + min(j0 + k, pmax) * c3;
                s[k] += dot(qe, ldqkv(row, 4u * e4, dm1));
                dp[k] += dot(ge, ldqkv(row + c, 4u * e4, dm1));
            }
        }
        for (var k = 0u; k < KB; k++) {
            let p = select(exp(s[k] - li), 0.0, j0 + k > i);
            s[k] = p * (dp[k] - dd); // dS, unscaled
        }
        for (var e4 = 0u; e4 < d4; e4++) {
            var a = acc[e4];
            for (var k = 0u; k < KB; k++) {
                a += s[k] * ldqkv(kbase + min(j0 + k, pmax) * c3, 4u * e4, dm1);
            }
            acc[e4] = a;
        }
    }
    for (var e = 0u; e < d; e++) {
        dqkv[qrow + e] = acc[e / 4u][e % 4u] * params.scale;
    }
    delta[lo] = dd;
}
