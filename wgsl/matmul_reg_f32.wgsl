// matmul_reg_f32: dst(M,N) = x(M,K) · w(N,K)ᵀ + bias(N), the CPU-adapter
// variant: no workgroup memory, no barriers. Each invocation accumulates a
// 16 x 16 block of outputs in registers (16 rows of x, 16 rows of w), so
// every element it loads feeds 16 or 16 FMAs. On lavapipe the 8
// invocations of a workgroup are the SIMD lanes of one thread and every
// storage load costs one scalar load per lane, so loads, not FMAs, bound
// the speed: the block is as large as the compiler handles well.
// The body is written out unrolled (accumulators a<row>_<column/4>, vec4
// over 4 columns) because the driver's compiler does not unroll loops.
// Bindings: x(M,K) f32, w(n_count,K) f32 (the chunk of w's rows starting
// at n_base), bias(N) f32 (any tensor when has_bias = 0) read; dst(M,N) f32
// write. Meta: M, K, N, n_base, n_count, has_bias, tiles_n, kw (unused),
// tile_base.
// Dispatch: workgroups over (x, y); tile t = tile_base + wid.y * nwg.x +
// wid.x covers rows (t / tiles_n)*BM.. and columns (t % tiles_n)*BN..,
// tiles_n = ceil(n_count / BN). Rows and columns past the ends are clamped
// for loading and skipped when storing, so any M, K, N work.
const TX: u32 = 8u; // invocations per workgroup, along N
const BM: u32 = 16u; // rows per workgroup
const BN: u32 = 128u; // columns per workgroup (TX * 16)

struct Meta { m: u32, k: u32, n: u32, n_base: u32, n_count: u32, has_bias: u32, tiles_n: u32, kw: u32, tile_base: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
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
    let w0 = min(c0 + 0u, lc) * kk;
    let w1 = min(c0 + 1u, lc) * kk;
    let w2 = min(c0 + 2u, lc) * kk;
    let w3 = min(c0 + 3u, lc) * kk;
    let w4 = min(c0 + 4u, lc) * kk;
    let w5 = min(c0 + 5u, lc) * kk;
    let w6 = min(c0 + 6u, lc) * kk;
    let w7 = min(c0 + 7u, lc) * kk;
    let w8 = min(c0 + 8u, lc) * kk;
    let w9 = min(c0 + 9u, lc) * kk;
    let w10 = min(c0 + 10u, lc) * kk;
    let w11 = min(c0 + 11u, lc) * kk;
    let w12 = min(c0 + 12u, lc) * kk;
    let w13 = min(c0 + 13u, lc) * kk;
    let w14 = min(c0 + 14u, lc) * kk;
    let w15 = min(c0 + 15u, lc) * kk;
    let x0 = min(r0 + 0u, lr) * kk;
    let x1 = min(r0 + 1u, lr) * kk;
    let x2 = min(r0 + 2u, lr) * kk;
    let x3 = min(r0 + 3u, lr) * kk;
    let x4 = min(r0 + 4u, lr) * kk;
    let x5 = min(r0 + 5u, lr) * kk;
    let x6 = min(r0 + 6u, lr) * kk;
    let x7 = min(r0 + 7u, lr) * kk;
    let x8 = min(r0 + 8u, lr) * kk;
    let x9 = min(r0 + 9u, lr) * kk;
    let x10 = min(r0 + 10u, lr) * kk;
    let x11 = min(r0 + 11u, lr) * kk;
    let x12 = min(r0 + 12u, lr) * kk;
    let x13 = min(r0 + 13u, lr) * kk;
    let x14 = min(r0 + 14u, lr) * kk;
    let x15 = min(r0 + 15u, lr) * kk;
    var a0_0 = vec4<f32>(0.0); var a0_1 = vec4<f32>(0.0); var a0_2 = vec4<f32>(0.0); var a0_3 = vec4<f32>(0.0);
    var a1_0 = vec4<f32>(0.0); var a1_1 = vec4<f32>(0.0); var a1_2 = vec4<f32>(0.0); var a1_3 = vec4<f32>(0.0);
    var a2_0 = vec4<f32>(0.0); var a2_1 = vec4<f32>(0.0); var a2_2 = vec4<f32>(0.0); var a2_3 = vec4<f32>(0.0);
    var a3_0 = vec4<f32>(0.0); var a3_1 = vec4<f32>(0.0); var a3_2 = vec4<f32>(0.0); var a3_3 = vec4<f32>(0.0);
    var a4_0 = vec4<f32>(0.0); var a4_1 = vec4<f32>(0.0); var a4_2 = vec4<f32>(0.0); var a4_3 = vec4<f32>(0.0);
    var a5_0 = vec4<f32>(0.0); var a5_1 = vec4<f32>(0.0); var a5_2 = vec4<f32>(0.0); var a5_3 = vec4<f32>(0.0);
    var a6_0 = vec4<f32>(0.0); var a6_1 = vec4<f32>(0.0); var a6_2 = vec4<f32>(0.0); var a6_3 = vec4<f32>(0.0);
    var a7_0 = vec4<f32>(0.0); var a7_1 = vec4<f32>(0.0); var a7_2 = vec4<f32>(0.0); var a7_3 = vec4<f32>(0.0);
    var a8_0 = vec4<f32>(0.0); var a8_1 = vec4<f32>(0.0); var a8_2 = vec4<f32>(0.0); var a8_3 = vec4<f32>(0.0);
    var a9_0 = vec4<f32>(0.0); var a9_1 = vec4<f32>(0.0); var a9_2 = vec4<f32>(0.0); var a9_3 = vec4<f32>(0.0);
    var a10_0 = vec4<f32>(0.0); var a10_1 = vec4<f32>(0.0); var a10_2 = vec4<f32>(0.0); var a10_3 = vec4<f32>(0.0);
    var a11_0 = vec4<f32>(0.0); var a11_1 = vec4<f32>(0.0); var a11_2 = vec4<f32>(0.0); var a11_3 = vec4<f32>(0.0);
    var a12_0 = vec4<f32>(0.0); var a12_1 = vec4<f32>(0.0); var a12_2 = vec4<f32>(0.0); var a12_3 = vec4<f32>(0.0);
    var a13_0 = vec4<f32>(0.0); var a13_1 = vec4<f32>(0.0); var a13_2 = vec4<f32>(0.0); var a13_3 = vec4<f32>(0.0);
    var a14_0 = vec4<f32>(0.0); var a14_1 = vec4<f32>(0.0); var a14_2 = vec4<f32>(0.0); var a14_3 = vec4<f32>(0.0);
    var a15_0 = vec4<f32>(0.0); var a15_1 = vec4<f32>(0.0); var a15_2 = vec4<f32>(0.0); var a15_3 = vec4<f32>(0.0);
    for (var k = 0u; k < kk; k = k + 1u) {
        let b0 = vec4<f32>(w[w0 + k], w[w1 + k], w[w2 + k], w[w3 + k]);
        let b1 = vec4<f32>(w[w4 + k], w[w5 + k], w[w6 + k], w[w7 + k]);
        let b2 = vec4<f32>(w[w8 + k], w[w9 + k], w[w10 + k], w[w11 + k]);
        let b3 = vec4<f32>(w[w12 + k], w[w13 + k], w[w14 + k], w[w15 + k]);
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
        let v8 = vec4<f32>(x[x8 + k]);
        a8_0 = fma(v8, b0, a8_0); a8_1 = fma(v8, b1, a8_1); a8_2 = fma(v8, b2, a8_2); a8_3 = fma(v8, b3, a8_3);
        let v9 = vec4<f32>(x[x9 + k]);
        a9_0 = fma(v9, b0, a9_0); a9_1 = fma(v9, b1, a9_1); a9_2 = fma(v9, b2, a9_2); a9_3 = fma(v9, b3, a9_3);
        let v10 = vec4<f32>(x[x10 + k]);
        a10_0 = fma(v10, b0, a10_0); a10_1 = fma(v10, b1, a10_1); a10_2 = fma(v10, b2, a10_2); a10_3 = fma(v10, b3, a10_3);
        let v11 = vec4<f32>(x[x11 + k]);
        a11_0 = fma(v11, b0, a11_0); a11_1 = fma(v11, b1, a11_1); a11_2 = fma(v11, b2, a11_2); a11_3 = fma(v11, b3, a11_3);
        let v12 = vec4<f32>(x[x12 + k]);
        a12_0 = fma(v12, b0, a12_0); a12_1 = fma(v12, b1, a12_1); a12_2 = fma(v12, b2, a12_2); a12_3 = fma(v12, b3, a12_3);
        let v13 = vec4<f32>(x[x13 + k]);
        a13_0 = fma(v13, b0, a13_0); a13_1 = fma(v13, b1, a13_1); a13_2 = fma(v13, b2, a13_2); a13_3 = fma(v13, b3, a13_3);
        let v14 = vec4<f32>(x[x14 + k]);
        a14_0 = fma(v14, b0, a14_0); a14_1 = fma(v14, b1, a14_1); a14_2 = fma(v14, b2, a14_2); a14_3 = fma(v14, b3, a14_3);
        let v15 = vec4<f32>(x[x15 + k]);
        a15_0 = fma(v15, b0, a15_0); a15_1 = fma(v15, b1, a15_1); a15_2 = fma(v15, b2, a15_2); a15_3 = fma(v15, b3, a15_3);
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
    put(r0 + 8u, c0 + 0u, a8_0);
    put(r0 + 8u, c0 + 4u, a8_1);
    put(r0 + 8u, c0 + 8u, a8_2);
    put(r0 + 8u, c0 + 12u, a8_3);
    put(r0 + 9u, c0 + 0u, a9_0);
    put(r0 + 9u, c0 + 4u, a9_1);
    put(r0 + 9u, c0 + 8u, a9_2);
    put(r0 + 9u, c0 + 12u, a9_3);
    put(r0 + 10u, c0 + 0u, a10_0);
    put(r0 + 10u, c0 + 4u, a10_1);
    put(r0 + 10u, c0 + 8u, a10_2);
    put(r0 + 10u, c0 + 12u, a10_3);
    put(r0 + 11u, c0 + 0u, a11_0);
    put(r0 + 11u, c0 + 4u, a11_1);
    put(r0 + 11u, c0 + 8u, a11_2);
    put(r0 + 11u, c0 + 12u, a11_3);
    put(r0 + 12u, c0 + 0u, a12_0);
    put(r0 + 12u, c0 + 4u, a12_1);
    put(r0 + 12u, c0 + 8u, a12_2);
    put(r0 + 12u, c0 + 12u, a12_3);
    put(r0 + 13u, c0 + 0u, a13_0);
    put(r0 + 13u, c0 + 4u, a13_1);
    put(r0 + 13u, c0 + 8u, a13_2);
    put(r0 + 13u, c0 + 12u, a13_3);
    put(r0 + 14u, c0 + 0u, a14_0);
    put(r0 + 14u, c0 + 4u, a14_1);
    put(r0 + 14u, c0 + 8u, a14_2);
    put(r0 + 14u, c0 + 12u, a14_3);
    put(r0 + 15u, c0 + 0u, a15_0);
    put(r0 + 15u, c0 + 4u, a15_1);
    put(r0 + 15u, c0 + 8u, a15_2);
    put(r0 + 15u, c0 + 12u, a15_3);
}
