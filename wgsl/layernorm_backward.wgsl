// layernorm_backward: the input gradient of LayerNorm over rows of C values,
// with the row statistics recomputed from x (two passes, as the forward):
//   xhat = (x - mean) * rstd,  g = dout * gamma
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
// and the statistics saved for layernorm_backward_params:
//   stats[row_base + row] = (mean, rstd).
// Bindings: x(rows,C), dout(rows,C) (a chunk of rows starting at row
// row_base), gamma(C) read; dx(rows,C) write, stats(M,2) write.
// Meta: rows (in this chunk), C, eps, row_base.
// Dispatch: one workgroup per row, over (x, y); linear id = wid.y * nwg.x + wid.x.
// Portability: 64 invocations share a row: lavapipe runs a workgroup as
// one coroutine per 8 lanes and every barrier switches through them all,
// so fewer lanes mean cheaper barriers; three reductions per row.
const WG: u32 = 64u;

struct Meta { rows: u32, c: u32, eps: f32, row_base: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

var<workgroup> red: array<vec2<f32>, WG>;

fn reduce2(v: vec2<f32>, lid: u32) -> vec2<f32> {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            red[lid] = red[lid] + red[lid + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * nwg.x + wid.x;
    if (row >= params.rows) {
        return; // uniform per workgroup
    }
    let c = params.c;
    let base = row * c;
    let fc = f32(c);
    var s = 0.0;
    for (var j = lid; j < c; j += WG) {
        s += x[base + j];
    }
    let mean = reduce2(vec2<f32>(s, 0.0), lid).x / fc;
    var q = 0.0;
    for (var j = lid; j < c; j += WG) {
        let d = x[base + j] - mean;
        q += d * d;
    }
    let rstd = inverseSqrt(reduce2(vec2<f32>(q, 0.0), lid).x / fc + params.eps);
    var ab = vec2<f32>(0.0);
    for (var j = lid; j < c; j += WG) {
        let g = dout[base + j] * gamma[j];
        ab += vec2<f32>(g, g * (x[base + j] - mean) * rstd);
    }
    let sums = reduce2(ab, lid) / fc;
    for (var j = lid; j < c; j += WG) {
        let xh = (x[base + j] - mean) * rstd;
        let g = dout[base + j] * gamma[j];
        dx[base + j] = rstd * (g - sums.x - xh * sums.y);
    }
    if (lid == 0u) {
        let o = 2u * (params.row_base + row);
        stats[o] = mean;
        stats[o + 1u] = rstd;
    }
}
