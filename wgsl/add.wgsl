// add: dst = a + b, elementwise over n f32 values.
// Bindings: a(n), b(n) read; dst(n) write. Meta: n.
// Dispatch: ceil(n / WG) workgroups, split over (x, y) when above the
// per-dimension limit; linear id = wid.y * nwg.x + wid.x.
const WG: u32 = 256u;

struct Meta { n: u32 }

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i < params.n) {
        dst[i] = a[i] + b[i];
    }
}
