// Package model holds the GPT-2 side of Chameleon: configuration, weights,
// checkpoints, the forward pass, generation and perplexity.
//
// Checkpoints (checkpoint.go, checkpoint_gguf.go): Hugging Face directories
// (config.json + model.safetensors, f32/f16/bf16, Conv1D weights transposed
// once into the project's (out, in) orientation) and GGUF files with
// llama.cpp's GPT-2 names, read and written; every tensor is validated
// against the config and errors name it. The project's own model format is
// the Hugging Face layout plus the tokenizer files.
//
// The tokenizer is its own package, model/tokenizer; the tensor file
// formats are model/tensorfile.
//
// The forward (forward.go) is written once against gpu.Backend: ragged
// batched prefill and decode over a KV cache (Cache), each sequence at its
// own position. Generate samples on the backend with per-sequence seeds;
// Perplexity scores sliding windows with cross-entropy on the backend.
package model
