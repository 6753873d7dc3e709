package model

// Checkpoints: GPT-2 weights on disk, in two layouts.
//
// Hugging Face (LoadHF, LoadHFFS, SaveHF): a directory holding config.json
// and model.safetensors (the tokenizer's encoder.json and vocab.bpe may sit
// beside them; the weight loader ignores them and LoadTokenizer reads them).
// GGUF (LoadGGUF, LoadGGUFReader, SaveGGUF; checkpoint_gguf.go): one file with
// llama.cpp's GPT-2 tensor names and metadata. Load picks one by the path.
//
// Every loader validates the whole checkpoint against its config before it
// returns: each tensor's dtype (F32, F16 or BF16, widened exactly to float32),
// shape and byte range, missing and unexpected tensors, a config that
// disagrees with the tensors, and NaN or ±Inf weights. Errors name the file,
// the tensor and the offending sizes. The result is TensorSpec(cfg) with Data
// filled in, in the project's (out, in) orientation, ready for Upload.
//
// The output projection is tied to wte. A checkpoint may still carry it
// (Hugging Face "lm_head.weight", GGUF "output.weight", as llama.cpp's
// converter writes it): it is accepted when it has wte's shape and is
// bit-identical to wte once both are widened to float32, its data is then
// dropped, and it is rejected otherwise, since an untied head would silently
// change the model.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model/tensorfile"
)

// HF checkpoint file names.
const (
	hfConfigFile  = "config.json"
	hfWeightsFile = "model.safetensors"
	hfPrefix      = "transformer." // GPT2LMHeadModel's base-model prefix
	hfHead        = "lm_head.weight"
)

// Load reads a checkpoint, choosing the format by path: a directory is a
// Hugging Face checkpoint (LoadHF); a *.gguf file, or any file starting with
// the GGUF magic, is GGUF (LoadGGUF); a *.safetensors file is read with the
// config.json in the same directory.
func Load(path string) (Config, []HostTensor, error) {
	st, err := os.Stat(path)
	if err != nil {
		return Config{}, nil, fmt.Errorf("model: checkpoint: %w", err)
	}
	if st.IsDir() {
		return LoadHF(path)
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".gguf":
		return LoadGGUF(path)
	case ".safetensors":
		return loadHFFiles(filepath.Join(filepath.Dir(path), hfConfigFile), path)
	}
	if hasGGUFMagic(path) {
		return LoadGGUF(path)
	}
	return Config{}, nil, fmt.Errorf("model: %s: not a checkpoint Chameleon knows: want a Hugging Face directory "+
		"(%s + %s), a .safetensors file with %s beside it, or a .gguf file", path, hfConfigFile, hfWeightsFile, hfConfigFile)
}

func hasGGUFMagic(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var magic [4]byte
	_, err = io.ReadFull(f, magic[:])
	return err == nil && string(magic[:]) == "GGUF"
}

// LoadHF reads a Hugging Face GPT-2 checkpoint directory: config.json and
// model.safetensors. Tensor names may carry the "transformer." prefix or not;
// the causal-mask buffers h.N.attn.bias and h.N.attn.masked_bias are ignored;
// Conv1D weights, stored (in, out), are transposed to (out, in). See the file
// comment for what is validated.
func LoadHF(dir string) (Config, []HostTensor, error) {
	return loadHFFiles(filepath.Join(dir, hfConfigFile), filepath.Join(dir, hfWeightsFile))
}

func loadHFFiles(configPath, weightsPath string) (Config, []HostTensor, error) {
	cf, err := os.Open(configPath)
	if err != nil {
		return Config{}, nil, fmt.Errorf("model: reading the checkpoint's config: %w", err)
	}
	cfgJSON, err := readConfig(cf, configPath)
	cf.Close()
	if err != nil {
		return Config{}, nil, fmt.Errorf("model: reading the checkpoint's config: %w", err)
	}
	f, err := os.Open(weightsPath)
	if err != nil {
		return Config{}, nil, fmt.Errorf("model: %w%s", err, hfMissingHint(filepath.Dir(weightsPath)))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Config{}, nil, fmt.Errorf("model: %w", err)
	}
	return loadHF(cfgJSON, configPath, f, st.Size(), weightsPath)
}

// maxConfigBytes bounds config.json: GPT-2's is under 1 KB, and the file is
// read whole.
const maxConfigBytes = 1 << 20

// minElementBits is the narrowest element the loaders decode (F16, BF16).
const minElementBits = 16

// readConfig reads a config file of at most maxConfigBytes; name is for
// messages.
func readConfig(r io.Reader, name string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxConfigBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxConfigBytes {
		return nil, fmt.Errorf("%s is over %d bytes; a GPT-2 config.json is under 1 KB (is this the right file?)", name, maxConfigBytes)
	}
	return b, nil
}

// hfMissingHint explains a directory without model.safetensors.
func hfMissingHint(dir string) string {
	exists := func(name string) bool { _, err := os.Stat(filepath.Join(dir, name)); return err == nil }
	switch {
	case exists("model.safetensors.index.json"):
		return " (sharded checkpoints are not supported: merge the shards into one model.safetensors)"
	case exists("pytorch_model.bin"):
		return " (only safetensors is read: convert pytorch_model.bin, e.g. save_pretrained(..., safe_serialization=True))"
	}
	return ""
}

// LoadHFFS is LoadHF over a file system whose root is the checkpoint
// directory (the browser build serves it over HTTP). A model.safetensors that
// does not implement io.ReaderAt is read into memory first.
func LoadHFFS(fsys fs.FS) (Config, []HostTensor, error) {
	cf, err := fsys.Open(hfConfigFile)
	if err != nil {
		return Config{}, nil, fmt.Errorf("model: reading the checkpoint's config: %w", err)
	}
	cfgJSON, err := readConfig(cf, hfConfigFile)
	cf.Close()
	if err != nil {
		return Config{}, nil, fmt.Errorf("model: reading the checkpoint's config: %w", err)
	}
	f, err := fsys.Open(hfWeightsFile)
	if err != nil {
		return Config{}, nil, fmt.Errorf("model: %w", err)
	}
	defer f.Close()
	var (
		r    io.ReaderAt
		size int64
	)
	if ra, ok := f.(io.ReaderAt); ok {
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			r, size = ra, st.Size()
		}
	}
	if r == nil {
		b, err := io.ReadAll(f)
		if err != nil {
			return Config{}, nil, fmt.Errorf("model: reading %s: %w", hfWeightsFile, err)
		}
		r, size = bytes.NewReader(b), int64(len(b))
	}
	return loadHF(cfgJSON, hfConfigFile, r, size, hfWeightsFile)
}

// loadHF validates and decodes a safetensors file against its config.json;
// the names are for messages.
func loadHF(cfgJSON []byte, cfgName string, r io.ReaderAt, size int64, name string) (Config, []HostTensor, error) {
	cfg, requireHead, err := parseHFConfig(cfgJSON)
	if err != nil {
		return Config{}, nil, fmt.Errorf("model: %s: %w", cfgName, err)
	}
	fail := func(err error) (Config, []HostTensor, error) {
		return Config{}, nil, fmt.Errorf("model: %s: %w", name, err)
	}
	f, err := tensorfile.ReadSafetensors(r, size)
	if err != nil {
		return fail(err)
	}
	// Before anything proportional to the config is built: can the file
	// hold what config.json describes?
	capacity := FileCapacity{Tensors: len(f.Tensors), DataBytes: size - 8 - f.HeaderSize, ElementBits: minElementBits}
	if err := CheckFits(gpt2Groups(cfg, hfKeys), capacity); err != nil {
		return Config{}, nil, fmt.Errorf("model: %s and %s: %w", cfgName, name, err)
	}
	lay, head, err := hfLayout(cfg, f.Names())
	if err != nil {
		return fail(err)
	}
	if requireHead && head == "" {
		return fail(errors.New("config.json sets tie_word_embeddings to false but there is no lm_head.weight; " +
			"Chameleon ties the output projection to wte"))
	}
	// The embeddings fix vocab_size, n_positions and n_embd: report a
	// disagreement in config.json's terms before the per-tensor checks.
	if err := checkEmbedding(f, lay, "wte.weight", []int{cfg.VocabSize, cfg.NEmbd},
		"config.json has vocab_size %d, n_embd %d"); err != nil {
		return fail(err)
	}
	if err := checkEmbedding(f, lay, "wpe.weight", []int{cfg.NCtx, cfg.NEmbd},
		"config.json has n_positions %d, n_embd %d"); err != nil {
		return fail(err)
	}
	host, err := readSpec(gpt2Table.Family, gpt2Table.entries(cfg.sizes(), cfg.NLayer), f, lay)
	if err != nil {
		return fail(err)
	}
	if head != "" {
		if err := checkTiedHead(f, head, host[0]); err != nil {
			return fail(err)
		}
	}
	return cfg, host, nil
}

// layout says where each project tensor lives in a file.
type layout struct {
	file  map[string]string // project name -> name in the file
	inOut bool              // Conv1D weights are stored (in, out), as HF does
}

// label names a tensor in messages: its file name, plus the project name
// where they differ.
func (l layout) label(name string) string {
	if fn := l.file[name]; fn != name && fn != hfPrefix+name {
		return fmt.Sprintf("%s (%s)", fn, name)
	}
	return l.file[name]
}

// hfLayout maps the names in a safetensors file to the project's: it strips
// "transformer.", skips the causal-mask buffers (the table's Ignore), sets
// lm_head.weight aside as head, and rejects duplicates and unexpected
// tensors.
func hfLayout(cfg Config, names []string) (lay layout, head string, err error) {
	want := map[string]bool{}
	for _, e := range gpt2Table.entries(cfg.sizes(), cfg.NLayer) {
		want[e.Name] = true
	}
	lay = layout{file: map[string]string{}, inOut: true}
	var extra []string
	for _, n := range names {
		if n == hfHead {
			head = n
			continue
		}
		base := strings.TrimPrefix(n, hfPrefix)
		if gpt2Table.ignored(base) {
			continue
		}
		if !want[base] {
			extra = append(extra, n)
			continue
		}
		if prev, dup := lay.file[base]; dup {
			return layout{}, "", fmt.Errorf("both %s and %s are present", prev, n)
		}
		lay.file[base] = n
	}
	if len(extra) > 0 {
		return layout{}, "", unexpected(extra, func(n string) (int, bool) {
			return layerIndex(strings.TrimPrefix(n, hfPrefix), gpt2Table.layerPrefix(false))
		}, "config.json has n_layer", cfg.NLayer)
	}
	return lay, head, nil
}

// layerIndex parses the N of a name starting with prefix + "N.".
func layerIndex(name, prefix string) (int, bool) {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return 0, false
	}
	num, _, ok := strings.Cut(rest, ".")
	if !ok {
		return 0, false
	}
	return parseIndex(num)
}

// unexpected reports tensors that are not part of GPT-2 under the config,
// pointing at the layer count when one of them is a layer past its end.
func unexpected(extra []string, layerOf func(string) (int, bool), what string, nLayer int) error {
	for _, n := range extra {
		if l, ok := layerOf(n); ok && l >= nLayer {
			return fmt.Errorf("%s %d but the file has tensor %s of layer %d", what, nLayer, n, l)
		}
	}
	const show = 5
	list := strings.Join(extra[:min(len(extra), show)], ", ")
	if len(extra) > show {
		list += fmt.Sprintf(" and %d more", len(extra)-show)
	}
	return fmt.Errorf("%d unexpected tensor(s), not part of GPT-2: %s", len(extra), list)
}

// tensorSource is what both tensorfile readers provide.
type tensorSource interface {
	Info(name string) (tensorfile.TensorInfo, bool)
	Float32(name string) ([]float32, error)
	CheckFinite(name string) error
}

// checkEmbedding reports an embedding whose shape disagrees with the config,
// in the config's terms (format gets want's two values); a missing or
// non-matrix tensor is left to readSpec.
func checkEmbedding(src tensorSource, lay layout, name string, want []int, format string) error {
	info, ok := src.Info(lay.file[name])
	if !ok || len(info.Shape) != 2 || slices.Equal(info.Shape, want) {
		return nil
	}
	return fmt.Errorf("the config disagrees with the tensors: %s but %s has shape %v (want %v)",
		fmt.Sprintf(format, want[0], want[1]), lay.label(name), info.Shape, want)
}

// readSpec validates and decodes every tensor of es (a family's expanded
// table) from src, transposing the InOut matrices when the layout stores
// them (in, out). It returns the tensors in es's order.
func readSpec(family string, es []tensorEntry, src tensorSource, lay layout) ([]HostTensor, error) {
	var missing []string
	for _, e := range es {
		fn, ok := lay.file[e.Name]
		if !ok {
			fn = e.Name
		}
		if _, found := src.Info(fn); !found {
			missing = append(missing, fn)
		}
	}
	if len(missing) > 0 {
		const show = 5
		list := strings.Join(missing[:min(len(missing), show)], ", ")
		if len(missing) > show {
			list += fmt.Sprintf(" and %d more", len(missing)-show)
		}
		return nil, fmt.Errorf("%d of the %d %s tensors are missing: %s", len(missing), len(es), family, list)
	}
	out := make([]HostTensor, len(es))
	for i, e := range es {
		s := &out[i]
		s.Name, s.Shape = e.Name, e.Shape
		fn, label := lay.file[e.Name], lay.label(e.Name)
		info, _ := src.Info(fn)
		if !info.DType.Float32Decodable() {
			return nil, fmt.Errorf("%s has dtype %v; only F32, F16, BF16, Q8_0, Q4_0 and Q4_K weights are supported", label, info.DType)
		}
		want, note := e.Shape, ""
		conv := lay.inOut && e.InOut
		if conv {
			want, note = []int{e.Shape[1], e.Shape[0]}, " (in, out) for Conv1D"
		}
		if !slices.Equal(info.Shape, want) {
			return nil, fmt.Errorf("%s has shape %v, config wants %v%s", label, info.Shape, want, note)
		}
		if err := src.CheckFinite(fn); err != nil {
			return nil, fmt.Errorf("%s: %w", label, err)
		}
		if ok, err := keepBlocks(s, e.Role, src, fn, info); ok || err != nil { // model/quantize.go
			if err != nil {
				return nil, fmt.Errorf("%s: %w", label, err)
			}
			continue
		}
		data, err := src.Float32(fn)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", label, err)
		}
		if conv {
			data = transpose(data, want[0], want[1])
		}
		s.Data = data
	}
	return out, nil
}

// checkTiedHead accepts a stored output projection only if it is wte.
func checkTiedHead(src tensorSource, head string, wte HostTensor) error {
	info, _ := src.Info(head)
	if !info.DType.Float32Decodable() || !slices.Equal(info.Shape, wte.Shape) {
		return fmt.Errorf("%s (%v, shape %v) must be a copy of %s (shape %v): the output projection is tied",
			head, info.DType, info.Shape, wte.Name, wte.Shape)
	}
	data, err := src.Float32(head)
	if err != nil {
		return err
	}
	for i, v := range data {
		if math.Float32bits(v) != math.Float32bits(wte.Data[i]) {
			return fmt.Errorf("%s differs from %s at element %d (%g vs %g): Chameleon ties the output projection "+
				"to wte and cannot load an untied head", head, wte.Name, i, v, wte.Data[i])
		}
	}
	return nil
}

// isConv1D reports whether a project tensor name is one of HF GPT-2's Conv1D
// weights, which HF stores (in, out) (InOut in the table).
func isConv1D(name string) bool {
	d, _, ok := gpt2Table.find(name)
	return ok && d.InOut
}

// transpose returns the (cols, rows) transpose of the row-major (rows, cols)
// matrix src, walking it in cache-sized tiles.
func transpose(src []float32, rows, cols int) []float32 {
	const tile = 32
	dst := make([]float32, len(src))
	for i0 := 0; i0 < rows; i0 += tile {
		for j0 := 0; j0 < cols; j0 += tile {
			for i := i0; i < min(i0+tile, rows); i++ {
				for j := j0; j < min(j0+tile, cols); j++ {
					dst[j*rows+i] = src[i*cols+j]
				}
			}
		}
	}
	return dst
}

// hfConfig is the part of a Hugging Face GPT2Config that Chameleon reads or
// must refuse. Pointers tell absent fields from zero ones.
type hfConfig struct {
	ModelType         *string  `json:"model_type"`
	VocabSize         *int     `json:"vocab_size"`
	NPositions        *int     `json:"n_positions"`
	NCtx              *int     `json:"n_ctx"`
	NEmbd             *int     `json:"n_embd"`
	NHead             *int     `json:"n_head"`
	NLayer            *int     `json:"n_layer"`
	NInner            *int     `json:"n_inner"`
	LNEps             *float64 `json:"layer_norm_epsilon"`
	Activation        *string  `json:"activation_function"`
	ScaleAttnWeights  *bool    `json:"scale_attn_weights"`
	ScaleAttnByLayer  *bool    `json:"scale_attn_by_inverse_layer_idx"`
	AddCrossAttention *bool    `json:"add_cross_attention"`
	TieWordEmbeddings *bool    `json:"tie_word_embeddings"`
}

// parseHFConfig reads config.json. Absent sizes take GPT2Config's defaults
// (those of the 124M "gpt2"), as transformers does; settings that change the
// computation away from what Chameleon implements are refused. requireHead is
// set when the config unties the output projection, so the checkpoint must
// hold lm_head.weight (which must still equal wte).
func parseHFConfig(data []byte) (cfg Config, requireHead bool, err error) {
	var h hfConfig
	if err := json.Unmarshal(data, &h); err != nil {
		return Config{}, false, fmt.Errorf("not a valid config.json: %w", err)
	}
	if h.ModelType != nil && *h.ModelType != "gpt2" {
		return Config{}, false, fmt.Errorf("model_type is %q; only gpt2 is supported", *h.ModelType)
	}
	def := Configs["gpt2"]
	pick := func(p *int, d int) int {
		if p != nil {
			return *p
		}
		return d
	}
	cfg = Config{
		VocabSize: pick(h.VocabSize, def.VocabSize),
		NCtx:      pick(h.NPositions, pick(h.NCtx, def.NCtx)),
		NEmbd:     pick(h.NEmbd, def.NEmbd),
		NHead:     pick(h.NHead, def.NHead),
		NLayer:    pick(h.NLayer, def.NLayer),
		LNEps:     def.LNEps,
	}
	if h.LNEps != nil {
		cfg.LNEps = float32(*h.LNEps)
	}
	switch {
	case h.NPositions != nil && h.NCtx != nil && *h.NPositions != *h.NCtx:
		return Config{}, false, fmt.Errorf("n_positions %d and n_ctx %d disagree", *h.NPositions, *h.NCtx)
	case h.NInner != nil && *h.NInner != 4*cfg.NEmbd:
		return Config{}, false, fmt.Errorf("n_inner %d is not supported: the MLP must be 4*n_embd = %d wide", *h.NInner, 4*cfg.NEmbd)
	case h.Activation != nil && *h.Activation != "gelu_new" && *h.Activation != "gelu_pytorch_tanh":
		return Config{}, false, fmt.Errorf("activation_function %q is not supported (only the tanh GELU: gelu_new, gelu_pytorch_tanh)", *h.Activation)
	case h.ScaleAttnWeights != nil && !*h.ScaleAttnWeights:
		return Config{}, false, errors.New("scale_attn_weights false is not supported")
	case h.ScaleAttnByLayer != nil && *h.ScaleAttnByLayer:
		return Config{}, false, errors.New("scale_attn_by_inverse_layer_idx is not supported")
	case h.AddCrossAttention != nil && *h.AddCrossAttention:
		return Config{}, false, errors.New("add_cross_attention is not supported (decoder-only GPT-2)")
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, false, errors.New(strings.TrimPrefix(err.Error(), "model: "))
	}
	return cfg, h.TieWordEmbeddings != nil && !*h.TieWordEmbeddings, nil
}

// hfConfigOut is the config.json SaveHF writes, in this key order.
type hfConfigOut struct {
	ModelType         string      `json:"model_type"`
	Architectures     []string    `json:"architectures"`
	VocabSize         int         `json:"vocab_size"`
	NPositions        int         `json:"n_positions"`
	NCtx              int         `json:"n_ctx"`
	NEmbd             int         `json:"n_embd"`
	NHead             int         `json:"n_head"`
	NLayer            int         `json:"n_layer"`
	LNEps             json.Number `json:"layer_norm_epsilon"`
	Activation        string      `json:"activation_function"`
	TieWordEmbeddings bool        `json:"tie_word_embeddings"`
	TorchDType        string      `json:"torch_dtype"`
}

// checkpointDType maps SaveHF's and SaveGGUF's dtype argument.
func checkpointDType(s string) (tensorfile.DType, string, error) {
	switch s {
	case "f32":
		return tensorfile.F32, "float32", nil
	case "f16":
		return tensorfile.F16, "float16", nil
	case "bf16":
		return tensorfile.BF16, "bfloat16", nil
	}
	return tensorfile.Invalid, "", fmt.Errorf("model: checkpoint dtype %q is not one of f32, f16, bf16", s)
}

// SaveHF writes a Hugging Face GPT2LMHeadModel checkpoint into dir (created
// if needed): config.json (model_type gpt2, n_ctx = n_positions, torch_dtype)
// and model.safetensors with every tensor in dtype ("f32", "f16" or "bf16";
// f16 and bf16 round to nearest even), metadata {"format": "pt"}.
//
// Names are written as GPT2LMHeadModel.save_pretrained writes them today: with
// the "transformer." prefix, without lm_head.weight (tied to wte, so
// transformers re-ties it on load) and without the causal-mask buffers (not
// persistent in current transformers). Conv1D weights are transposed back to
// HF's (in, out). host must be exactly TensorSpec(cfg) with data, in any
// order, and finite. Each file is written to a temporary name and renamed
// into place. Tokenizer files are not written; copy encoder.json and vocab.bpe
// alongside if the checkpoint should carry them.
func SaveHF(dir string, cfg Config, host []HostTensor, dtype string) error {
	dt, torchDType, err := checkpointDType(dtype)
	if err != nil {
		return err
	}
	ordered, err := checkHost(cfg, host)
	if err != nil {
		return err
	}
	es := gpt2Table.entries(cfg.sizes(), cfg.NLayer) // ordered's order
	ts := make([]tensorfile.Tensor, len(ordered))
	for i, h := range ordered {
		shape, data := h.Shape, h.Data
		if es[i].InOut {
			shape, data = []int{h.Shape[1], h.Shape[0]}, transpose(h.Data, h.Shape[0], h.Shape[1])
		}
		if ts[i], err = tensorfile.FromFloat32(hfPrefix+h.Name, dt, shape, data); err != nil {
			return fmt.Errorf("model: %w", err)
		}
	}
	conf, err := json.MarshalIndent(hfConfigOut{
		ModelType: "gpt2", Architectures: []string{"GPT2LMHeadModel"},
		VocabSize: cfg.VocabSize, NPositions: cfg.NCtx, NCtx: cfg.NCtx,
		NEmbd: cfg.NEmbd, NHead: cfg.NHead, NLayer: cfg.NLayer,
		LNEps:      json.Number(strconv.FormatFloat(float64(cfg.LNEps), 'g', -1, 32)),
		Activation: "gelu_new", TieWordEmbeddings: true, TorchDType: torchDType,
	}, "", "  ")
	if err != nil {
		return fmt.Errorf("model: config.json: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	err = writeFileAtomic(filepath.Join(dir, hfWeightsFile), func(w io.Writer) error {
		return tensorfile.WriteSafetensors(w, ts, map[string]string{"format": "pt"})
	})
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, hfConfigFile), func(w io.Writer) error {
		_, err := w.Write(append(conf, '\n'))
		return err
	})
}

// checkHost checks tensors about to be saved against cfg: exactly the
// tensors of TensorSpec(cfg), each with its shape, matching data and only
// finite values. It returns them in TensorSpec order.
func checkHost(cfg Config, host []HostTensor) ([]HostTensor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	byName := make(map[string]HostTensor, len(host))
	for _, h := range host {
		if _, dup := byName[h.Name]; dup {
			return nil, fmt.Errorf("model: saving: tensor %s appears twice", h.Name)
		}
		byName[h.Name] = h
	}
	spec := TensorSpec(cfg)
	out := make([]HostTensor, len(spec))
	for i, s := range spec {
		h, ok := byName[s.Name]
		if !ok {
			return nil, fmt.Errorf("model: saving: tensor %s missing", s.Name)
		}
		if !slices.Equal(h.Shape, s.Shape) || len(h.Data) != gpu.Numel(s.Shape) {
			return nil, fmt.Errorf("model: saving: %s has shape %v (%d values), config wants %v",
				s.Name, h.Shape, len(h.Data), s.Shape)
		}
		for j, v := range h.Data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("model: saving: %s element %d is %v", s.Name, j, v)
			}
		}
		out[i] = h
		delete(byName, s.Name)
	}
	if len(byName) > 0 {
		extra := slices.Sorted(maps.Keys(byName))
		return nil, fmt.Errorf("model: saving: tensor %s is not part of GPT-2 under config %+v", extra[0], cfg)
	}
	return out, nil
}

// writeFileAtomic writes path through a temporary file in the same
// directory, renamed into place only once fill and Close succeed.
func writeFileAtomic(path string, fill func(io.Writer) error) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("model: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = fill(tmp); err != nil {
		return fmt.Errorf("model: writing %s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("model: writing %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	return nil
}
