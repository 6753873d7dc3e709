package gen

import "fmt"

// The CPU-adapter kernel of a matmul's backward (the gpu package's
// MatMulBackward on CPU adapters): the strided product both halves of the
// backward reduce to, on the register block of the forward's f32 kernel
// (regKernels), so the block's accumulators and FMAs come from the same
// writers.

// regBackwardHead is the kernel's doc, declarations and the start of main,
// up to the last row and column.
const regBackwardHead = `// matmul_backward_reg: the strided matrix product that both halves of a
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
`

// regBackward returns the WGSL source of matmul_backward_reg.
func regBackward() string {
	const rows, cols = 16, 16
	var s []byte
	p := func(format string, a ...any) { s = fmt.Appendf(s, format, a...) }
	p("%s", regBackwardHead)
	for j := 0; j < cols; j++ {
		p("    let jc%d = min(j0 + %du, lj);\n", j, j)
	}
	for i := 0; i < rows; i++ {
		p("    let x%d = params.a_off + min(i0 + %du, li) * params.a_si;\n", i, i)
	}
	regAccumulators(p, regKernel{W: "f32", RM: rows})
	p("    for (var k = 0u; k < params.nk; k++) {\n")
	p("        let kb = params.b_off + k * params.b_sk;\n")
	p("        let ka = k * params.a_sk;\n")
	regColumns(p, "        ", "b", "vec4<f32>", func(c int) string { return fmt.Sprintf("b[kb + jc%d]", c) })
	regFMARowsOf(p, rows, "        ", func(r int) string { return fmt.Sprintf("a[x%d + ka]", r) })
	p("    }\n")
	for r := 0; r < rows; r++ {
		for q := 0; q < cols/4; q++ {
			p("    put(i0 + %du, j0 + %du, a%d_%d);\n", r, 4*q, r, q)
		}
	}
	p("}\n")
	return string(s)
}
