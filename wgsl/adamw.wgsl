// adamw: one AdamW step (decoupled weight decay) over n f32 parameters:
//   g = grad * gscale * clip,  clip = min(1, clip_norm / sqrt(normsq[0])) when clip_norm > 0, else 1
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   param -= lr * ((m / bc1) / (sqrt(v / bc2) + eps) + wd * param)
// with bc1 = 1 - b1^t and bc2 = 1 - b2^t computed on the host.
// Bindings: grad(n), normsq(1) (any tensor when clip_norm = 0) read;
// param(n), m(n), v(n) read-write (each read and written by the same
// invocation: no aliasing between bindings). Meta: n, lr, b1, b2, eps, wd,
// bc1, bc2, gscale, clip_norm.
// Dispatch: ceil(n / WG) workgroups over (x, y); linear id = wid.y * nwg.x + wid.x.
const WG: u32 = 256u;

struct Meta { n: u32, lr: f32, b1: f32, b2: f32, eps: f32, wd: f32, bc1: f32, bc2: f32, gscale: f32, clip_norm: f32 }

@group(0) @binding(0) var<storage, read> grad: array<f32>;
@group(0) @binding(1) var<storage, read> normsq: array<f32>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i >= params.n) {
        return;
    }
    var s = params.gscale;
    if (params.clip_norm > 0.0) {
        let nrm = sqrt(normsq[0]);
        if (nrm > params.clip_norm) {
            s = s * (params.clip_norm / nrm);
        }
    }
    let g = grad[i] * s;
    let mi = params.b1 * m[i] + (1.0 - params.b1) * g;
    let vi = params.b2 * v[i] + (1.0 - params.b2) * g * g;
    let p = param[i];
    let upd = (mi / params.bc1) / (sqrt(vi / params.bc2) + params.eps) + params.wd * p;
    param[i] = p - params.lr * upd;
    m[i] = mi;
    v[i] = vi;
}
