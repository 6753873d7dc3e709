// copy_range: dst[dst_off + i] = src[src_off + i] for i < n, f32: moves one
// factor block (e.g. B_c of a packed hyper-network output) into or out of a
// standalone tensor, so that the backend's matmul kernels can work on it.
// Bindings: src read; dst write (distinct buffers). Meta: n, src_off, dst_off.
// Dispatch: ceil(n / WG) workgroups over (x, y); linear id = wid.y * nwg.x + wid.x.
const WG: u32 = 256u;

struct Meta { n: u32, src_off: u32, dst_off: u32 }

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i < params.n) {
        dst[params.dst_off + i] = src[params.src_off + i];
    }
}
