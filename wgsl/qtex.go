package wgsl

// QTexKernel describes one generated multi-row quantized texture mat-vec
// (wgsl/internal/gen/qtex.go): the CPU-adapter decode kernel for batches
// of more than one row, with quantized weights (GGUF Q8_0, Q4_0, Q4_K)
// read from a texture and dequantized in registers once for all the rows
// of an invocation's block.
type QTexKernel struct {
	Name string
	DT   string // the quantized format: "q8_0", "q4_0" or "q4_k"
	RM   int    // rows of x per invocation (and per workgroup)
	RN   int    // output columns per invocation; divides TexBlock
	WG   int    // invocations per workgroup, along N
}

// QTexKernels are the multi-row quantized texture mat-vecs, one per
// format: 8 rows (a decode batch of 8 in one pass over the weights) by 8
// columns an invocation, the column block of matmul_qtex1.
var QTexKernels = []QTexKernel{
	{"matmul_qtex8_q8_0", "q8_0", 8, 8, 8},
	{"matmul_qtex8_q4_0", "q4_0", 8, 8, 8},
	{"matmul_qtex8_q4_k", "q4_k", 8, 8, 8},
}
