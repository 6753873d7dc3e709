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

//#include matmul_reg_f32_main N_COLS=params.n_count
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
