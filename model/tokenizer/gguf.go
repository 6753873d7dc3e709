package tokenizer

// The tokenizer inside a GGUF file, in llama.cpp's keys for a byte-level BPE
// ("gpt2") vocabulary:
//
//	tokenizer.ggml.model         "gpt2"
//	tokenizer.ggml.pre           "gpt-2": GPT-2's pre-tokenizer pattern
//	tokenizer.ggml.tokens        []string, by id, in GPT-2's byte-to-unicode
//	                             alphabet (as encoder.json spells them);
//	                             control tokens such as <|endoftext|> as is
//	tokenizer.ggml.token_type    []int32, by id: 1 normal, 3 control
//	tokenizer.ggml.merges        []string, by rank, "left right" in the same
//	                             alphabet (the lines of vocab.bpe)
//	tokenizer.ggml.bos_token_id  uint32: <|endoftext|>, as GPT-2 uses it
//	tokenizer.ggml.eos_token_id  uint32: <|endoftext|>
//	tokenizer.ggml.add_bos_token false: GPT-2 prompts start without it
//
// So a converted file carries everything needed to run it, and llama.cpp
// reads the same vocabulary from it.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/chameleon-llm/chameleon/model/tensorfile"
)

// GGUFKeyTokens and GGUFKeyMerges are the GGUF metadata keys of the
// vocabulary and the BPE merges (a model loader checks the vocabulary's
// size against its embedding).
const (
	GGUFKeyTokens = "tokenizer.ggml.tokens"
	GGUFKeyMerges = "tokenizer.ggml.merges"
)

const (
	ggufKeyTokens    = GGUFKeyTokens
	ggufKeyMerges    = GGUFKeyMerges
	ggufKeyTokModel  = "tokenizer.ggml.model"
	ggufKeyTokPre    = "tokenizer.ggml.pre"
	ggufKeyTokTypes  = "tokenizer.ggml.token_type"
	ggufKeyBOS       = "tokenizer.ggml.bos_token_id"
	ggufKeyEOS       = "tokenizer.ggml.eos_token_id"
	ggufKeyAddBOS    = "tokenizer.ggml.add_bos_token"
	ggufTokNormal    = int32(1) // llama.cpp's LLAMA_TOKEN_TYPE_NORMAL
	ggufTokControl   = int32(3) // LLAMA_TOKEN_TYPE_CONTROL
	ggufTokenizerBPE = "gpt2"
	ggufPreGPT2      = "gpt-2"
)

// ggufPreTokenizers are the tokenizer.ggml.pre values whose pattern is
// GPT-2's, the only one Chameleon implements.
var ggufPreTokenizers = map[string]bool{"gpt-2": true, "gpt2": true, "default": true}

// ErrNoTokenizer is returned by the GGUF tokenizer loaders for a file
// without tokenizer.ggml.tokens.
var ErrNoTokenizer = errors.New("model: the GGUF file carries no tokenizer")

// ggufMetadata returns t as llama.cpp's tokenizer keys (see the file
// comment).
func (t *Tokenizer) GGUFMetadata() ([]tensorfile.KV, error) {
	merges, err := t.v.mergeList()
	if err != nil {
		return nil, fmt.Errorf("model: tokenizer: %w", err)
	}
	tokens := make([]string, len(t.v.tokens))
	types := make([]int32, len(t.v.tokens))
	for id, tok := range t.v.tokens {
		if int32(id) == t.v.eot {
			tokens[id], types[id] = EndOfText, ggufTokControl
			continue
		}
		tokens[id], types[id] = mapBytes(tok), ggufTokNormal
	}
	lines := make([]string, len(merges))
	for i, m := range merges {
		lines[i] = mapBytes(t.v.tokens[m[0]]) + " " + mapBytes(t.v.tokens[m[1]])
	}
	return []tensorfile.KV{
		{Key: ggufKeyTokModel, Value: ggufTokenizerBPE},
		{Key: ggufKeyTokPre, Value: ggufPreGPT2},
		{Key: ggufKeyTokens, Value: tokens},
		{Key: ggufKeyTokTypes, Value: types},
		{Key: ggufKeyMerges, Value: lines},
		{Key: ggufKeyBOS, Value: uint32(t.v.eot)},
		{Key: ggufKeyEOS, Value: uint32(t.v.eot)},
		{Key: ggufKeyAddBOS, Value: false},
	}, nil
}

// LoadGGUF reads the tokenizer stored in a GGUF file's metadata; it
// returns ErrNoTokenizer if there is none.
func LoadGGUF(path string) (*Tokenizer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	tok, err := LoadGGUFReader(f, st.Size())
	if err != nil && !errors.Is(err, ErrNoTokenizer) {
		return nil, fmt.Errorf("model: %s: %s", path, strings.TrimPrefix(err.Error(), "model: "))
	}
	return tok, err
}

// LoadGGUFReader is LoadGGUF over the size bytes of r.
func LoadGGUFReader(r io.ReaderAt, size int64) (*Tokenizer, error) {
	f, err := tensorfile.ReadGGUF(r, size)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	v, err := ggufVocab(f)
	if err != nil {
		if errors.Is(err, ErrNoTokenizer) {
			return nil, err
		}
		return nil, fmt.Errorf("model: tokenizer: %w", err)
	}
	return newTokenizer(v), nil
}

// ggufVocab builds a vocabulary from llama.cpp's tokenizer keys. Everything
// it allocates is proportional to the metadata, which the GGUF reader has
// bounded by the file.
//
// (Over 80 lines: reads and checks each llama.cpp tokenizer key in turn, each
// error naming its key.)
func ggufVocab(f *tensorfile.GGUFFile) (*vocab, error) {
	if _, ok := f.Get(ggufKeyTokens); !ok {
		return nil, ErrNoTokenizer
	}
	kind, err := f.GetString(ggufKeyTokModel)
	if err != nil {
		return nil, err
	}
	if kind != ggufTokenizerBPE {
		return nil, fmt.Errorf("%s is %q; only %q (byte-level BPE) is supported", ggufKeyTokModel, kind, ggufTokenizerBPE)
	}
	if _, ok := f.Get(ggufKeyTokPre); ok {
		pre, err := f.GetString(ggufKeyTokPre)
		if err != nil {
			return nil, err
		}
		if !ggufPreTokenizers[pre] {
			return nil, fmt.Errorf("%s is %q; Chameleon splits text with GPT-2's pattern only (gpt-2, default)", ggufKeyTokPre, pre)
		}
	}
	texts, err := f.GetStringArray(ggufKeyTokens)
	if err != nil {
		return nil, err
	}
	if len(texts) > 1<<31-1 {
		return nil, fmt.Errorf("%s has %d entries, more than int32 ids can hold", ggufKeyTokens, len(texts))
	}
	var types []int32
	if _, ok := f.Get(ggufKeyTokTypes); ok {
		v, _ := f.Get(ggufKeyTokTypes)
		if types, ok = v.([]int32); !ok {
			return nil, fmt.Errorf("%s is a %T, want an array of int32", ggufKeyTokTypes, v)
		}
		if len(types) != len(texts) {
			return nil, fmt.Errorf("%s has %d entries for %d tokens", ggufKeyTokTypes, len(types), len(texts))
		}
	}
	mergeLines, err := f.GetStringArray(ggufKeyMerges)
	if err != nil {
		return nil, err
	}

	v := &vocab{tokens: make([]string, len(texts)), merges: make(map[uint64]merge, len(mergeLines)), eot: -1}
	ids := make(map[string]int32, len(texts))
	for id, text := range texts {
		raw := text
		if types == nil || types[id] != ggufTokControl {
			if raw, err = unmapBytes(text); err != nil {
				return nil, fmt.Errorf("%s[%d] %q: %w", ggufKeyTokens, id, text, err)
			}
		}
		if text == EndOfText {
			v.eot = int32(id)
		}
		if prev, dup := ids[raw]; dup {
			return nil, fmt.Errorf("%s[%d] and [%d] are both %q", ggufKeyTokens, prev, id, text)
		}
		ids[raw] = int32(id)
		v.tokens[id] = raw
	}
	if v.eot < 0 {
		return nil, fmt.Errorf("%s has no %s token, which GPT-2's tokenizer needs", ggufKeyTokens, EndOfText)
	}
	if err := v.setByteIDs(ids); err != nil {
		return nil, fmt.Errorf("%s: %w", ggufKeyTokens, err)
	}
	for rank, line := range mergeLines {
		left, right, ok := strings.Cut(line, " ")
		if !ok || left == "" || right == "" || strings.Contains(right, " ") {
			return nil, fmt.Errorf("%s[%d] is %q, want \"left right\"", ggufKeyMerges, rank, line)
		}
		a, errA := unmapBytes(left)
		b, errB := unmapBytes(right)
		if errA != nil || errB != nil {
			return nil, fmt.Errorf("%s[%d] %q: %w", ggufKeyMerges, rank, line, errors.Join(errA, errB))
		}
		idA, okA := ids[a]
		idB, okB := ids[b]
		idM, okM := ids[a+b]
		if !okA || !okB || !okM {
			return nil, fmt.Errorf("%s[%d] %q: %q, %q or their concatenation is not a token", ggufKeyMerges, rank, line, left, right)
		}
		k := pairKey(idA, idB)
		if _, dup := v.merges[k]; dup {
			return nil, fmt.Errorf("%s[%d] %q appears twice", ggufKeyMerges, rank, line)
		}
		v.merges[k] = merge{rank: int32(rank), id: idM}
	}
	for _, key := range []string{ggufKeyBOS, ggufKeyEOS} {
		if _, ok := f.Get(key); !ok {
			continue
		}
		id, err := f.GetUint(key)
		if err != nil {
			return nil, err
		}
		if id >= uint64(len(texts)) {
			return nil, fmt.Errorf("%s is %d, past the %d tokens", key, id, len(texts))
		}
	}
	return v, nil
}
