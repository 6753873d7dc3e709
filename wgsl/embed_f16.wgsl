// embed_f16: dst[m,:] = wte[tokens[m],:] + wpe[pos[m],:] with f16 tables
// stored packed, two halves per u32, rows padded to an even length CP.
// Bindings: wte(rows, CP/2) u32 (a chunk starting at row_base), wpe(P, CP/2)
// u32, tokens(M) i32, pos(M) i32 read; dst(M,C) f32 write.
// Meta: M, C, row_base, row_count. Tokens outside the chunk are left alone.
// Dispatch: ceil(M*C / WG) workgroups over (x, y).
// Portability: unpack2x16float is core WGSL, so no shader-f16 is needed.
const WG: u32 = 256u;

struct Meta { m: u32, c: u32, row_base: u32, row_count: u32 }

@group(0) @binding(0) var<storage, read> wte: array<u32>;
@group(0) @binding(1) var<storage, read> wpe: array<u32>;
@group(0) @binding(2) var<storage, read> tokens: array<i32>;
@group(0) @binding(3) var<storage, read> pos: array<i32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

fn half_at(word: u32, k: u32) -> f32 {
    return unpack2x16float(word)[k & 1u];
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i >= params.m * params.c) {
        return;
    }
    let m = i / params.c;
    let j = i % params.c;
    let tok = u32(tokens[m]) - params.row_base;
    if (tok >= params.row_count) {
        return;
    }
    let cp = (params.c + 1u) / 2u * 2u;
    let e = tok * cp + j;
    let p = u32(pos[m]) * cp + j;
    dst[i] = half_at(wte[e / 2u], e) + half_at(wpe[p / 2u], p);
}
