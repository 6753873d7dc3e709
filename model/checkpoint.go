package model

// Checkpoints: GPT-2 weights on disk, in two layouts.
//
// Hugging Face (LoadHF, LoadHFFS, SaveHF): a directory holding config.json
// and model.safetensors (the tokenizer's encoder.json and vocab.bpe may sit
// beside them; the weight loader ignores them and tokenizer.Load reads them).
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
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

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
func Load(path string) (Config, []HostTensor, error) { return LoadWith(path, LoadOptions{}) }

// LoadOptions say how a loader holds the tensors it returns.
type LoadOptions struct {
	// Half keeps the matrices and embeddings that a checkpoint stores as
	// F16 as their halves (HostTensor.Half, Data nil) instead of widening
	// them to float32: half the host memory, for a caller that uploads
	// them (Upload takes either) and reads no Data (Dequantize widens).
	Half bool
}

// LoadWith is Load with options.
func LoadWith(path string, o LoadOptions) (Config, []HostTensor, error) {
	st, err := os.Stat(path)
	if err != nil {
		return Config{}, nil, fmt.Errorf("model: checkpoint: %w", err)
	}
	if st.IsDir() {
		return loadHFFiles(filepath.Join(path, hfConfigFile), filepath.Join(path, hfWeightsFile), o)
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".gguf":
		return loadGGUFFile(path, o)
	case ".safetensors":
		return loadHFFiles(filepath.Join(filepath.Dir(path), hfConfigFile), path, o)
	}
	if hasGGUFMagic(path) {
		return loadGGUFFile(path, o)
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
	return loadHFFiles(filepath.Join(dir, hfConfigFile), filepath.Join(dir, hfWeightsFile), LoadOptions{})
}

func loadHFFiles(configPath, weightsPath string, o LoadOptions) (Config, []HostTensor, error) {
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
	return loadHF(cfgJSON, configPath, f, st.Size(), weightsPath, o)
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
func LoadHFFS(fsys fs.FS) (Config, []HostTensor, error) { return LoadHFFSWith(fsys, LoadOptions{}) }

// LoadHFFSWith is LoadHFFS with options.
func LoadHFFSWith(fsys fs.FS, o LoadOptions) (Config, []HostTensor, error) {
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
	return loadHF(cfgJSON, hfConfigFile, r, size, hfWeightsFile, o)
}

// loadHF validates and decodes a safetensors file against its config.json;
// the names are for messages.
func loadHF(cfgJSON []byte, cfgName string, r io.ReaderAt, size int64, name string, o LoadOptions) (Config, []HostTensor, error) {
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
	lay.half = o.Half
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
	half  bool              // F16 matrices and embeddings kept as halves (LoadOptions.Half)
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
	Float32Chunks(name string, fn func(first int64, vals []float32) error) error
	Half(name string) ([]uint16, error)
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
		var err error
		if lay.half && info.DType == tensorfile.F16 && e.Role != RoleVector {
			s.Half, err = readOriented(src.Half, fn, conv, want)
		} else {
			s.Data, err = readOriented(src.Float32, fn, conv, want)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", label, err)
		}
	}
	return out, nil
}

// readOriented reads tensor fn, stored with shape stored, through read,
// transposed to (out, in) when conv.
func readOriented[T float32 | uint16](read func(string) ([]T, error), fn string, conv bool, stored []int) ([]T, error) {
	v, err := read(fn)
	if err != nil || !conv {
		return v, err
	}
	return transpose(v, stored[0], stored[1]), nil
}

// checkTiedHead accepts a stored output projection only if it is wte.
func checkTiedHead(src tensorSource, head string, wte HostTensor) error {
	info, _ := src.Info(head)
	if !info.DType.Float32Decodable() || !slices.Equal(info.Shape, wte.Shape) {
		return fmt.Errorf("%s (%v, shape %v) must be a copy of %s (shape %v): the output projection is tied",
			head, info.DType, info.Shape, wte.Name, wte.Shape)
	}
	// Compared a chunk at a time: the copy is as large as wte, and a whole
	// float32 decode of it was a sixth of a GPT-2 load's peak memory.
	return src.Float32Chunks(head, func(first int64, vals []float32) error {
		for j, v := range vals {
			i := int(first) + j
			w := wte.value(i)
			if math.Float32bits(v) != math.Float32bits(w) {
				return fmt.Errorf("%s differs from %s at element %d (%g vs %g): Chameleon ties the output projection "+
					"to wte and cannot load an untied head", head, wte.Name, i, v, w)
			}
		}
		return nil
	})
}

// isConv1D reports whether a project tensor name is one of HF GPT-2's Conv1D
// weights, which HF stores (in, out) (InOut in the table).
func isConv1D(name string) bool {
	d, _, ok := gpt2Table.find(name)
	return ok && d.InOut
}

// transpose returns the (cols, rows) transpose of the row-major (rows, cols)
// matrix src, walking it in cache-sized tiles.
func transpose[T float32 | uint16](src []T, rows, cols int) []T {
	const tile = 32
	dst := make([]T, len(src))
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
