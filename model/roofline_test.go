package model

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/quant"
)

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

// Each kernel's share is its time over the run's; its rates are its work
// over its time, against the ceilings; a kernel with no time gets no rate.
func TestKernelShares(t *testing.T) {
	prof := []gpu.KernelTime{
		{Kernel: "matmul_reg_f32", Calls: 4, Total: 300 * time.Millisecond, Flops: 6e9, Bytes: 3e8},
		{Kernel: "gelu", Calls: 2, Total: 100 * time.Millisecond, Bytes: 5e7},
		{Kernel: "argmax", Calls: 1},
	}
	ceil := gpu.Ceilings{MatMulGFLOPs: 40, CopyGBs: 2}
	ks := KernelShares(prof, ceil)
	if len(ks) != len(prof) {
		t.Fatalf("%d shares for %d kernels", len(ks), len(prof))
	}
	var sum float64
	for i, k := range ks {
		p := prof[i]
		sec := p.Total.Seconds()
		sum += k.Share
		if k.Kernel != p.Kernel || k.Calls != p.Calls || !near(k.Ms, 1000*sec) {
			t.Errorf("%s: %+v", p.Kernel, k)
		}
		if sec == 0 {
			if k.GFLOPs != 0 || k.GBs != 0 || k.OfCopyCeiling != 0 || k.OfMatMulPeak != 0 {
				t.Errorf("%s ran no time but has rates: %+v", p.Kernel, k)
			}
			continue
		}
		if gf := p.Flops / sec / 1e9; !near(k.GFLOPs, gf) || !near(k.OfMatMulPeak, gf/ceil.MatMulGFLOPs) {
			t.Errorf("%s: %v GFLOP/s (%v of peak), want %v", p.Kernel, k.GFLOPs, k.OfMatMulPeak, gf)
		}
		if gb := p.Bytes / sec / 1e9; !near(k.GBs, gb) || !near(k.OfCopyCeiling, gb/ceil.CopyGBs) {
			t.Errorf("%s: %v GB/s (%v of copy), want %v", p.Kernel, k.GBs, k.OfCopyCeiling, gb)
		}
	}
	if !near(sum, 1) {
		t.Errorf("shares sum to %v", sum)
	}
	if got := MatMulSeconds(prof); !near(got, 0.3) {
		t.Errorf("MatMulSeconds %v, want the matmul kernel's 0.3", got)
	}
	// No ceilings measured and no time at all: zeros, which JSON carries.
	if _, err := json.Marshal(KernelShares([]gpu.KernelTime{{Kernel: "x"}}, gpu.Ceilings{})); err != nil {
		t.Error(err)
	}
}

// The weights one decode step reads, counted matrix by matrix here: per
// layer c_attn (3C x C), c_proj (C x C), c_fc (4C x C) and mlp.c_proj
// (C x 4C), plus the tied V x C projection.
func TestDecodeWeightBytes(t *testing.T) {
	c := Configs["tiny"]
	C, V, L := c.NEmbd, c.VocabSize, c.NLayer
	var layer int
	for _, shape := range [][2]int{{3 * C, C}, {C, C}, {4 * C, C}, {C, 4 * C}} {
		layer += shape[0] * shape[1]
	}
	for _, tc := range []struct {
		dt   gpu.DType
		want float64
	}{
		{gpu.F32, 4 * float64(L*layer+V*C)},
		{gpu.F16, 2 * float64(L*layer+V*C)},
	} {
		if got := c.DecodeWeightBytes(tc.dt); got != tc.want {
			t.Errorf("%s: %v bytes, want %v", tc.dt, got, tc.want)
		}
	}
	f, err := quant.Parse("q8_0")
	if err != nil {
		t.Fatal(err)
	}
	blocks := L * layer / f.BlockSize()
	if want := float64(blocks*f.BlockBytes() + 2*V*C); c.DecodeWeightBytes(gpu.QuantDType(f)) != want {
		t.Errorf("q8_0: %v bytes, want %v (whole blocks, f16 projection)", c.DecodeWeightBytes(gpu.QuantDType(f)), want)
	}
	if BenchWeightBytes(gpu.QuantDType(f)) != 2 || BenchWeightBytes(gpu.F32) != 4 {
		t.Error("BenchWeightBytes: want 2 for quantized weights (f16 embeddings), 4 for f32")
	}
}

// The roofline of a run: prefill's and every decode step's matmul FLOPs
// (2 x tokens x weights, the projection on the sampled rows only) over the
// matmul time, and the decode's weight bytes over its wall-clock time.
func TestRooflineOf(t *testing.T) {
	c := Configs["tiny"]
	r := BenchResult{Batch: 3, PromptTokens: 5, DecodeSteps: 7, DecodeSeconds: 0.5}
	ceil := gpu.Ceilings{MatMulGFLOPs: 10, CopyGBs: 4}
	C, V := float64(c.NEmbd), float64(c.VocabSize)
	layerW := 12 * C * C * float64(c.NLayer)
	tokens := float64(r.Batch*r.PromptTokens + r.Batch*r.DecodeSteps)
	rows := float64(r.Batch * (1 + r.DecodeSteps))
	flops := 2*tokens*layerW + 2*rows*V*C
	rl := c.RooflineOf(r, gpu.F16, 0.25, ceil)
	if want := flops / 0.25 / 1e9; !near(rl.MatMulGFLOPs, want) || !near(rl.MatMulOfCeiling, want/ceil.MatMulGFLOPs) {
		t.Errorf("matmul %v GFLOP/s (%v of ceiling), want %v", rl.MatMulGFLOPs, rl.MatMulOfCeiling, want)
	}
	if want := c.DecodeWeightBytes(gpu.F16) * 7 / 0.5 / 1e9; !near(rl.DecodeWeightGBs, want) || !near(rl.DecodeOfBandwidth, want/ceil.CopyGBs) {
		t.Errorf("decode %v GB/s (%v of copy), want %v", rl.DecodeWeightGBs, rl.DecodeOfBandwidth, want)
	}
	// Nothing timed, nothing measured: zeros, not infinities.
	if z := c.RooflineOf(BenchResult{Batch: 1, PromptTokens: 1, DecodeSteps: 1}, gpu.F32, 0, gpu.Ceilings{}); z != (Roofline{}) {
		t.Errorf("untimed run: %+v, want zeros", z)
	}
}

// The median run is picked by decode rate; the rates stay in run order.
func TestMedianBench(t *testing.T) {
	runs := []BenchResult{{PrefillTokS: 1, DecodeTokS: 30}, {PrefillTokS: 2, DecodeTokS: 10}, {PrefillTokS: 3, DecodeTokS: 20}, {PrefillTokS: 4, DecodeTokS: 40}}
	m, pre, dec := MedianBench(runs[:3])
	if m.PrefillTokS != 3 || len(pre) != 3 || pre[0] != 1 || dec[1] != 10 {
		t.Errorf("odd count: median %+v, prefill %v, decode %v", m, pre, dec)
	}
	if m, _, _ := MedianBench(runs); m.DecodeTokS != 20 {
		t.Errorf("even count: median decode %v, want the lower middle 20", m.DecodeTokS)
	}
}
