// attention_decode_lanes_xt: attention_decode_lanes_tex that also writes
// dst into the group 2 texture xt as the texture matmuls read x (gpu/xtex.go:
// row b's texel t, channels 4t..4t+3, at ((b % rows_per) * C/4 + t, b /
// rows_per)), so the output projection reads its input without a copy. The
// bits of dst are attention_decode_lanes_tex's.
// attention_decode_lanes_tex: attention_decode_lanes reading K and V from
// texture copies of the caches (kept current by kvstore_tex): on lavapipe a
// texel fetch costs a fraction of the storage-buffer loads it replaces.
// C and D must be multiples of 4. The bits are attention_decode_lanes'.
// From attention_decode_lanes: attention_decode (one new token per sequence,
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
// Bindings: qkv(B,1,3C), start(B) i32, qlen(B) i32 read; dst(B,1,C) write;
// group 2: ktex, vtex (the caches' copies), xt (written). Meta: as
// attention_decode (nqb unused, seq_base 0: all sequences in one dispatch)
// plus w, the textures' width, and rows_per, xt's rows per texture row.
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

struct Meta { nseq: u32, seq_base: u32, tq: u32, c: u32, tmax: u32, nhead: u32, d: u32, nqb: u32, scale: f32, w: u32, rows_per: u32 }

@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> start: array<i32>;
@group(0) @binding(2) var<storage, read> qlen: array<i32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;
@group(2) @binding(0) var ktex: texture_storage_2d<rgba32uint, read>;
@group(2) @binding(1) var vtex: texture_storage_2d<rgba32uint, read>;
@group(2) @binding(2) var xt: texture_storage_2d<rgba32uint, write>;

//#include attention_kv4_tex

// The texel of output row b, channels h*D + 4*e4.. (D a multiple of 4).
fn xt_at(b: u32, h: u32, e4: u32) -> vec2<u32> {
    let kt = params.c / 4u;
    return vec2<u32>((b % params.rows_per) * kt + h * params.d / 4u + e4, b / params.rows_per);
}

fn out_zero(b: u32, h: u32) {
    for (var e4 = 0u; e4 < params.d / 4u; e4++) {
        textureStore(xt, xt_at(b, h, e4), vec4<u32>(0u));
    }
}

// out_vec stores channels h*D + 4*e4.. of row b: acc[e4] * inv, lane by
// lane the product dst got.
fn out_vec(b: u32, h: u32, e4: u32, v: vec4<f32>) {
    textureStore(xt, xt_at(b, h, e4), bitcast<vec4<u32>>(v));
}

//#include attention_decode_lanes_main
