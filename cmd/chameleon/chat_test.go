package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/model/tokenizer"
	"github.com/chameleon-llm/chameleon/serve"
)

const chatML = `{% for m in messages %}<|im_start|>{{ m.role }}
{{ m.content }}<|im_end|>
{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}`

// The chat template comes from tokenizer_config.json in a model directory,
// travels into a GGUF file's tokenizer.chat_template with `convert`, is
// what `serve` renders messages with, and --chat-template overrides it.
func TestChatTemplateSources(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tiny")
	cfg := model.Configs["tiny"]
	if err := model.SaveHF(dir, cfg, model.RandomInit(cfg, 3), "f32"); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]any{"chat_template": chatML, "eos_token": "<|endoftext|>"})
	if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.NewGPT2()
	if err != nil {
		t.Fatal(err)
	}
	ct, err := chatTemplate(dir, "", tok)
	if err != nil || ct.Source != chatML || !strings.HasSuffix(ct.Origin, "tokenizer_config.json") {
		t.Fatalf("directory: %+v %v", ct, err)
	}
	gguf := filepath.Join(t.TempDir(), "tiny.gguf")
	conv := convertCmd()
	conv.SetArgs([]string{"--model", dir, "--out", gguf})
	conv.SetOut(io.Discard)
	if err := conv.Execute(); err != nil {
		t.Fatal(err)
	}
	ct, err = chatTemplate(gguf, "", tok)
	if err != nil || ct.Source != chatML || ct.Origin != "GGUF tokenizer.chat_template" {
		t.Fatalf("GGUF: %+v %v", ct, err)
	}
	file := filepath.Join(t.TempDir(), "t.jinja")
	os.WriteFile(file, []byte(`{{ messages[0].content }}!`), 0o644)
	if ct, err := chatTemplate(gguf, file, tok); err != nil || ct.Origin != file {
		t.Errorf("--chat-template: %+v %v", ct, err)
	}
	os.WriteFile(file, []byte(`{% for m in messages %}`), 0o644)
	if _, err := chatTemplate(gguf, file, tok); err == nil || !strings.Contains(err.Error(), file) {
		t.Errorf("a broken --chat-template: %v", err)
	}
	if ct, err := chatTemplate("", "", tok); err != nil || !strings.HasPrefix(ct.Origin, "default") {
		t.Errorf("the default model: %+v %v", ct, err)
	}

	// What serve renders a conversation into with the GGUF file's template.
	ct, err = chatTemplate(gguf, "", tok)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ct.Render([]serve.ChatMessage{{Role: "user", Content: json.RawMessage(`"hi"`)}}, true)
	if want := "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"; err != nil || got != want {
		t.Errorf("rendered %q (%v), want %q", got, err, want)
	}
}
