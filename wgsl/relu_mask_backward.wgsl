// relu_mask_backward: the backward of relu_mask (y = max(x, 0) * mask):
// dx = dy * mask where x > 0, else 0, elementwise over n f32 values.
// has_mask = 0: no dropout (mask is not read; any tensor may be bound).
// Bindings: dy(n), x(n), mask(n) read; dx(n) write. Meta: n, has_mask.
// Dispatch: ceil(n / WG) workgroups over (x, y); linear id = wid.y * nwg.x + wid.x.
const WG: u32 = 256u;

struct Meta { n: u32, has_mask: u32 }

@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> mask: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i >= params.n) {
        return;
    }
    var g = select(0.0, dy[i], x[i] > 0.0);
    if (params.has_mask != 0u) {
        g = g * mask[i];
    }
    dx[i] = g;
}
