package gpu

func (w *WebGPU) LogSoftmax(dst, x Tensor) { panic("gpu: LogSoftmax: not implemented") }
func (w *WebGPU) CrossEntropy(dst, logits, targets Tensor) {
	panic("gpu: CrossEntropy: not implemented")
}
func (w *WebGPU) Argmax(dst, logits Tensor) { panic("gpu: Argmax: not implemented") }
func (w *WebGPU) Sample(dst, logits, uniforms Tensor, p SampleParams) {
	panic("gpu: Sample: not implemented")
}
