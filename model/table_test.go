package model

import (
	"bytes"
	"io/fs"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/defaults"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/ref"
	"github.com/chameleon-llm/chameleon/model/tensorfile"
)

func TestGPT2TableValid(t *testing.T) {
	if err := gpt2Table.validate(ckptCfg.sizes()); err != nil {
		t.Fatal(err)
	}
	// validate must be able to fail: break one row at a time.
	for name, edit := range map[string]func(tb *Table[Weights]){
		"layer row without {l}": func(tb *Table[Weights]) { tb.Layer[3].Name = "h.attn.c_attn.bias" },
		"repeated GGUF name":    func(tb *Table[Weights]) { tb.Layer[1].GGUF = tb.Layer[0].GGUF },
		"unknown size":          func(tb *Table[Weights]) { tb.Layer[2].Shape = []Axis{"3X", "C"} },
		"1-D matrix":            func(tb *Table[Weights]) { tb.Layer[2].Shape = []Axis{"3C"} },
		"InOut vector":          func(tb *Table[Weights]) { tb.Layer[3].InOut = true },
		"no field":              func(tb *Table[Weights]) { tb.Post[0].Field = nil },
		"global row with {l}":   func(tb *Table[Weights]) { tb.Pre[0].Name = "wte.{l}.weight" },
	} {
		tb := *gpt2Table
		tb.Pre, tb.Layer, tb.Post = slices.Clone(tb.Pre), slices.Clone(tb.Layer), slices.Clone(tb.Post)
		edit(&tb)
		if err := tb.validate(ckptCfg.sizes()); err == nil {
			t.Errorf("%s: validate accepted it", name)
		}
	}
}

// TestTableCoversCheckpoint checks that the table is the whole checkpoint:
// every tensor of a checkpoint is one row's, with that row's shape
// (transposed where the row is InOut), and every row's tensor is there
// exactly once. The checkpoints: the embedded default model (written before
// the table existed, with Hugging Face's names), and what SaveHF and
// SaveGGUF write now.
func TestTableCoversCheckpoint(t *testing.T) {
	type source struct {
		name string
		cfg  Config
		gguf bool
		file interface {
			Names() []string
			Info(string) (tensorfile.TensorInfo, bool)
		}
	}
	fsys, err := defaults.Model()
	if err != nil {
		t.Fatal(err)
	}
	conf, err := fs.ReadFile(fsys, hfConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	defCfg, _, err := parseHFConfig(conf)
	if err != nil {
		t.Fatal(err)
	}
	defBytes, err := fs.ReadFile(fsys, hfWeightsFile)
	if err != nil {
		t.Fatal(err)
	}
	defST, err := tensorfile.ReadSafetensors(bytes.NewReader(defBytes), int64(len(defBytes)))
	if err != nil {
		t.Fatal(err)
	}
	cfg := ckptCfg
	dir := t.TempDir()
	if err := SaveHF(dir, cfg, ckptHost(cfg, 1), "f32"); err != nil {
		t.Fatal(err)
	}
	gpath := filepath.Join(t.TempDir(), "m.gguf")
	if err := SaveGGUF(gpath, cfg, ckptHost(cfg, 1), "f16"); err != nil {
		t.Fatal(err)
	}
	for _, src := range []source{
		{"default model", defCfg, false, defST},
		{"SaveHF", cfg, false, readST(t, filepath.Join(dir, hfWeightsFile))},
		{"SaveGGUF", cfg, true, readGG(t, gpath)},
	} {
		es := gpt2Table.entries(src.cfg.sizes(), src.cfg.NLayer)
		covered := map[string]bool{}
		for _, e := range es {
			name, shape := hfPrefix+e.Name, e.Shape
			if src.gguf {
				name = e.GGUF
			} else if e.InOut {
				shape = []int{e.Shape[1], e.Shape[0]}
			}
			info, ok := src.file.Info(name)
			if !ok {
				t.Errorf("%s: table tensor %s is not in the file", src.name, name)
				continue
			}
			if !slices.Equal(info.Shape, shape) {
				t.Errorf("%s: %s has shape %v, the table says %v", src.name, name, info.Shape, shape)
			}
			covered[name] = true
		}
		for _, n := range src.file.Names() {
			if !covered[n] {
				t.Errorf("%s: the file's tensor %s is in no table row", src.name, n)
			}
		}
		if n := len(src.file.Names()); n != len(es) || n < 16 {
			t.Errorf("%s: %d tensors in the file, %d in the table", src.name, n, len(es))
		}
	}
}

// TestLoadNamesBadTensor drops each tensor of a saved checkpoint in turn,
// then gives it a wrong shape, and checks that both loaders fail naming it.
func TestLoadNamesBadTensor(t *testing.T) {
	cfg := ckptCfg
	dir := t.TempDir()
	if err := SaveHF(dir, cfg, ckptHost(cfg, 2), "f32"); err != nil {
		t.Fatal(err)
	}
	gpath := filepath.Join(t.TempDir(), "m.gguf")
	if err := SaveGGUF(gpath, cfg, ckptHost(cfg, 2), "f32"); err != nil {
		t.Fatal(err)
	}
	st, gg := readST(t, filepath.Join(dir, hfWeightsFile)), readGG(t, gpath)
	hfLoad := func(ts []tensorfile.Tensor) error {
		writeST(t, dir, ts)
		_, _, err := LoadHF(dir)
		return err
	}
	ggLoad := func(ts []tensorfile.Tensor) error {
		var buf bytes.Buffer
		if err := tensorfile.WriteGGUF(&buf, gg.KV, ts); err != nil {
			t.Fatal(err)
		}
		_, _, err := LoadGGUFReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
		return err
	}
	for _, e := range gpt2Table.entries(cfg.sizes(), cfg.NLayer) {
		for _, f := range []struct {
			format string
			name   string // in the file
			named  string // what the error must contain (a missing safetensors tensor goes by its project name)
			ts     []tensorfile.Tensor
			load   func([]tensorfile.Tensor) error
		}{
			{"safetensors", hfPrefix + e.Name, e.Name, stTensors(t, st), hfLoad},
			{"gguf", e.GGUF, e.GGUF, ggTensors(t, gg), ggLoad},
		} {
			if err := f.load(dropTensor(slices.Clone(f.ts), f.name)); err == nil || !strings.Contains(err.Error(), f.named) {
				t.Errorf("%s without %s: %v, want an error naming it", f.format, f.name, err)
			}
			bad := slices.Clone(f.ts)
			for i, x := range bad {
				if x.Name == f.name { // one more column: the wrong shape, whole data
					shape := slices.Clone(x.Shape)
					shape[len(shape)-1]++
					bad[i] = f32Tensor(t, x.Name, shape, make([]float32, numel(shape)))
				}
			}
			if err := f.load(bad); err == nil || !strings.Contains(err.Error(), f.name) {
				t.Errorf("%s with %s misshapen: %v, want an error naming it", f.format, f.name, err)
			}
		}
	}
}

// ggTensors returns every tensor of a GGUF file, raw, to be rewritten.
func ggTensors(t *testing.T, f *tensorfile.GGUFFile) []tensorfile.Tensor {
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

// counting is a backend that tracks its live tensors.
type counting struct {
	gpu.Backend
	live map[gpu.Tensor]bool
}

func (c *counting) Alloc(dt gpu.DType, shape ...int) (gpu.Tensor, error) {
	x, err := c.Backend.Alloc(dt, shape...)
	if err == nil {
		c.live[x] = true
	}
	return x, err
}

func (c *counting) Free(x gpu.Tensor) {
	if !c.live[x] {
		panic("freeing a tensor that is not live")
	}
	delete(c.live, x)
	c.Backend.Free(x)
}

// tensorFields lists every gpu.Tensor field of v, a struct, walking into
// slices of structs (Weights.Layers).
func tensorFields(v reflect.Value) []reflect.Value {
	var out []reflect.Value
	tensorType := reflect.TypeFor[gpu.Tensor]()
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		switch {
		case f.Type() == tensorType:
			out = append(out, f)
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Struct:
			for j := 0; j < f.Len(); j++ {
				out = append(out, tensorFields(f.Index(j))...)
			}
		}
	}
	return out
}

// TestUploadFillsEveryField checks that the table fills every tensor field
// of Weights with its own tensor of the table's shape and dtype, that
// Tensors lists them in TensorSpec order, that Free releases all of them,
// and that a failed upload leaves nothing allocated.
func TestUploadFillsEveryField(t *testing.T) {
	cfg := ckptCfg
	b := &counting{Backend: ref.New(), live: map[gpu.Tensor]bool{}}
	spec := TensorSpec(cfg)
	w, err := Upload(b, cfg, RandomInit(cfg, 3), gpu.F16)
	if err != nil {
		t.Fatal(err)
	}
	fields := tensorFields(reflect.ValueOf(w).Elem())
	if len(fields) != len(spec) || len(b.live) != len(spec) {
		t.Fatalf("%d tensor fields, %d tensors allocated, %d in TensorSpec", len(fields), len(b.live), len(spec))
	}
	seen := map[gpu.Tensor]bool{}
	for i, f := range fields {
		x, _ := f.Interface().(gpu.Tensor)
		if x == nil || seen[x] {
			t.Fatalf("field %d is nil or shares a tensor", i)
		}
		seen[x] = true
	}
	for i, x := range w.Tensors() {
		want := uploadDType(gpt2Table.entries(cfg.sizes(), cfg.NLayer)[i].Role, gpu.F16)
		if !seen[x] || !slices.Equal(x.Shape(), spec[i].Shape) || x.DType() != want {
			t.Errorf("Tensors()[%d]: shape %v %v, want %s %v %v", i, x.Shape(), x.DType(), spec[i].Name, spec[i].Shape, want)
		}
	}
	if w.Layers[1].Fc2W != w.Tensors()[2+12+10] || w.LnFB != w.Tensors()[len(spec)-1] {
		t.Error("Tensors() is not in checkpoint order")
	}
	w.Free(b)
	if len(b.live) != 0 {
		t.Errorf("Free left %d tensors allocated", len(b.live))
	}
	for i, f := range fields {
		if !f.IsNil() {
			t.Errorf("field %d still set after Free", i)
		}
	}
	host := RandomInit(cfg, 3)
	host[len(host)-3].Shape = []int{1} // a late tensor with a wrong shape
	if _, err := Upload(b, cfg, host, gpu.F32); err == nil || !strings.Contains(err.Error(), host[len(host)-3].Name) {
		t.Errorf("upload of a misshapen %s: %v", host[len(host)-3].Name, err)
	}
	if len(b.live) != 0 {
		t.Errorf("a failed upload left %d tensors allocated", len(b.live))
	}
}

// A second family, declared here the way Llama's will be beside GPT-2's
// (RMSNorm gains only, no biases, grouped-query K and V of width KV, a gated
// MLP of width F, an untied output projection), to check that the table
// machinery needs nothing of GPT-2's.
type toyLayer struct{ AttnNorm, Q, K, V, O, FFNNorm, Gate, Up, Down gpu.Tensor }

type toyWeights struct {
	Embed        gpu.Tensor
	Layers       []toyLayer
	Norm, Output gpu.Tensor
}

func toyLayerField(f func(*toyLayer) *gpu.Tensor) func(*toyWeights, int) *gpu.Tensor {
	return func(w *toyWeights, l int) *gpu.Tensor { return f(&w.Layers[l]) }
}

var toyTable = &Table[toyWeights]{
	Family: "toy Llama",
	New:    func(layers int) *toyWeights { return &toyWeights{Layers: make([]toyLayer, layers)} },
	Pre: []TensorDef[toyWeights]{{Name: "model.embed_tokens.weight", GGUF: "token_embd.weight", Shape: []Axis{"V", "C"},
		Role: RoleEmbedding, Init: InitNormal, Field: func(w *toyWeights, _ int) *gpu.Tensor { return &w.Embed }}},
	Layer: []TensorDef[toyWeights]{
		{Name: "model.layers.{l}.input_layernorm.weight", GGUF: "blk.{l}.attn_norm.weight", Shape: []Axis{"C"}, Init: InitOne,
			Field: toyLayerField(func(l *toyLayer) *gpu.Tensor { return &l.AttnNorm })},
		{Name: "model.layers.{l}.self_attn.q_proj.weight", GGUF: "blk.{l}.attn_q.weight", Shape: []Axis{"C", "C"}, Role: RoleMatrix, Init: InitNormal,
			Field: toyLayerField(func(l *toyLayer) *gpu.Tensor { return &l.Q })},
		{Name: "model.layers.{l}.self_attn.k_proj.weight", GGUF: "blk.{l}.attn_k.weight", Shape: []Axis{"KV", "C"}, Role: RoleMatrix, Init: InitNormal,
			Field: toyLayerField(func(l *toyLayer) *gpu.Tensor { return &l.K })},
		{Name: "model.layers.{l}.self_attn.v_proj.weight", GGUF: "blk.{l}.attn_v.weight", Shape: []Axis{"KV", "C"}, Role: RoleMatrix, Init: InitNormal,
			Field: toyLayerField(func(l *toyLayer) *gpu.Tensor { return &l.V })},
		{Name: "model.layers.{l}.self_attn.o_proj.weight", GGUF: "blk.{l}.attn_output.weight", Shape: []Axis{"C", "C"}, Role: RoleMatrix, Init: InitNormal,
			Field: toyLayerField(func(l *toyLayer) *gpu.Tensor { return &l.O })},
		{Name: "model.layers.{l}.post_attention_layernorm.weight", GGUF: "blk.{l}.ffn_norm.weight", Shape: []Axis{"C"}, Init: InitOne,
			Field: toyLayerField(func(l *toyLayer) *gpu.Tensor { return &l.FFNNorm })},
		{Name: "model.layers.{l}.mlp.gate_proj.weight", GGUF: "blk.{l}.ffn_gate.weight", Shape: []Axis{"F", "C"}, Role: RoleMatrix, Init: InitNormal,
			Field: toyLayerField(func(l *toyLayer) *gpu.Tensor { return &l.Gate })},
		{Name: "model.layers.{l}.mlp.up_proj.weight", GGUF: "blk.{l}.ffn_up.weight", Shape: []Axis{"F", "C"}, Role: RoleMatrix, Init: InitNormal,
			Field: toyLayerField(func(l *toyLayer) *gpu.Tensor { return &l.Up })},
		{Name: "model.layers.{l}.mlp.down_proj.weight", GGUF: "blk.{l}.ffn_down.weight", Shape: []Axis{"C", "F"}, Role: RoleMatrix, Init: InitNormal,
			Field: toyLayerField(func(l *toyLayer) *gpu.Tensor { return &l.Down })},
	},
	Post: []TensorDef[toyWeights]{
		{Name: "model.norm.weight", GGUF: "output_norm.weight", Shape: []Axis{"C"}, Init: InitOne,
			Field: func(w *toyWeights, _ int) *gpu.Tensor { return &w.Norm }},
		{Name: "lm_head.weight", GGUF: "output.weight", Shape: []Axis{"V", "C"}, Role: RoleEmbedding, Init: InitNormal,
			Field: func(w *toyWeights, _ int) *gpu.Tensor { return &w.Output }},
	},
	Ignore: []string{"model.layers.{l}.self_attn.rotary_emb.inv_freq"},
}

func TestTableSecondFamily(t *testing.T) {
	s, layers := Sizes{"V": 11, "C": 8, "KV": 4, "F": 12}, 3
	if err := toyTable.validate(s); err != nil {
		t.Fatal(err)
	}
	host := toyTable.randomInit(s, layers, 1)
	if len(host) != 1+9*layers+2 || host[5].Name != "model.layers.0.self_attn.o_proj.weight" || !slices.Equal(host[3].Shape, []int{4, 8}) {
		t.Fatalf("expanded wrongly: %d tensors, [5] %s, [3] %v", len(host), host[5].Name, host[3].Shape)
	}
	if d, l, ok := toyTable.find("model.layers.2.mlp.down_proj.weight"); !ok || l != 2 || d.GGUF != "blk.{l}.ffn_down.weight" {
		t.Errorf("find: %v %d %v", d.GGUF, l, ok)
	}
	if !toyTable.ignored("model.layers.1.self_attn.rotary_emb.inv_freq") || toyTable.ignored("model.norm.weight") {
		t.Error("ignored is wrong")
	}
	b := &counting{Backend: ref.New(), live: map[gpu.Tensor]bool{}}
	w, err := toyTable.upload(b, s, layers, host, gpu.F16, UploadOptions{Release: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range host { // released: UploadReleasing's host copies are gone
		if h.Data != nil || h.Blocks != nil {
			t.Fatalf("upload with release kept %s's host data", h.Name)
		}
	}
	fields := tensorFields(reflect.ValueOf(w).Elem())
	if len(fields) != len(host) || len(b.live) != len(host) || w.Layers[2].Down.DType() != gpu.F16 || w.Norm.DType() != gpu.F32 {
		t.Errorf("%d fields, %d live, %d tensors", len(fields), len(b.live), len(host))
	}
	global, perLayer := toyTable.count(s, func(Role) bool { return true })
	if global+layers*perLayer != 2*11*8+8+layers*(8+8*8+2*4*8+8*8+8+3*12*8) {
		t.Errorf("count: %d + %d*%d", global, layers, perLayer)
	}
	keys := map[string]string{"V": "vocab_size", "C": "hidden_size", "KV": "kv width", "F": "intermediate_size", "L": "num_hidden_layers"}
	if err := CheckFits(toyTable.groups(s, layers, keys), FileCapacity{Tensors: len(host), DataBytes: 1 << 20, ElementBits: 16}); err != nil {
		t.Error(err)
	}
	toyTable.free(b, w, layers)
	if len(b.live) != 0 {
		t.Errorf("free left %d tensors", len(b.live))
	}
}

// TestUploadReleasing: UploadReleasing puts the same values on the device
// as Upload and leaves no host data behind; on an error (a tensor of the
// wrong shape) the tensors it had not reached keep theirs.
func TestUploadReleasing(t *testing.T) {
	cfg := Config{VocabSize: 50, NCtx: 8, NEmbd: 12, NHead: 2, NLayer: 2, LNEps: 1e-5}
	b := ref.New()
	keep := RandomInit(cfg, 4)
	host := RandomInit(cfg, 4)
	w1, err := Upload(b, cfg, keep, gpu.F32)
	if err != nil {
		t.Fatal(err)
	}
	w2, err := UploadReleasing(b, cfg, host, gpu.F32)
	if err != nil {
		t.Fatal(err)
	}
	t1, t2 := w1.Tensors(), w2.Tensors()
	for i := range t1 {
		a, _ := b.ReadF32(t1[i])
		c, _ := b.ReadF32(t2[i])
		if !slices.Equal(a, c) {
			t.Fatalf("tensor %d differs between Upload and UploadReleasing", i)
		}
		if host[i].Data != nil || keep[i].Data == nil {
			t.Fatalf("%s: UploadReleasing kept its host data, or Upload dropped it", host[i].Name)
		}
	}
	bad := RandomInit(cfg, 4)
	last := len(bad) - 1
	bad[last].Shape, bad[last].Data = []int{1}, []float32{0}
	if _, err := UploadReleasing(b, cfg, bad, gpu.F32); err == nil || !strings.Contains(err.Error(), bad[last].Name) {
		t.Fatalf("a tensor of the wrong shape: %v", err)
	}
	if bad[0].Data != nil || bad[last].Data == nil {
		t.Fatal("on an error, the uploaded tensors' host data goes and the rest stays")
	}
}
