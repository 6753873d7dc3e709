package gpu

// MatMul: dst(M,N) = x(M,K) · w(N,K)ᵀ + bias(N).
func (w *WebGPU) MatMul(dst, x, wt, bias Tensor) { panic("gpu: MatMul: not implemented") }

func defaultMatMulVariant(d *Device) string { return "" }
