package ref

import "github.com/chameleon-llm/chameleon/gpu"

func (*Backend) KVStore(kCache, vCache, qkv, start, qlen gpu.Tensor) {
	panic("ref: KVStore: not implemented")
}
func (*Backend) Attention(dst, qkv, kc, vc, start, qlen gpu.Tensor, nHead int) {
	panic("ref: Attention: not implemented")
}
