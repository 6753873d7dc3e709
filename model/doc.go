// Package model holds the GPT-2 side of Chameleon: configuration, weights,
// checkpoints, the tokenizer, the forward pass, generation and perplexity.
//
// Checkpoints (checkpoint.go, checkpoint_gguf.go): Hugging Face directories
// (config.json + model.safetensors, f32/f16/bf16, Conv1D weights transposed
// once into the project's (out, in) orientation) and GGUF files with
// llama.cpp's GPT-2 names, read and written; every tensor is validated
// against the config and errors name it. The project's own model format is
// the Hugging Face layout plus the tokenizer files.
//
// The tokenizer is GPT-2's byte-level BPE (Tokenizer). It maps any byte string
// to token ids and back without loss: text is split into pre-tokens by a
// hand-written scanner equivalent to GPT-2's regular expression, and each
// pre-token's bytes are merged by rank. The vocabulary comes either from the
// r50k_base ranks embedded in the binary (NewGPT2Tokenizer) or from the
// encoder.json and vocab.bpe files that GPT-2 checkpoints ship
// (LoadTokenizer, LoadTokenizerFS); both give the same ids, and WriteFiles
// writes those two files (byte-identical to GPT-2's from the embedded
// ranks). Encode treats its input as plain text; only EncodeWithSpecial
// turns "<|endoftext|>" into the end-of-text id 50256.
//
// The forward (forward.go) is written once against gpu.Backend: ragged
// batched prefill and decode over a KV cache (Cache), each sequence at its
// own position. Generate samples on the backend with per-sequence seeds;
// Perplexity scores sliding windows with cross-entropy on the backend.
package model
