// gelu: dst = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), GPT-2's
// tanh approximation, elementwise over n f32 values.
// Bindings: x(n) read; dst(n) write. Meta: n.
// Dispatch: ceil(n / WG) workgroups over (x, y); linear id = wid.y * nwg.x + wid.x.
// Portability: tanh of large arguments overflows to NaN on some drivers
// (exp(2u) = inf), so the argument is clamped where tanh is already +-1 in f32.
const WG: u32 = 256u;
const SQRT_2_OVER_PI: f32 = 0.7978845608028654;

struct Meta { n: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i < params.n) {
        let v = x[i];
        let u = clamp(SQRT_2_OVER_PI * (v + 0.044715 * v * v * v), -15.0, 15.0);
        dst[i] = 0.5 * v * (1.0 + tanh(u));
    }
}
