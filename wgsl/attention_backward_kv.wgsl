// attention_backward_kv: the key/value half of attention_train's backward,
// flash attention style. For key row (b, j < qlen[b]) and head h, over the
// queries i = j..qlen[b]-1, with s = q_i·k_j * scale:
//   P = exp(s - lse[b,h,i]),  dP = dO_i·v_j,  dS = P (dP - delta[b,h,i])
//   dv_j = sum_i P dO_i,   dk_j = scale * sum_i dS q_i
// written to dqkv[b,j,C+hD..] and dqkv[b,j,2C+hD..]; keys j >= qlen[b]
// (padding) get zeros. delta comes from attention_backward_q.wgsl.
// Bindings: qkv(nseq,T,3C), dout(nseq,T,C) (chunks of sequences starting
// at seq_base), lse(B,H,T), delta(B,H,T), qlen(B) i32 (whole) read;
// dqkv(nseq,T,3C) (chunk) read-write (only the k and v thirds are written).
// Meta: nseq, seq_base, T, C, H, D, nqb, scale.
// Dispatch: one workgroup per (sequence, head, block of WG keys) over (x, y);
// one invocation per key walks the queries KB at a time from the block's
// first key to the last real query (broadcast loads; queries before the
// key masked). No barriers.
// Portability: ~ (T/KB)*(3*ceil(D/4)+2) loop iterations per key.
const WG: u32 = 64u;
const DMAX4: u32 = 32u;
const KB: u32 = 16u;

struct Meta { nseq: u32, seq_base: u32, tq: u32, c: u32, nhead: u32, d: u32, nqb: u32, scale: f32 }

@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> lse: array<f32>;
@group(0) @binding(3) var<storage, read> delta: array<f32>;
@group(0) @binding(4) var<storage, read> qlen: array<i32>;
@group(0) @binding(5) var<storage, read_write> dqkv: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

//#include attention_ld4 LD4NAME=ldqkv LD4BUF=qkv

//#include attention_ld4 LD4NAME=lddout LD4BUF=dout

//#include attention_train_block QBLK=jb QROW=j
    let c3 = 3u * c;
    let d = params.d;
    let d4 = (d + 3u) / 4u;
    let dm1 = d - 1u;
    let krow = (bl * tq + j) * c3 + c + h * d;
    let ql = u32(clamp(qlen[params.seq_base + bl], 0, i32(tq)));
    if (j >= ql) {
        for (var e = 0u; e < d; e++) {
            dqkv[krow + e] = 0.0;
            dqkv[krow + c + e] = 0.0;
        }
        return;
    }
    var kk: array<vec4<f32>, DMAX4>;
    var vv: array<vec4<f32>, DMAX4>;
    var dk: array<vec4<f32>, DMAX4>;
    var dv: array<vec4<f32>, DMAX4>;
    for (var e4 = 0u; e4 < d4; e4++) {
        let e = 4u * e4;
        let valid = vec4<u32>(e, e + 1u, e + 2u, e + 3u) < vec4<u32>(d);
        kk[e4] = select(vec4<f32>(0.0), ldqkv(krow, e, dm1) * params.scale, valid);
        vv[e4] = select(vec4<f32>(0.0), ldqkv(krow + c, e, dm1), valid);
        dk[e4] = vec4<f32>(0.0);
        dv[e4] = vec4<f32>(0.0);
    }
    let qbase = bl * tq * c3 + h * d;  // q of row 0
    let gbase = bl * tq * c + h * d;   // dO of row 0
    let lbase = ((params.seq_base + bl) * nh + h) * tq; // lse, delta bound whole
    let ilast = ql - 1u;
    for (var i0 = jb * WG; i0 <= ilast; i0 += KB) {
        var s: array<f32, KB>;
        var dp: array<f32, KB>;
        for (var k = 0u; k < KB; k++) {
            s[k] = 0.0;
            dp[k] = 0.0;
        }
        for (var e4 = 0u; e4 < d4; e4++) {
            let ke = kk[e4];
            let ve = vv[e4];
            for (var k = 0u; k < KB; k++) {
                let i = min(i0 + k, ilast);
                s[k] += dot(ke, ldqkv(qbase + i * c3, 4u * e4, dm1));
                dp[k] += dot(ve, lddout(gbase + i * c, 4u * e4, dm1));
            }
        }
        var p: array<f32, KB>;
        for (var k = 0u; k < KB; k++) {
            let i = min(i0 + k, ilast);
            let live = i0 + k >= j && i0 + k <= ilast;
            let pk = select(0.0, exp(s[k] - lse[lbase + i]), live);
            p[k] = pk;
            s[k] = pk * (dp[k] - delta[lbase + i]); // dS, unscaled
        }
        for (var e4 = 0u; e4 < d4; e4++) {
            var ak = dk[e4];
            var av = dv[e4];
            for (var k = 0u; k < KB; k++) {
                let i = min(i0 + k, ilast);
                ak += s[k] * ldqkv(qbase + i * c3, 4u * e4, dm1);
                av += p[k] * lddout(gbase + i * c, 4u * e4, dm1);
            }
            dk[e4] = ak;
            dv[e4] = av;
        }
    }
    for (var e = 0u; e < d; e++) {
        dqkv[krow + e] = dk[e / 4u][e % 4u] * params.scale;
        dqkv[krow + c + e] = dv[e / 4u][e % 4u];
    }
}
