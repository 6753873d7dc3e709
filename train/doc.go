// Package train trains GPT-2 models on a gpu.TrainBackend, llm.c style: the
// training forward saves the activations the backward needs, and the backward
// is written out layer by layer (no tape). The same code runs on the WebGPU
// backend and on the plain-Go reference.
//
// Dimension legend as in package gpu: B batch (sequences), T time (tokens per
// sequence), C channels, H heads, D = C/H, V vocabulary, L layers, M = B*T rows.
//
// Pieces:
//   - Model (model.go): parameters (F32), one gradient tensor per parameter
//     (zeroed each step, accumulated by the backward with the TrainBackend's
//     += contracts), the activations of one (B, T) shape, Forward / Loss /
//     Backward. wte is tied: the output projection's dW and the embedding's
//     gradient both accumulate into the one dWte.
//   - AdamW and Schedule (optim.go): AdamW over every parameter, decoupled
//     weight decay on 2-D tensors only, global-norm clipping, linear warm-up
//     then cosine decay to a floor.
//   - Trainer (step.go): one optimisation step with NaN/Inf detection.
//   - Dataset and Sampler (data.go): the corpus as token streams and the
//     deterministic, resumable batch sampler.
//   - Run (run.go): the training loop with evaluation, checkpoints
//     (checkpoint.go), resume and the loss curve (plot.go).
//   - BenchStep (bench.go): tokens/s and FLOP/s of a few training steps.
//
// Invariants: a step either updates every parameter from finite gradients or
// updates none (a non-finite loss or gradient norm is reported as a
// *NonFiniteError and nothing changes); the sampler's state after step s is a
// pure function of (seed, s), saved in checkpoints, so a resumed run computes
// exactly the batches an uninterrupted one would.
package train
