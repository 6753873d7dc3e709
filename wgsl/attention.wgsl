// attention: causal multi-head attention over the KV cache, any Tq (prefill,
// chunked prefill, ragged batches). For query row (b, i < qlen[b]) and head
// h, with p = start[b] + i and D = C/H:
//   dst[b,i,hD:(h+1)D] = softmax_j(q·K[b,j,hD:(h+1)D] / sqrt(D)) · V[b,j,hD:(h+1)D],  j = 0..p
// where q = qkv[b,i,hD:(h+1)D]. Padding rows (i >= qlen[b]) get zeros.
// Bindings: qkv(B,Tq,3C), kCache, vCache (bound to sequences
// [seq_base, seq_base+nseq): (nseq,Tmax,C)), start(B) i32, qlen(B) i32 read;
// dst(B,Tq,C) write.
// Meta: nseq, seq_base, Tq, C, Tmax, H, D, nqb (query blocks per sequence), scale.
// Dispatch: one workgroup per (sequence of the chunk, head, block of WG
// queries): nseq*H*nqb workgroups over (x, y); linear id = wid.y*nwg.x + wid.x.
// One invocation per query streams over the keys with an online softmax
// (running max, f32 accumulation), KB keys at a time so that the rescale of
// the accumulator is paid once per KB keys. The key loop bound is the same
// for the whole workgroup (the last query's position), so every K and V load
// has the same address in all invocations: one broadcast load on lavapipe's
// SIMD lanes and on a GPU's warp; keys past a query's own position are
// masked. No barriers and no workgroup memory.
// Bounds: p is clamped into [0, Tmax-1] and qlen into [0, Tq], so a caller
// breaking start[b]+qlen[b] <= Tmax never makes the kernel read out of
// bounds; head columns past D are read clamped and multiplied by zero.
// D <= 4*DMAX4 (the host checks).
// Portability: llvmpipe/lavapipe stops every loop of an invocation after
// 65535 iterations in total (LP_MAX_TGSI_LOOP_ITERATIONS, shared by all
// loops; constant-trip loops are unrolled and do not count). Hence the
// head columns go four at a time and the KB keys of a block are unrolled:
// a query costs ~ (p/KB)*(2*ceil(D/4)+1) iterations, enough for ~31k keys
// at D = 64 and ~16k at D = 128.
const WG: u32 = 64u;
const DMAX4: u32 = 32u; // head size up to 128, as vec4s
const KB: u32 = 16u;
const NEG: f32 = -3.0e38; // a finite -infinity: exp(NEG - m) == 0, NEG - NEG == 0

//#include attention_cache_bindings

//#include attention_kv4

//#include attention_block ROWBLOCK=qb
    let b = params.seq_base + bl;
    let i = qb * WG + lid;
    if (i >= params.tq) {
        return;
    }
    let c = params.c;
    let d = params.d;
    let d4 = (d + 3u) / 4u;
    let dm1 = d - 1u;
    let tmax = params.tmax;
    let out = (b * params.tq + i) * c + h * d;
    let ql = u32(clamp(qlen[b], 0, i32(params.tq)));
    if (i >= ql || tmax == 0u) {
        for (var e = 0u; e < d; e++) {
            dst[out + e] = 0.0;
        }
        return;
    }
    let st = start[b];
    let p = u32(clamp(st + i32(i), 0, i32(tmax) - 1));
    // The last real query of the block bounds the keys of the whole block.
    let ilast = min(ql, (qb + 1u) * WG) - 1u;
    let pmax = u32(clamp(st + i32(ilast), 0, i32(tmax) - 1));

    let qrow = (b * params.tq + i) * 3u * c + h * d;
//#include attention_query
}
