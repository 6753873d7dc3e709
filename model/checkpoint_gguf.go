package model

// GGUF checkpoints with llama.cpp's GPT-2 conventions.
//
// Tensor names (HF name -> GGUF name; the GGUF column of GPT-2's weight table
// in weights.go):
//
//	wte.weight              token_embd.weight       (V, C)
//	wpe.weight              position_embd.weight    (P, C)
//	h.N.ln_1.*              blk.N.attn_norm.*       (C)
//	h.N.attn.c_attn.*       blk.N.attn_qkv.*        (3C, C), (3C)
//	h.N.attn.c_proj.*       blk.N.attn_output.*     (C, C), (C)
//	h.N.ln_2.*              blk.N.ffn_norm.*        (C)
//	h.N.mlp.c_fc.*          blk.N.ffn_up.*          (4C, C), (4C)
//	h.N.mlp.c_proj.*        blk.N.ffn_down.*        (C, 4C), (C)
//	ln_f.*                  output_norm.*           (C)
//	(tied)                  output.weight           (V, C), optional
//
// Orientation. The shapes above are outermost first, which is how tensorfile
// exposes GGUF shapes (GGUF itself stores dims innermost first, ggml's ne[0]
// first). llama.cpp's HF converter transposes GPT-2's Conv1D weights from
// (in, out) to torch's Linear (out, in) before writing, and the GGUF writer
// records a numpy array of shape (out, in) as ne = [in, out]; llama.cpp's
// GPT-2 loader accordingly asks for attn_qkv as {n_embd, 3*n_embd} in ne
// order, i.e. ne[0] = in, the contiguous dim. So a 2-D GGUF weight read
// outermost first is (out, in): exactly the project's orientation, and GGUF
// tensors are copied without any transpose in either direction.
//
// Metadata written: general.architecture "gpt2", general.name,
// general.file_type, gpt2.context_length, gpt2.embedding_length,
// gpt2.feed_forward_length (4C), gpt2.block_count, gpt2.attention.head_count,
// gpt2.attention.layer_norm_epsilon, and, when a tokenizer is given, its
// tokenizer.ggml.* keys (model/tokenizer/gguf.go). The vocabulary size is not a
// key: the loader takes it from token_embd.weight and checks it against
// tokenizer.ggml.tokens when that is present.
//
// Sizes from the metadata are checked against the file (CheckFits) before
// anything proportional to them is built.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/quant"
	"github.com/chameleon-llm/chameleon/model/tensorfile"
	"github.com/chameleon-llm/chameleon/model/tokenizer"
)

// minQuantBits bounds from below the bits per weight of any tensor a GGUF
// checkpoint may hold (Q4_0 and Q4_K: 4.5, rounded down).
const minQuantBits = 4

// GGUF metadata keys and names.
const (
	ggufArch      = "gpt2"
	ggufHead      = "output.weight"
	ggufKeyArch   = "general.architecture"
	ggufKeyCtx    = "gpt2.context_length"
	ggufKeyEmbd   = "gpt2.embedding_length"
	ggufKeyFF     = "gpt2.feed_forward_length"
	ggufKeyBlocks = "gpt2.block_count"
	ggufKeyHeads  = "gpt2.attention.head_count"
	ggufKeyEps    = "gpt2.attention.layer_norm_epsilon"
	ggufKeyVocab  = "gpt2.vocab_size"
	ggufKeyTokens = "tokenizer.ggml.tokens"
	ggufKeyMerges = "tokenizer.ggml.merges"
	ggufFileF32   = 0  // LLAMA_FTYPE_ALL_F32
	ggufFileF16   = 1  // LLAMA_FTYPE_MOSTLY_F16
	ggufFileBF16  = 32 // LLAMA_FTYPE_MOSTLY_BF16
)

// ggufName is llama.cpp's name for a project tensor name (the table's GGUF
// column). It panics on a name that TensorSpec does not produce.
func ggufName(name string) string {
	d, l, ok := gpt2Table.find(name)
	if !ok {
		panic("model: ggufName: not a GPT-2 tensor name: " + name)
	}
	return expandName(d.GGUF, l)
}

// GGUFOptions are the optional parts of a GGUF checkpoint.
type GGUFOptions struct {
	Name       string               // general.name; "" writes "gpt2"
	Tokenizer  *tokenizer.Tokenizer // written as llama.cpp's tokenizer.ggml.* keys (model/tokenizer/gguf.go) if set; its VocabSize must be the config's
	TiedOutput bool                 // also write output.weight as a copy of token_embd.weight, as llama.cpp's converter does
	// ChatTemplate, when not "", is written as tokenizer.chat_template
	// (Jinja source, as llama.cpp's converter copies it from
	// tokenizer_config.json).
	ChatTemplate string
	// Converted, if set, hears of each tensor converted on write (not
	// those written as they came): its name, its values and the bytes
	// written for them in dtype dt (chameleon quantize measures the
	// quantization error here, a tensor at a time).
	Converted func(name string, values []float32, dt tensorfile.DType, data []byte)
}

// LoadGGUF reads a GGUF GPT-2 checkpoint (see the file comment for names,
// orientation and metadata); validation is as for LoadHF.
func LoadGGUF(path string) (Config, []HostTensor, error) { return loadGGUFFile(path, LoadOptions{}) }

func loadGGUFFile(path string, o LoadOptions) (Config, []HostTensor, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, nil, fmt.Errorf("model: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Config{}, nil, fmt.Errorf("model: %w", err)
	}
	cfg, host, err := loadGGUF(f, st.Size(), o)
	if err != nil {
		return Config{}, nil, fmt.Errorf("model: %s: %w", path, err)
	}
	return cfg, host, nil
}

// LoadGGUFReader is LoadGGUF over the size bytes of r.
func LoadGGUFReader(r io.ReaderAt, size int64) (Config, []HostTensor, error) {
	cfg, host, err := loadGGUF(r, size, LoadOptions{})
	if err != nil {
		return Config{}, nil, fmt.Errorf("model: gguf checkpoint: %w", err)
	}
	return cfg, host, nil
}

func loadGGUF(r io.ReaderAt, size int64, o LoadOptions) (Config, []HostTensor, error) {
	f, err := tensorfile.ReadGGUF(r, size)
	if err != nil {
		return Config{}, nil, err
	}
	cfg, err := ggufConfig(f)
	if err != nil {
		return Config{}, nil, err
	}
	// Before anything proportional to the metadata is built: can the file
	// hold what it describes?
	// Q4_0 and Q4_K take 4.5 bits a weight (the narrowest block this
	// loader decodes); the bound stays proportional to the file.
	capacity := FileCapacity{Tensors: len(f.Tensors), DataBytes: size - f.DataOffset, ElementBits: minQuantBits}
	if err := CheckFits(gpt2Groups(cfg, ggufKeys), capacity); err != nil {
		return Config{}, nil, err
	}
	es := gpt2Table.entries(cfg.sizes(), cfg.NLayer)
	lay := layout{file: map[string]string{}, half: o.Half}
	want := map[string]bool{}
	for _, e := range es {
		lay.file[e.Name] = e.GGUF
		want[e.GGUF] = true
	}
	var extra []string
	head := ""
	for _, n := range f.Names() {
		switch {
		case n == ggufHead:
			head = n
		case !want[n]:
			extra = append(extra, n)
		}
	}
	if len(extra) > 0 {
		return Config{}, nil, unexpected(extra, func(n string) (int, bool) { return layerIndex(n, gpt2Table.layerPrefix(true)) },
			ggufKeyBlocks+" is", cfg.NLayer)
	}
	if err := checkEmbedding(f, lay, "wpe.weight", []int{cfg.NCtx, cfg.NEmbd},
		ggufKeyCtx+" is %d, "+ggufKeyEmbd+" is %d"); err != nil {
		return Config{}, nil, err
	}
	host, err := readSpec(gpt2Table.Family, es, f, lay)
	if err != nil {
		return Config{}, nil, err
	}
	if head != "" {
		if err := checkTiedHead(f, head, host[0]); err != nil {
			return Config{}, nil, err
		}
	}
	return cfg, host, nil
}

// ggufConfig reads the architecture from the metadata and the vocabulary
// size from token_embd.weight, and checks the optional keys that must agree.
func ggufConfig(f *tensorfile.GGUFFile) (Config, error) {
	arch, err := f.GetString(ggufKeyArch)
	if err != nil {
		return Config{}, err
	}
	if arch != ggufArch {
		return Config{}, fmt.Errorf("%s is %q; only %q is supported", ggufKeyArch, arch, ggufArch)
	}
	var sizes [4]int
	for i, key := range []string{ggufKeyCtx, ggufKeyEmbd, ggufKeyBlocks, ggufKeyHeads} {
		v, err := f.GetUint(key)
		if err != nil {
			return Config{}, err
		}
		if v > 1<<31 {
			return Config{}, fmt.Errorf("%s = %d is too large", key, v)
		}
		sizes[i] = int(v)
	}
	eps, err := f.GetFloat(ggufKeyEps)
	if err != nil {
		return Config{}, err
	}
	cfg := Config{NCtx: sizes[0], NEmbd: sizes[1], NLayer: sizes[2], NHead: sizes[3], LNEps: float32(eps)}
	emb, ok := f.Info("token_embd.weight")
	if !ok {
		return Config{}, fmt.Errorf("tensor token_embd.weight (wte.weight) is missing")
	}
	if len(emb.Shape) != 2 || emb.Shape[1] != cfg.NEmbd {
		return Config{}, fmt.Errorf("the config disagrees with the tensors: %s is %d but token_embd.weight (wte.weight) "+
			"has shape %v (want [n_vocab %d])", ggufKeyEmbd, cfg.NEmbd, emb.Shape, cfg.NEmbd)
	}
	cfg.VocabSize = emb.Shape[0]
	if _, ok := f.Get(ggufKeyFF); ok {
		ff, err := f.GetUint(ggufKeyFF)
		if err != nil {
			return Config{}, err
		}
		if ff != uint64(4*cfg.NEmbd) {
			return Config{}, fmt.Errorf("%s %d is not supported: the MLP must be 4*%s = %d wide",
				ggufKeyFF, ff, ggufKeyEmbd, 4*cfg.NEmbd)
		}
	}
	if _, ok := f.Get(ggufKeyVocab); ok {
		v, err := f.GetUint(ggufKeyVocab)
		if err != nil {
			return Config{}, err
		}
		if v != uint64(cfg.VocabSize) {
			return Config{}, fmt.Errorf("the config disagrees with the tensors: %s is %d but token_embd.weight has %d rows",
				ggufKeyVocab, v, cfg.VocabSize)
		}
	}
	if _, ok := f.Get(ggufKeyTokens); ok {
		toks, err := f.GetStringArray(ggufKeyTokens)
		if err != nil {
			return Config{}, err
		}
		if len(toks) != cfg.VocabSize {
			return Config{}, fmt.Errorf("the config disagrees with the tensors: %s has %d entries but token_embd.weight has %d rows",
				ggufKeyTokens, len(toks), cfg.VocabSize)
		}
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, errors.New(strings.TrimPrefix(err.Error(), "model: "))
	}
	return cfg, nil
}

// GGUFKeyChatTemplate is the metadata key of a model's Jinja chat template.
const GGUFKeyChatTemplate = "tokenizer.chat_template"

// SaveGGUF writes a GGUF checkpoint to path with no tokenizer data:
// SaveGGUFWith with zero options.
func SaveGGUF(path string, cfg Config, host []HostTensor, dtype string) error {
	return SaveGGUFWith(path, cfg, host, dtype, GGUFOptions{})
}

// SaveGGUFWith writes a GGUF (version 3) checkpoint to path: matrices and
// embeddings in dtype ("f32", "f16" or "bf16", rounding to nearest even),
// layernorm gains and all biases in F32 as llama.cpp's converter keeps them,
// tensors in TensorSpec order, without output.weight unless opt.TiedOutput.
// dtype may also be "q8_0", "q4_0" or "q4_k": the layer matrices are then
// quantized (model/quantize.go says which tensors; ones that already carry
// blocks of that type are written as they are), the embeddings stored F16,
// general.file_type set as llama.cpp does and general.alignment written.
// host must be exactly TensorSpec(cfg) with data, in any order, and finite.
// The file is written to a temporary name and renamed into place.
func SaveGGUFWith(path string, cfg Config, host []HostTensor, dtype string, opt GGUFOptions) error {
	dt, _, err := checkpointDType(dtype)
	var qf quant.Format
	quantized := false
	if err != nil {
		f, qerr := quant.Parse(dtype)
		if qerr != nil {
			return fmt.Errorf("model: checkpoint dtype %q is not one of f32, f16, bf16, q8_0, q4_0, q4_k", dtype)
		}
		if err := checkQuantRows(cfg, f); err != nil {
			return err
		}
		qf, quantized, dt = f, true, tensorfile.F16
	}
	blocks := map[string]HostTensor{}
	for _, h := range host {
		if h.Blocks != nil {
			blocks[h.Name] = h
		}
	}
	ordered, err := checkHost(cfg, host) // halves and blocks stay as they are until their tensor is written
	if err != nil {
		return err
	}
	var tokMeta []tensorfile.KV
	if opt.Tokenizer != nil {
		if n := opt.Tokenizer.VocabSize(); n != cfg.VocabSize {
			return fmt.Errorf("model: saving: a tokenizer of %d tokens for a vocabulary of %d", n, cfg.VocabSize)
		}
		if tokMeta, err = opt.Tokenizer.GGUFMetadata(); err != nil {
			return err
		}
	}
	name := opt.Name
	if name == "" {
		name = ggufArch
	}
	fileType := map[tensorfile.DType]uint32{tensorfile.F32: ggufFileF32, tensorfile.F16: ggufFileF16, tensorfile.BF16: ggufFileBF16}[dt]
	if quantized {
		fileType = ggufQuantFileType(qf)
	}
	meta := []tensorfile.KV{
		{Key: ggufKeyArch, Value: ggufArch},
		{Key: "general.name", Value: name},
		{Key: "general.file_type", Value: fileType},
		{Key: ggufKeyCtx, Value: uint32(cfg.NCtx)},
		{Key: ggufKeyEmbd, Value: uint32(cfg.NEmbd)},
		{Key: ggufKeyFF, Value: uint32(4 * cfg.NEmbd)},
		{Key: ggufKeyBlocks, Value: uint32(cfg.NLayer)},
		{Key: ggufKeyHeads, Value: uint32(cfg.NHead)},
		{Key: ggufKeyEps, Value: cfg.LNEps},
	}
	if quantized {
		meta = append(meta, tensorfile.KV{Key: "general.alignment", Value: uint32(32)})
	}
	meta = append(meta, tokMeta...)
	if opt.ChatTemplate != "" {
		meta = append(meta, tensorfile.KV{Key: GGUFKeyChatTemplate, Value: opt.ChatTemplate})
	}
	ts, err := ggufTensors(cfg, ordered, blocks, dt, qf, quantized, opt)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, func(w io.Writer) error { return tensorfile.WriteGGUF(w, meta, ts) })
}

// ggufTensors are SaveGGUFWith's tensors: ordered (TensorSpec order) under
// their GGUF names, vectors F32, the others in dt, the layer matrices
// (RoleMatrix) in qf when quantized, taken from blocks as they are when
// those already hold qf; output.weight after wte when opt.TiedOutput.
func ggufTensors(cfg Config, ordered []HostTensor, blocks map[string]HostTensor, dt tensorfile.DType,
	qf quant.Format, quantized bool, opt GGUFOptions) ([]tensorfile.Tensor, error) {
	es := gpt2Table.entries(cfg.sizes(), cfg.NLayer) // ordered's order
	ts := make([]tensorfile.Tensor, 0, len(ordered)+1)
	for i, h := range ordered {
		e, tdt := es[i], tensorfile.F32
		if e.Role != RoleVector {
			tdt = dt
		}
		quantize := quantized && e.Role == RoleMatrix
		if quantize {
			tdt = tensorfile.FromQuantFormat(qf)
		}
		t := tensorfile.Tensor{Name: e.GGUF, DType: tdt, Shape: h.Shape}
		if b, ok := blocks[h.Name]; quantize && ok && b.Quant == gpu.QuantDType(qf) {
			t.Data = b.Blocks
		} else {
			// Converted when the writer reaches it: one tensor's values
			// in memory at a time (GPT-2 XL's f32 values are 6 GB).
			t.Produce = func() ([]byte, error) {
				v := h.Values()
				if h.Blocks != nil {
					if j, x, bad := (HostTensor{Data: v}).firstNonFinite(); bad {
						return nil, fmt.Errorf("model: saving: %s element %d is %v", h.Name, j, x)
					}
				}
				x, err := tensorfile.FromFloat32(e.GGUF, tdt, h.Shape, v)
				if err != nil {
					return nil, fmt.Errorf("model: %w", err)
				}
				if opt.Converted != nil {
					opt.Converted(h.Name, v, tdt, x.Data)
				}
				return x.Data, nil
			}
		}
		ts = append(ts, t)
		if opt.TiedOutput && h.Name == "wte.weight" {
			t.Name = ggufHead
			ts = append(ts, t)
		}
	}
	return ts, nil
}
