package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLIConvertGGUFTokenizer converts the embedded default model (no
// --model) to GGUF and back: the GGUF file runs by itself with the default
// model's own tokenizer, not GPT-2's, and the round trip keeps the tokenizer
// files byte for byte.
func TestCLIConvertGGUFTokenizer(t *testing.T) {
	const defDir = "../../defaults/model"
	if _, err := os.Stat(filepath.Join(defDir, "config.json")); err != nil {
		t.Skip("this build embeds no default model")
	}
	gguf := filepath.Join(t.TempDir(), "default.gguf")
	if out := mustRun(t, "", "convert", "--out", gguf, "--dtype", "f16"); !strings.Contains(out, "from the default model") {
		t.Errorf("convert: %q", out)
	}
	const text = "The model reads its own tokenizer from the file."
	own := mustRun(t, "", "tokenize", "--model", defDir, text)
	if got := mustRun(t, "", "tokenize", "--model", gguf, text); got != own {
		t.Errorf("tokenize --model x.gguf: %q, want the default model's %q", got, own)
	}
	if def := mustRun(t, "", "tokenize", text); def != own {
		t.Errorf("tokenize without --model: %q, want the default model's %q", def, own)
	}
	if gpt2 := mustRun(t, "", "tokenize", "--gpt2", text); gpt2 == own {
		t.Fatal("the default model's tokenizer encodes like GPT-2's; the test cannot tell them apart")
	}
	if got := mustRun(t, "", "tokenize", "--decode", "--model", gguf, strings.TrimSpace(own)); got != text+"\n" {
		t.Errorf("decode with the GGUF tokenizer: %q", got)
	}

	back := filepath.Join(t.TempDir(), "back")
	mustRun(t, "", "convert", "--model", gguf, "--out", back, "--dtype", "f16")
	for _, name := range []string{"encoder.json", "vocab.bpe"} {
		a, _ := os.ReadFile(filepath.Join(defDir, name))
		b, _ := os.ReadFile(filepath.Join(back, name))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s changed in default -> GGUF -> HF (%d vs %d bytes)", name, len(a), len(b))
		}
	}
	if got := mustRun(t, "", "tokenize", "--model", back, text); got != own {
		t.Errorf("ids after the round trip: %q, want %q", got, own)
	}

	// Greedy generation from the GGUF file alone matches the embedded model.
	args := []string{"generate", "--cpu", "--dtype", "f32", "--temperature", "0", "--max-tokens", "4", "hi"}
	want := mustRun(t, "", args...)
	if got := mustRun(t, "", append(args, "--model", gguf)...); got != want {
		t.Errorf("generate --model x.gguf: %q, want %q", got, want)
	}
}
