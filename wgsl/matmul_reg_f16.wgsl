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

//#include matmul_reg_f16_main N_COLS=params.n_count
//#include matmul_reg_f16_store
}
