package model

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/model/tensorfile"
	"github.com/chameleon-llm/chameleon/model/tokenizer"
)

// Corrupt checkpoints: the loaders must turn any file, however damaged or
// hostile, into either a model whose tensors match its config or a clear
// error, without panicking and with memory proportional to the file.

// loadBound is the most a load of a file of n bytes may allocate: decoding
// widens F16 to float32 (2x), Conv1D weights are transposed into a copy
// (2x), and the decode buffers add about one file; 8x leaves room for the
// tensor tables, plus a constant for buffers and maps.
func loadBound(n int) uint64 { return 8*uint64(n) + 4<<20 }

// fuzzCfg is small enough for fuzzing: a whole checkpoint is about 1 KB.
var fuzzCfg = Config{VocabSize: 8, NCtx: 4, NEmbd: 4, NHead: 2, NLayer: 1, LNEps: 1e-5}

// hfBytes returns config.json and model.safetensors of a checkpoint of cfg.
func hfBytes(tb testing.TB, cfg Config, dtype string) (conf, weights []byte) {
	tb.Helper()
	dir := tb.TempDir()
	if err := SaveHF(dir, cfg, ckptHost(cfg, 5), dtype); err != nil {
		tb.Fatal(err)
	}
	conf, err := os.ReadFile(filepath.Join(dir, hfConfigFile))
	if err != nil {
		tb.Fatal(err)
	}
	weights, err = os.ReadFile(filepath.Join(dir, hfWeightsFile))
	if err != nil {
		tb.Fatal(err)
	}
	return conf, weights
}

// ggufBytes returns a GGUF checkpoint of cfg.
func ggufBytes(tb testing.TB, cfg Config, dtype string, opt GGUFOptions) []byte {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "m.gguf")
	if err := SaveGGUFWith(path, cfg, ckptHost(cfg, 5), dtype, opt); err != nil {
		tb.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// checkLoaded fails unless a successful load returned TensorSpec(cfg) with data.
func checkLoaded(tb testing.TB, cfg Config, host []HostTensor) {
	tb.Helper()
	if err := cfg.Validate(); err != nil {
		tb.Fatalf("accepted an invalid config: %v", err)
	}
	spec := TensorSpec(cfg)
	if len(host) != len(spec) {
		tb.Fatalf("accepted %d tensors for a config of %d", len(host), len(spec))
	}
	for i, s := range spec {
		n := len(host[i].Data)
		if f, ok := host[i].Quant.Quant(); ok && host[i].Blocks != nil && n == 0 {
			// Quantized blocks: whole rows of blocks, as many as the shape needs.
			if s.Shape[len(s.Shape)-1]%f.BlockSize() == 0 && len(host[i].Blocks) == numel(s.Shape)/f.BlockSize()*f.BlockBytes() {
				n = numel(s.Shape)
			}
		}
		if host[i].Name != s.Name || !slices.Equal(host[i].Shape, s.Shape) || n != numel(s.Shape) {
			tb.Fatalf("accepted %s %v with %d values, want %s %v", host[i].Name, host[i].Shape, len(host[i].Data), s.Name, s.Shape)
		}
	}
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// corruptCase is one damaged checkpoint.
type corruptCase struct {
	name    string
	gguf    bool
	conf    []byte // HF only
	data    []byte // the safetensors or GGUF bytes
	mayLoad bool   // a flip inside tensor data can leave a valid file
	want    string // the error must contain this, when set
}

// rewriteSTHeader decodes a safetensors header, lets edit change it and
// writes it back in front of the same data; it writes any JSON, valid
// safetensors or not.
func rewriteSTHeader(tb testing.TB, b []byte, edit func(h map[string]any)) []byte {
	tb.Helper()
	n := binary.LittleEndian.Uint64(b)
	var h map[string]any
	d := json.NewDecoder(bytes.NewReader(b[8 : 8+n]))
	d.UseNumber()
	if err := d.Decode(&h); err != nil {
		tb.Fatal(err)
	}
	edit(h)
	js, err := json.Marshal(h)
	if err != nil {
		tb.Fatal(err)
	}
	for len(js)%8 != 0 {
		js = append(js, ' ')
	}
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(js)))
	return append(append(out, js...), b[8+n:]...)
}

// rewriteGGUFMeta rewrites a GGUF file with one metadata value replaced.
func rewriteGGUFMeta(tb testing.TB, b []byte, key string, v any) []byte {
	tb.Helper()
	g, err := tensorfile.ReadGGUF(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		tb.Fatal(err)
	}
	meta := slices.Clone(g.KV)
	found := false
	for i := range meta {
		if meta[i].Key == key {
			meta[i].Value, found = v, true
		}
	}
	if !found {
		meta = append(meta, tensorfile.KV{Key: key, Value: v})
	}
	var ts []tensorfile.Tensor
	for _, info := range g.Tensors {
		raw, err := g.Raw(info.Name)
		if err != nil {
			tb.Fatal(err)
		}
		ts = append(ts, tensorfile.Tensor{Name: info.Name, DType: info.DType, Shape: info.Shape, Data: raw})
	}
	var buf bytes.Buffer
	if err := tensorfile.WriteGGUF(&buf, meta, ts); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// corruptCases builds the damaged checkpoints: truncations and bit flips of
// both formats, absurd sizes in config.json and in GGUF metadata, and
// absurd counts, lengths, shapes and offsets in both headers.
//
// (Over 80 lines: a table of damaged checkpoints, one entry per kind of
// damage.)
func corruptCases(tb testing.TB) []corruptCase {
	var cs []corruptCase
	rng := rand.New(rand.NewPCG(15, 2))
	tok := tinyGGUFTokenizer(tb)
	cfg := ckptCfg
	cfg.VocabSize = tok.VocabSize()
	conf, st := hfBytes(tb, cfg, "f16")
	gg := ggufBytes(tb, cfg, "f16", GGUFOptions{Tokenizer: tok, TiedOutput: true})
	stHeader := int(8 + binary.LittleEndian.Uint64(st))
	ggHeader := bytes.Index(gg, []byte("output_norm.bias")) + 64 // the tensor infos end soon after the last name

	for _, f := range []struct {
		gguf      bool
		data      []byte
		headerEnd int
	}{{false, st, stHeader}, {true, gg, ggHeader}} {
		format := map[bool]string{false: "safetensors", true: "gguf"}[f.gguf]
		add := func(name string, data []byte, mayLoad bool) {
			cs = append(cs, corruptCase{name: format + " " + name, gguf: f.gguf, conf: conf, data: data, mayLoad: mayLoad})
		}
		// Truncations: inside the header densely, then through the data.
		for _, n := range []int{0, 1, 7, 8, 9, 16, 23, 24, 31, 40, 64, 100, 200} {
			add(fmt.Sprintf("truncated to %d bytes", n), f.data[:n], false)
		}
		for i := 1; i <= 12; i++ {
			n := f.headerEnd + (len(f.data)-f.headerEnd)*i/13
			add(fmt.Sprintf("truncated to %d bytes", n), f.data[:n], false)
		}
		add("one byte short of the last tensor's end", f.data[:dataEnd(tb, f.gguf, f.data)-1], false)
		// Bit flips: mostly in the header, where they change sizes.
		for i := range 40 {
			b := slices.Clone(f.data)
			at := rng.IntN(f.headerEnd)
			if i >= 30 {
				at = rng.IntN(len(b))
			}
			b[at] ^= 1 << rng.IntN(8)
			// A flip in tensor data, or in a name or string the loader
			// does not check, can leave a valid file.
			add(fmt.Sprintf("bit flip at byte %d", at), b, true)
		}
	}

	// Absurd sizes in config.json.
	for _, key := range []string{"n_layer", "n_embd", "vocab_size", "n_positions", "n_ctx", "n_head", "n_inner"} {
		for _, v := range []int64{2_000_000, 1 << 31, 1 << 40, 1 << 62, -1, 0} {
			var m map[string]any
			if err := json.Unmarshal(conf, &m); err != nil {
				tb.Fatal(err)
			}
			m[key] = v
			if key == "n_ctx" {
				m["n_positions"] = v
			}
			js, _ := json.Marshal(m)
			want := key
			if key == "n_ctx" {
				want = "n_positions"
			}
			if v <= 0 {
				want = ""
			}
			cs = append(cs, corruptCase{name: fmt.Sprintf("config.json %s = %d", key, v), conf: js, data: st, want: want})
		}
	}
	// Absurd sizes in GGUF metadata.
	for _, key := range []string{ggufKeyBlocks, ggufKeyEmbd, ggufKeyCtx, ggufKeyHeads, ggufKeyFF, ggufKeyVocab} {
		for _, v := range []any{uint32(2_000_000), uint64(1 << 31), uint64(1 << 40), uint64(1 << 62), uint32(math.MaxUint32), uint32(0)} {
			cs = append(cs, corruptCase{name: fmt.Sprintf("gguf %s = %v", key, v), gguf: true,
				data: rewriteGGUFMeta(tb, gg, key, v)})
		}
	}
	// Absurd counts and lengths in the GGUF header.
	for _, e := range []struct {
		name string
		at   int
		v    uint64
	}{
		{"tensor count", 8, 1 << 40}, {"tensor count", 8, math.MaxUint64}, {"metadata count", 16, 1 << 40},
		{"first key length", 24, 1 << 50}, {"first key length", 24, math.MaxUint64},
	} {
		b := slices.Clone(gg)
		binary.LittleEndian.PutUint64(b[e.at:], e.v)
		cs = append(cs, corruptCase{name: fmt.Sprintf("gguf %s = %d", e.name, e.v), gguf: true, data: b})
	}
	for _, name := range []string{ggufKeyTokens, ggufKeyMerges, "tokenizer.ggml.token_type"} {
		// The array's length follows its key, the value type and the element type.
		for _, v := range []uint64{1 << 32, 1 << 60} {
			b := slices.Clone(gg)
			at := bytes.Index(b, []byte(name)) + len(name) + 4 + 4
			binary.LittleEndian.PutUint64(b[at:], v)
			cs = append(cs, corruptCase{name: fmt.Sprintf("gguf %s length %d", name, v), gguf: true, data: b})
		}
	}
	for _, name := range []string{"token_embd.weight", "blk.1.ffn_up.weight", "output.weight"} {
		// A tensor info: name, n_dims (4 bytes), dims (8 each), type, offset.
		at := bytes.LastIndex(gg, []byte(name)) + len(name)
		for _, e := range []struct {
			what string
			off  int
			v    uint64
		}{{"n_dims", 0, 1 << 30}, {"dim 1", 4 + 8, 1 << 40}, {"dim 0", 4, math.MaxInt64}, {"offset", 4 + 16 + 4, 1 << 50}} {
			b := slices.Clone(gg)
			if e.what == "n_dims" {
				binary.LittleEndian.PutUint32(b[at:], uint32(e.v))
			} else {
				binary.LittleEndian.PutUint64(b[at+e.off:], e.v)
			}
			cs = append(cs, corruptCase{name: fmt.Sprintf("gguf %s %s = %d", name, e.what, e.v), gguf: true, data: b})
		}
	}
	// Absurd shapes and offsets in the safetensors header.
	for _, e := range []struct {
		name string
		edit func(h map[string]any)
	}{
		{"wte shape 2^40 rows", func(h map[string]any) { entry(h, "transformer.wte.weight")["shape"] = []any{1 << 40, cfg.NEmbd} }},
		{"wte shape 2^62 x 2^62", func(h map[string]any) { entry(h, "transformer.wte.weight")["shape"] = []any{1 << 62, 1 << 62} }},
		{"wte offsets past the end", func(h map[string]any) {
			entry(h, "transformer.wte.weight")["data_offsets"] = []any{0, int64(1) << 40}
		}},
		{"wte shape negative", func(h map[string]any) { entry(h, "transformer.wte.weight")["shape"] = []any{-1, cfg.NEmbd} }},
		{"many extra layers", func(h map[string]any) {
			for l := range 64 {
				h[fmt.Sprintf("transformer.h.%d.ln_9.weight", 1000+l)] = map[string]any{"dtype": "F16", "shape": []any{0}, "data_offsets": []any{0, 0}}
			}
		}},
	} {
		cs = append(cs, corruptCase{name: "safetensors " + e.name, conf: conf, data: rewriteSTHeader(tb, st, e.edit)})
	}
	for _, v := range []uint64{1 << 40, math.MaxUint64, uint64(len(st))} {
		b := slices.Clone(st)
		binary.LittleEndian.PutUint64(b, v)
		cs = append(cs, corruptCase{name: fmt.Sprintf("safetensors header length %d", v), conf: conf, data: b})
	}
	return cs
}

// dataEnd is where the last tensor's data ends (GGUF pads after it).
func dataEnd(tb testing.TB, gguf bool, b []byte) int {
	var infos []tensorfile.TensorInfo
	if gguf {
		g, err := tensorfile.ReadGGUF(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			tb.Fatal(err)
		}
		for _, t := range g.Tensors {
			infos = append(infos, t.TensorInfo)
		}
	} else {
		f, err := tensorfile.ReadSafetensors(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			tb.Fatal(err)
		}
		infos = f.Tensors
	}
	end := int64(0)
	for _, t := range infos {
		end = max(end, t.Offset+t.Size)
	}
	return int(end)
}

func entry(h map[string]any, name string) map[string]any { return h[name].(map[string]any) }

// loadCase loads one case, turning a panic into an error that says so.
func loadCase(c corruptCase) (cfg Config, host []HostTensor, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("PANIC: %v", r)
		}
	}()
	if c.gguf {
		cfg, host, err = LoadGGUFReader(bytes.NewReader(c.data), int64(len(c.data)))
		if err == nil {
			_, err = tokenizer.LoadGGUFReader(bytes.NewReader(c.data), int64(len(c.data)))
			if errors.Is(err, tokenizer.ErrNoTokenizer) {
				err = nil
			}
		}
		return cfg, host, err
	}
	return loadHF(c.conf, hfConfigFile, bytes.NewReader(c.data), int64(len(c.data)), hfWeightsFile, LoadOptions{})
}

// TestCorruptCheckpoints loads every corruptCases file and checks that none
// panics, each gives a clear error (or, for a flip inside tensor data, a
// model matching its config), and no load allocates more than loadBound of
// the file.
func TestCorruptCheckpoints(t *testing.T) {
	cases := corruptCases(t)
	if len(cases) < 150 {
		t.Fatalf("only %d corrupt files", len(cases))
	}
	var worst float64
	var worstName string
	var most uint64
	loaded := 0
	for _, c := range cases {
		size := len(c.data) + len(c.conf)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		cfg, host, err := loadCase(c)
		runtime.ReadMemStats(&after)
		alloc := after.TotalAlloc - before.TotalAlloc
		most = max(most, alloc)
		if r := float64(alloc) / float64(size); r > worst && size >= 8<<10 {
			worst, worstName = r, c.name
		}
		switch {
		case err != nil && strings.HasPrefix(err.Error(), "PANIC"):
			t.Errorf("%s: %v", c.name, err)
		case alloc > loadBound(size):
			t.Errorf("%s: allocated %d bytes for a %d-byte file (bound %d)", c.name, alloc, size, loadBound(size))
		case err == nil && !c.mayLoad:
			t.Errorf("%s: loaded without an error", c.name)
		case err == nil:
			checkLoaded(t, cfg, host)
			loaded++
		case !strings.HasPrefix(err.Error(), "model: ") || len(err.Error()) < 30:
			t.Errorf("%s: unclear error %q", c.name, err)
		case c.want != "" && !strings.Contains(err.Error(), c.want):
			t.Errorf("%s: error %q does not name %s", c.name, err, c.want)
		}
	}
	t.Logf("%d corrupt files, %d loaded (flips in tensor data or names), none panicked; most allocated by one load: %d bytes; "+
		"highest ratio to the file (files of 8 KB and up): %.1fx (%s)", len(cases), loaded, most, worst, worstName)
}

// TestSizesCheckedBeforeAllocation is issue 15's case: a config whose
// n_layer (or GGUF block_count) is far beyond what the file holds is refused
// with a SizeError naming the key, before the tensor list is built.
func TestSizesCheckedBeforeAllocation(t *testing.T) {
	conf, st := hfBytes(t, ckptCfg, "f32")
	gg := ggufBytes(t, ckptCfg, "f32", GGUFOptions{})
	var m map[string]any
	json.Unmarshal(conf, &m)
	m["n_layer"] = 2_000_000
	big, _ := json.Marshal(m)
	for _, c := range []struct {
		name, key string
		load      func() error
	}{
		{"config.json", "n_layer", func() error {
			_, _, err := loadHF(big, hfConfigFile, bytes.NewReader(st), int64(len(st)), hfWeightsFile, LoadOptions{})
			return err
		}},
		{"gguf", ggufKeyBlocks, func() error {
			b := rewriteGGUFMeta(t, gg, ggufKeyBlocks, uint64(1<<31))
			_, _, err := LoadGGUFReader(bytes.NewReader(b), int64(len(b)))
			return err
		}},
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err := c.load()
		runtime.ReadMemStats(&after)
		var se *SizeError
		if !errors.As(err, &se) || !slices.Contains(se.Keys, c.key) || se.Unit != "tensors" {
			t.Errorf("%s: got %v, want a SizeError on %s's tensor count", c.name, err, c.key)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
			t.Errorf("%s: refusing allocated %d bytes", c.name, alloc)
		}
		t.Logf("%s: %v", c.name, err)
	}
}
