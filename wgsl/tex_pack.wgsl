// tex_pack: copies rows of a matrix (rows, K) into the rgba32uint texture
// layout of the texture matmuls (matmul_tex*.wgsl). The source is read as
// u32 words, per_word values each: 1 for f32 (a row is K words), 2 for f16
// (a row is ceil(K/2) words of two halves). Row r's texel t holds its words
// 4t..4t+3, values past K zeroed whatever the row's padding held, at texel
// ((r % rows_per) * kt + t, r / rows_per) (row-major: x), or with blocked = 1
// (weights) at linear index L = (r / 32) * 32 * kt + t * 32 + r % 32, texel
// (L % rows_per, L / rows_per), rows_per then being the texture's width;
// r = row_base + the source row.
// Bindings: src (rows, words per row) u32 read (a chunk of rows of a larger
// matrix is bound at its offset); group 2: the storage texture written.
// Meta: rows, k, kt (texels per row), rows_per, row_base, per_word, blocked.
// Dispatch: one invocation per texel, rows * kt of them, in workgroups of
// WG over an (x, y) grid (linear id = (wid.y * nwg.x + wid.x) * WG + lid).
const WG: u32 = 64u;

struct Meta { rows: u32, k: u32, kt: u32, rows_per: u32, row_base: u32, per_word: u32, blocked: u32 }

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(1) @binding(0) var<uniform> params: Meta;
@group(2) @binding(0) var dst: texture_storage_2d<rgba32uint, write>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i >= params.rows * params.kt) {
        return;
    }
    let r = i / params.kt;
    let t = i % params.kt;
    let per = params.per_word;
    let kw = (params.k + per - 1u) / per;
    var v = vec4<u32>(0u);
    for (var j = 0u; j < 4u; j = j + 1u) {
        let word = 4u * t + j;
        let first = per * word; // index of the word's first value
        if (first + per <= params.k) {
            v[j] = src[r * kw + word];
        } else if (first < params.k) {
            v[j] = src[r * kw + word] & 0xffffu; // f16: the low half only
        }
    }
    let row = params.row_base + r;
    if (params.blocked != 0u) {
        let l = (row / 32u) * 32u * params.kt + t * 32u + row % 32u;
        textureStore(dst, vec2<u32>(l % params.rows_per, l / params.rows_per), v);
    } else {
        textureStore(dst, vec2<u32>((row % params.rows_per) * params.kt + t, row / params.rows_per), v);
    }
}
