// Package tokenizer is GPT-2's byte-level BPE (Tokenizer). It maps any
// byte string to token ids and back without loss: text is split into
// pre-tokens by a hand-written scanner equivalent to GPT-2's regular
// expression (pretokenize.go), and each pre-token's bytes are merged by
// rank (bpe.go).
//
// The vocabulary comes from the r50k_base ranks embedded in the binary
// (NewGPT2), from the encoder.json and vocab.bpe files that GPT-2
// checkpoints ship (Load, LoadFS), from a GGUF file's tokenizer.ggml.*
// metadata (LoadGGUF), or is learned from text (TrainBPE); NewGPT2 and the
// files give the same ids, and WriteFiles writes those two files
// (byte-identical to GPT-2's from the embedded ranks). Encode treats its
// input as plain text; only EncodeWithSpecial turns "<|endoftext|>" into the
// end-of-text id.
//
// It depends on no other part of the project but the tensor-file reader,
// so a model family with another tokenizer adds a package beside it.
package tokenizer
