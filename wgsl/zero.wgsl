// zero: dst = 0 over n 32-bit words (any dtype: f32, i32, packed f16).
// Bindings: dst(n) write. Meta: n.
// Dispatch: ceil(n / WG) workgroups over (x, y); linear id = wid.y * nwg.x + wid.x.
const WG: u32 = 256u;

struct Meta { n: u32 }

@group(0) @binding(0) var<storage, read_write> dst: array<u32>;
@group(1) @binding(0) var<uniform> params: Meta;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i < params.n) {
        dst[i] = 0u;
    }
}
