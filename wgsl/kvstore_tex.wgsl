// kvstore_tex: kvstore for CPU adapters that keep texture copies of the KV
// cache (read by attention_decode_lanes_tex): the same writes into the
// cache buffers, and each written group of 4 channels also into the
// textures, so that the copies stay current without being made again.
// For every row i < qlen[b] of sequence b, with p = start[b] + i:
//   kCache[b,p,:] = qkv[b,i,C:2C],  vCache[b,p,:] = qkv[b,i,2C:3C],
// and texel L = ((b * Tmax + p) * C + 4t) / 4 of ktex and vtex, at
// (L % w, L / w), holds channels 4t..4t+3 (as u32 bits). C % 4 == 0.
// Positions outside [0, Tmax) are skipped; qlen is clamped to [0, Tq].
// Bindings: qkv(B,Tq,3C), start(B) i32, qlen(B) i32 read; kCache, vCache
// (B,Tmax,C) write; group 2: ktex, vtex write-only storage textures.
// Meta: nseq (= B), seq_base (0), Tq, C, Tmax, w (texture width).
// Dispatch: one invocation per (sequence, i, 4 channels): ceil(B*Tq*C/4 /
// WG) workgroups over (x, y); linear id = wid.y * nwg.x + wid.x.
const WG: u32 = 64u;

struct Meta { nseq: u32, seq_base: u32, tq: u32, c: u32, tmax: u32, w: u32 }

@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> start: array<i32>;
@group(0) @binding(2) var<storage, read> qlen: array<i32>;
@group(0) @binding(3) var<storage, read_write> kcache: array<f32>;
@group(0) @binding(4) var<storage, read_write> vcache: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;
@group(2) @binding(0) var ktex: texture_storage_2d<rgba32uint, write>;
@group(2) @binding(1) var vtex: texture_storage_2d<rgba32uint, write>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let c = params.c;
    let c4 = c / 4u;
    let g = (wid.y * nwg.x + wid.x) * WG + lid;
    if (g >= params.nseq * params.tq * c4) {
        return;
    }
    let t = g % c4;
    let i = (g / c4) % params.tq;
    let b = params.seq_base + g / (c4 * params.tq);
    if (i32(i) >= qlen[b]) {
        return;
    }
    let p = start[b] + i32(i);
    if (p < 0 || p >= i32(params.tmax)) {
        return;
    }
    let src = (b * params.tq + i) * 3u * c + 4u * t;
    let row = (b * params.tmax + u32(p)) * c + 4u * t;
    var k: vec4<f32>;
    var v: vec4<f32>;
    for (var j = 0u; j < 4u; j = j + 1u) {
        k[j] = qkv[src + c + j];
        v[j] = qkv[src + 2u * c + j];
        kcache[row + j] = k[j];
        vcache[row + j] = v[j];
    }
    let l = row / 4u;
    let at = vec2<u32>(l % params.w, l / params.w);
    textureStore(ktex, at, bitcast<vec4<u32>>(k));
    textureStore(vtex, at, bitcast<vec4<u32>>(v));
}
