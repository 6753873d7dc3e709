// colsum_acc: dst[j] += sum over rows i in [row0, row0+rows) of src[i*N + j],
// the bias gradient of a matmul (dBias += column sums of dOut).
// Bindings: src(R,N) f32 read; dst(N) f32 read-write. Meta: row0, rows, N.
// Dispatch: ceil(N / WG) workgroups over (x, y); one invocation per column
// sums its rows in order (deterministic, no atomics); neighbouring
// invocations read neighbouring columns.
// Portability: the host keeps rows per dispatch well under lavapipe's
// 65,535 loop iterations per invocation and accumulates dispatch by dispatch.
const WG: u32 = 64u;

struct Meta { row0: u32, rows: u32, n: u32 }

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let j = (wid.y * nwg.x + wid.x) * WG + lid;
    if (j >= params.n) {
        return;
    }
    var s = 0.0;
    let end = params.row0 + params.rows;
    for (var i = params.row0; i < end; i++) {
        s += src[i * params.n + j];
    }
    dst[j] = dst[j] + s;
}
