// crossentropy: dst[row_base+m] = logsumexp(logits[m,:]) - logits[m, t] with
// t = targets[row_base+m], i.e. -log softmax(logits[m])[t].
// A negative target masks the row: dst = 0 and the row is not read. A target
// >= V is a programmer error the host cannot see without a readback: the
// kernel never reads out of bounds and writes NaN, so the error surfaces in
// the loss.
// Bindings: logits(rows, V) f32 (a row chunk starting at row row_base), targets(M)
// i32 read; dst(M) f32 write. Meta: rows (in this chunk), V, row_base.
// Dispatch: one workgroup per row, over (x, y); linear id = wid.y * nwg.x + wid.x.
// One read pass with a running (max, sum of exp(x - max)) per invocation,
// four strided elements at a time, merged by a tree reduction; the loss is
// formed as log(sum) - (x_t - max) so large logit offsets cancel exactly.
const WG: u32 = 256u;
const LOWEST: f32 = -3.40282346e38;

struct Meta { rows: u32, v: u32, row_base: u32 }

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> targets: array<i32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

var<workgroup> red_m: array<f32, WG>;
var<workgroup> red_s: array<f32, WG>;
var<workgroup> target_sh: i32;

//#include rowmax_at ATBUF=logits

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * nwg.x + wid.x;
    if (row >= params.rows) {
        return; // uniform per workgroup
    }
    let out = params.row_base + row;
    if (lid == 0u) {
        target_sh = targets[out];
    }
    let t = workgroupUniformLoad(&target_sh);
    if (t < 0 || u32(t) >= params.v) {
        if (lid == 0u) {
            dst[out] = select(bitcast<f32>(0x7fc00000u + 0u * u32(t)), 0.0, t < 0); // a runtime NaN: browsers (Tint) reject a constant one
        }
        return; // uniform: t came through workgroupUniformLoad
    }
    let base = row * params.v;
//#include rowmax_scan4
    if (lid == 0u) {
        dst[out] = log(red_s[0]) - (logits[base + u32(t)] - red_m[0]);
    }
}
