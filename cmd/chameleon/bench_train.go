package main

import (
	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/train"
)

// trainBench is one training-step measurement (forward, backward, AdamW).
type trainBench struct {
	Batch        int     `json:"batch"`
	Seq          int     `json:"seq"`
	TokensPerSec float64 `json:"tokens_per_s"`
	GFLOPs       float64 `json:"gflops"` // 3x the forward's matmul and attention FLOPs per second
	OfMatMulPeak float64 `json:"fraction_of_matmul_ceiling"`
}

// runTrain is --train: training steps of --seq tokens at each --batches.
func (b *bench) runTrain() error {
	b.log("training bench on %s: %s (%d parameters)\n", b.d, b.name, b.cfg.Params())
	ceil, err := b.measureCeilings()
	if err != nil {
		return err
	}
	for _, batch := range b.bs {
		tps, flops, err := train.BenchStep(b.w, b.cfg, batch, b.o.seq)
		if err != nil {
			return err
		}
		tr := trainBench{Batch: batch, Seq: b.o.seq, TokensPerSec: tps, GFLOPs: flops / 1e9}
		tr.OfMatMulPeak = model.OfCeiling(tr.GFLOPs, ceil.MatMulGFLOPs)
		b.report.Train = append(b.report.Train, tr)
		b.log("train batch %d x %d tokens: %.1f tokens/s, %.2f GFLOP/s achieved (%.0f%% of the matmul ceiling)\n",
			batch, b.o.seq, tps, tr.GFLOPs, 100*tr.OfMatMulPeak)
	}
	return nil
}
