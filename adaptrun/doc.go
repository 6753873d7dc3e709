// Package adaptrun is the adapter lifecycle above packages adapt (the ops
// and file formats) and train (the optimiser and the frozen-base adapter
// step): it cuts the corpus into the benchmark's windows, runs the frozen
// base model over them once, trains every adapter method, evaluates each
// under the groupings it is meant for and under the controls that would
// expose a fake gain, and reports the result with paired bootstrap
// intervals (the domain-shift benchmark, `chameleon adapt bench`).
//
// The protocol, fixed here so that every method sees the same thing:
//   - A window is T+1 tokens of one domain; its first P tokens are the
//     prompt. Features (mean token embedding, mean final hidden state, or
//     both) are computed over the prompt only, and only the predictions of
//     tokens P..T are scored, so an adapter chosen from a window's features
//     never saw the tokens it is scored on.
//   - The base model is pretrained on the corpus's pretraining domains
//     only; adapters train on the adaptation domains' train split;
//     learning rates are chosen on their validation split; test figures
//     come from the test split; the held-out domains are used by nothing
//     but the no-harm check.
//
// Methods update the output projection (head-only: the base model's
// hidden states are computed once, Prepare, and every step runs on them,
// AdapterNet) or linear layers inside the decoder too (DeepNet, a
// train.Delta on a frozen trainable copy of the base: every step runs the
// base forward and backward). Routed and generated updates pass a gate
// (adapt.Gate): an input farther from the training centroids than 99% of
// the training windows, or nearer the pretraining domains' training
// windows than the adaptation domains', keeps the base model; GateFor
// computes the gate a hyper adapter's file stores.
//
// Dimension legend: N windows, T tokens a window, P prompt tokens, C model
// width, V vocabulary, R rank, K clusters.
package adaptrun
