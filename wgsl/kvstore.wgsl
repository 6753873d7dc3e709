// kvstore: append the keys and values of a step to the KV cache.
// For every row i < qlen[b] of sequence b, with p = start[b] + i:
//   kCache[b,p,:] = qkv[b,i,C:2C],  vCache[b,p,:] = qkv[b,i,2C:3C].
// Nothing else of the caches is written. Positions outside [0, Tmax) are
// skipped (callers guarantee start[b]+qlen[b] <= Tmax; a violation must not
// write out of bounds), and qlen is clamped to [0, Tq].
// Bindings: qkv(B,Tq,3C), start(B) i32, qlen(B) i32 read; kCache, vCache
// write, each bound to the sequences [seq_base, seq_base+nseq) only, i.e.
// (nseq,Tmax,C), so that caches over one storage binding can be split.
// Meta: nseq, seq_base, Tq, C, Tmax.
// Dispatch: one invocation per (sequence of the chunk, i, c): ceil(nseq*Tq*C / WG)
// workgroups over (x, y); linear id = wid.y * nwg.x + wid.x. Adjacent
// invocations copy adjacent channels, so loads and stores are contiguous.
const WG: u32 = 256u;

struct Meta { nseq: u32, seq_base: u32, tq: u32, c: u32, tmax: u32 }

@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> start: array<i32>;
@group(0) @binding(2) var<storage, read> qlen: array<i32>;
@group(0) @binding(3) var<storage, read_write> kcache: array<f32>;
@group(0) @binding(4) var<storage, read_write> vcache: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let c = params.c;
    let g = (wid.y * nwg.x + wid.x) * WG + lid;
    if (g >= params.nseq * params.tq * c) {
        return;
    }
    let ch = g % c;
    let i = (g / c) % params.tq;
    let bl = g / (c * params.tq); // sequence within the bound chunk
    let b = params.seq_base + bl;
    if (i32(i) >= qlen[b]) {
        return;
    }
    let p = start[b] + i32(i);
    if (p < 0 || p >= i32(params.tmax)) {
        return;
    }
    let src = (b * params.tq + i) * 3u * c + ch;
    let dst = (bl * params.tmax + u32(p)) * c + ch;
    kcache[dst] = qkv[src + c];
    vcache[dst] = qkv[src + 2u * c];
}
