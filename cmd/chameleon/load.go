package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/defaults"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/quant"
	"github.com/chameleon-llm/chameleon/gpu/ref"
	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/model/tokenizer"
)

// modelFlags are the flags every command that runs a model shares.
type modelFlags struct {
	path  string // --model
	dtype string // --dtype: weight dtype on the device
	cpu   bool   // --cpu: the plain-Go reference backend
	// inference: the command only runs the model's forward, so its layer
	// matrices keep one device copy (model.UploadOptions.Settle); commands
	// that read the weights back or train through them leave it unset.
	inference bool
	// plainHead, with inference, reports (once the flags are parsed) that
	// no adapter reads wte, which is then settled too
	// (model.UploadOptions.SettleHead); nil: an adapter may.
	plainHead func() bool
	// server: the command serves through serve.Scheduler, whose kernels
	// must be batch invariant: set before the upload so that quantized
	// matrices, which the server reads from their buffers, keep them.
	server bool
}

func (f *modelFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&f.path, "model", "", "model directory (config.json + model.safetensors), .safetensors or .gguf file, with its tokenizer (default: the embedded default model)")
	c.Flags().StringVar(&f.dtype, "dtype", "f16", "weight dtype on the device: f32 or f16 (layer matrices a GGUF file stores as Q8_0, Q4_0 or Q4_K stay quantized), or q8_0, q4_0, q4_k to quantize the layer matrices at load")
	c.Flags().BoolVar(&f.cpu, "cpu", false, "run on the plain-Go reference backend instead of WebGPU")
}

// session is a loaded model on a backend with its tokenizer.
type session struct {
	m     *model.Model
	tok   *tokenizer.Tokenizer
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
	var dt gpu.DType
	switch f.dtype {
	case "f32":
		dt = gpu.F32
	case "f16":
		dt = gpu.F16
	default:
		q, err := quant.Parse(f.dtype)
		if err != nil {
			return nil, fmt.Errorf("--dtype %q: want f32, f16, q8_0, q4_0 or q4_k", f.dtype)
		}
		dt = gpu.QuantDType(q)
	}
	cfg, host, tok, err := f.readWith(model.LoadOptions{Half: true}) // halves go to the device as they are
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
	if wg, ok := b.(*gpu.WebGPU); ok && f.server {
		wg.BatchInvariant = true // as serve.NewScheduler sets it
	}
	w, err := model.UploadWith(b, cfg, host, dt, model.UploadOptions{Release: true, Settle: f.inference, SettleHead: f.inference && f.plainHead != nil && f.plainHead()})
	if err != nil {
		if dev != nil {
			dev.Close()
		}
		return nil, err
	}
	return &session{m: &model.Model{Cfg: cfg, W: w, B: b}, tok: tok, dev: dev, label: b.Name()}, nil
}

// read reads the --model checkpoint and its tokenizer, or the embedded
// default model when no --model is given.
func (f *modelFlags) read() (model.Config, []model.HostTensor, *tokenizer.Tokenizer, error) {
	return f.readWith(model.LoadOptions{})
}

// readWith is read with the loader's options.
func (f *modelFlags) readWith(o model.LoadOptions) (model.Config, []model.HostTensor, *tokenizer.Tokenizer, error) {
	if f.path == "" {
		fsys, err := defaults.Model()
		if errors.Is(err, defaults.ErrMissing) {
			return model.Config{}, nil, nil, fmt.Errorf("no --model given and %w yet: make one with `chameleon init` or pass a GPT-2 checkpoint", err)
		}
		if err != nil {
			return model.Config{}, nil, nil, err
		}
		cfg, host, err := model.LoadHFFSWith(fsys, o)
		if err != nil {
			return model.Config{}, nil, nil, fmt.Errorf("default model: %w", err)
		}
		tok, err := tokenizer.LoadFS(fsys)
		if err != nil {
			return model.Config{}, nil, nil, fmt.Errorf("default model's tokenizer: %w", err)
		}
		return cfg, host, tok, nil
	}
	cfg, host, err := model.LoadWith(f.path, o)
	if err != nil {
		return model.Config{}, nil, nil, err
	}
	tok, err := loadTokenizer(f.path)
	return cfg, host, tok, err
}

// loadTokenizer uses the tokenizer stored in a GGUF model, else
// encoder.json + vocab.bpe beside the model when present, else GPT-2's
// embedded ranks.
func loadTokenizer(path string) (*tokenizer.Tokenizer, error) {
	dir := path
	if st, err := os.Stat(path); err == nil && !st.IsDir() {
		dir = filepath.Dir(path)
		if isGGUF(path) {
			tok, err := tokenizer.LoadGGUF(path)
			if !errors.Is(err, tokenizer.ErrNoTokenizer) {
				return tok, err
			}
		}
	}
	enc, err1 := os.Open(filepath.Join(dir, "encoder.json"))
	bpe, err2 := os.Open(filepath.Join(dir, "vocab.bpe"))
	if err1 == nil && err2 == nil {
		defer enc.Close()
		defer bpe.Close()
		return tokenizer.Load(enc, bpe)
	}
	if enc != nil {
		enc.Close()
	}
	if bpe != nil {
		bpe.Close()
	}
	return tokenizer.NewGPT2()
}

// isGGUF reports whether path names a GGUF file, by extension or magic.
func isGGUF(path string) bool {
	if strings.EqualFold(filepath.Ext(path), ".gguf") {
		return true
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var magic [4]byte
	_, err = io.ReadFull(f, magic[:])
	return err == nil && string(magic[:]) == "GGUF"
}

// adapterFlags are the flags of commands that can adapt the output
// projection with a low-rank adapter (ChamaleonLLM's hyper-network or a
// static LoRA).
type adapterFlags struct {
	spec string // --adapter FILE|default|none
	mode string // --adapt-mode
	k    int    // --clusters
	seed uint64 // --cluster-seed
	tune adapt.Tune
}

// addTuneFlags adds --tune-steps and --tune-lr (a gated basis's test-time
// tuning of its gates on the plan's own prompts) into t.
func addTuneFlags(c *cobra.Command, t *adapt.Tune) {
	c.Flags().IntVar(&t.Steps, "tune-steps", 0, "a gated basis (adapt train --method hyper-basis): Adam steps on each cluster's generated gates against the loss of the plan's own prompts before adapting (0: none)")
	c.Flags().Float64Var(&t.LR, "tune-lr", 0.03, "the tuning's Adam rate (adapt tune chooses one on validation: 0.03 for the default adapter)")
}

func (f *adapterFlags) add(c *cobra.Command, def string, defK int) {
	c.Flags().StringVar(&f.spec, "adapter", def, "low-rank adapter of the output projection: FILE (from 'chameleon adapt train'), default (the shipped hyper-network) or none")
	c.Flags().StringVar(&f.mode, "adapt-mode", string(adapt.ModeBatch), "how a hyper-network groups the inputs: batch (k-means over them), online (nearest training centroid) or one (a single cluster)")
	c.Flags().IntVar(&f.k, "clusters", defK, "batch mode: number of clusters K, at most the number of inputs (0: ceil(inputs / 16), the paper's default)")
	c.Flags().Uint64Var(&f.seed, "cluster-seed", 1, "k-means++ seed")
	addTuneFlags(c, &f.tune)
}

// enabled reports whether an adapter was asked for.
func (f *adapterFlags) enabled() bool { return f.spec != "" && f.spec != "none" }

// check validates the flags before anything is loaded.
func (f *adapterFlags) check() error {
	switch adapt.Mode(f.mode) {
	case adapt.ModeBatch, adapt.ModeOnline, adapt.ModeOne:
	default:
		return fmt.Errorf("--adapt-mode %q: want batch, online or one", f.mode)
	}
	if f.k < 0 {
		return fmt.Errorf("--clusters %d: want 0 (automatic) or a positive number", f.k)
	}
	if err := f.tune.Check(); err != nil {
		return fmt.Errorf("--tune-steps/--tune-lr: %w", err)
	}
	return nil
}

// planOptions are the flags as adapt.PlanOptions.
func (f *adapterFlags) planOptions() adapt.PlanOptions {
	return adapt.PlanOptions{Mode: adapt.Mode(f.mode), K: f.k, Seed: f.seed, Tune: f.tune}
}

// runtime loads the adapter for m and puts it on m's backend; nil, nil
// when no adapter was asked for. Experts adapters are refused: they need
// each input's domain, which only `chameleon adapt bench` has.
func (f *adapterFlags) runtime(m *model.Model) (*adapt.Runtime, error) {
	if !f.enabled() {
		return nil, nil
	}
	if err := f.check(); err != nil {
		return nil, err
	}
	a, err := loadAdapter(f.spec, m)
	if err != nil {
		return nil, err
	}
	if a.Meta.Kind == adapt.KindExperts {
		return nil, fmt.Errorf("--adapter %s is a per-domain experts adapter, which needs each input's domain label: compare it with `chameleon adapt bench`", f.spec)
	}
	if adapt.Mode(f.mode) == adapt.ModeOnline && a.Meta.Kind == adapt.KindHyper && a.Meta.Centroids == 0 {
		return nil, fmt.Errorf("--adapt-mode online needs the training centroids, and --adapter %s stores none: use --adapt-mode batch", f.spec)
	}
	return adapt.NewRuntime(m, a)
}

// loadAdapter reads an adapter for m: a file path, or "default" for the
// shipped hyper-network. Either is refused, naming the difference, unless
// it was trained for m.
func loadAdapter(spec string, m *model.Model) (*adapt.Adapter, error) {
	base, err := adapt.BaseOfModel(m)
	if err != nil {
		return nil, err
	}
	if spec != "default" {
		return adapt.Load(spec, base)
	}
	b, err := defaults.Hyper()
	if errors.Is(err, defaults.ErrMissing) {
		return nil, fmt.Errorf("--adapter default: this build embeds no default hyper-network yet (%w): pass an adapter file from `chameleon adapt train`", err)
	}
	if err != nil {
		return nil, err
	}
	a, err := adapt.Read(bytes.NewReader(b), int64(len(b)), base)
	if err != nil {
		return nil, fmt.Errorf("default hyper-network: %w", err)
	}
	return a, nil
}

// describeAdapter is a one-line summary of an adapter.
func describeAdapter(m adapt.Meta) string {
	sites := ""
	if len(m.Sites) > 0 {
		how := "generated"
		if m.Kind != adapt.KindHyper || m.StaticSites {
			how = "static"
		}
		sites = fmt.Sprintf(", %s updates of %s in every layer", how, strings.Join(m.Sites, ", "))
	}
	return describeHead(m) + sites
}

// describeHead describes the output projection's adapter.
func describeHead(m adapt.Meta) string {
	switch m.Kind {
	case adapt.KindHyper:
		s := fmt.Sprintf("%s, rank %d, alpha %g, hidden %v", m.KindLabel(), m.Rank, m.Alpha, m.Hidden)
		switch {
		case m.Basis:
			s += " (a static pair whose components the hyper-network weighs per cluster)"
		case m.StaticRank > 0:
			s += fmt.Sprintf(", plus a static pair of rank %d", m.StaticRank)
		}
		return s + describeGate(m)
	case adapt.KindLoRA:
		return fmt.Sprintf("%s, rank %d, alpha %g", m.KindLabel(), m.Rank, m.Alpha) + describeGate(m)
	}
	return fmt.Sprintf("%s, rank %d", m.Kind, m.Rank)
}

// describeGate describes what decides which inputs an adapter adapts: its
// features, training centroids, gate and self-check.
func describeGate(m adapt.Meta) string {
	s := ""
	if m.Features != "" {
		s += ", features " + m.Features
	}
	if m.Centroids > 0 {
		s += fmt.Sprintf(", %d training centroids", m.Centroids)
	}
	switch {
	case m.GateFeatures != "":
		s += fmt.Sprintf(", gated in %s features (radius %.3g around its %d adaptation centroids, %d pretraining centroids)", m.GateFeatures, m.GateRadius, m.GateAdapt, m.GatePretrain)
	case m.GateRadius > 0 || m.GateAdapt > 0:
		s += fmt.Sprintf(", gated (radius %.3g, %d/%d adaptation/pretraining centroids)", m.GateRadius, m.GateAdapt, m.GatePretrain)
	}
	if m.SelfCheck {
		s += ", self-checked on each prompt"
		if m.CheckStride > 0 {
			s += fmt.Sprintf(" (staged: one prediction in %d first, kept early below -%g nats/token)", m.CheckStride, m.CheckMargin)
		}
		if m.Select > 1 {
			s += fmt.Sprintf(", choosing among its %d nearest centroids' updates by the prompt", m.Select)
		}
	}
	return s
}

// clusterMembers lists the members (1-based) of each of k clusters.
func clusterMembers(assign []int, k int) [][]int {
	out := make([][]int, k)
	for i, c := range assign {
		if c >= 0 && c < k {
			out[c] = append(out[c], i+1)
		}
	}
	return out
}
