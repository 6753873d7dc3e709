package main

import (
	"context"
	"fmt"
	"runtime/pprof"
	"slices"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
)

// benchRun is one dtype and batch size of the prefill/decode bench.
type benchRun struct {
	DType string `json:"dtype"`
	// The run with the median decode rate of Reps timed runs; every run's
	// rates are listed beside it (a shared or CPU adapter drifts between
	// runs: the spread says how far).
	model.BenchResult
	Reps            int                 `json:"reps"`
	PrefillTokSRuns []float64           `json:"prefill_tokens_per_s_runs"`
	DecodeTokSRuns  []float64           `json:"decode_tokens_per_s_runs"`
	Kernels         []model.KernelShare `json:"kernels,omitempty"`
	model.Roofline                      // the matmul kernels over the whole run, and decode's weight streaming
}

// runDecode is the default mode: prefill and decode rates for every
// --dtype and --batches, each with its per-kernel profile and its place
// against the ceilings.
func (b *bench) runDecode() error {
	o := b.o
	b.log("bench on %s: %s (%d parameters), prompt %d, decode %d\n", b.d, b.name, b.cfg.Params(), o.prompt, o.decode)
	ceil, err := b.measureCeilings()
	if err != nil {
		return err
	}
	for _, dt := range b.dts {
		m, err := b.upload(dt)
		if err != nil {
			return err
		}
		for _, batch := range b.bs {
			run, err := b.decodeRun(m, dt, batch, ceil)
			if err != nil {
				return err
			}
			b.report.Runs = append(b.report.Runs, run)
			b.logRun(run)
		}
		m.W.Free(b.w)
	}
	return nil
}

// decodeRun times --reps runs of one batch size without the profiler (its
// timestamps split the dispatches into passes of their own), then one more
// with it for the per-kernel table. (--cpuprofile samples carry a "bench"
// label: timed or profiled.)
func (b *bench) decodeRun(m *model.Model, dt gpu.DType, batch int, ceil gpu.Ceilings) (benchRun, error) {
	o, wb := b.o, model.BenchWeightBytes(dt)
	var runs []model.BenchResult
	var err error
	for i := 0; i < o.reps && err == nil; i++ {
		pprof.Do(context.Background(), pprof.Labels("bench", "timed"), func(ctx context.Context) {
			var r model.BenchResult
			r, err = m.Bench(ctx, batch, o.prompt, o.decode, 1, wb)
			runs = append(runs, r)
		})
	}
	if err != nil {
		return benchRun{}, err
	}
	r, pre, dec := model.MedianBench(runs)
	if err := b.w.StartProfile(); err != nil {
		return benchRun{}, err
	}
	pprof.Do(context.Background(), pprof.Labels("bench", "profiled"), func(ctx context.Context) {
		_, err = m.Bench(ctx, batch, o.prompt, o.decode, 1, wb)
	})
	prof, perr := b.w.StopProfile()
	if err != nil {
		return benchRun{}, err
	}
	if perr != nil {
		return benchRun{}, perr
	}
	r.DecodeWeightBytes = b.cfg.DecodeWeightBytes(dt)
	return benchRun{DType: dt.String(), BenchResult: r, Reps: o.reps, PrefillTokSRuns: pre, DecodeTokSRuns: dec,
		Kernels: model.KernelShares(prof, ceil), Roofline: b.cfg.RooflineOf(r, dt, model.MatMulSeconds(prof), ceil)}, nil
}

// logRun prints one run: its rates, their spread and the ten first
// kernels of its profile.
func (b *bench) logRun(run benchRun) {
	b.log("%s batch %2d: prefill %8.1f tok/s, decode %7.2f tok/s; matmul kernels %.2f GFLOP/s (%.0f%% of ceiling); decode streams weights at %.2f GB/s (%.0f%% of copy)\n",
		run.DType, run.Batch, run.PrefillTokS, run.DecodeTokS, run.MatMulGFLOPs, 100*run.MatMulOfCeiling, run.DecodeWeightGBs, 100*run.DecodeOfBandwidth)
	b.log("    recorded: decode step %d dispatches (%.1f a token), %d passes, %d submits; prefill %d dispatches (%.2f a token), %d passes\n",
		run.DecodeStep.Dispatches, run.DecodeDispatchesPerToken, run.DecodeStep.Passes, run.DecodeStep.Submits, run.Prefill.Dispatches, run.PrefillDispatchesPerToken, run.Prefill.Passes)
	if pre, dec := run.PrefillTokSRuns, run.DecodeTokSRuns; run.Reps > 1 {
		b.log("    median of %d runs by decode rate; over the runs: prefill %.1f-%.1f, decode %.2f-%.2f tok/s\n",
			run.Reps, slices.Min(pre), slices.Max(pre), slices.Min(dec), slices.Max(dec))
	}
	b.log("    %-24s %6s %10s %6s %9s %9s %8s %8s\n", "kernel", "calls", "ms", "time", "GFLOP/s", "of peak", "GB/s", "of copy")
	for _, k := range run.Kernels[:min(10, len(run.Kernels))] {
		fl, pk := "", ""
		if k.GFLOPs > 0 {
			fl, pk = fmt.Sprintf("%.2f", k.GFLOPs), fmt.Sprintf("%.0f%%", 100*k.OfMatMulPeak)
		}
		b.log("    %-24s %6d %10.1f %5.1f%% %9s %9s %8.2f %7.0f%%\n", k.Kernel, k.Calls, k.Ms, 100*k.Share, fl, pk, k.GBs, 100*k.OfCopyCeiling)
	}
}
