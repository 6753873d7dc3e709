package tokenizer

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	tiktokenassets "github.com/pkoukk/tiktoken-go-loader/assets"
)

// EndOfText is the text of GPT-2's end-of-text token.
const EndOfText = "<|endoftext|>"

// vocab is an immutable byte-level BPE vocabulary, shared by every
// Tokenizer built from the same source.
type vocab struct {
	tokens []string         // id -> token bytes; len is the vocabulary size
	byteID [256]int32       // byte -> id of its single-byte token
	merges map[uint64]merge // pairKey(left, right) -> merged token and rank
	eot    int32            // id of EndOfText
}

// byteRunes is GPT-2's bytes_to_unicode table: it maps every byte to a
// printable rune so that encoder.json and vocab.bpe can store token bytes as
// text. Printable Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') map to
// themselves; the other 68 bytes map, in increasing order, to U+0100,
// U+0101, ... (so ' ' is 'Ġ' U+0120 and '\n' is 'Ċ' U+010A).
var byteRunes = func() (t [256]rune) {
	extra := rune(256)
	for b := range t {
		printable := ('!' <= b && b <= '~') || (0xA1 <= b && b <= 0xAC) || (0xAE <= b && b <= 0xFF)
		if printable {
			t[b] = rune(b)
		} else {
			t[b] = extra
			extra++
		}
	}
	return t
}()

// runeBytes inverts byteRunes; every rune in it is below 0x144.
var runeBytes = func() map[rune]byte {
	m := make(map[rune]byte, 256)
	for b, r := range byteRunes {
		m[r] = byte(b)
	}
	return m
}()

// unmapBytes turns a token as written in encoder.json or vocab.bpe back into
// its bytes.
func unmapBytes(s string) (string, error) {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		c, ok := runeBytes[r]
		if !ok {
			return "", fmt.Errorf("rune %U is not in GPT-2's byte-to-unicode table", r)
		}
		b.WriteByte(c)
	}
	return b.String(), nil
}

// setByteIDs fills v.byteID from a token -> id map.
func (v *vocab) setByteIDs(ids map[string]int32) error {
	for b := range 256 {
		id, ok := ids[string([]byte{byte(b)})]
		if !ok {
			return fmt.Errorf("no token for byte 0x%02x: byte-level BPE needs all 256", b)
		}
		v.byteID[b] = id
	}
	return nil
}

// tiktokenAssetsR50k returns the r50k_base ranks embedded by
// github.com/pkoukk/tiktoken-go-loader.
func tiktokenAssetsR50k() ([]byte, error) {
	return tiktokenassets.Assets.ReadFile("r50k_base.tiktoken")
}

// r50kVocab parses the embedded r50k_base ranks once.
var r50kVocab = sync.OnceValues(func() (*vocab, error) {
	data, err := tiktokenAssetsR50k()
	if err != nil {
		return nil, fmt.Errorf("model: tokenizer: reading embedded r50k_base.tiktoken: %w", err)
	}
	v, err := parseTiktoken(data)
	if err != nil {
		return nil, fmt.Errorf("model: tokenizer: embedded r50k_base.tiktoken: %w", err)
	}
	return v, nil
})

// parseTiktoken reads tiktoken's rank format, one "base64(token) rank" per
// line, with ranks 0..n-1. Ids are the ranks and EndOfText gets id n (50256
// for r50k_base). A pair of tokens merges, with the rank of the merged
// token, whenever their concatenated bytes are a token: that is tiktoken's
// rule, expressed here as a table of pairs.
func parseTiktoken(data []byte) (*vocab, error) {
	n := bytes.Count(data, []byte{'\n'}) + 1
	tokens := make([]string, 0, n+1)
	ids := make(map[string]int32, n)
	for lineNo, line := range bytes.Split(data, []byte{'\n'}) {
		if len(line) == 0 {
			continue
		}
		tok, rank, ok := bytes.Cut(line, []byte{' '})
		if !ok {
			return nil, fmt.Errorf("line %d: want \"base64 rank\", got %q", lineNo+1, line)
		}
		raw, err := base64.StdEncoding.DecodeString(string(tok))
		if err != nil || len(raw) == 0 {
			return nil, fmt.Errorf("line %d: bad base64 token %q", lineNo+1, tok)
		}
		r, err := strconv.Atoi(string(rank))
		if err != nil || r != len(tokens) {
			return nil, fmt.Errorf("line %d: rank %q, want %d (ranks must be dense and in order)", lineNo+1, rank, len(tokens))
		}
		if _, dup := ids[string(raw)]; dup {
			return nil, fmt.Errorf("line %d: token %q appears twice", lineNo+1, raw)
		}
		ids[string(raw)] = int32(r)
		tokens = append(tokens, string(raw))
	}
	v := &vocab{merges: make(map[uint64]merge, len(tokens))}
	if err := v.setByteIDs(ids); err != nil {
		return nil, err
	}
	for id, tok := range tokens {
		for k := 1; k < len(tok); k++ {
			a, ok := ids[tok[:k]]
			if !ok {
				continue
			}
			if b, ok := ids[tok[k:]]; ok {
				v.merges[pairKey(a, b)] = merge{rank: int32(id), id: int32(id)}
			}
		}
	}
	v.eot = int32(len(tokens))
	v.tokens = append(tokens, EndOfText)
	return v, nil
}

// parseEncoderBPE reads GPT-2's encoder.json (token text -> id) and
// vocab.bpe (a "#version" line, then one merge "left right" per line, in
// rank order), both in byte-to-unicode form.
func parseEncoderBPE(encoderJSON, vocabBPE io.Reader) (*vocab, error) {
	enc, err := decodeEncoderJSON(encoderJSON)
	if err != nil {
		return nil, fmt.Errorf("encoder.json: %w", err)
	}
	tokens := make([]string, len(enc))
	seen := make([]bool, len(enc))
	ids := make(map[string]int32, len(enc)) // token bytes -> id
	for text, id := range enc {
		if id < 0 || int(id) >= len(enc) {
			return nil, fmt.Errorf("encoder.json: %q has id %d, want ids 0..%d", text, id, len(enc)-1)
		}
		if seen[id] {
			return nil, fmt.Errorf("encoder.json: id %d is used twice", id)
		}
		seen[id] = true
		raw, err := unmapBytes(text)
		if err != nil {
			return nil, fmt.Errorf("encoder.json: token %q: %w", text, err)
		}
		tokens[id] = raw
		ids[raw] = id
	}
	v := &vocab{tokens: tokens, merges: make(map[uint64]merge, len(enc))}
	if err := v.setByteIDs(ids); err != nil {
		return nil, fmt.Errorf("encoder.json: %w", err)
	}
	if id, ok := enc[EndOfText]; ok {
		v.eot = id
	} else {
		v.eot = int32(len(v.tokens))
		v.tokens = append(v.tokens, EndOfText)
	}

	sc := bufio.NewScanner(vocabBPE)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	rank := int32(0)
	for lineNo := 1; sc.Scan(); lineNo++ {
		line := sc.Text()
		if (lineNo == 1 && strings.HasPrefix(line, "#version")) || strings.TrimSpace(line) == "" {
			continue
		}
		if !utf8.ValidString(line) {
			return nil, fmt.Errorf("vocab.bpe: line %d is not valid UTF-8", lineNo)
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("vocab.bpe: line %d: want \"left right\", got %q", lineNo, line)
		}
		a, okA := enc[f[0]]
		b, okB := enc[f[1]]
		m, okM := enc[f[0]+f[1]]
		if !okA || !okB || !okM {
			return nil, fmt.Errorf("vocab.bpe: line %d: %q, %q or %q is not in encoder.json", lineNo, f[0], f[1], f[0]+f[1])
		}
		k := pairKey(a, b)
		if _, dup := v.merges[k]; dup {
			return nil, fmt.Errorf("vocab.bpe: line %d: merge %q appears twice", lineNo, line)
		}
		v.merges[k] = merge{rank: rank, id: m}
		rank++
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("vocab.bpe: %w", err)
	}
	return v, nil
}

// decodeEncoderJSON reads encoder.json's object of token text -> id,
// refusing a token listed twice (encoding/json would keep the last id
// silently) and anything after the object.
func decodeEncoderJSON(r io.Reader) (map[string]int32, error) {
	dec := json.NewDecoder(r)
	switch tok, err := dec.Token(); {
	case err != nil:
		return nil, jsonErr(err)
	case tok != json.Delim('{'):
		return nil, fmt.Errorf("want a JSON object of token -> id, got %v", tok)
	}
	enc := map[string]int32{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, jsonErr(err)
		}
		key := tok.(string) // inside an object the decoder only yields string keys
		var id int32
		if err := dec.Decode(&id); err != nil {
			return nil, fmt.Errorf("token %q: %w", key, jsonErr(err))
		}
		if prev, dup := enc[key]; dup {
			return nil, fmt.Errorf("token %q appears twice, with ids %d and %d", key, prev, id)
		}
		enc[key] = id
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, jsonErr(err)
	}
	switch tok, err := dec.Token(); {
	case err == nil:
		return nil, fmt.Errorf("unexpected %v after the JSON object", tok)
	case err != io.EOF:
		return nil, fmt.Errorf("after the JSON object: %w", err)
	}
	return enc, nil
}

// jsonErr turns a JSON decoder's io.EOF (the object is cut short) into
// io.ErrUnexpectedEOF.
func jsonErr(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// NewGPT2 returns GPT-2's tokenizer built from the r50k_base ranks
// embedded in the binary (50,257 tokens with EndOfText). The ranks are
// parsed once per process; each Tokenizer has its own cache.
func NewGPT2() (*Tokenizer, error) {
	v, err := r50kVocab()
	if err != nil {
		return nil, err
	}
	return newTokenizer(v), nil
}

// Load builds a tokenizer from GPT-2's encoder.json and vocab.bpe,
// as Hugging Face checkpoints ship them. If encoder.json has no EndOfText
// entry, EndOfText gets the next free id.
func Load(encoderJSON, vocabBPE io.Reader) (*Tokenizer, error) {
	v, err := parseEncoderBPE(encoderJSON, vocabBPE)
	if err != nil {
		return nil, fmt.Errorf("model: tokenizer: %w (want GPT-2's encoder.json and vocab.bpe)", err)
	}
	return newTokenizer(v), nil
}

// LoadFS is Load on the files "encoder.json" and
// "vocab.bpe" at the root of fsys (use fs.Sub for a subdirectory).
func LoadFS(fsys fs.FS) (*Tokenizer, error) {
	enc, err := fsys.Open("encoder.json")
	if err != nil {
		return nil, fmt.Errorf("model: tokenizer: %w", err)
	}
	defer enc.Close()
	bpe, err := fsys.Open("vocab.bpe")
	if err != nil {
		return nil, fmt.Errorf("model: tokenizer: %w", err)
	}
	defer bpe.Close()
	return Load(enc, bpe)
}
