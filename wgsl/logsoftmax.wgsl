// logsoftmax: dst[m,j] = x[m,j] - logsumexp(x[m,:]) over rows of V values.
// Bindings: x(rows, V) f32 read; dst(rows, V) f32 write (the same row chunk
// of both tensors). Meta: rows (in this chunk), V.
// Dispatch: one workgroup per row, over (x, y); linear id = wid.y * nwg.x + wid.x.
// One read pass keeps a running (max, sum of exp(x - max)) per invocation,
// four strided elements at a time (five exps per four elements), merged by a
// tree reduction; a second pass writes (x - max) - log(sum), which keeps the
// result exact to f32 rounding even for logits offset by thousands.
// Portability: the running max starts at the lowest finite f32, not -inf,
// because WGSL lets compilers assume infinities never occur.
const WG: u32 = 256u;
const LOWEST: f32 = -3.40282346e38;

struct Meta { rows: u32, v: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

var<workgroup> red_m: array<f32, WG>;
var<workgroup> red_s: array<f32, WG>;

//#include rowmax_at ATBUF=x

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * nwg.x + wid.x;
    if (row >= params.rows) {
        return; // uniform per workgroup
    }
    let base = row * params.v;
//#include rowmax_scan4
    let mx = red_m[0];
    let ls = log(red_s[0]);
    for (var j = lid; j < params.v; j = j + WG) {
        dst[base + j] = (x[base + j] - mx) - ls;
    }
}
