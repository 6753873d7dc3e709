package train

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
)

// benchSteps is how many timed steps BenchStep runs after one warm-up step.
const benchSteps = 3

// BenchStep measures full training steps (forward, backward, gradient norm,
// AdamW) of a randomly initialised cfg on batch random sequences of seq
// tokens: one warm-up step (pipelines compiled, buffers allocated), then
// benchSteps timed steps, each synchronised by its loss read-back and the
// last one's update flushed. It returns the trained tokens per second and
// the achieved FLOP/s by FLOPsPerStep's count.
func BenchStep(b gpu.TrainBackend, cfg model.Config, batch, seq int) (tokensPerSec, achievedFLOPs float64, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("train: bench: %v", r)
		}
	}()
	if seq > cfg.NCtx || batch <= 0 || seq <= 0 {
		return 0, 0, fmt.Errorf("train: bench: batch %d x seq %d with a context of %d", batch, seq, cfg.NCtx)
	}
	m, err := New(b, cfg, model.RandomInit(cfg, 1))
	if err != nil {
		return 0, 0, err
	}
	defer m.Free()
	opt, err := NewAdamW(m, 0.9, 0.95, 1e-8, 0.1, 1)
	if err != nil {
		return 0, 0, err
	}
	defer opt.Free()
	tr := &Trainer{M: m, Opt: opt, Sched: Schedule{LR: 1e-4, MinLR: 1e-5, Steps: benchSteps + 1}}
	rng := rand.New(rand.NewPCG(1, 2))
	var bt Batch
	for i := 0; i < batch; i++ {
		ts := make([]int32, seq+1)
		for j := range ts {
			ts[j] = int32(rng.IntN(cfg.VocabSize))
		}
		bt.Tokens, bt.Targets = append(bt.Tokens, ts[:seq]), append(bt.Targets, ts[1:])
	}
	if _, err := tr.Step(bt); err != nil {
		return 0, 0, err
	}
	if err := b.Flush(); err != nil {
		return 0, 0, err
	}
	t0 := time.Now()
	for i := 0; i < benchSteps; i++ {
		if _, err := tr.Step(bt); err != nil {
			return 0, 0, err
		}
	}
	if err := b.Flush(); err != nil {
		return 0, 0, err
	}
	sec := time.Since(t0).Seconds()
	return float64(benchSteps*batch*seq) / sec, benchSteps * FLOPsPerStep(cfg, batch, seq) / sec, nil
}
