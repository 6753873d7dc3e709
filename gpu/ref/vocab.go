package ref

import "github.com/chameleon-llm/chameleon/gpu"

func (*Backend) LogSoftmax(dst, x gpu.Tensor) { panic("ref: LogSoftmax: not implemented") }
func (*Backend) CrossEntropy(dst, logits, targets gpu.Tensor) {
	panic("ref: CrossEntropy: not implemented")
}
func (*Backend) Argmax(dst, logits gpu.Tensor) { panic("ref: Argmax: not implemented") }
func (*Backend) Sample(dst, logits, uniforms gpu.Tensor, p gpu.SampleParams) {
	panic("ref: Sample: not implemented")
}
