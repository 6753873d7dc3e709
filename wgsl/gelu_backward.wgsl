// gelu_backward: dx = dout * gelu'(x) for GPT-2's tanh GELU, elementwise
// over n f32 values: with u = sqrt(2/pi) (x + 0.044715 x^3),
//   gelu'(x) = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 x^2).
// Bindings: dout(n), x(n) read; dx(n) write. Meta: n.
// Dispatch: ceil(n / WG) workgroups over (x, y); linear id = wid.y * nwg.x + wid.x.
// Portability: u is clamped where tanh is already +-1 in f32 (as gelu.wgsl).
const WG: u32 = 256u;
const SQRT_2_OVER_PI: f32 = 0.7978845608028654;
const A: f32 = 0.044715;

struct Meta { n: u32 }

@group(0) @binding(0) var<storage, read> dout: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i < params.n) {
        let v = x[i];
        let u = clamp(SQRT_2_OVER_PI * (v + A * v * v * v), -15.0, 15.0);
        let th = tanh(u);
        let g = 0.5 * (1.0 + th) + 0.5 * v * (1.0 - th * th) * SQRT_2_OVER_PI * (1.0 + 3.0 * A * v * v);
        dx[i] = dout[i] * g;
    }
}
