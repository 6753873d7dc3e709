// layernorm_backward_params: the parameter gradients of LayerNorm,
//   dgamma[j] += sum_i dout[i,j] * (x[i,j] - mean_i) * rstd_i
//   dbeta[j]  += sum_i dout[i,j]
// over rows i in [row0, row0+rows) of a chunk of rows, with (mean, rstd)
// saved by layernorm_backward at stats[row_base + i].
// Bindings: x(R,C), dout(R,C) (the chunk starting at row row_base), stats(M,2)
// read; dgamma(C), dbeta(C) read-write. Meta: row0, rows, C, row_base.
// Dispatch: ceil(C / WG) workgroups over (x, y); one invocation per column
// sums its rows in order (deterministic, no atomics).
// Portability: the host keeps rows per dispatch well under lavapipe's
// 65,535 loop iterations per invocation and accumulates dispatch by dispatch.
const WG: u32 = 64u;

struct Meta { row0: u32, rows: u32, c: u32, row_base: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> stats: array<f32>;
@group(0) @binding(3) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(4) var<storage, read_write> dbeta: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let j = (wid.y * nwg.x + wid.x) * WG + lid;
    let c = params.c;
    if (j >= c) {
        return;
    }
    var sg = 0.0;
    var sb = 0.0;
    let end = params.row0 + params.rows;
    for (var i = params.row0; i < end; i++) {
        let o = 2u * (params.row_base + i);
        let g = dout[i * c + j];
        sg += g * (x[i * c + j] - stats[o]) * stats[o + 1u];
        sb += g;
    }
    dgamma[j] = dgamma[j] + sg;
    dbeta[j] = dbeta[j] + sb;
}
