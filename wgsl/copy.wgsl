// copy: dst = src over n vec4<f32> values; the memory-bandwidth probe that
// sets the "bandwidth ceiling" every bandwidth-bound kernel is measured
// against, and a device-side tensor copy.
// Bindings: src(n*4) read; dst(n*4) write. Meta: n (vec4 count).
// Dispatch: ceil(n / WG) workgroups over (x, y); linear id = wid.y * nwg.x + wid.x.
const WG: u32 = 256u;

struct Meta { n: u32 }

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
@group(1) @binding(0) var<uniform> params: Meta;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i < params.n) {
        dst[i] = src[i];
    }
}
