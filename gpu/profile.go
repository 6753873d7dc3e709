package gpu

import "time"

// KernelTime is the accumulated GPU time of one kernel, with the work its
// dispatches did: FLOPs as declared by the op (matmul only), and Bytes, the
// rows a gather touches (embedding, row gather) or else the sum of the buffer
// ranges bound to the dispatches (each input read and each output written
// once: the least traffic of a matmul or an elementwise op; for attention,
// whose KV cache is bound whole, an upper bound).
type KernelTime struct {
	Kernel string
	Calls  int
	Total  time.Duration
	Flops  float64
	Bytes  float64
}
