// quant_unpack_q4_k: dequantizes a Q4_K weight matrix (N, K) from its packed
// texture (the blocked layout of the texture matmuls, kt texels of packed
// words per row, gpu/quant_layout.go) into an f32 texture in the same
// blocked layout (ktf = K/4 texels per row), so that the f32 texture matmul
// kernels run a quantized matmul of many rows on CPU adapters; the weights
// are exact (wgsl/quant_tex_q4_k.wgsli).
// Bindings: group 2 the packed texture (read), the f32 texture (write).
// Meta: rows, K (a multiple of 32), kt, w_width (packed texture width),
// ktf, f_width. Dispatch: one invocation per (row, 32-weight block),
// rows * K/32 of them, in workgroups of WG over an (x, y) grid.
//#include quant_tex_q4_k
//#include quant_unpack
}
