// Package adapt adapts a GPT-2's output projection to each batch with
// low-rank updates, as in ChamaleonLLM (Yuksel & Sawaf, arXiv 2502.04315):
//
//	logits[m] = W h[m] + b + alpha * B_c (A_c h[m]),  c = cluster[m],
//
// where A_c (r, C) and B_c (V, r) are the factors of row m's cluster. The
// factors come from one of three places, all applied by the same kernels:
//   - a hyper-network (HyperNet) that turns each cluster's mean feature
//     into A_c and B_c at inference time (the method);
//   - static LoRA: one learnt pair, K = 1 (a baseline);
//   - per-domain experts: K learnt pairs, each row picks its domain's (the
//     oracle baseline).
//
// Rows of several clusters are served in one batch by one fused kernel
// (the SGMV idea of Punica and S-LoRA, for generated adapters): Ops.Logits.
// An adapter may also update the decoder's block sites (qkv, proj, fc,
// fc2) of every layer the same way, each row with its own cluster's pair
// (sites.go: a shrink, Ops.LowRankU, and an expand, Ops.AddLowRank, per
// site, run by tiled kernels that take rows of mixed clusters in one
// dispatch: ops_update.go); Plan.Adapter is the model.Adapter that applies all of it in
// prefill and decode, natively, in the server and in the browser. A plan
// conditioned on hidden states needs the base model's pass over the
// prompts; Runtime.Prefill makes it inside the generation's own prefill
// (prefill.go), so the prompts run through the model once.
// Adapter files (Save, Load) are safetensors with JSON metadata that pins
// the base model, so an adapter trained for another model is refused.
//
// Dimension legend: M rows (B*T positions), C model width, V vocabulary,
// K clusters (or experts), R rank (r), H hidden width of the hyper-network.
//
// Invariants: ops write into dst and never modify their inputs; shape and
// dtype mismatches panic with an "adapt: " message (programmer errors);
// device limits and file problems are returned as errors. Every WGSL
// kernel here has a plain-Go reference in ref.go, which is also what the
// ops run on the reference backend (gpu/ref).
//
// Ops extends gpu.Backend in the pattern package gpu describes (extend.go):
// WebGPUOps and RefOps embed their backend, New picks one for a backend, and
// Conformance is the exported suite that checks the WGSL kernels against
// the references.
//
// The ops' backward halves are here (LowRankBackwardInput, AddLowRankT,
// ReLUBackward); training and evaluating adapters is package adaptrun's.
package adapt
