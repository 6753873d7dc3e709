// Package defaults embeds the project's default model and hyper-network
// (trained by `chameleon train` and `chameleon adapt train`, see the
// README's model card) so that the CLI, the server and the browser demo
// work with nothing but the binary.
package defaults

import (
	"embed"
	"errors"
	"io/fs"
)

//go:embed model
var files embed.FS

// ErrMissing is returned when this build embeds no default model.
var ErrMissing = errors.New("defaults: no default model is embedded in this build")

// Model returns the default model directory: config.json,
// model.safetensors, encoder.json and vocab.bpe (load it with
// model.LoadHFFS and tokenizer.LoadFS).
func Model() (fs.FS, error) {
	sub, err := fs.Sub(files, "model")
	if err != nil {
		return nil, err
	}
	if _, err := fs.Stat(sub, "config.json"); err != nil {
		return nil, ErrMissing
	}
	return sub, nil
}

// HyperFile is the default hyper-network's file name in Model's directory.
const HyperFile = "hyper.safetensors"

// Hyper returns the default hyper-network adapter file's bytes (read it
// with adapt.Read).
func Hyper() ([]byte, error) {
	b, err := files.ReadFile("model/" + HyperFile)
	if err != nil {
		return nil, ErrMissing
	}
	return b, nil
}
