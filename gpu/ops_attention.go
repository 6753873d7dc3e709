package gpu

func (w *WebGPU) KVStore(kCache, vCache, qkv, start, qlen Tensor) {
	panic("gpu: KVStore: not implemented")
}
func (w *WebGPU) Attention(dst, qkv, kc, vc, start, qlen Tensor, nHead int) {
	panic("gpu: Attention: not implemented")
}
