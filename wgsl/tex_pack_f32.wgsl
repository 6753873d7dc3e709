// tex_pack_f32: copies rows of an f32 matrix (rows, K) into the rgba32uint
// texture layout of the texture matmuls (matmul_tex*.wgsl): row r's texel t
// (its values 4t..4t+3 as f32 bits, zeros past K) goes to texel
// ((r % rows_per) * kt + t, r / rows_per), r = row_base + the source row.
// Bindings: src (rows, K) f32 read (a chunk of rows of a larger matrix is
// bound at its offset); group 2: the storage texture written.
// Meta: rows, k, kt = ceil(K / 4), rows_per, row_base.
// Dispatch: one invocation per texel, rows * kt of them, in workgroups of
// WG over an (x, y) grid (linear id = (wid.y * nwg.x + wid.x) * WG + lid).
const WG: u32 = 64u;

struct Meta { rows: u32, k: u32, kt: u32, rows_per: u32, row_base: u32 }

@group(0) @binding(0) var<storage, read> src: array<f32>;
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
    var v = vec4<u32>(0u);
    for (var j = 0u; j < 4u; j = j + 1u) {
        let c = 4u * t + j;
        if (c < params.k) {
            v[j] = bitcast<u32>(src[r * params.k + c]);
        }
    }
    let row = params.row_base + r;
    textureStore(dst, vec2<u32>((row % params.rows_per) * params.kt + t, row / params.rows_per), v);
}
