// relu_mask: dst = max(x, 0) * mask, elementwise over n f32 values: the
// hyper-network's activation with its dropout folded in (mask holds 0 for a
// dropped unit and 1/(1-p) for a kept one). has_mask = 0 is inference: no
// dropout, and any tensor may be bound as mask.
// Bindings: x(n), mask(n) read; dst(n) write. Meta: n, has_mask.
// Dispatch: ceil(n / WG) workgroups over (x, y); linear id = wid.y * nwg.x + wid.x.
const WG: u32 = 256u;

struct Meta { n: u32, has_mask: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> mask: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i >= params.n) {
        return;
    }
    var v = max(x[i], 0.0);
    if (params.has_mask != 0u) {
        v = v * mask[i];
    }
    dst[i] = v;
}
