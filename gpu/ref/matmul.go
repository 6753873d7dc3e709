package ref

import "github.com/chameleon-llm/chameleon/gpu"

func (*Backend) MatMul(dst, x, w, bias gpu.Tensor) { panic("ref: MatMul: not implemented") }
