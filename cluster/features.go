package cluster

import (
	"fmt"

	"github.com/chameleon-llm/chameleon/gpu"
)

// FeatureKind names the feature in saved centroids' metadata.
const FeatureKind = "mean-wte-l2"

// Features computes the features of token sequences on ops: a (B, C) F32
// tensor, B = len(seqs), from the embedding table wte (V, C) (F32 or F16, on
// ops' backend). The sequences are padded into one (B, T) batch, T the
// longest. It fails on a token id outside [0, V) or a device error; the
// caller frees the result.
func Features(ops Ops, wte gpu.Tensor, seqs [][]int32) (gpu.Tensor, error) {
	ws := dims("Features", "wte", wte, 2)
	v, c := ws[0], ws[1]
	b, t := len(seqs), 1
	for _, s := range seqs {
		t = max(t, len(s))
	}
	tokens := make([]int32, b*t)
	lengths := make([]int32, b)
	for i, s := range seqs {
		for j, id := range s {
			if id < 0 || int(id) >= v {
				return nil, fmt.Errorf("cluster: sequence %d, position %d: token id %d outside the vocabulary of %d", i, j, id, v)
			}
		}
		copy(tokens[i*t:], s)
		lengths[i] = int32(len(s))
	}
	var live []gpu.Tensor
	defer func() {
		for _, x := range live {
			ops.Free(x)
		}
	}()
	up := func(data []int32, shape ...int) (gpu.Tensor, error) {
		x, err := ops.Alloc(gpu.I32, shape...)
		if err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		live = append(live, x)
		if err := ops.Write(x, data); err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		return x, nil
	}
	tokT, err := up(tokens, b, t)
	if err != nil {
		return nil, err
	}
	lenT, err := up(lengths, b)
	if err != nil {
		return nil, err
	}
	dst, err := ops.Alloc(gpu.F32, b, c)
	if err != nil {
		return nil, fmt.Errorf("cluster: features: %w", err)
	}
	ops.Features(dst, wte, tokT, lenT)
	return dst, nil
}
