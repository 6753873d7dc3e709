package wgsl

// QTexKernel describes one generated quantized texture mat-vec
// (wgsl/internal/gen/qtex.go): the CPU-adapter decode kernel for quantized
// weights (GGUF Q8_0, Q4_0, Q4_K) read from a texture and dequantized in
// registers once for all the rows of an invocation's block.
type QTexKernel struct {
	Name string
	DT   string // the quantized format: "q8_0", "q4_0" or "q4_k"
	RM   int    // rows of x per invocation (and per workgroup)
	RN   int    // output columns per invocation; divides TexBlock
	WG   int    // invocations per workgroup, along N
	// Group: blocks are visited in groups of 8 that share one scale texel
	// per column, loaded once per group (else once per block).
	Group bool
	// LR: the low-rank twin (gpu.WebGPU.MatMulLowRank), which adds each
	// row's update B_c u to its outputs after the bias, as the texture
	// matmuls' "lr" twins do (wgsl/internal/gen/qtex_lr.go).
	LR bool
}

// QTexKernels are the quantized texture mat-vecs by format, smallest row
// block first: matmul_qtex1_* for one row (decode at batch 1),
// matmul_qtex8_* for more (a decode batch of 8 in one pass over the
// weights), both 32 columns an invocation, as the f16 texture mat-vecs:
// a block's x is then loaded once per 32 columns (8 and 16 columns ran
// no faster at one row and ~1.2-1.35x slower at eight, q8_0 and q4_0 on
// GPT-2's 768x3072, BenchmarkMatMulQuant interleaved on lavapipe).
var QTexKernels = []QTexKernel{
	{"matmul_qtex1_q8_0", "q8_0", 1, 32, 8, true, false},
	{"matmul_qtex1_q4_0", "q4_0", 1, 32, 8, true, false},
	{"matmul_qtex1_q4_k", "q4_k", 1, 32, 8, true, false},
	{"matmul_qtex8_q8_0", "q8_0", 8, 32, 8, false, false},
	{"matmul_qtex8_q4_0", "q4_0", 8, 32, 8, false, false},
	{"matmul_qtex8_q4_k", "q4_k", 8, 32, 8, false, false},
	// The low-rank twins, the same blocks.
	{"matmul_qtex1_q8_0_lr", "q8_0", 1, 32, 8, true, true},
	{"matmul_qtex1_q4_0_lr", "q4_0", 1, 32, 8, true, true},
	{"matmul_qtex1_q4_k_lr", "q4_k", 1, 32, 8, true, true},
	{"matmul_qtex8_q8_0_lr", "q8_0", 8, 32, 8, false, true},
	{"matmul_qtex8_q4_0_lr", "q4_0", 8, 32, 8, false, true},
	{"matmul_qtex8_q4_k_lr", "q4_k", 8, 32, 8, false, true},
}
