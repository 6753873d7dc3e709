// embed_f32: dst[m,:] = wte[tokens[m],:] + wpe[pos[m],:] with f32 tables.
// Bindings: wte(rows, C) (a chunk of the vocabulary starting at row_base),
// wpe(P, C), tokens(M) i32, pos(M) i32 read; dst(M,C) write.
// Meta: M, C, row_base, row_count. Rows whose token lies outside
// [row_base, row_base+row_count) are left alone: the host dispatches one
// chunk per slice of a vocabulary too large for one storage binding.
// Dispatch: ceil(M*C / WG) workgroups over (x, y).
const WG: u32 = 256u;

struct Meta { m: u32, c: u32, row_base: u32, row_count: u32 }

@group(0) @binding(0) var<storage, read> wte: array<f32>;
@group(0) @binding(1) var<storage, read> wpe: array<f32>;
@group(0) @binding(2) var<storage, read> tokens: array<i32>;
@group(0) @binding(3) var<storage, read> pos: array<i32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i >= params.m * params.c) {
        return;
    }
    let m = i / params.c;
    let j = i % params.c;
    let tok = u32(tokens[m]) - params.row_base; // wraps for tokens below the chunk
    if (tok >= params.row_count) {
        return;
    }
    dst[i] = wte[tok * params.c + j] + wpe[u32(pos[m]) * params.c + j];
}
