// matmul_tile_f32: dst(M,N) = x(M,K) · w(N,K)ᵀ + bias(N), the GPU variant:
// each workgroup stages a BM x TK block of x and a BN x TK block of w in
// workgroup memory per step along K and every invocation accumulates a
// 4 x 4 block of outputs from them (16 FMAs per 8 workgroup-memory reads).
// Bindings: x(M,K) f32, w(n_count,K) f32 (the chunk of w's rows starting
// at n_base), bias(N) f32 (any tensor when has_bias = 0) read; dst(M,N) f32
// write. Meta: M, K, N, n_base, n_count, has_bias, tiles_n, kw (unused),
// tile_base.
// Dispatch: tiles_n * ceil(M/BM) workgroups over (x, y); linear id
// t = tile_base + wid.y * nwg.x + wid.x is tile (t % tiles_n, t / tiles_n).
// Portability: 2 x 4 KiB of workgroup memory, 256 invocations; every
// barrier is reached in uniform control flow. Out-of-range rows and k are
// staged as zeros, so any M, K, N work.
const WG: u32 = 256u; // 16 x 16 invocations
const BM: u32 = 64u;  // rows of x per workgroup
const BN: u32 = 64u;  // rows of w (output columns) per workgroup
const TK: u32 = 16u;  // k per step

struct Meta { m: u32, k: u32, n: u32, n_base: u32, n_count: u32, has_bias: u32, tiles_n: u32, kw: u32, tile_base: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

var<workgroup> xs: array<f32, 1024>; // [TK][BM]
var<workgroup> ws: array<f32, 1024>; // [TK][BN]

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid3: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = params.tile_base + wid.y * nwg.x + wid.x;
    let r0 = (t / params.tiles_n) * BM;
    let c0 = (t % params.tiles_n) * BN;
    if (r0 >= params.m) {
        return; // uniform per workgroup
    }
    let tx = lid3.x * 4u; // first output column of this invocation in the tile
    let ty = lid3.y * 4u; // first output row
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < params.k; k0 = k0 + TK) {
        // Stage: 1024 elements of each block, 4 per invocation; the
        // element's k varies fastest so neighbours read neighbours.
        for (var q = 0u; q < 4u; q = q + 1u) {
            let e = lid + q * WG;
            let row = e / TK;
            let kk = e % TK;
            let k = k0 + kk;
            var xv = 0.0;
            if (r0 + row < params.m && k < params.k) {
                xv = x[(r0 + row) * params.k + k];
            }
            xs[kk * BM + row] = xv;
            var wv = 0.0;
            if (c0 + row < params.n_count && k < params.k) {
                wv = w[(c0 + row) * params.k + k];
            }
            ws[kk * BN + row] = wv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk = kk + 1u) {
            let b = vec4<f32>(ws[kk * BN + tx], ws[kk * BN + tx + 1u], ws[kk * BN + tx + 2u], ws[kk * BN + tx + 3u]);
            for (var i = 0u; i < 4u; i = i + 1u) {
                acc[i] = fma(vec4<f32>(xs[kk * BM + ty + i]), b, acc[i]);
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i = i + 1u) {
        let r = r0 + ty + i;
        for (var j = 0u; j < 4u; j = j + 1u) {
            let c = c0 + tx + j;
            if (r < params.m && c < params.n_count) {
                var v = acc[i][j];
                if (params.has_bias != 0u) {
                    v = v + bias[params.n_base + c];
                }
                dst[r * params.n + params.n_base + c] = v;
            }
        }
    }
}
