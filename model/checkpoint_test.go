package model

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/chameleon-llm/chameleon/model/tensorfile"
)

// ckptConfigs are tiny GPT-2s: sizes that are not multiples of 4 or of the
// transpose tile, and one with a matrix larger than a tile in both dims.
var ckptConfigs = []Config{
	{VocabSize: 37, NCtx: 11, NEmbd: 12, NHead: 3, NLayer: 2, LNEps: 1e-5},
	{VocabSize: 70, NCtx: 5, NEmbd: 35, NHead: 7, NLayer: 1, LNEps: 3e-6},
}

var ckptCfg = ckptConfigs[0]

// ckptHost is RandomInit with every value (biases and gains included)
// perturbed, so a round trip that drops or swaps a tensor shows.
func ckptHost(cfg Config, seed uint64) []HostTensor {
	host := RandomInit(cfg, seed)
	rng := rand.New(rand.NewPCG(seed, 11))
	for i := range host {
		for j := range host[i].Data {
			host[i].Data[j] += float32(rng.NormFloat64() * 0.05)
		}
	}
	return host
}

// roundTo is what storing v in dtype and reading it back gives.
func roundTo(dtype string, v float32) float32 {
	switch dtype {
	case "f16":
		return tensorfile.F16ToF32(tensorfile.F32ToF16(v))
	case "bf16":
		return tensorfile.BF16ToF32(tensorfile.F32ToBF16(v))
	}
	return v
}

// checkHostEqual compares got with want bit for bit after rounding want's
// tensors through rounded(name)'s dtype.
func checkHostEqual(t *testing.T, got, want []HostTensor, rounded func(name string) string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d tensors, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Name != w.Name || !slices.Equal(g.Shape, w.Shape) || len(g.Data) != len(w.Data) {
			t.Fatalf("tensor %d: got %s %v (%d values), want %s %v", i, g.Name, g.Shape, len(g.Data), w.Name, w.Shape)
		}
		dt := rounded(w.Name)
		for j := range w.Data {
			if e := roundTo(dt, w.Data[j]); math.Float32bits(g.Data[j]) != math.Float32bits(e) {
				t.Fatalf("%s[%d] = %g, want %g (%s)", w.Name, j, g.Data[j], e, dt)
			}
		}
	}
}

func checkCfgEqual(t *testing.T, got, want Config) {
	t.Helper()
	if got != want || math.Float32bits(got.LNEps) != math.Float32bits(want.LNEps) {
		t.Fatalf("config %+v, want %+v", got, want)
	}
}

func TestHFRoundTrip(t *testing.T) {
	for _, cfg := range ckptConfigs {
		host := ckptHost(cfg, 1)
		for _, dt := range []string{"f32", "f16", "bf16"} {
			dir := t.TempDir()
			if err := SaveHF(dir, cfg, host, dt); err != nil {
				t.Fatal(err)
			}
			gotCfg, got, err := LoadHF(dir)
			if err != nil {
				t.Fatal(err)
			}
			checkCfgEqual(t, gotCfg, cfg)
			checkHostEqual(t, got, host, func(string) string { return dt })
		}
	}

	// The files themselves: HF orientation, names, metadata and config keys.
	cfg, dir := ckptCfg, t.TempDir()
	if err := SaveHF(dir, cfg, ckptHost(cfg, 2), "f16"); err != nil {
		t.Fatal(err)
	}
	f := readST(t, filepath.Join(dir, hfWeightsFile))
	info, ok := f.Info("transformer.h.1.mlp.c_fc.weight")
	if !ok || !slices.Equal(info.Shape, []int{cfg.NEmbd, 4 * cfg.NEmbd}) || info.DType != tensorfile.F16 {
		t.Errorf("c_fc stored as %+v, want F16 [C 4C] under transformer.", info)
	}
	if f.Has(hfHead) || f.Has("transformer.h.0.attn.bias") || len(f.Names()) != len(TensorSpec(cfg)) {
		t.Errorf("unexpected tensor set %v", f.Names())
	}
	if f.Metadata["format"] != "pt" {
		t.Errorf("metadata %v, want format pt", f.Metadata)
	}
	var conf map[string]any
	b, _ := os.ReadFile(filepath.Join(dir, hfConfigFile))
	if err := json.Unmarshal(b, &conf); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]any{"model_type": "gpt2", "n_ctx": 11.0, "n_positions": 11.0, "n_embd": 12.0,
		"layer_norm_epsilon": 1e-5, "torch_dtype": "float16", "activation_function": "gelu_new"} {
		if conf[k] != v {
			t.Errorf("config.json %s = %v, want %v", k, conf[k], v)
		}
	}
	if a, _ := conf["architectures"].([]any); len(a) != 1 || a[0] != "GPT2LMHeadModel" {
		t.Errorf("config.json architectures = %v", conf["architectures"])
	}
}

func TestGGUFRoundTrip(t *testing.T) {
	for _, cfg := range ckptConfigs {
		host := ckptHost(cfg, 3)
		for _, dt := range []string{"f32", "f16", "bf16"} {
			path := filepath.Join(t.TempDir(), "m.gguf")
			if err := SaveGGUF(path, cfg, host, dt); err != nil {
				t.Fatal(err)
			}
			gotCfg, got, err := LoadGGUF(path)
			if err != nil {
				t.Fatal(err)
			}
			checkCfgEqual(t, gotCfg, cfg)
			vectorsF32 := func(name string) string {
				if name == "wte.weight" || name == "wpe.weight" || isConv1D(name) {
					return dt
				}
				return "f32"
			}
			checkHostEqual(t, got, host, vectorsF32)
		}
	}

	// The file itself: llama.cpp names, (out, in) = ne [in, out], metadata.
	cfg, path := ckptCfg, filepath.Join(t.TempDir(), "m.gguf")
	tok := tinyGGUFTokenizer(t)
	cfg.VocabSize = tok.VocabSize()
	opt := GGUFOptions{Name: "tiny", Tokenizer: tok, TiedOutput: true}
	if err := SaveGGUFWith(path, cfg, ckptHost(cfg, 4), "f16", opt); err != nil {
		t.Fatal(err)
	}
	g := readGG(t, path)
	qkv, ok := g.Tensor("blk.1.attn_qkv.weight")
	if !ok || !slices.Equal(qkv.Dims, []uint64{uint64(cfg.NEmbd), uint64(3 * cfg.NEmbd)}) || qkv.DType != tensorfile.F16 {
		t.Errorf("attn_qkv stored as %+v, want F16 ne [C 3C]", qkv)
	}
	if ln, _ := g.Tensor("blk.0.ffn_norm.bias"); ln.DType != tensorfile.F32 {
		t.Errorf("ffn_norm.bias stored as %v, want F32", ln.DType)
	}
	if !g.Has(ggufHead) || len(g.Names()) != len(TensorSpec(cfg))+1 {
		t.Errorf("tensors %v, want the spec plus output.weight", g.Names())
	}
	for key, want := range map[string]any{ggufKeyArch: "gpt2", "general.name": "tiny", ggufKeyCtx: uint32(11),
		ggufKeyEmbd: uint32(12), ggufKeyFF: uint32(48), ggufKeyBlocks: uint32(2), ggufKeyHeads: uint32(3),
		ggufKeyEps: float32(1e-5), "tokenizer.ggml.model": "gpt2", "general.file_type": uint32(1)} {
		if v, _ := g.Get(key); v != want {
			t.Errorf("%s = %v (%T), want %v (%T)", key, v, v, want, want)
		}
	}
	if v, _ := g.GetStringArray(ggufKeyTokens); len(v) != cfg.VocabSize {
		t.Errorf("tokens: %d entries", len(v))
	}
	if _, _, err := LoadGGUF(path); err != nil {
		t.Errorf("a file with tokens and a tied output.weight: %v", err)
	}
	// Without options: no tokenizer arrays and no output.weight.
	if err := SaveGGUF(path, cfg, ckptHost(cfg, 4), "f32"); err != nil {
		t.Fatal(err)
	}
	g = readGG(t, path)
	if _, ok := g.Get(ggufKeyTokens); ok || g.Has(ggufHead) {
		t.Error("SaveGGUF wrote tokens or output.weight unasked")
	}
}

func TestHFToGGUFToHF(t *testing.T) {
	cfg := ckptConfigs[1]
	host := ckptHost(cfg, 5)
	dir1, dir2 := t.TempDir(), t.TempDir()
	gg := filepath.Join(t.TempDir(), "m.gguf")
	if err := SaveHF(dir1, cfg, host, "f32"); err != nil {
		t.Fatal(err)
	}
	cfgA, a, err := Load(dir1)
	if err != nil {
		t.Fatal(err)
	}
	if err := SaveGGUF(gg, cfgA, a, "f32"); err != nil {
		t.Fatal(err)
	}
	cfgB, b, err := Load(gg)
	if err != nil {
		t.Fatal(err)
	}
	if err := SaveHF(dir2, cfgB, b, "f32"); err != nil {
		t.Fatal(err)
	}
	cfgC, c, err := Load(dir2)
	if err != nil {
		t.Fatal(err)
	}
	checkCfgEqual(t, cfgC, cfg)
	checkHostEqual(t, c, host, func(string) string { return "f32" })
	for _, name := range []string{hfWeightsFile, hfConfigFile} {
		x, _ := os.ReadFile(filepath.Join(dir1, name))
		y, _ := os.ReadFile(filepath.Join(dir2, name))
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs after HF -> GGUF -> HF", name)
		}
	}
}

func TestLoadDispatch(t *testing.T) {
	cfg, host := ckptCfg, ckptHost(ckptCfg, 6)
	dir := t.TempDir()
	if err := SaveHF(dir, cfg, host, "f32"); err != nil {
		t.Fatal(err)
	}
	gg := filepath.Join(dir, "m.gguf")
	if err := SaveGGUF(gg, cfg, host, "f32"); err != nil {
		t.Fatal(err)
	}
	noExt := filepath.Join(dir, "weights")
	b, _ := os.ReadFile(gg)
	os.WriteFile(noExt, b, 0o644)
	renamed := filepath.Join(dir, "other.safetensors")
	b, _ = os.ReadFile(filepath.Join(dir, hfWeightsFile))
	os.WriteFile(renamed, b, 0o644)
	for _, p := range []string{dir, filepath.Join(dir, hfWeightsFile), renamed, gg, noExt} {
		gotCfg, got, err := Load(p)
		if err != nil {
			t.Fatalf("Load(%s): %v", p, err)
		}
		checkCfgEqual(t, gotCfg, cfg)
		checkHostEqual(t, got, host, func(string) string { return "f32" })
	}

	// fs.FS: os.DirFS (files with ReadAt) and fstest.MapFS.
	if _, got, err := LoadHFFS(os.DirFS(dir)); err != nil {
		t.Fatal(err)
	} else {
		checkHostEqual(t, got, host, func(string) string { return "f32" })
	}
	conf, _ := os.ReadFile(filepath.Join(dir, hfConfigFile))
	mfs := fstest.MapFS{hfConfigFile: {Data: conf}, hfWeightsFile: {Data: b}}
	if _, got, err := LoadHFFS(mfs); err != nil {
		t.Fatal(err)
	} else {
		checkHostEqual(t, got, host, func(string) string { return "f32" })
	}
	if _, _, err := LoadGGUFReader(bytes.NewReader(b), int64(len(b))); err == nil || !strings.Contains(err.Error(), "not a GGUF file") {
		t.Errorf("LoadGGUFReader(safetensors bytes): %v", err)
	}

	txt := filepath.Join(dir, "notes.txt")
	os.WriteFile(txt, []byte("hello"), 0o644)
	empty := t.TempDir()
	os.WriteFile(filepath.Join(empty, "pytorch_model.bin"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(empty, hfConfigFile), conf, 0o644)
	for p, want := range map[string]string{
		txt:                                  "not a checkpoint Chameleon knows",
		filepath.Join(dir, "missing.gguf"):   "no such file",
		empty:                                "only safetensors is read",
		filepath.Join(t.TempDir(), "x.gguf"): "no such file",
	} {
		if _, _, err := Load(p); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load(%s): %v, want an error containing %q", p, err, want)
		}
	}
}

// readST and readGG open a file with tensorfile, failing the test on error.
func readST(t *testing.T, path string) *tensorfile.File {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := tensorfile.ReadSafetensors(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func readGG(t *testing.T, path string) *tensorfile.GGUFFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := tensorfile.ReadGGUF(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// stTensors returns every tensor of a safetensors file, raw, to be edited
// and rewritten.
func stTensors(t *testing.T, f *tensorfile.File) []tensorfile.Tensor {
	t.Helper()
	var ts []tensorfile.Tensor
	for _, info := range f.Tensors {
		raw, err := f.Raw(info.Name)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, tensorfile.Tensor{Name: info.Name, DType: info.DType, Shape: info.Shape, Data: raw})
	}
	return ts
}

func f32Tensor(t *testing.T, name string, shape []int, values []float32) tensorfile.Tensor {
	t.Helper()
	x, err := tensorfile.FromFloat32(name, tensorfile.F32, shape, values)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func setF32(ts []tensorfile.Tensor, name string, i int, v float32) {
	for _, x := range ts {
		if x.Name == name {
			binary.LittleEndian.PutUint32(x.Data[4*i:], math.Float32bits(v))
			return
		}
	}
	panic("no tensor " + name)
}

func dropTensor(ts []tensorfile.Tensor, name string) []tensorfile.Tensor {
	return slices.DeleteFunc(ts, func(x tensorfile.Tensor) bool { return x.Name == name })
}

func renameTensors(ts []tensorfile.Tensor, f func(string) string) []tensorfile.Tensor {
	for i := range ts {
		ts[i].Name = f(ts[i].Name)
	}
	return ts
}

func writeST(t *testing.T, dir string, ts []tensorfile.Tensor) {
	t.Helper()
	var buf bytes.Buffer
	if err := tensorfile.WriteSafetensors(&buf, ts, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, hfWeightsFile), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestHFOriginalLayout loads a checkpoint laid out like the original "gpt2"
// upload: no "transformer." prefix, causal-mask buffers present, and an
// lm_head.weight equal to wte.
func TestHFOriginalLayout(t *testing.T) {
	cfg, host := ckptCfg, ckptHost(ckptCfg, 7)
	dir := t.TempDir()
	if err := SaveHF(dir, cfg, host, "bf16"); err != nil {
		t.Fatal(err)
	}
	f := readST(t, filepath.Join(dir, hfWeightsFile))
	ts := renameTensors(stTensors(t, f), func(n string) string { return strings.TrimPrefix(n, hfPrefix) })
	mask := make([]float32, cfg.NCtx*cfg.NCtx)
	for l := 0; l < cfg.NLayer; l++ {
		p := "h." + string(rune('0'+l)) + ".attn."
		ts = append(ts, f32Tensor(t, p+"bias", []int{1, 1, cfg.NCtx, cfg.NCtx}, mask),
			tensorfile.Tensor{Name: p + "masked_bias", DType: tensorfile.F32, Shape: []int{}, Data: []byte{0, 0, 0x1c, 0xc6}})
	}
	wte, _ := f.Raw("transformer.wte.weight")
	ts = append(ts, tensorfile.Tensor{Name: hfHead, DType: tensorfile.BF16, Shape: []int{cfg.VocabSize, cfg.NEmbd}, Data: wte})
	writeST(t, dir, ts)
	_, got, err := LoadHF(dir)
	if err != nil {
		t.Fatal(err)
	}
	checkHostEqual(t, got, host, func(string) string { return "bf16" })

	// Untied: lm_head.weight differs from wte in one element.
	head := slices.Clone(wte)
	head[7] ^= 0x40
	ts[len(ts)-1].Data = head
	writeST(t, dir, ts)
	if _, _, err := LoadHF(dir); err == nil || !strings.Contains(err.Error(), "lm_head.weight differs from wte.weight at element 3") {
		t.Errorf("untied head: %v", err)
	}
}

// (Over 80 lines: a table of malformed Hugging Face checkpoints, one entry per
// rejection.)
func TestLoadHFRejects(t *testing.T) {
	cfg := ckptCfg
	C := cfg.NEmbd
	cases := []struct {
		name   string
		edit   func(ts []tensorfile.Tensor) []tensorfile.Tensor
		config func(m map[string]any)
		raw    func(b []byte) []byte // edits the file's bytes
		want   string
	}{
		{name: "missing tensor", want: "1 of the 28 GPT-2 tensors are missing: h.1.ln_2.bias",
			edit: func(ts []tensorfile.Tensor) []tensorfile.Tensor { return dropTensor(ts, "transformer.h.1.ln_2.bias") }},
		{name: "extra tensor", want: "1 unexpected tensor(s), not part of GPT-2: transformer.h.0.attn.c_q.weight",
			edit: func(ts []tensorfile.Tensor) []tensorfile.Tensor {
				return append(ts, f32Tensor(t, "transformer.h.0.attn.c_q.weight", []int{2}, []float32{1, 2}))
			}},
		{name: "extra layer", want: "config.json has n_layer 2 but the file has tensor transformer.h.2.ln_1.weight of layer 2",
			edit: func(ts []tensorfile.Tensor) []tensorfile.Tensor {
				return append(ts, f32Tensor(t, "transformer.h.2.ln_1.weight", []int{C}, make([]float32, C)))
			}},
		{name: "prefixed and bare", want: "both ln_f.bias and transformer.ln_f.bias are present",
			edit: func(ts []tensorfile.Tensor) []tensorfile.Tensor {
				return append(ts, f32Tensor(t, "ln_f.bias", []int{C}, make([]float32, C)))
			}},
		{name: "Conv1D not transposed", want: "transformer.h.1.mlp.c_fc.weight has shape [48 12], config wants [12 48] (in, out) for Conv1D",
			edit: func(ts []tensorfile.Tensor) []tensorfile.Tensor {
				for i := range ts {
					if ts[i].Name == "transformer.h.1.mlp.c_fc.weight" {
						ts[i].Shape = []int{4 * C, C}
					}
				}
				return ts
			}},
		{name: "wrong vector shape", want: "transformer.h.0.ln_1.weight has shape [11], config wants [12]",
			edit: func(ts []tensorfile.Tensor) []tensorfile.Tensor {
				ts = dropTensor(ts, "transformer.h.0.ln_1.weight")
				return append(ts, f32Tensor(t, "transformer.h.0.ln_1.weight", []int{C - 1}, make([]float32, C-1)))
			}},
		{name: "config vocab", want: "config.json has vocab_size 40, n_embd 12 but transformer.wte.weight has shape [37 12]",
			config: func(m map[string]any) { m["vocab_size"] = 40 }},
		{name: "config n_embd", want: "config.json has vocab_size 37, n_embd 15 but transformer.wte.weight has shape [37 12]",
			config: func(m map[string]any) { m["n_embd"] = 15 }},
		{name: "config n_positions", want: "config.json has n_positions 12, n_embd 12 but transformer.wpe.weight has shape [11 12]",
			config: func(m map[string]any) { m["n_positions"] = 12; delete(m, "n_ctx") }},
		{name: "config n_layer", want: "config.json has n_layer 1 but the file has tensor transformer.h.1",
			config: func(m map[string]any) { m["n_layer"] = 1 }},
		{name: "config more layers", want: "12 of the 40 GPT-2 tensors are missing: h.2.ln_1.weight",
			config: func(m map[string]any) { m["n_layer"] = 3 }},
		{name: "config n_head", want: "config.json: config: n_embd 12 is not a multiple of n_head 5", config: func(m map[string]any) { m["n_head"] = 5 }},
		{name: "config n_ctx", want: "n_positions 11 and n_ctx 12 disagree", config: func(m map[string]any) { m["n_ctx"] = 12 }},
		{name: "config model_type", want: `model_type is "llama"`, config: func(m map[string]any) { m["model_type"] = "llama" }},
		{name: "config activation", want: `activation_function "relu" is not supported`,
			config: func(m map[string]any) { m["activation_function"] = "relu" }},
		{name: "config n_inner", want: "n_inner 40 is not supported", config: func(m map[string]any) { m["n_inner"] = 40 }},
		{name: "config untied", want: "tie_word_embeddings to false but there is no lm_head.weight",
			config: func(m map[string]any) { m["tie_word_embeddings"] = false }},
		{name: "NaN weight", want: `transformer.h.0.attn.c_proj.weight: safetensors: tensor "transformer.h.0.attn.c_proj.weight" (F32 12x12): element 5 is NaN`,
			edit: func(ts []tensorfile.Tensor) []tensorfile.Tensor {
				setF32(ts, "transformer.h.0.attn.c_proj.weight", 5, float32(math.NaN()))
				return ts
			}},
		{name: "Inf weight", want: "element 3 is +Inf",
			edit: func(ts []tensorfile.Tensor) []tensorfile.Tensor {
				setF32(ts, "transformer.wpe.weight", 3, float32(math.Inf(1)))
				return ts
			}},
		{name: "integer dtype", want: "transformer.ln_f.weight has dtype I32; only F32, F16, BF16, Q8_0, Q4_0 and Q4_K weights are supported",
			edit: func(ts []tensorfile.Tensor) []tensorfile.Tensor {
				for i := range ts {
					if ts[i].Name == "transformer.ln_f.weight" {
						ts[i].DType = tensorfile.I32
					}
				}
				return ts
			}},
		{name: "unknown dtype", want: `unknown dtype "X32"`,
			raw: func(b []byte) []byte { return bytes.Replace(b, []byte(`"dtype":"F32"`), []byte(`"dtype":"X32"`), 1) }},
		{name: "truncated", want: "run past the", raw: func(b []byte) []byte { return b[:len(b)-10] }},
		{name: "corrupt header", want: "safetensors: header: invalid JSON",
			raw: func(b []byte) []byte { copy(b[8:], "#garbage"); return b }},
		{name: "empty file", want: "shorter than the 8-byte header length", raw: func(b []byte) []byte { return b[:3] }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := SaveHF(dir, cfg, ckptHost(cfg, 8), "f32"); err != nil {
				t.Fatal(err)
			}
			if tc.edit != nil {
				writeST(t, dir, tc.edit(stTensors(t, readST(t, filepath.Join(dir, hfWeightsFile)))))
			}
			if tc.config != nil {
				var m map[string]any
				b, _ := os.ReadFile(filepath.Join(dir, hfConfigFile))
				json.Unmarshal(b, &m)
				tc.config(m)
				b, _ = json.Marshal(m)
				os.WriteFile(filepath.Join(dir, hfConfigFile), b, 0o644)
			}
			if tc.raw != nil {
				p := filepath.Join(dir, hfWeightsFile)
				b, _ := os.ReadFile(p)
				os.WriteFile(p, tc.raw(b), 0o644)
			}
			_, _, err := LoadHF(dir)
			t.Log(err)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	dir := t.TempDir()
	if err := SaveHF(dir, cfg, ckptHost(cfg, 8), "f32"); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, hfConfigFile), []byte("{not json"), 0o644)
	if _, _, err := LoadHF(dir); err == nil || !strings.Contains(err.Error(), "not a valid config.json") {
		t.Errorf("bad config.json: %v", err)
	}
}

// (Over 80 lines: a table of malformed GGUF files, one entry per rejection.)
func TestLoadGGUFRejects(t *testing.T) {
	cfg := ckptCfg
	C := cfg.NEmbd
	type file struct {
		meta []tensorfile.KV
		ts   []tensorfile.Tensor
	}
	setMeta := func(f *file, key string, v any) {
		for i := range f.meta {
			if f.meta[i].Key == key {
				if v == nil {
					f.meta = slices.Delete(f.meta, i, i+1)
				} else {
					f.meta[i].Value = v
				}
				return
			}
		}
		f.meta = append(f.meta, tensorfile.KV{Key: key, Value: v})
	}
	cases := []struct {
		name string
		edit func(f *file)
		raw  func(b []byte) []byte
		want string
	}{
		{name: "missing tensor", want: "1 of the 28 GPT-2 tensors are missing: blk.1.ffn_down.bias",
			edit: func(f *file) { f.ts = dropTensor(f.ts, "blk.1.ffn_down.bias") }},
		{name: "extra tensor", want: "1 unexpected tensor(s), not part of GPT-2: rope_freqs.weight",
			edit: func(f *file) { f.ts = append(f.ts, f32Tensor(t, "rope_freqs.weight", []int{2}, []float32{1, 2})) }},
		{name: "extra layer", want: "gpt2.block_count is 2 but the file has tensor blk.2.attn_norm.weight of layer 2",
			edit: func(f *file) {
				f.ts = append(f.ts, f32Tensor(t, "blk.2.attn_norm.weight", []int{C}, make([]float32, C)))
			}},
		{name: "transposed weight", want: "blk.0.attn_qkv.weight (h.0.attn.c_attn.weight) has shape [12 36], config wants [36 12]",
			edit: func(f *file) {
				for i := range f.ts {
					if f.ts[i].Name == "blk.0.attn_qkv.weight" {
						f.ts[i].Shape = []int{C, 3 * C}
					}
				}
			}},
		{name: "embedding length", want: "gpt2.embedding_length is 15 but token_embd.weight (wte.weight) has shape [37 12]",
			edit: func(f *file) { setMeta(f, ggufKeyEmbd, uint32(15)) }},
		{name: "context length", want: "gpt2.context_length is 12, gpt2.embedding_length is 12 but position_embd.weight (wpe.weight) has shape [11 12]",
			edit: func(f *file) { setMeta(f, ggufKeyCtx, uint32(12)) }},
		{name: "block count", want: "12 of the 40 GPT-2 tensors are missing: blk.2.attn_norm.weight",
			edit: func(f *file) { setMeta(f, ggufKeyBlocks, uint32(3)) }},
		{name: "feed forward", want: "gpt2.feed_forward_length 40 is not supported",
			edit: func(f *file) { setMeta(f, ggufKeyFF, uint32(40)) }},
		{name: "vocab size key", want: "gpt2.vocab_size is 38 but token_embd.weight has 37 rows",
			edit: func(f *file) { setMeta(f, ggufKeyVocab, uint32(38)) }},
		{name: "tokens", want: "tokenizer.ggml.tokens has 2 entries but token_embd.weight has 37 rows",
			edit: func(f *file) { setMeta(f, ggufKeyTokens, []string{"a", "b"}) }},
		{name: "architecture", want: `general.architecture is "llama"; only "gpt2"`,
			edit: func(f *file) { setMeta(f, ggufKeyArch, "llama") }},
		{name: "missing key", want: `no metadata key "gpt2.attention.head_count"`,
			edit: func(f *file) { setMeta(f, ggufKeyHeads, nil) }},
		{name: "bad head count", want: "m.gguf: config: n_embd 12 is not a multiple of n_head 5",
			edit: func(f *file) { setMeta(f, ggufKeyHeads, uint32(5)) }},
		{name: "missing embedding", want: "token_embd.weight (wte.weight) is missing",
			edit: func(f *file) { f.ts = dropTensor(f.ts, "token_embd.weight") }},
		{name: "NaN weight", want: `blk.1.ffn_up.weight (h.1.mlp.c_fc.weight): gguf: tensor "blk.1.ffn_up.weight" (F32 48x12): element 17 is NaN`,
			edit: func(f *file) { setF32(f.ts, "blk.1.ffn_up.weight", 17, float32(math.NaN())) }},
		{name: "unsupported dtype", want: "output_norm.bias (ln_f.bias) has dtype I32; only F32, F16, BF16, Q8_0, Q4_0 and Q4_K",
			edit: func(f *file) {
				for i := range f.ts {
					if f.ts[i].Name == "output_norm.bias" {
						f.ts[i].DType = tensorfile.I32
					}
				}
			}},
		{name: "untied output", want: "output.weight differs from wte.weight at element 0",
			edit: func(f *file) {
				f.ts = append(f.ts, f32Tensor(t, ggufHead, []int{cfg.VocabSize, C}, make([]float32, cfg.VocabSize*C)))
			}},
		{name: "output shape", want: "output.weight (F32, shape [12 37]) must be a copy of wte.weight",
			edit: func(f *file) {
				f.ts = append(f.ts, f32Tensor(t, ggufHead, []int{C, cfg.VocabSize}, make([]float32, cfg.VocabSize*C)))
			}},
		{name: "unknown ggml type", want: "unknown ggml type 99",
			raw: func(b []byte) []byte {
				// The first tensor info's type follows its name and dims.
				i := bytes.Index(b, []byte("token_embd.weight")) + len("token_embd.weight") + 4 + 16
				b[i] = 99
				return b
			}},
		{name: "truncated", want: "run past the end", raw: func(b []byte) []byte { return b[:len(b)-40] }},
		{name: "corrupt magic", want: "not a GGUF file", raw: func(b []byte) []byte { copy(b, "GGUX"); return b }},
		{name: "corrupt version", want: "version 77 is not supported", raw: func(b []byte) []byte { b[4] = 77; return b }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "m.gguf")
			if err := SaveGGUF(path, cfg, ckptHost(cfg, 9), "f32"); err != nil {
				t.Fatal(err)
			}
			if tc.edit != nil {
				g := readGG(t, path)
				f := file{meta: slices.Clone(g.KV)}
				for _, info := range g.Tensors {
					raw, err := g.Raw(info.Name)
					if err != nil {
						t.Fatal(err)
					}
					f.ts = append(f.ts, tensorfile.Tensor{Name: info.Name, DType: info.DType, Shape: info.Shape, Data: raw})
				}
				tc.edit(&f)
				var buf bytes.Buffer
				if err := tensorfile.WriteGGUF(&buf, f.meta, f.ts); err != nil {
					t.Fatal(err)
				}
				os.WriteFile(path, buf.Bytes(), 0o644)
			}
			if tc.raw != nil {
				b, _ := os.ReadFile(path)
				os.WriteFile(path, tc.raw(b), 0o644)
			}
			_, _, err := LoadGGUF(path)
			t.Log(err)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestSaveRejects(t *testing.T) {
	cfg := ckptCfg
	edit := func(f func(h []HostTensor) []HostTensor) []HostTensor { return f(ckptHost(cfg, 10)) }
	cases := []struct {
		name  string
		host  []HostTensor
		dtype string
		want  string
	}{
		{"dtype", ckptHost(cfg, 10), "f64", `checkpoint dtype "f64" is not one of f32, f16, bf16`},
		{"missing", edit(func(h []HostTensor) []HostTensor { return h[1:] }), "f32", "tensor wte.weight missing"},
		{"duplicate", edit(func(h []HostTensor) []HostTensor { return append(h, h[3]) }), "f32", "h.0.ln_1.bias appears twice"},
		{"extra", edit(func(h []HostTensor) []HostTensor {
			return append(h, HostTensor{Name: "h.2.ln_1.weight", Shape: []int{12}, Data: make([]float32, 12)})
		}), "f32", "tensor h.2.ln_1.weight is not part of GPT-2"},
		{"shape", edit(func(h []HostTensor) []HostTensor { h[4].Shape = []int{12, 36}; return h }), "f32",
			"h.0.attn.c_attn.weight has shape [12 36] (432 values), config wants [36 12]"},
		{"length", edit(func(h []HostTensor) []HostTensor { h[5].Data = h[5].Data[1:]; return h }), "f32",
			"h.0.attn.c_attn.bias has shape [36] (35 values)"},
		{"NaN", edit(func(h []HostTensor) []HostTensor { h[2].Data[4] = float32(math.NaN()); return h }), "f16",
			"h.0.ln_1.weight element 4 is NaN"},
	}
	for _, tc := range cases {
		dir := t.TempDir()
		errHF := SaveHF(dir, cfg, tc.host, tc.dtype)
		errGG := SaveGGUF(filepath.Join(dir, "m.gguf"), cfg, tc.host, tc.dtype)
		for _, err := range []error{errHF, errGG} {
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
			}
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("%s: a failed save left %d files behind", tc.name, len(ents))
		}
	}
	err := SaveGGUFWith(filepath.Join(t.TempDir(), "m.gguf"), cfg, ckptHost(cfg, 10), "f32", GGUFOptions{Tokenizer: tinyGGUFTokenizer(t)})
	if err == nil || !strings.Contains(err.Error(), "a tokenizer of 300 tokens for a vocabulary of 37") {
		t.Errorf("short token list: %v", err)
	}
}

func TestTranspose(t *testing.T) {
	for _, rc := range [][2]int{{1, 1}, {1, 5}, {3, 1}, {2, 3}, {33, 70}, {64, 32}} {
		r, c := rc[0], rc[1]
		src := make([]float32, r*c)
		for i := range src {
			src[i] = float32(i)
		}
		dst := transpose(src, r, c)
		for i := 0; i < r; i++ {
			for j := 0; j < c; j++ {
				if dst[j*r+i] != src[i*c+j] {
					t.Fatalf("%dx%d: dst[%d][%d] = %g, want %g", r, c, j, i, dst[j*r+i], src[i*c+j])
				}
			}
		}
		if back := transpose(dst, c, r); !slices.Equal(back, src) {
			t.Fatalf("%dx%d: transpose twice is not the identity", r, c)
		}
	}
}

func TestGGUFNames(t *testing.T) {
	for name, want := range map[string]string{
		"wte.weight": "token_embd.weight", "wpe.weight": "position_embd.weight",
		"ln_f.weight": "output_norm.weight", "ln_f.bias": "output_norm.bias",
		"h.0.ln_1.weight": "blk.0.attn_norm.weight", "h.11.attn.c_attn.bias": "blk.11.attn_qkv.bias",
		"h.3.attn.c_proj.weight": "blk.3.attn_output.weight", "h.3.ln_2.bias": "blk.3.ffn_norm.bias",
		"h.10.mlp.c_fc.weight": "blk.10.ffn_up.weight", "h.2.mlp.c_proj.bias": "blk.2.ffn_down.bias",
	} {
		if got := ggufName(name); got != want {
			t.Errorf("ggufName(%s) = %s, want %s", name, got, want)
		}
	}
	for _, bad := range []string{"h.0.attn.bias", "lm_head.weight", "h.x.ln_1.weight"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("ggufName(%s) did not panic", bad)
				}
			}()
			ggufName(bad)
		}()
	}
}
