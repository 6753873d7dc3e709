// matmul_gemv_f16: dst(M,N) = x(M,K) · w(N,K)ᵀ + bias(N) for small M
// (decode: M <= 8), where reading w once is the whole cost. Each invocation
// owns RN = 4 output columns and streams their rows of w once per group of
// up to 4 rows of x (rows past M are clamped to the last row and not
// stored); a single leftover row takes a cheaper 1-row loop.
// Weights are f16, packed two halves per u32 with rows padded to an even
// length (kw = ceil(K/2) words), read with unpack2x16float (core WGSL, no
// shader-f16 needed): one load brings two weights.
// Bindings: x(M,K) f32, w(n_count,kw) u32 (the chunk of w's rows starting
// at n_base), bias(N) f32 (any tensor when has_bias = 0) read; dst(M,N) f32
// write. Meta: M, K, N, n_base, n_count, has_bias, tiles_n, kw, tile_base.
// Dispatch: tiles_n * ceil(M/8) workgroups over (x, y), tiles_n =
// ceil(n_count / (WG*RN)); tile t = tile_base + wid.y * nwg.x + wid.x covers
// columns (t % tiles_n)*WG*RN.. and rows (t / tiles_n)*8 .. +8.
// Portability: no workgroup memory, no barriers; neighbouring invocations
// read rows K apart (fine on CPU adapters, where they are SIMD lanes that
// load one element each anyway; GPUs rely on cache for these rows).
const WG: u32 = 64u;
const RN: u32 = 4u;
const MB: u32 = 8u; // rows of x per workgroup

struct Meta { m: u32, k: u32, n: u32, n_base: u32, n_count: u32, has_bias: u32, tiles_n: u32, kw: u32, tile_base: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

// store writes the 4 columns from c of row r that exist.
fn store(r: u32, c: u32, v: vec4<f32>) {
    if (r >= params.m) {
        return;
    }
    for (var j = 0u; j < RN; j = j + 1u) {
        if (c + j < params.n_count) {
            let col = params.n_base + c + j;
            var o = v[j];
            if (params.has_bias != 0u) {
                o = o + bias[col];
            }
            dst[r * params.n + col] = o;
        }
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = params.tile_base + wid.y * nwg.x + wid.x;
    let c = (t % params.tiles_n) * (WG * RN) + lid * RN;
    let rb = (t / params.tiles_n) * MB;
    if (c >= params.n_count || rb >= params.m) {
        return;
    }
    let kk = params.k;
    let last = params.n_count - 1u;
    let kw = params.kw;
    let kp = kk / 2u; // whole pairs; an odd K leaves k = K-1 in word kp
    let w0 = min(c, last) * kw;
    let w1 = min(c + 1u, last) * kw;
    let w2 = min(c + 2u, last) * kw;
    let w3 = min(c + 3u, last) * kw;
    let re = min(rb + MB, params.m);
    var r = rb;
    loop {
        if (r >= re) {
            break;
        }
        if (r + 1u == re) {
            // One row left.
            let x0 = r * kk;
            var a0 = vec4<f32>(0.0);
            for (var p = 0u; p < kp; p = p + 1u) {
                let h = mat4x2<f32>(unpack2x16float(w[w0 + p]), unpack2x16float(w[w1 + p]),
                                    unpack2x16float(w[w2 + p]), unpack2x16float(w[w3 + p]));
                a0 = a0 + vec2<f32>(x[x0 + 2u * p], x[x0 + 2u * p + 1u]) * h;
            }
            if (kp < kw) {
                let k = kk - 1u;
                let wv = vec4<f32>(unpack2x16float(w[w0 + kp]).x, unpack2x16float(w[w1 + kp]).x,
                                   unpack2x16float(w[w2 + kp]).x, unpack2x16float(w[w3 + kp]).x);
                a0 = fma(vec4<f32>(x[x0 + k]), wv, a0);
            }
            store(r, c, a0);
            break;
        }
        let lr = re - 1u;
        let x0 = r * kk;
        let x1 = min(r + 1u, lr) * kk;
        let x2 = min(r + 2u, lr) * kk;
        let x3 = min(r + 3u, lr) * kk;
        var a0 = vec4<f32>(0.0);
        var a1 = vec4<f32>(0.0);
        var a2 = vec4<f32>(0.0);
        var a3 = vec4<f32>(0.0);
        for (var p = 0u; p < kp; p = p + 1u) {
            // h[j] holds columns c+j's weights at k = 2p, 2p+1; v * h
            // gives the four dot products of the pair.
            let h = mat4x2<f32>(unpack2x16float(w[w0 + p]), unpack2x16float(w[w1 + p]),
                                unpack2x16float(w[w2 + p]), unpack2x16float(w[w3 + p]));
            let k = 2u * p;
            a0 = a0 + vec2<f32>(x[x0 + k], x[x0 + k + 1u]) * h;
            a1 = a1 + vec2<f32>(x[x1 + k], x[x1 + k + 1u]) * h;
            a2 = a2 + vec2<f32>(x[x2 + k], x[x2 + k + 1u]) * h;
            a3 = a3 + vec2<f32>(x[x3 + k], x[x3 + k + 1u]) * h;
        }
        if (kp < kw) {
            let k = kk - 1u;
            let wv = vec4<f32>(unpack2x16float(w[w0 + kp]).x, unpack2x16float(w[w1 + kp]).x,
                               unpack2x16float(w[w2 + kp]).x, unpack2x16float(w[w3 + kp]).x);
            a0 = fma(vec4<f32>(x[x0 + k]), wv, a0);
            a1 = fma(vec4<f32>(x[x1 + k]), wv, a1);
            a2 = fma(vec4<f32>(x[x2 + k]), wv, a2);
            a3 = fma(vec4<f32>(x[x3 + k]), wv, a3);
        }
        store(r, c, a0);
        if (r + 1u < re) { store(r + 1u, c, a1); }
        if (r + 2u < re) { store(r + 2u, c, a2); }
        if (r + 3u < re) { store(r + 3u, c, a3); }
        r = r + 4u;
    }
}
