// Package model holds the GPT-2 side of Chameleon: configuration, weights,
// the tokenizer and the forward pass.
//
// The tokenizer is GPT-2's byte-level BPE (Tokenizer). It maps any byte string
// to token ids and back without loss: text is split into pre-tokens by a
// hand-written scanner equivalent to GPT-2's regular expression, and each
// pre-token's bytes are merged by rank. The vocabulary comes either from the
// r50k_base ranks embedded in the binary (NewGPT2Tokenizer) or from the
// encoder.json and vocab.bpe files that GPT-2 checkpoints ship
// (LoadTokenizer, LoadTokenizerFS); both give the same ids. Encode treats its
// input as plain text; only EncodeWithSpecial turns "<|endoftext|>" into the
// end-of-text id 50256.
package model
