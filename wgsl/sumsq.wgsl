// sumsq: one pass of a deterministic tree reduction for GradNormSq:
//   dst[out_base + t] = sum over r < PER of f(x[t + r*nout]),  t < nout = ceil(n / PER)
// with f(x) = x^2 on the first pass over a gradient (square = 1) and f(x) = x
// on later passes over partial sums; the host repeats passes until one
// value is left. Invocation t's elements are strided by nout, so
// neighbouring invocations read neighbouring words. No barriers, no atomics.
// Bindings: x(n) read; dst(>= out_base + nout) write. Meta: n, nout, square, out_base.
// Dispatch: ceil(nout / WG) workgroups over (x, y); linear id = wid.y * nwg.x + wid.x.
const WG: u32 = 64u;
const PER: u32 = 64u;

struct Meta { n: u32, nout: u32, square: u32, out_base: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = (wid.y * nwg.x + wid.x) * WG + lid;
    if (t >= params.nout) {
        return;
    }
    var s = 0.0;
    for (var r = 0u; r < PER; r++) {
        let i = t + r * params.nout;
        if (i < params.n) {
            let v = x[i];
            s += select(v, v * v, params.square != 0u);
        }
    }
    dst[params.out_base + t] = s;
}
