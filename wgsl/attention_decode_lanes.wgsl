// attention_decode_lanes: attention_decode (one new token per sequence,
// Tq = 1) for CPU adapters: one invocation per (sequence, head), each
// running an online softmax over all of its keys alone, so there is no
// workgroup memory and no barrier. On lavapipe a barrier costs tens of
// microseconds per workgroup (its invocations are coroutines over SIMD
// lanes), which made the barrier-merging kernel take ~25 ms per call for
// 8 sequences whatever the context; here the 8 invocations of a workgroup
// are 8 (sequence, head) pairs side by side in the SIMD lanes. The query's
// work is attention.wgsl's own (wgsl/attention_query.wgsli), so a decode row
// gets the same bits here as in a mixed prefill/decode step there.
// For sequence b with qlen[b] >= 1, p = start[b], head h, D = C/H:
//   dst[b,0,hD:(h+1)D] = softmax_j(q·K[b,j,hD:(h+1)D] / sqrt(D)) · V[b,j,hD:(h+1)D],  j = 0..p
// with q = qkv[b,0,hD:(h+1)D]; a sequence with qlen[b] <= 0 gets zeros.
// Bindings, Meta: as attention_decode (nqb unused).
// Dispatch: ceil(nseq*H / WG) workgroups over (x, y); invocation
// (wid.y * nwg.x + wid.x) * WG + lid handles pair (b = id / H, h = id % H).
// Bounds: p is clamped into [0, Tmax-1]; D <= 4*DMAX4.
// Portability: lavapipe ends every loop of an invocation after 65535
// iterations in total (constant-trip loops are unrolled and do not count);
// one runs ~ (p/KB + 1)*(2*ceil(D/4) + 1) + 2*ceil(D/4) of them, well
// within that for any context a GPT-2 has (~29k keys at D = 64).
const WG: u32 = 8u;
const DMAX4: u32 = 32u; // head size up to 128, as vec4s
const KB: u32 = 16u; // keys per online-softmax step: as attention.wgsl
const NEG: f32 = -3.0e38; // a finite -infinity: exp(NEG - m) == 0, NEG - NEG == 0

//#include attention_cache_bindings

//#include attention_kv4

// No copy of the output (attention_decode_lanes_xt makes one).
fn out_zero(b: u32, h: u32) {}
fn out_vec(b: u32, h: u32, e4: u32, v: vec4<f32>) {}

//#include attention_decode_lanes_main
