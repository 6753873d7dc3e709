package model

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/model/tensorfile"
	"github.com/chameleon-llm/chameleon/model/tokenizer"
)

// tinyGGUFTokenizer is a byte-level BPE of 300 tokens trained on a few lines.
func tinyGGUFTokenizer(tb testing.TB) *tokenizer.Tokenizer {
	tb.Helper()
	texts := []string{"the cat sat on the mat", "the dog ate the hat", "a theme of that thing",
		"Ωmega ✓ naïve café", "func main() { return 0 }", "  indented\n\tlines\n"}
	var all []string
	for range 20 {
		all = append(all, texts...)
	}
	tok, err := tokenizer.TrainBPE(slices.Values(all), 300, 1)
	if err != nil {
		tb.Fatal(err)
	}
	if tok.VocabSize() != 300 {
		tb.Fatalf("trained %d tokens, want 300", tok.VocabSize())
	}
	return tok
}

var ggufTokTexts = []string{"", "the cat sat on the hat", "Ωmega ✓ \x00\xff bytes<|endoftext|>", "  x\n\n\ty", "unseen words: zebra quokka"}

// sameIDs fails unless a and b encode texts to the same ids and have the
// same tokens.
func sameIDs(t *testing.T, a, b *tokenizer.Tokenizer) {
	t.Helper()
	if a.VocabSize() != b.VocabSize() || a.EOT() != b.EOT() {
		t.Fatalf("vocabulary %d (EOT %d), want %d (EOT %d)", b.VocabSize(), b.EOT(), a.VocabSize(), a.EOT())
	}
	for id := range int32(a.VocabSize()) {
		if !bytes.Equal(a.TokenBytes(id), b.TokenBytes(id)) {
			t.Fatalf("token %d is %q, want %q", id, b.TokenBytes(id), a.TokenBytes(id))
		}
	}
	for _, s := range ggufTokTexts {
		if x, y := a.EncodeWithSpecial(s), b.EncodeWithSpecial(s); !slices.Equal(x, y) {
			t.Errorf("%q: ids %v, want %v", s, y, x)
		}
	}
}

// TestGGUFTokenizerRoundTrip writes a tokenizer into a GGUF checkpoint's
// metadata, reads it back, and checks ids, tokens and the llama.cpp keys;
// the GPT-2 vocabulary (a rank table) goes through the same path.
func TestGGUFTokenizerRoundTrip(t *testing.T) {
	gpt2Tok, err := tokenizer.NewGPT2()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		tok  *tokenizer.Tokenizer
	}{{"trained", tinyGGUFTokenizer(t)}, {"gpt2", gpt2Tok}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{VocabSize: tc.tok.VocabSize(), NCtx: 4, NEmbd: 4, NHead: 2, NLayer: 1, LNEps: 1e-5}
			path := filepath.Join(t.TempDir(), "m.gguf")
			if err := SaveGGUFWith(path, cfg, ckptHost(cfg, 1), "f16", GGUFOptions{Tokenizer: tc.tok, TiedOutput: true}); err != nil {
				t.Fatal(err)
			}
			got, err := tokenizer.LoadGGUF(path)
			if err != nil {
				t.Fatal(err)
			}
			sameIDs(t, tc.tok, got)
			// The HF files written from the GGUF tokenizer are the original's, byte for byte.
			var e1, e2, b1, b2 bytes.Buffer
			if err := errors.Join(tc.tok.WriteEncoderJSON(&e1), got.WriteEncoderJSON(&e2), tc.tok.WriteVocabBPE(&b1), got.WriteVocabBPE(&b2)); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(e1.Bytes(), e2.Bytes()) || !bytes.Equal(b1.Bytes(), b2.Bytes()) {
				t.Error("encoder.json or vocab.bpe differ after the GGUF round trip")
			}
			g := readGG(t, path)
			eot := uint32(tc.tok.EOT())
			for key, want := range map[string]any{"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "gpt-2", "tokenizer.ggml.bos_token_id": eot, "tokenizer.ggml.eos_token_id": eot, "tokenizer.ggml.add_bos_token": false} {
				if v, _ := g.Get(key); v != want {
					t.Errorf("%s = %v (%T), want %v", key, v, v, want)
				}
			}
			toks, _ := g.GetStringArray(ggufKeyTokens)
			types, _ := g.Get("tokenizer.ggml.token_type")
			if len(toks) != cfg.VocabSize || toks[eot] != tokenizer.EndOfText || types.([]int32)[eot] != int32(3) || types.([]int32)[0] != int32(1) {
				t.Errorf("tokens/types: %d tokens, EOT %q", len(toks), toks[eot])
			}
			if tc.name == "gpt2" {
				// GPT-2's published spelling: "Ġthe" is id 262, and the first merge is "Ġ t".
				merges, _ := g.GetStringArray(ggufKeyMerges)
				if toks[262] != "Ġthe" || merges[0] != "Ġ t" {
					t.Errorf("tokens[262] = %q, merges[0] = %q", toks[262], merges[0])
				}
			}
			if !g.Has(ggufHead) {
				t.Error("no output.weight")
			}
			if _, _, err := LoadGGUF(path); err != nil {
				t.Errorf("loading the weights beside the tokenizer: %v", err)
			}
		})
	}
	// A file without a tokenizer says so.
	cfg := ckptCfg
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := SaveGGUF(path, cfg, ckptHost(cfg, 1), "f32"); err != nil {
		t.Fatal(err)
	}
	if _, err := tokenizer.LoadGGUF(path); !errors.Is(err, tokenizer.ErrNoTokenizer) {
		t.Errorf("no tokenizer: %v", err)
	}
}

// TestGGUFTokenizerRejects edits one key at a time.
func TestGGUFTokenizerRejects(t *testing.T) {
	tok := tinyGGUFTokenizer(t)
	meta, err := tok.GGUFMetadata()
	if err != nil {
		t.Fatal(err)
	}
	set := func(key string, v any) []tensorfile.KV {
		m := slices.Clone(meta)
		for i := range m {
			if m[i].Key == key {
				if v == nil {
					return slices.Delete(m, i, i+1)
				}
				m[i].Value = v
				return m
			}
		}
		return append(m, tensorfile.KV{Key: key, Value: v})
	}
	toks := meta[2].Value.([]string)
	for _, tc := range []struct {
		name string
		meta []tensorfile.KV
		want string
	}{
		{"model", set("tokenizer.ggml.model", "llama"), `tokenizer.ggml.model is "llama"; only "gpt2"`},
		{"pre", set("tokenizer.ggml.pre", "llama-bpe"), `tokenizer.ggml.pre is "llama-bpe"`},
		{"no merges", set(ggufKeyMerges, nil), `no metadata key "tokenizer.ggml.merges"`},
		{"bad merge", set(ggufKeyMerges, []string{"Ġ"}), `tokenizer.ggml.merges[0] is "Ġ"`},
		{"unknown merge", set(ggufKeyMerges, []string{"qx zq"}), `is not a token`},
		{"unmappable merge", set(ggufKeyMerges, []string{"q Ω"}), `not in GPT-2's byte-to-unicode table`},
		{"types length", set("tokenizer.ggml.token_type", []int32{1}), "tokenizer.ggml.token_type has 1 entries for 300 tokens"},
		{"no EOT", set(ggufKeyTokens, append(slices.Clone(toks[:299]), "zz")), "no <|endoftext|> token"},
		{"duplicate", set(ggufKeyTokens, append(slices.Clone(toks[:298]), toks[0], tokenizer.EndOfText)), "are both"},
		{"no byte", set(ggufKeyTokens, append([]string{"ab"}, toks[1:]...)), "no token for byte"},
		{"eos", set("tokenizer.ggml.eos_token_id", uint32(300)), "tokenizer.ggml.eos_token_id is 300, past the 300 tokens"},
	} {
		var buf bytes.Buffer
		if err := tensorfile.WriteGGUF(&buf, tc.meta, nil); err != nil {
			t.Fatal(err)
		}
		_, err := tokenizer.LoadGGUFReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestHFToGGUFToHFTokenizer is the converter's round trip on the files: HF
// directory (weights + encoder.json + vocab.bpe) -> GGUF -> HF directory
// gives the same tokenizer files and ids.
func TestHFToGGUFToHFTokenizer(t *testing.T) {
	tok := tinyGGUFTokenizer(t)
	cfg := Config{VocabSize: tok.VocabSize(), NCtx: 4, NEmbd: 8, NHead: 2, NLayer: 1, LNEps: 1e-5}
	dir1, dir2, gg := t.TempDir(), t.TempDir(), filepath.Join(t.TempDir(), "m.gguf")
	if err := errors.Join(SaveHF(dir1, cfg, ckptHost(cfg, 2), "f16"), tok.WriteFiles(dir1)); err != nil {
		t.Fatal(err)
	}
	tok1, err := tokenizer.LoadFS(os.DirFS(dir1))
	if err != nil {
		t.Fatal(err)
	}
	c, host, err := Load(dir1)
	if err != nil {
		t.Fatal(err)
	}
	if err := SaveGGUFWith(gg, c, host, "f16", GGUFOptions{Tokenizer: tok1, TiedOutput: true}); err != nil {
		t.Fatal(err)
	}
	tok2, err := tokenizer.LoadGGUF(gg)
	if err != nil {
		t.Fatal(err)
	}
	c, host, err = Load(gg)
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(SaveHF(dir2, c, host, "f16"), tok2.WriteFiles(dir2)); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"encoder.json", "vocab.bpe", hfWeightsFile, hfConfigFile} {
		a, _ := os.ReadFile(filepath.Join(dir1, name))
		b, _ := os.ReadFile(filepath.Join(dir2, name))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s differs after HF -> GGUF -> HF", name)
		}
	}
	tok3, err := tokenizer.LoadFS(os.DirFS(dir2))
	if err != nil {
		t.Fatal(err)
	}
	sameIDs(t, tok, tok3)
}
