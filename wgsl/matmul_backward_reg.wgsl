// matmul_backward_reg: the strided matrix product that both halves of a
// matmul's backward reduce to, the CPU-adapter variant:
//   D(i,j) = [D(i,j) +] sum over k < nk of A(i,k) * B(k,j),  i < ni, j < nj
//   A(i,k) = a[a_off + i*a_si + k*a_sk],  B(k,j) = b[b_off + k*b_sk + j],
//   D(i,j) = dst[d_off + i*d_si + j]   (accumulate != 0: add to D, else write)
// For dst(M,N) = x(M,K)·w(N,K)ᵀ: dx = dOut·w is (i,j,k) = (m, kcol, n) with
// A = dOut (a_si = N, a_sk = 1) and B = w (b_sk = K); dW += dOutᵀ·x is
// (i,j,k) = (n, kcol, m) with A = dOut (a_si = 1, a_sk = N), B = x (b_sk = K).
// No workgroup memory, no barriers: each invocation accumulates a 16 x 16
// block in registers (as matmul_reg_f32.wgsl), its 16 B loads per k
// contiguous and its 16 A loads the same in all lanes (a broadcast). The
// body is unrolled by hand because the driver's compiler does not unroll.
// Bindings: a, b read; dst read-write. Meta: ni, nj, nk, a_off, a_si, a_sk,
// b_off, b_sk, d_off, d_si, accumulate, tiles_j, tile_base.
// Dispatch: workgroups over (x, y); tile t = tile_base + wid.y*nwg.x + wid.x
// covers rows (t / tiles_j)*BM.. and columns (t % tiles_j)*BN..; indices
// past the ends are clamped for loading and skipped when storing.
// Portability: one k-loop iteration per k; the host keeps nk per dispatch
// well under lavapipe's 65,535 loop iterations and accumulates the pieces.
const TX: u32 = 8u; // invocations per workgroup, along j
const BM: u32 = 16u; // rows per workgroup
const BN: u32 = 128u; // columns per workgroup (TX * 16)

struct Meta { ni: u32, nj: u32, nk: u32, a_off: u32, a_si: u32, a_sk: u32, b_off: u32, b_sk: u32,
              d_off: u32, d_si: u32, accumulate: u32, tiles_j: u32, tile_base: u32 }

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

// put stores (or adds) four columns c.. of row r, those that exist.
fn put(r: u32, c: u32, v: vec4<f32>) {
    if (r >= params.ni) {
        return;
    }
    for (var q = 0u; q < 4u; q++) {
        if (c + q < params.nj) {
            let o = params.d_off + r * params.d_si + c + q;
            if (params.accumulate != 0u) {
                dst[o] = dst[o] + v[q];
            } else {
                dst[o] = v[q];
            }
        }
    }
}

@compute @workgroup_size(TX)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = params.tile_base + wid.y * nwg.x + wid.x;
    let i0 = (t / params.tiles_j) * BM;
    let j0 = (t % params.tiles_j) * BN + lid * 16u;
    if (i0 >= params.ni || j0 >= params.nj) {
        return;
    }
    let li = params.ni - 1u;
    let lj = params.nj - 1u;
    let jc0 = min(j0 + 0u, lj);
    let jc1 = min(j0 + 1u, lj);
    let jc2 = min(j0 + 2u, lj);
    let jc3 = min(j0 + 3u, lj);
    let jc4 = min(j0 + 4u, lj);
    let jc5 = min(j0 + 5u, lj);
    let jc6 = min(j0 + 6u, lj);
    let jc7 = min(j0 + 7u, lj);
    let jc8 = min(j0 + 8u, lj);
    let jc9 = min(j0 + 9u, lj);
    let jc10 = min(j0 + 10u, lj);
    let jc11 = min(j0 + 11u, lj);
    let jc12 = min(j0 + 12u, lj);
    let jc13 = min(j0 + 13u, lj);
    let jc14 = min(j0 + 14u, lj);
    let jc15 = min(j0 + 15u, lj);
    let x0 = params.a_off + min(i0 + 0u, li) * params.a_si;
    let x1 = params.a_off + min(i0 + 1u, li) * params.a_si;
    let x2 = params.a_off + min(i0 + 2u, li) * params.a_si;
    let x3 = params.a_off + min(i0 + 3u, li) * params.a_si;
    let x4 = params.a_off + min(i0 + 4u, li) * params.a_si;
    let x5 = params.a_off + min(i0 + 5u, li) * params.a_si;
    let x6 = params.a_off + min(i0 + 6u, li) * params.a_si;
    let x7 = params.a_off + min(i0 + 7u, li) * params.a_si;
    let x8 = params.a_off + min(i0 + 8u, li) * params.a_si;
    let x9 = params.a_off + min(i0 + 9u, li) * params.a_si;
    let x10 = params.a_off + min(i0 + 10u, li) * params.a_si;
    let x11 = params.a_off + min(i0 + 11u, li) * params.a_si;
    let x12 = params.a_off + min(i0 + 12u, li) * params.a_si;
    let x13 = params.a_off + min(i0 + 13u, li) * params.a_si;
    let x14 = params.a_off + min(i0 + 14u, li) * params.a_si;
    let x15 = params.a_off + min(i0 + 15u, li) * params.a_si;
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
    for (var k = 0u; k < params.nk; k++) {
        let kb = params.b_off + k * params.b_sk;
        let ka = k * params.a_sk;
        let b0 = vec4<f32>(b[kb + jc0], b[kb + jc1], b[kb + jc2], b[kb + jc3]);
        let b1 = vec4<f32>(b[kb + jc4], b[kb + jc5], b[kb + jc6], b[kb + jc7]);
        let b2 = vec4<f32>(b[kb + jc8], b[kb + jc9], b[kb + jc10], b[kb + jc11]);
        let b3 = vec4<f32>(b[kb + jc12], b[kb + jc13], b[kb + jc14], b[kb + jc15]);
        let v0 = vec4<f32>(a[x0 + ka]);
        a0_0 = fma(v0, b0, a0_0); a0_1 = fma(v0, b1, a0_1); a0_2 = fma(v0, b2, a0_2); a0_3 = fma(v0, b3, a0_3);
        let v1 = vec4<f32>(a[x1 + ka]);
        a1_0 = fma(v1, b0, a1_0); a1_1 = fma(v1, b1, a1_1); a1_2 = fma(v1, b2, a1_2); a1_3 = fma(v1, b3, a1_3);
        let v2 = vec4<f32>(a[x2 + ka]);
        a2_0 = fma(v2, b0, a2_0); a2_1 = fma(v2, b1, a2_1); a2_2 = fma(v2, b2, a2_2); a2_3 = fma(v2, b3, a2_3);
        let v3 = vec4<f32>(a[x3 + ka]);
        a3_0 = fma(v3, b0, a3_0); a3_1 = fma(v3, b1, a3_1); a3_2 = fma(v3, b2, a3_2); a3_3 = fma(v3, b3, a3_3);
        let v4 = vec4<f32>(a[x4 + ka]);
        a4_0 = fma(v4, b0, a4_0); a4_1 = fma(v4, b1, a4_1); a4_2 = fma(v4, b2, a4_2); a4_3 = fma(v4, b3, a4_3);
        let v5 = vec4<f32>(a[x5 + ka]);
        a5_0 = fma(v5, b0, a5_0); a5_1 = fma(v5, b1, a5_1); a5_2 = fma(v5, b2, a5_2); a5_3 = fma(v5, b3, a5_3);
        let v6 = vec4<f32>(a[x6 + ka]);
        a6_0 = fma(v6, b0, a6_0); a6_1 = fma(v6, b1, a6_1); a6_2 = fma(v6, b2, a6_2); a6_3 = fma(v6, b3, a6_3);
        let v7 = vec4<f32>(a[x7 + ka]);
        a7_0 = fma(v7, b0, a7_0); a7_1 = fma(v7, b1, a7_1); a7_2 = fma(v7, b2, a7_2); a7_3 = fma(v7, b3, a7_3);
        let v8 = vec4<f32>(a[x8 + ka]);
        a8_0 = fma(v8, b0, a8_0); a8_1 = fma(v8, b1, a8_1); a8_2 = fma(v8, b2, a8_2); a8_3 = fma(v8, b3, a8_3);
        let v9 = vec4<f32>(a[x9 + ka]);
        a9_0 = fma(v9, b0, a9_0); a9_1 = fma(v9, b1, a9_1); a9_2 = fma(v9, b2, a9_2); a9_3 = fma(v9, b3, a9_3);
        let v10 = vec4<f32>(a[x10 + ka]);
        a10_0 = fma(v10, b0, a10_0); a10_1 = fma(v10, b1, a10_1); a10_2 = fma(v10, b2, a10_2); a10_3 = fma(v10, b3, a10_3);
        let v11 = vec4<f32>(a[x11 + ka]);
        a11_0 = fma(v11, b0, a11_0); a11_1 = fma(v11, b1, a11_1); a11_2 = fma(v11, b2, a11_2); a11_3 = fma(v11, b3, a11_3);
        let v12 = vec4<f32>(a[x12 + ka]);
        a12_0 = fma(v12, b0, a12_0); a12_1 = fma(v12, b1, a12_1); a12_2 = fma(v12, b2, a12_2); a12_3 = fma(v12, b3, a12_3);
        let v13 = vec4<f32>(a[x13 + ka]);
        a13_0 = fma(v13, b0, a13_0); a13_1 = fma(v13, b1, a13_1); a13_2 = fma(v13, b2, a13_2); a13_3 = fma(v13, b3, a13_3);
        let v14 = vec4<f32>(a[x14 + ka]);
        a14_0 = fma(v14, b0, a14_0); a14_1 = fma(v14, b1, a14_1); a14_2 = fma(v14, b2, a14_2); a14_3 = fma(v14, b3, a14_3);
        let v15 = vec4<f32>(a[x15 + ka]);
        a15_0 = fma(v15, b0, a15_0); a15_1 = fma(v15, b1, a15_1); a15_2 = fma(v15, b2, a15_2); a15_3 = fma(v15, b3, a15_3);
    }
    put(i0 + 0u, j0 + 0u, a0_0);
    put(i0 + 0u, j0 + 4u, a0_1);
    put(i0 + 0u, j0 + 8u, a0_2);
    put(i0 + 0u, j0 + 12u, a0_3);
    put(i0 + 1u, j0 + 0u, a1_0);
    put(i0 + 1u, j0 + 4u, a1_1);
    put(i0 + 1u, j0 + 8u, a1_2);
    put(i0 + 1u, j0 + 12u, a1_3);
    put(i0 + 2u, j0 + 0u, a2_0);
    put(i0 + 2u, j0 + 4u, a2_1);
    put(i0 + 2u, j0 + 8u, a2_2);
    put(i0 + 2u, j0 + 12u, a2_3);
    put(i0 + 3u, j0 + 0u, a3_0);
    put(i0 + 3u, j0 + 4u, a3_1);
    put(i0 + 3u, j0 + 8u, a3_2);
    put(i0 + 3u, j0 + 12u, a3_3);
    put(i0 + 4u, j0 + 0u, a4_0);
    put(i0 + 4u, j0 + 4u, a4_1);
    put(i0 + 4u, j0 + 8u, a4_2);
    put(i0 + 4u, j0 + 12u, a4_3);
    put(i0 + 5u, j0 + 0u, a5_0);
    put(i0 + 5u, j0 + 4u, a5_1);
    put(i0 + 5u, j0 + 8u, a5_2);
    put(i0 + 5u, j0 + 12u, a5_3);
    put(i0 + 6u, j0 + 0u, a6_0);
    put(i0 + 6u, j0 + 4u, a6_1);
    put(i0 + 6u, j0 + 8u, a6_2);
    put(i0 + 6u, j0 + 12u, a6_3);
    put(i0 + 7u, j0 + 0u, a7_0);
    put(i0 + 7u, j0 + 4u, a7_1);
    put(i0 + 7u, j0 + 8u, a7_2);
    put(i0 + 7u, j0 + 12u, a7_3);
    put(i0 + 8u, j0 + 0u, a8_0);
    put(i0 + 8u, j0 + 4u, a8_1);
    put(i0 + 8u, j0 + 8u, a8_2);
    put(i0 + 8u, j0 + 12u, a8_3);
    put(i0 + 9u, j0 + 0u, a9_0);
    put(i0 + 9u, j0 + 4u, a9_1);
    put(i0 + 9u, j0 + 8u, a9_2);
    put(i0 + 9u, j0 + 12u, a9_3);
    put(i0 + 10u, j0 + 0u, a10_0);
    put(i0 + 10u, j0 + 4u, a10_1);
    put(i0 + 10u, j0 + 8u, a10_2);
    put(i0 + 10u, j0 + 12u, a10_3);
    put(i0 + 11u, j0 + 0u, a11_0);
    put(i0 + 11u, j0 + 4u, a11_1);
    put(i0 + 11u, j0 + 8u, a11_2);
    put(i0 + 11u, j0 + 12u, a11_3);
    put(i0 + 12u, j0 + 0u, a12_0);
    put(i0 + 12u, j0 + 4u, a12_1);
    put(i0 + 12u, j0 + 8u, a12_2);
    put(i0 + 12u, j0 + 12u, a12_3);
    put(i0 + 13u, j0 + 0u, a13_0);
    put(i0 + 13u, j0 + 4u, a13_1);
    put(i0 + 13u, j0 + 8u, a13_2);
    put(i0 + 13u, j0 + 12u, a13_3);
    put(i0 + 14u, j0 + 0u, a14_0);
    put(i0 + 14u, j0 + 4u, a14_1);
    put(i0 + 14u, j0 + 8u, a14_2);
    put(i0 + 14u, j0 + 12u, a14_3);
    put(i0 + 15u, j0 + 0u, a15_0);
    put(i0 + 15u, j0 + 4u, a15_1);
    put(i0 + 15u, j0 + 8u, a15_2);
    put(i0 + 15u, j0 + 12u, a15_3);
}
