// crossentropy_backward: the gradient of L = scale * sum_m CE(logits[m], t_m)
// fused with the softmax, for a chunk of rows starting at row row_base:
//   dlogits[m, j] = scale * (softmax(logits[m])_j - (j == t_m))
// t_m = targets[row_base + m]. A negative target masks the row: it is
// written as zeros and the logits are not read. A target >= V writes NaN
// (a programmer error the host cannot see; it surfaces in the update).
// Bindings: logits(rows,V), targets(M) i32 read; dlogits(rows,V) write.
// Meta: rows (in this chunk), V, row_base, scale.
// Dispatch: one workgroup per row, over (x, y); linear id = wid.y * nwg.x + wid.x.
// Two passes over the row: a running (max, sum of exp) per invocation merged
// by a tree reduction, then the write pass.
const WG: u32 = 256u;
const LOWEST: f32 = -3.40282346e38;

struct Meta { rows: u32, v: u32, row_base: u32, scale: f32 }

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> targets: array<i32>;
@group(0) @binding(2) var<storage, read_write> dlogits: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

var<workgroup> red_m: array<f32, WG>;
var<workgroup> red_s: array<f32, WG>;
var<workgroup> target_sh: i32;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * nwg.x + wid.x;
    if (row >= params.rows) {
        return; // uniform per workgroup
    }
    if (lid == 0u) {
        target_sh = targets[params.row_base + row];
    }
    let t = workgroupUniformLoad(&target_sh);
    let base = row * params.v;
    if (t < 0 || u32(t) >= params.v) {
        let fill = select(bitcast<f32>(0x7fc00000u + 0u * u32(t)), 0.0, t < 0); // a runtime NaN: browsers (Tint) reject a constant one
        for (var j = lid; j < params.v; j += WG) {
            dlogits[base + j] = fill;
        }
        return; // uniform: t came through workgroupUniformLoad
    }
    var m = LOWEST;
    var s = 0.0;
    for (var j = lid; j < params.v; j += WG) {
        let x = logits[base + j];
        let mn = max(m, x);
        s = s * exp(m - mn) + exp(x - mn);
        m = mn;
    }
//#include rowmax_reduce
    // p = exp(x - max) / sum: x - max is exact for nearby values, whereas
    // x - (max + log(sum)) would carry lse's rounding (ulp(1000) = 6e-5),
    // which p - 1 at the target magnifies.
    let mx = red_m[0];
    let inv_s = 1.0 / red_s[0];
    let tu = u32(t);
    for (var j = lid; j < params.v; j += WG) {
        let p = exp(logits[base + j] - mx) * inv_s;
        dlogits[base + j] = params.scale * select(p, p - 1.0, j == tu);
    }
}
