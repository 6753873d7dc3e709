package model

import (
	"cmp"
	"slices"
	"strings"

	"github.com/chameleon-llm/chameleon/gpu"
)

// The roofline arithmetic of `chameleon bench`: a run's achieved rates
// (FLOP/s of the matmul kernels, bytes/s of the weights decode streams, and
// each profiled kernel's) as fractions of the adapter's measured ceilings
// (gpu.Ceilings: its best matmul rate and copy bandwidth).

// OfCeiling is rate as a fraction of ceiling, or 0 when the ceiling is not
// positive (not measured): never an infinity that JSON cannot carry.
func OfCeiling(rate, ceiling float64) float64 {
	if ceiling <= 0 {
		return 0
	}
	return rate / ceiling
}

// perSecond is x / seconds, or 0 when no time was measured.
func perSecond(x, seconds float64) float64 {
	if seconds <= 0 {
		return 0
	}
	return x / seconds
}

// KernelShare is one kernel's part of a profiled run.
type KernelShare struct {
	Kernel string  `json:"kernel"`
	Calls  int     `json:"calls"`
	Ms     float64 `json:"ms"`
	Share  float64 `json:"share"` // of all GPU time in the run
	// Work rates and their fraction of the measured ceilings: FLOPs are
	// declared by the matmul op; bytes are the buffer ranges bound to the
	// kernel's dispatches (see gpu.KernelTime).
	GFLOPs        float64 `json:"gflops,omitempty"`
	OfMatMulPeak  float64 `json:"fraction_of_matmul_ceiling,omitempty"`
	GBs           float64 `json:"gbs"`
	OfCopyCeiling float64 `json:"fraction_of_copy_ceiling"`
}

// KernelShares is every profiled kernel's share of the run's GPU time and
// its FLOP and byte rates against ceil, in the profile's order. A kernel
// with no measured time has zero rates.
func KernelShares(prof []gpu.KernelTime, ceil gpu.Ceilings) []KernelShare {
	var total float64
	for _, k := range prof {
		total += k.Total.Seconds()
	}
	out := make([]KernelShare, 0, len(prof))
	for _, k := range prof {
		sec := k.Total.Seconds()
		ks := KernelShare{Kernel: k.Kernel, Calls: k.Calls, Ms: sec * 1000, Share: perSecond(sec, total)}
		if sec > 0 {
			ks.GFLOPs = k.Flops / sec / 1e9
			ks.OfMatMulPeak = OfCeiling(ks.GFLOPs, ceil.MatMulGFLOPs)
			ks.GBs = k.Bytes / sec / 1e9
			ks.OfCopyCeiling = OfCeiling(ks.GBs, ceil.CopyGBs)
		}
		out = append(out, ks)
	}
	return out
}

// MatMulSeconds is the GPU time of the profile's matmul kernels (those
// named matmul*).
func MatMulSeconds(prof []gpu.KernelTime) float64 {
	var s float64
	for _, k := range prof {
		if strings.HasPrefix(k.Kernel, "matmul") {
			s += k.Total.Seconds()
		}
	}
	return s
}

// BenchWeightBytes is the bytes per weight element that Bench and
// MatMulWork count for weights of dtype dt: its size, or 2 for a quantized
// dtype (whose embeddings, and so the tied projection, stay f16; the layer
// matrices' blocks are counted by DecodeWeightBytes).
func BenchWeightBytes(dt gpu.DType) int {
	if dt.Quantized() {
		return 2
	}
	return dt.Size()
}

// DecodeWeightBytes is the bytes of weights one decode step reads with
// weights of dtype dt: the layer matrices in dt (whole blocks for a
// quantized dtype) and the tied projection in f32, or f16 for f16 and
// quantized models.
func (c Config) DecodeWeightBytes(dt gpu.DType) float64 {
	C, V := float64(c.NEmbd), float64(c.VocabSize)
	layer := 12 * C * C * float64(c.NLayer)
	if f, ok := dt.Quant(); ok {
		return layer*float64(f.BlockBytes())/float64(f.BlockSize()) + 2*V*C
	}
	return float64(dt.Size()) * (layer + V*C)
}

// Roofline is a bench run against the ceilings.
type Roofline struct {
	// The matmul kernels over the whole run (prefill and decode): their
	// FLOPs over their profiled GPU time.
	MatMulGFLOPs    float64 `json:"matmul_gflops"`
	MatMulOfCeiling float64 `json:"matmul_fraction_of_ceiling"`
	// The rate at which decode streams the weights (DecodeWeightBytes per
	// step over the wall-clock decode time) against the copy bandwidth.
	DecodeWeightGBs   float64 `json:"decode_weight_gbs"`
	DecodeOfBandwidth float64 `json:"decode_fraction_of_copy_bandwidth"`
}

// RooflineOf places the bench run r (weights of dtype dt) against ceil;
// matmulSeconds is its matmul kernels' GPU time (MatMulSeconds of a
// profiled repeat of the run). Rates with no measured time are 0.
func (c Config) RooflineOf(r BenchResult, dt gpu.DType, matmulSeconds float64, ceil gpu.Ceilings) Roofline {
	wb := BenchWeightBytes(dt)
	prefill, _ := c.MatMulWork(r.Batch*r.PromptTokens, r.Batch, wb)
	step, _ := c.MatMulWork(r.Batch, r.Batch, wb)
	var rl Roofline
	rl.MatMulGFLOPs = perSecond(prefill+step*float64(r.DecodeSteps), matmulSeconds) / 1e9
	rl.MatMulOfCeiling = OfCeiling(rl.MatMulGFLOPs, ceil.MatMulGFLOPs)
	rl.DecodeWeightGBs = perSecond(c.DecodeWeightBytes(dt)*float64(r.DecodeSteps), r.DecodeSeconds) / 1e9
	rl.DecodeOfBandwidth = OfCeiling(rl.DecodeWeightGBs, ceil.CopyGBs)
	return rl
}

// MedianBench returns the run of median decode rate (the lower middle one
// for an even count) and every run's prefill and decode rates, in run
// order. It panics on no runs.
func MedianBench(runs []BenchResult) (median BenchResult, prefill, decode []float64) {
	if len(runs) == 0 {
		panic("model: MedianBench of no runs")
	}
	for _, r := range runs {
		prefill = append(prefill, r.PrefillTokS)
		decode = append(decode, r.DecodeTokS)
	}
	order := slices.Clone(runs)
	slices.SortStableFunc(order, func(a, b BenchResult) int { return cmp.Compare(a.DecodeTokS, b.DecodeTokS) })
	return order[(len(order)-1)/2], prefill, decode
}
