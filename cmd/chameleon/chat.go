package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/model/tensorfile"
	"github.com/chameleon-llm/chameleon/model/tokenizer"
	"github.com/chameleon-llm/chameleon/serve"
)

// chatSource is a model's chat template as found beside it.
type chatSource struct {
	src, origin string
	bos, eos    string // special-token strings from tokenizer_config.json, when it names them
}

// modelChatTemplate finds the chat template a model carries: a GGUF file's
// tokenizer.chat_template, else chat_template in tokenizer_config.json in
// the model's directory. ok is false when there is none (the embedded
// default model has none: it is a base model). A file that exists but
// cannot be read is an error.
func modelChatTemplate(path string) (cs chatSource, ok bool, err error) {
	if path == "" {
		return cs, false, nil
	}
	dir := path
	if st, err := os.Stat(path); err == nil && !st.IsDir() {
		dir = filepath.Dir(path)
		if isGGUF(path) {
			f, err := os.Open(path)
			if err != nil {
				return cs, false, err
			}
			defer f.Close()
			st, _ := f.Stat()
			g, err := tensorfile.ReadGGUF(f, st.Size())
			if err != nil {
				return cs, false, fmt.Errorf("%s: %w", path, err)
			}
			if _, has := g.Get(model.GGUFKeyChatTemplate); has {
				src, err := g.GetString(model.GGUFKeyChatTemplate)
				if err != nil {
					return cs, false, fmt.Errorf("%s: %w", path, err)
				}
				return chatSource{src: src, origin: "GGUF " + model.GGUFKeyChatTemplate}, src != "", nil
			}
		}
	}
	tc := filepath.Join(dir, "tokenizer_config.json")
	b, err := os.ReadFile(tc)
	if errors.Is(err, fs.ErrNotExist) {
		return cs, false, nil
	}
	if err != nil {
		return cs, false, err
	}
	src, bos, eos, ok, err := serve.ChatTemplateFromTokenizerConfig(b)
	if err != nil {
		return cs, false, fmt.Errorf("%s: %w", tc, err)
	}
	return chatSource{src: src, origin: tc, bos: bos, eos: eos}, ok, nil
}

// chatTemplate is the template `serve` renders chat messages with:
// --chat-template FILE when given, else the model's own, else the
// documented default (serve.DefaultChatTemplate).
func chatTemplate(modelPath, file string, tok *tokenizer.Tokenizer) (*serve.ChatTemplate, error) {
	eot := string(tok.TokenBytes(tok.EOT()))
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--chat-template: %w", err)
		}
		return serve.NewChatTemplate(string(b), file, nil, eot, eot)
	}
	cs, ok, err := modelChatTemplate(modelPath)
	if err != nil {
		return nil, fmt.Errorf("the model's chat template: %w", err)
	}
	if !ok {
		return serve.DefaultChat(eot, eot), nil
	}
	bos, eos := eot, eot
	if cs.bos != "" {
		bos = cs.bos
	}
	if cs.eos != "" {
		eos = cs.eos
	}
	return serve.NewChatTemplate(cs.src, cs.origin, nil, bos, eos)
}
