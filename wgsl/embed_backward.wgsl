// embed_backward: table[ids[m]] += dout[m] for every row m, deterministic
// and without atomics: the invocation of (leader row m, channel j) walks the
// chain of rows that share m's id (linked by embed_backward_link.wgsl) in
// increasing row order, sums their dout[., j] and adds the sum once:
//   table[id - row_base, j] += sum over rows r with ids[r] == id of dout[r, j]
// The table is bound as the chunk of rows [row_base, row_base + rows) (a
// 50257 x 768 f32 table exceeds a 128 MiB binding); ids outside the chunk
// are left to the other chunks' dispatches, and ids outside the table to none.
// Bindings: dout(M,C), ids(M) i32, link(2M) i32 read; table(rows,C) read-write.
// Meta: M, C, row_base, rows.
// Dispatch: ceil(M*C / WG) workgroups over (x, y); invocation i is
// (row i / C, channel i % C), so neighbours read neighbouring channels.
// Portability: a chain has at most M rows, below lavapipe's 65,535 loop
// iterations (the host checks M).
const WG: u32 = 256u;

struct Meta { m: u32, c: u32, row_base: u32, rows: u32 }

@group(0) @binding(0) var<storage, read> dout: array<f32>;
@group(0) @binding(1) var<storage, read> ids: array<i32>;
@group(0) @binding(2) var<storage, read> link: array<i32>;
@group(0) @binding(3) var<storage, read_write> table: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    let c = params.c;
    if (i >= params.m * c) {
        return;
    }
    let m = i / c;
    let j = i % c;
    if (link[params.m + m] == 0) {
        return;
    }
    let id = ids[m];
    if (id < i32(params.row_base) || id >= i32(params.row_base + params.rows)) {
        return;
    }
    var s = 0.0;
    var r = i32(m);
    loop {
        s += dout[u32(r) * c + j];
        r = link[u32(r)];
        if (r < 0) {
            break;
        }
    }
    let o = (u32(id) - params.row_base) * c + j;
    table[o] = table[o] + s;
}
