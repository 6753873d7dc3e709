package adapt

import (
	"fmt"

	"github.com/chameleon-llm/chameleon/gpu"
)

// The neural cache's op (ncache.go has the method): NeuralMix mixes q_nOwn
// and q_nPool into rows of log-probabilities, in place, after CacheMix.
// With the four weights a, b, c, d of CacheWeights,
//
//	p' = (1-c-d) [(1-a'-b') p + a' q_own + b' q_pool] + c q_nOwn + d q_nPool,
//	a' = a / (1-c-d),  b' = b / (1-c-d),
//
// so CacheMix runs with a', b' (NeuralRescale) and NeuralMix then adds the
// neural terms to its output.

// NeuralMaxC is the widest hidden state NeuralMix takes: the query sits
// in workgroup memory (CMAX in ncache_mix.wgsl).
const NeuralMaxC = 2048

// neuralLoopCap bounds ncache_mix's loop iterations per invocation, under
// lavapipe's 65,535 (wgsl/wgsl.go).
const neuralLoopCap = 60000

// neuralWG is ncache_mix's workgroup size (WG in the kernel).
const neuralWG = 256

// neuralLoops is ncache_mix's loop iterations per invocation for rows of
// width c over v tokens with at most n keys (its header's count).
func neuralLoops(c, v, n int) int {
	return 2*ceilDiv(c, neuralWG) + ceilDiv(n, neuralWG)*c + n + 2*ceilDiv(v, neuralWG)
}

// NeuralRow is one row's parameters of NeuralMix: its own and pool key
// ranges in the key buffer, the key sharpness, the weights c (Own) and d
// (Pool) of q_nOwn and q_nPool, and the key slot its unit query is
// written to (-1: none).
type NeuralRow struct {
	OwnOff, OwnLen, PoolOff, PoolLen int
	Theta, Own, Pool                 float64
	Slot                             int
}

// NeuralRowParams packs NeuralMix's per-row parameters (M, 8) and returns
// them with the scratch width they need (the most keys of any row). A
// weight whose key range is empty is passed as 0: the kernel takes
// effective weights.
func NeuralRowParams(rows []NeuralRow) ([]float32, int) {
	out := make([]float32, 0, 8*len(rows))
	most := 0
	for _, r := range rows {
		c, d := r.Own, r.Pool
		if r.OwnLen <= 0 {
			c = 0
		}
		if r.PoolLen <= 0 {
			d = 0
		}
		out = append(out, float32(r.OwnOff), float32(r.OwnLen), float32(r.PoolOff), float32(r.PoolLen),
			float32(r.Theta), float32(c), float32(d), float32(r.Slot))
		most = max(most, max(r.OwnLen, 0)+max(r.PoolLen, 0))
	}
	return out, most
}

// NeuralRescale is the token cache's weights to run CacheMix with before
// NeuralMix with weights c and d: a/(1-c-d) and b/(1-c-d).
func NeuralRescale(w CacheWeights, c, d float64) CacheWeights {
	k := 1 - c - d
	return CacheWeights{Own: w.Own / k, Pool: w.Pool / k}
}

// checkNeuralMix validates NeuralMix's operands: it panics on a shape or
// dtype mismatch and returns an error for sizes the kernel does not take
// (the same on every backend); else M, C, V and the number of keys.
func checkNeuralMix(dst, h, keys, vals, rowParams gpu.Tensor, maxKeys int) (m, c, v, kn int, err error) {
	m, c = rows(h)
	gpu.CheckShape("NeuralMix", "h", h, gpu.F32, m, c)
	_, v = rows(dst)
	gpu.CheckShape("NeuralMix", "dst", dst, gpu.F32, m, v)
	kn, _ = rows(keys)
	gpu.CheckShape("NeuralMix", "keys", keys, gpu.F32, kn, c)
	gpu.CheckShape("NeuralMix", "vals", vals, gpu.I32, kn)
	gpu.CheckShape("NeuralMix", "rowParams", rowParams, gpu.F32, m, 8)
	if maxKeys < 0 {
		panic(fmt.Sprintf("adapt: NeuralMix: maxKeys %d", maxKeys))
	}
	if c > NeuralMaxC {
		return 0, 0, 0, 0, fmt.Errorf("adapt: NeuralMix: hidden width %d, at most %d", c, NeuralMaxC)
	}
	if it := neuralLoops(c, v, maxKeys); it > neuralLoopCap {
		return 0, 0, 0, 0, fmt.Errorf("adapt: NeuralMix: %d keys of width %d over %d tokens need %d loop iterations per invocation, at most %d",
			maxKeys, c, v, it, neuralLoopCap)
	}
	return m, c, v, kn, nil
}

// NeuralMix runs ncache_mix: one workgroup per row, a scratch of (M,
// maxKeys) allocated for the call.
func (o *WebGPUOps) NeuralMix(dst, h, keys, vals, rowParams gpu.Tensor, maxKeys int) error {
	m, c, v, kn, err := checkNeuralMix(dst, h, keys, vals, rowParams, maxKeys)
	if err != nil || m == 0 {
		return err
	}
	g := o.WebGPU
	s := max(maxKeys, 1)
	scratch, err := g.Alloc(gpu.F32, m, s)
	if err != nil {
		return fmt.Errorf("adapt: NeuralMix: %w", err)
	}
	defer g.Free(scratch)
	gx, gy := g.Grid1(m)
	g.Dispatch("ncache_mix", []gpu.Tensor{h, vals, rowParams}, []gpu.Tensor{keys, scratch, dst},
		gpu.Meta{m, c, v, s, kn}, gx, gy, 1)
	return nil
}

// NeuralMix implements Ops with the plain-Go reference.
func (o *RefOps) NeuralMix(dst, h, keys, vals, rowParams gpu.Tensor, maxKeys int) error {
	_, c, v, _, err := checkNeuralMix(dst, h, keys, vals, rowParams, maxKeys)
	if err != nil {
		return err
	}
	RefNeuralMix(o.rf(dst), o.rf(h), o.rf(keys), o.ri(vals), o.rf(rowParams), c, v, max(maxKeys, 1))
	return nil
}
