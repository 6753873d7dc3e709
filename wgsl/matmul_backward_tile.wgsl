// matmul_backward_tile: the strided matrix product of matmul_backward_reg.wgsl,
// the GPU variant with workgroup-memory tiles:
//   D(i,j) = [D(i,j) +] sum over k < nk of A(i,k) * B(k,j),  i < ni, j < nj
//   A(i,k) = a[a_off + i*a_si + k*a_sk],  B(k,j) = b[b_off + k*b_sk + j],
//   D(i,j) = dst[d_off + i*d_si + j]   (accumulate != 0: add to D, else write)
// Each workgroup stages a BM x TK block of A and a TK x BN block of B per step
// along k and every invocation accumulates a 4 x 4 block of outputs. A is
// staged with i fastest when a_si = 1 (the dW product, A = dOutᵀ) and with
// k fastest otherwise, so neighbouring invocations read neighbouring words.
// Bindings: a, b read; dst read-write. Meta: ni, nj, nk, a_off, a_si, a_sk,
// b_off, b_sk, d_off, d_si, accumulate, tiles_j, tile_base.
// Dispatch: workgroups over (x, y); tile t = tile_base + wid.y*nwg.x + wid.x
// covers rows (t / tiles_j)*BM.. and columns (t % tiles_j)*BN...
// Portability: 2 x 4 KiB of workgroup memory, 256 invocations; every
// barrier is reached in uniform control flow. Out-of-range elements are
// staged as zeros.
const WG: u32 = 256u; // 16 x 16 invocations
const BM: u32 = 64u;
const BN: u32 = 64u;
const TK: u32 = 16u;

struct Meta { ni: u32, nj: u32, nk: u32, a_off: u32, a_si: u32, a_sk: u32, b_off: u32, b_sk: u32,
              d_off: u32, d_si: u32, accumulate: u32, tiles_j: u32, tile_base: u32 }

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> params: Meta;

var<workgroup> as_: array<f32, 1024>; // [TK][BM]
var<workgroup> bs: array<f32, 1024>;  // [TK][BN]

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid3: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = params.tile_base + wid.y * nwg.x + wid.x;
    let i0 = (t / params.tiles_j) * BM;
    let j0 = (t % params.tiles_j) * BN;
    if (i0 >= params.ni) {
        return; // uniform per workgroup
    }
    let tx = lid3.x * 4u;
    let ty = lid3.y * 4u;
    let ifast = params.a_si == 1u;
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < params.nk; k0 += TK) {
        for (var q = 0u; q < 4u; q++) {
            let e = lid + q * WG;
            var r = e / TK;
            var kk = e % TK;
            if (ifast) {
                r = e % BM;
                kk = e / BM;
            }
            var av = 0.0;
            if (i0 + r < params.ni && k0 + kk < params.nk) {
                av = a[params.a_off + (i0 + r) * params.a_si + (k0 + kk) * params.a_sk];
            }
            as_[kk * BM + r] = av;
            let bk = e / BN;
            let bc = e % BN;
            var bv = 0.0;
            if (j0 + bc < params.nj && k0 + bk < params.nk) {
                bv = b[params.b_off + (k0 + bk) * params.b_sk + j0 + bc];
            }
            bs[bk * BN + bc] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let bv = vec4<f32>(bs[kk * BN + tx], bs[kk * BN + tx + 1u], bs[kk * BN + tx + 2u], bs[kk * BN + tx + 3u]);
            for (var i = 0u; i < 4u; i++) {
                acc[i] = fma(vec4<f32>(as_[kk * BM + ty + i]), bv, acc[i]);
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let r = i0 + ty + i;
        for (var q = 0u; q < 4u; q++) {
            let c = j0 + tx + q;
            if (r < params.ni && c < params.nj) {
                let o = params.d_off + r * params.d_si + c;
                if (params.accumulate != 0u) {
                    dst[o] = dst[o] + acc[i][q];
                } else {
                    dst[o] = acc[i][q];
                }
            }
        }
    }
}
