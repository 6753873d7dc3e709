// argmax: dst[row_base+m] = index of the largest logit of row m, the lowest
// index among ties. NaN never wins (it is detected from its bits, since WGSL
// lets compilers assume x != x is false); a row with no non-NaN value gives 0.
// -0 and +0 compare equal, so they tie.
// Bindings: logits(rows, V) f32 read (a row chunk starting at row row_base of
// the whole tensor); dst(M) i32 write. Meta: rows (in this chunk), V, row_base.
// Dispatch: one workgroup per row, over (x, y); linear id = wid.y * nwg.x + wid.x.
// Each invocation scans a strided slice of the row in increasing index order
// (so a strict > keeps its lowest index), then a tree reduction breaks ties
// by index.
const WG: u32 = 256u;
const NONE: u32 = 0xffffffffu;

struct Meta { rows: u32, v: u32, row_base: u32 }

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<i32>;
@group(1) @binding(0) var<uniform> params: Meta;

var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;

fn is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

// beats reports whether candidate (x, j) replaces the current best (v, i).
fn beats(x: f32, j: u32, v: f32, i: u32) -> bool {
    if (j == NONE || is_nan(x)) {
        return false;
    }
    if (i == NONE) {
        return true;
    }
    return x > v || (x == v && j < i);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * nwg.x + wid.x;
    if (row >= params.rows) {
        return; // uniform per workgroup
    }
    let base = row * params.v;
    var bv = 0.0;
    var bi = NONE;
    for (var j = lid; j < params.v; j = j + WG) {
        let x = logits[base + j];
        if (beats(x, j, bv, bi)) {
            bv = x;
            bi = j;
        }
    }
    best_v[lid] = bv;
    best_i[lid] = bi;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s && beats(best_v[lid + s], best_i[lid + s], best_v[lid], best_i[lid])) {
            best_v[lid] = best_v[lid + s];
            best_i[lid] = best_i[lid + s];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        dst[params.row_base + row] = i32(select(best_i[0], 0u, best_i[0] == NONE));
    }
}
