package tokenizer

import (
	"fmt"
	"strings"
	"sync"
)

// Tokenizer is GPT-2's byte-level BPE tokenizer. It encodes any byte string,
// valid UTF-8 or not, and Decode(Encode(s)) returns exactly the bytes of s.
//
// Encoding splits the text into pre-tokens with GPT-2's pattern
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// maps each pre-token's bytes to single-byte tokens and merges adjacent
// pairs by rank. Results are cached per pre-token. Letters, numbers and
// white space are Unicode's (general categories L and N, the White_Space
// property, per Go's unicode tables); a byte that is not part of valid UTF-8
// counts as one punctuation-like character, so invalid input still
// round-trips.
//
// A Tokenizer is safe for concurrent use.
type Tokenizer struct {
	v *vocab

	mu    sync.Mutex
	cache map[string][]int32 // pre-token -> its ids; cleared when full
}

const (
	// maxCachedPiece is the longest pre-token, in bytes, whose ids are cached.
	maxCachedPiece = 256
	// maxCacheEntries bounds the cache; it is cleared when it would exceed it.
	maxCacheEntries = 1 << 16
)

func newTokenizer(v *vocab) *Tokenizer {
	return &Tokenizer{v: v, cache: make(map[string][]int32)}
}

// VocabSize returns the number of token ids, EndOfText included: valid ids
// are 0..VocabSize()-1 (50257 for GPT-2).
func (t *Tokenizer) VocabSize() int { return len(t.v.tokens) }

// EOT returns the id of the end-of-text token "<|endoftext|>" (50256 for
// GPT-2).
func (t *Tokenizer) EOT() int32 { return t.v.eot }

// Encode returns the token ids of s. The text is taken literally: the
// characters "<|endoftext|>" are encoded as ordinary text, never as EOT();
// use EncodeWithSpecial to recognise them.
func (t *Tokenizer) Encode(s string) []int32 {
	return t.AppendEncode(make([]int32, 0, len(s)/3+1), s)
}

// AppendEncode appends the token ids of s to dst and returns the extended
// slice, as Encode does.
func (t *Tokenizer) AppendEncode(dst []int32, s string) []int32 {
	for i := 0; i < len(s); {
		j := nextPiece(s, i)
		dst = t.appendPiece(dst, s[i:j])
		i = j
	}
	return dst
}

// EncodeWithSpecial is Encode, except that every occurrence of
// "<|endoftext|>" in s becomes the single id EOT(); the text between
// occurrences is encoded as by Encode (so pre-tokens never span an EOT).
func (t *Tokenizer) EncodeWithSpecial(s string) []int32 {
	dst := make([]int32, 0, len(s)/3+1)
	for {
		before, after, found := strings.Cut(s, EndOfText)
		dst = t.AppendEncode(dst, before)
		if !found {
			return dst
		}
		dst = append(dst, t.v.eot)
		s = after
	}
}

// appendPiece appends the ids of one pre-token.
func (t *Tokenizer) appendPiece(dst []int32, piece string) []int32 {
	if len(piece) == 1 {
		return append(dst, t.v.byteID[piece[0]])
	}
	if len(piece) > maxCachedPiece {
		return t.v.appendBPE(dst, piece)
	}
	t.mu.Lock()
	ids, ok := t.cache[piece]
	t.mu.Unlock()
	if ok {
		return append(dst, ids...)
	}
	n := len(dst)
	dst = t.v.appendBPE(dst, piece)
	ids = append([]int32(nil), dst[n:]...)
	key := strings.Clone(piece) // do not keep the caller's whole string alive
	t.mu.Lock()
	if len(t.cache) >= maxCacheEntries {
		clear(t.cache)
	}
	t.cache[key] = ids
	t.mu.Unlock()
	return dst
}

// TokenBytes returns a copy of the bytes of token id; for EOT() that is
// "<|endoftext|>". It panics if id is not in [0, VocabSize()).
func (t *Tokenizer) TokenBytes(id int32) []byte {
	t.checkID(id)
	return []byte(t.v.tokens[id])
}

func (t *Tokenizer) checkID(id int32) {
	if err := t.idError(id); err != nil {
		panic(err.Error())
	}
}

func (t *Tokenizer) idError(id int32) error {
	if id < 0 || int(id) >= len(t.v.tokens) {
		return fmt.Errorf("model: token id %d out of range [0, %d)", id, len(t.v.tokens))
	}
	return nil
}

// Decode returns the bytes that ids stand for, concatenated. The result need
// not be valid UTF-8: a token boundary can split a multi-byte character. EOT()
// decodes to "<|endoftext|>". Decode panics if an id is not in
// [0, VocabSize()); use DecodeChecked for ids from outside the program.
func (t *Tokenizer) Decode(ids []int32) []byte {
	return t.AppendDecode(nil, ids)
}

// AppendDecode appends the bytes of ids to dst, as Decode does, and panics
// like it.
func (t *Tokenizer) AppendDecode(dst []byte, ids []int32) []byte {
	for _, id := range ids {
		t.checkID(id)
		dst = append(dst, t.v.tokens[id]...)
	}
	return dst
}

// DecodeChecked is Decode, but returns an error naming the first id out of
// range instead of panicking.
func (t *Tokenizer) DecodeChecked(ids []int32) ([]byte, error) {
	for i, id := range ids {
		if err := t.idError(id); err != nil {
			return nil, fmt.Errorf("%w at index %d", err, i)
		}
	}
	return t.Decode(ids), nil
}

// DecodeString is string(Decode(ids)): the bytes are kept as they are, so
// the string may hold invalid UTF-8 where ids split a character (use
// strings.ToValidUTF8 for display). It panics like Decode.
func (t *Tokenizer) DecodeString(ids []int32) string {
	return string(t.Decode(ids))
}
