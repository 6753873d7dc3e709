// matmul_reg_f16: dst(M,N) = x(M,K) · w(N,K)ᵀ + bias(N), the CPU-adapter
// variant: no workgroup memory, no barriers. Each invocation accumulates a
// 8 x 16 block of outputs in registers (8 rows of x, 16 rows of w), so
// every element it loads feeds 16 or 8 FMAs. On lavapipe the 8
// invocations of a workgroup are the SIMD lanes of one thread and every
// storage load costs one scalar load per lane, so loads, not FMAs, bound
// the speed: the block is as large as the compiler handles well.
// The body is written out unrolled (accumulators a<row>_<column/4>, vec4
// over 4 columns) because the driver's compiler does not unroll loops.
// Weights are f16, packed two halves per u32 with rows padded to an even
// length (kw = ceil(K/2) words), read with unpack2x16float (core WGSL, no
// shader-f16 needed): one load brings two weights.
// Bindings: x(M,K) f32, w(n_count,kw) u32 (the chunk of w's rows starting
// at n_base), bias(N) f32 (any tensor when has_bias = 0) read; dst(M,N) f32
// write. Meta: M, K, N, n_base, n_count, has_bias, tiles_n, kw, tile_base.
// Dispatch: workgroups over (x, y); tile t = tile_base + wid.y * nwg.x +
// wid.x covers rows (t / tiles_n)*BM.. and columns (t % tiles_n)*BN..,
// tiles_n = ceil(n_count / BN). Rows and columns past the ends are clamped
// for loading and skipped when storing, so any M, K, N work.
const TX: u32 = 8u; // invocations per workgroup, along N
const BM: u32 = 8u; // rows per workgroup
const BN: u32 = 128u; // columns per workgroup (TX * 16)

struct Meta { m: u32, k: u32, n: u32, n_base: u32, n_count: u32, has_bias: u32, tiles_n: u32, kw: u32, tile_base: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

// put stores four columns c.. of row r, those that exist, adding the bias.
fn put(r: u32, c: u32, v: vec4<f32>) {
    if (r >= params.m) {
        return;
    }
    for (var j = 0u; j < 4u; j = j + 1u) {
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

@compute @workgroup_size(TX)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = params.tile_base + wid.y * nwg.x + wid.x;
    let r0 = (t / params.tiles_n) * BM;
    let c0 = (t % params.tiles_n) * BN + lid * 16u;
    if (r0 >= params.m || c0 >= params.n_count) {
        return;
    }
    let lc = params.n_count - 1u;
    let lr = params.m - 1u;
    let kk = params.k;
    let w0 = min(c0 + 0u, lc) * params.kw;
    let w1 = min(c0 + 1u, lc) * params.kw;
    let w2 = min(c0 + 2u, lc) * params.kw;
    let w3 = min(c0 + 3u, lc) * params.kw;
    let w4 = min(c0 + 4u, lc) * params.kw;
    let w5 = min(c0 + 5u, lc) * params.kw;
    let w6 = min(c0 + 6u, lc) * params.kw;
    let w7 = min(c0 + 7u, lc) * params.kw;
    let w8 = min(c0 + 8u, lc) * params.kw;
    let w9 = min(c0 + 9u, lc) * params.kw;
    let w10 = min(c0 + 10u, lc) * params.kw;
    let w11 = min(c0 + 11u, lc) * params.kw;
    let w12 = min(c0 + 12u, lc) * params.kw;
    let w13 = min(c0 + 13u, lc) * params.kw;
    let w14 = min(c0 + 14u, lc) * params.kw;
    let w15 = min(c0 + 15u, lc) * params.kw;
    let x0 = min(r0 + 0u, lr) * kk;
    let x1 = min(r0 + 1u, lr) * kk;
    let x2 = min(r0 + 2u, lr) * kk;
    let x3 = min(r0 + 3u, lr) * kk;
    let x4 = min(r0 + 4u, lr) * kk;
    let x5 = min(r0 + 5u, lr) * kk;
    let x6 = min(r0 + 6u, lr) * kk;
    let x7 = min(r0 + 7u, lr) * kk;
    var a0_0 = vec4<f32>(0.0); var a0_1 = vec4<f32>(0.0); var a0_2 = vec4<f32>(0.0); var a0_3 = vec4<f32>(0.0);
    var a1_0 = vec4<f32>(0.0); var a1_1 = vec4<f32>(0.0); var a1_2 = vec4<f32>(0.0); var a1_3 = vec4<f32>(0.0);
    var a2_0 = vec4<f32>(0.0); var a2_1 = vec4<f32>(0.0); var a2_2 = vec4<f32>(0.0); var a2_3 = vec4<f32>(0.0);
    var a3_0 = vec4<f32>(0.0); var a3_1 = vec4<f32>(0.0); var a3_2 = vec4<f32>(0.0); var a3_3 = vec4<f32>(0.0);
    var a4_0 = vec4<f32>(0.0); var a4_1 = vec4<f32>(0.0); var a4_2 = vec4<f32>(0.0); var a4_3 = vec4<f32>(0.0);
    var a5_0 = vec4<f32>(0.0); var a5_1 = vec4<f32>(0.0); var a5_2 = vec4<f32>(0.0); var a5_3 = vec4<f32>(0.0);
    var a6_0 = vec4<f32>(0.0); var a6_1 = vec4<f32>(0.0); var a6_2 = vec4<f32>(0.0); var a6_3 = vec4<f32>(0.0);
    var a7_0 = vec4<f32>(0.0); var a7_1 = vec4<f32>(0.0); var a7_2 = vec4<f32>(0.0); var a7_3 = vec4<f32>(0.0);
    let kp = kk / 2u; // whole pairs; an odd K leaves k = K-1 in word kp
    for (var q = 0u; q < kp; q = q + 1u) {
        // h<j> holds columns 4j..4j+3 at k = 2q, 2q+1: u * h<j> is their dot products.
        let h0 = mat4x2<f32>(unpack2x16float(w[w0 + q]), unpack2x16float(w[w1 + q]), unpack2x16float(w[w2 + q]), unpack2x16float(w[w3 + q]));
        let h1 = mat4x2<f32>(unpack2x16float(w[w4 + q]), unpack2x16float(w[w5 + q]), unpack2x16float(w[w6 + q]), unpack2x16float(w[w7 + q]));
        let h2 = mat4x2<f32>(unpack2x16float(w[w8 + q]), unpack2x16float(w[w9 + q]), unpack2x16float(w[w10 + q]), unpack2x16float(w[w11 + q]));
        let h3 = mat4x2<f32>(unpack2x16float(w[w12 + q]), unpack2x16float(w[w13 + q]), unpack2x16float(w[w14 + q]), unpack2x16float(w[w15 + q]));
        let k = 2u * q;
        let u0 = vec2<f32>(x[x0 + k], x[x0 + k + 1u]);
        a0_0 = a0_0 + u0 * h0; a0_1 = a0_1 + u0 * h1; a0_2 = a0_2 + u0 * h2; a0_3 = a0_3 + u0 * h3;
        let u1 = vec2<f32>(x[x1 + k], x[x1 + k + 1u]);
        a1_0 = a1_0 + u1 * h0; a1_1 = a1_1 + u1 * h1; a1_2 = a1_2 + u1 * h2; a1_3 = a1_3 + u1 * h3;
        let u2 = vec2<f32>(x[x2 + k], x[x2 + k + 1u]);
        a2_0 = a2_0 + u2 * h0; a2_1 = a2_1 + u2 * h1; a2_2 = a2_2 + u2 * h2; a2_3 = a2_3 + u2 * h3;
        let u3 = vec2<f32>(x[x3 + k], x[x3 + k + 1u]);
        a3_0 = a3_0 + u3 * h0; a3_1 = a3_1 + u3 * h1; a3_2 = a3_2 + u3 * h2; a3_3 = a3_3 + u3 * h3;
        let u4 = vec2<f32>(x[x4 + k], x[x4 + k + 1u]);
        a4_0 = a4_0 + u4 * h0; a4_1 = a4_1 + u4 * h1; a4_2 = a4_2 + u4 * h2; a4_3 = a4_3 + u4 * h3;
        let u5 = vec2<f32>(x[x5 + k], x[x5 + k + 1u]);
        a5_0 = a5_0 + u5 * h0; a5_1 = a5_1 + u5 * h1; a5_2 = a5_2 + u5 * h2; a5_3 = a5_3 + u5 * h3;
        let u6 = vec2<f32>(x[x6 + k], x[x6 + k + 1u]);
        a6_0 = a6_0 + u6 * h0; a6_1 = a6_1 + u6 * h1; a6_2 = a6_2 + u6 * h2; a6_3 = a6_3 + u6 * h3;
        let u7 = vec2<f32>(x[x7 + k], x[x7 + k + 1u]);
        a7_0 = a7_0 + u7 * h0; a7_1 = a7_1 + u7 * h1; a7_2 = a7_2 + u7 * h2; a7_3 = a7_3 + u7 * h3;
    }
    if (kp < params.kw) {
        let k = kk - 1u;
        let b0 = vec4<f32>(unpack2x16float(w[w0 + kp]).x, unpack2x16float(w[w1 + kp]).x, unpack2x16float(w[w2 + kp]).x, unpack2x16float(w[w3 + kp]).x);
        let b1 = vec4<f32>(unpack2x16float(w[w4 + kp]).x, unpack2x16float(w[w5 + kp]).x, unpack2x16float(w[w6 + kp]).x, unpack2x16float(w[w7 + kp]).x);
        let b2 = vec4<f32>(unpack2x16float(w[w8 + kp]).x, unpack2x16float(w[w9 + kp]).x, unpack2x16float(w[w10 + kp]).x, unpack2x16float(w[w11 + kp]).x);
        let b3 = vec4<f32>(unpack2x16float(w[w12 + kp]).x, unpack2x16float(w[w13 + kp]).x, unpack2x16float(w[w14 + kp]).x, unpack2x16float(w[w15 + kp]).x);
        let v0 = vec4<f32>(x[x0 + k]);
        a0_0 = fma(v0, b0, a0_0); a0_1 = fma(v0, b1, a0_1); a0_2 = fma(v0, b2, a0_2); a0_3 = fma(v0, b3, a0_3);
        let v1 = vec4<f32>(x[x1 + k]);
        a1_0 = fma(v1, b0, a1_0); a1_1 = fma(v1, b1, a1_1); a1_2 = fma(v1, b2, a1_2); a1_3 = fma(v1, b3, a1_3);
        let v2 = vec4<f32>(x[x2 + k]);
        a2_0 = fma(v2, b0, a2_0); a2_1 = fma(v2, b1, a2_1); a2_2 = fma(v2, b2, a2_2); a2_3 = fma(v2, b3, a2_3);
        let v3 = vec4<f32>(x[x3 + k]);
        a3_0 = fma(v3, b0, a3_0); a3_1 = fma(v3, b1, a3_1); a3_2 = fma(v3, b2, a3_2); a3_3 = fma(v3, b3, a3_3);
        let v4 = vec4<f32>(x[x4 + k]);
        a4_0 = fma(v4, b0, a4_0); a4_1 = fma(v4, b1, a4_1); a4_2 = fma(v4, b2, a4_2); a4_3 = fma(v4, b3, a4_3);
        let v5 = vec4<f32>(x[x5 + k]);
        a5_0 = fma(v5, b0, a5_0); a5_1 = fma(v5, b1, a5_1); a5_2 = fma(v5, b2, a5_2); a5_3 = fma(v5, b3, a5_3);
        let v6 = vec4<f32>(x[x6 + k]);
        a6_0 = fma(v6, b0, a6_0); a6_1 = fma(v6, b1, a6_1); a6_2 = fma(v6, b2, a6_2); a6_3 = fma(v6, b3, a6_3);
        let v7 = vec4<f32>(x[x7 + k]);
        a7_0 = fma(v7, b0, a7_0); a7_1 = fma(v7, b1, a7_1); a7_2 = fma(v7, b2, a7_2); a7_3 = fma(v7, b3, a7_3);
    }
    put(r0 + 0u, c0 + 0u, a0_0);
    put(r0 + 0u, c0 + 4u, a0_1);
    put(r0 + 0u, c0 + 8u, a0_2);
    put(r0 + 0u, c0 + 12u, a0_3);
    put(r0 + 1u, c0 + 0u, a1_0);
    put(r0 + 1u, c0 + 4u, a1_1);
    put(r0 + 1u, c0 + 8u, a1_2);
    put(r0 + 1u, c0 + 12u, a1_3);
    put(r0 + 2u, c0 + 0u, a2_0);
    put(r0 + 2u, c0 + 4u, a2_1);
    put(r0 + 2u, c0 + 8u, a2_2);
    put(r0 + 2u, c0 + 12u, a2_3);
    put(r0 + 3u, c0 + 0u, a3_0);
    put(r0 + 3u, c0 + 4u, a3_1);
    put(r0 + 3u, c0 + 8u, a3_2);
    put(r0 + 3u, c0 + 12u, a3_3);
    put(r0 + 4u, c0 + 0u, a4_0);
    put(r0 + 4u, c0 + 4u, a4_1);
    put(r0 + 4u, c0 + 8u, a4_2);
    put(r0 + 4u, c0 + 12u, a4_3);
    put(r0 + 5u, c0 + 0u, a5_0);
    put(r0 + 5u, c0 + 4u, a5_1);
    put(r0 + 5u, c0 + 8u, a5_2);
    put(r0 + 5u, c0 + 12u, a5_3);
    put(r0 + 6u, c0 + 0u, a6_0);
    put(r0 + 6u, c0 + 4u, a6_1);
    put(r0 + 6u, c0 + 8u, a6_2);
    put(r0 + 6u, c0 + 12u, a6_3);
    put(r0 + 7u, c0 + 0u, a7_0);
    put(r0 + 7u, c0 + 4u, a7_1);
    put(r0 + 7u, c0 + 8u, a7_2);
    put(r0 + 7u, c0 + 12u, a7_3);
}
