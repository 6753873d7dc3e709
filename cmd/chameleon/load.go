package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/ref"
	"github.com/chameleon-llm/chameleon/model"
)

// modelFlags are the flags every command that runs a model shares.
type modelFlags struct {
	path  string // --model
	dtype string // --dtype: weight dtype on the device
	cpu   bool   // --cpu: the plain-Go reference backend
}

func (f *modelFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&f.path, "model", "", "model directory (config.json + model.safetensors), .safetensors or .gguf file")
	c.Flags().StringVar(&f.dtype, "dtype", "f16", "weight dtype on the device: f32 or f16")
	c.Flags().BoolVar(&f.cpu, "cpu", false, "run on the plain-Go reference backend instead of WebGPU")
}

// session is a loaded model on a backend with its tokenizer.
type session struct {
	m     *model.Model
	tok   *model.Tokenizer
	dev   *gpu.Device // nil on the reference backend
	label string
}

func (s *session) close() {
	if s.dev != nil {
		s.dev.Close()
	}
}

// openBackend opens the WebGPU device, or the reference backend with --cpu
// or (with a warning) when no adapter exists.
func openBackend(cpu bool) (gpu.Backend, *gpu.Device, error) {
	if cpu {
		return ref.New(), nil, nil
	}
	d, err := gpu.Open(gpu.Options{Adapter: deviceFlag})
	if err != nil {
		if errors.Is(err, gpu.ErrNoAdapter) {
			fmt.Fprintf(os.Stderr, "chameleon: %v\nchameleon: falling back to the plain-Go reference backend (slow)\n", err)
			return ref.New(), nil, nil
		}
		return nil, nil, err
	}
	return gpu.NewWebGPU(d), d, nil
}

func (f *modelFlags) load() (*session, error) {
	if f.path == "" {
		return nil, fmt.Errorf("no --model given (a default model is not embedded yet: make one with `chameleon init` or pass a GPT-2 checkpoint)")
	}
	var dt gpu.DType
	switch f.dtype {
	case "f32":
		dt = gpu.F32
	case "f16":
		dt = gpu.F16
	default:
		return nil, fmt.Errorf("--dtype %q: want f32 or f16", f.dtype)
	}
	cfg, host, err := model.Load(f.path)
	if err != nil {
		return nil, err
	}
	tok, err := loadTokenizer(f.path)
	if err != nil {
		return nil, err
	}
	if tok.VocabSize() > cfg.VocabSize {
		return nil, fmt.Errorf("tokenizer has %d tokens but the model's vocabulary is %d", tok.VocabSize(), cfg.VocabSize)
	}
	b, dev, err := openBackend(f.cpu)
	if err != nil {
		return nil, err
	}
	w, err := model.Upload(b, cfg, host, dt)
	if err != nil {
		if dev != nil {
			dev.Close()
		}
		return nil, err
	}
	return &session{m: &model.Model{Cfg: cfg, W: w, B: b}, tok: tok, dev: dev, label: b.Name()}, nil
}

// loadTokenizer uses encoder.json + vocab.bpe beside the model when
// present, else GPT-2's embedded ranks.
func loadTokenizer(path string) (*model.Tokenizer, error) {
	dir := path
	if st, err := os.Stat(path); err == nil && !st.IsDir() {
		dir = filepath.Dir(path)
	}
	enc, err1 := os.Open(filepath.Join(dir, "encoder.json"))
	bpe, err2 := os.Open(filepath.Join(dir, "vocab.bpe"))
	if err1 == nil && err2 == nil {
		defer enc.Close()
		defer bpe.Close()
		return model.LoadTokenizer(enc, bpe)
	}
	if enc != nil {
		enc.Close()
	}
	if bpe != nil {
		bpe.Close()
	}
	return model.NewGPT2Tokenizer()
}
