package adapt

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/gpu/ref"
	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/model/tensorfile"
)

var tinyCfg = model.Config{VocabSize: 11, NCtx: 8, NEmbd: 6, NHead: 2, NLayer: 1, LNEps: 1e-5}

// tinyBase is the identity of a random tiny GPT-2 drawn from seed.
func tinyBase(t *testing.T, cfg model.Config, seed uint64) (Base, []model.HostTensor) {
	t.Helper()
	host := model.RandomInit(cfg, seed)
	for i := range host {
		if host[i].Name == "ln_f.bias" { // RandomInit zeroes biases: make them count
			for j := range host[i].Data {
				host[i].Data[j] = float32(seed%7) * 0.01 * float32(j+1)
			}
		}
	}
	b, err := BaseOf(cfg, host)
	if err != nil {
		t.Fatal(err)
	}
	return b, host
}

// testAdapters are one adapter of each kind for base, with random values.
func testAdapters(base Base, rng *rand.Rand) []*Adapter {
	c, v := base.Config.NEmbd, base.Config.VocabSize
	fill := func(ts []model.HostTensor) []model.HostTensor {
		for i := range ts {
			ts[i].Data = make([]float32, gpu.Numel(ts[i].Shape))
			for j := range ts[i].Data {
				ts[i].Data[j] = float32(rng.NormFloat64())
			}
		}
		return ts
	}
	hm := Meta{Kind: KindHyper, Rank: 3, Alpha: 0.5, Hidden: []int{5, 4}, Dropout: 0.5, Base: base}
	return []*Adapter{
		{Meta: Meta{Kind: KindLoRA, Rank: 2, Alpha: 2, Experts: 1, Base: base}, Tensors: fill(StaticSpec(1, 2, c, v))},
		{Meta: Meta{Kind: KindExperts, Rank: 4, Alpha: 1, Experts: 3, Base: base}, Tensors: fill(StaticSpec(3, 4, c, v))},
		{Meta: hm, Tensors: fill(HyperSpec(hm.Hyper()))},
	}
}

func TestAdapterFileRoundTrip(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	base, _ := tinyBase(t, tinyCfg, 1)
	dir := t.TempDir()
	for _, a := range testAdapters(base, rng) {
		path := filepath.Join(dir, string(a.Meta.Kind)+".safetensors")
		if err := Save(path, a); err != nil {
			t.Fatal(err)
		}
		b, err := Load(path, base)
		if err != nil {
			t.Fatalf("%s: %v", a.Meta.Kind, err)
		}
		ja, _ := json.Marshal(a.Meta)
		jb, _ := json.Marshal(b.Meta)
		if !bytes.Equal(ja, jb) {
			t.Errorf("%s: metadata %s, want %s", a.Meta.Kind, jb, ja)
		}
		for i := range a.Tensors {
			x, y := a.Tensors[i], b.Tensors[i]
			if x.Name != y.Name || !slices.Equal(x.Shape, y.Shape) || len(x.Data) != len(y.Data) {
				t.Fatalf("%s: tensor %q %v read back as %q %v", a.Meta.Kind, x.Name, x.Shape, y.Name, y.Shape)
			}
			for j := range x.Data {
				if math.Float32bits(x.Data[j]) != math.Float32bits(y.Data[j]) {
					t.Fatalf("%s: tensor %q element %d: %g read back as %g", a.Meta.Kind, x.Name, j, x.Data[j], y.Data[j])
				}
			}
		}
		// The loaded adapter uploads as its kind.
		be := ref.New()
		if a.Meta.Kind == KindHyper {
			n, err := b.UploadHyper(be)
			if err != nil {
				t.Fatal(err)
			}
			if len(n.Layers) != 3 {
				t.Errorf("hyper-network has %d layers, want 3", len(n.Layers))
			}
			if _, err := b.UploadStatic(be); err == nil {
				t.Error("a hyper adapter uploaded as static factors")
			}
		} else {
			s, err := b.UploadStatic(be)
			if err != nil {
				t.Fatal(err)
			}
			if f := s.Factors(); f.K != a.Meta.Experts || f.R != a.Meta.Rank {
				t.Errorf("%s: factors K=%d R=%d", a.Meta.Kind, f.K, f.R)
			}
		}
	}
}

func TestAdapterRefusesOtherBase(t *testing.T) {
	base, host := tinyBase(t, tinyCfg, 1)
	path := filepath.Join(t.TempDir(), "lora.safetensors")
	if err := Save(path, testAdapters(base, rand.New(rand.NewPCG(1, 2)))[0]); err != nil {
		t.Fatal(err)
	}
	other, _ := tinyBase(t, tinyCfg, 2)
	wider := tinyCfg
	wider.NEmbd, wider.NHead = 8, 2
	widerBase, _ := tinyBase(t, wider, 1)
	bigVocab := tinyCfg
	bigVocab.VocabSize = 12
	bigVocabBase, _ := tinyBase(t, bigVocab, 1)
	// Same wte, different final layernorm.
	lnf := make([]model.HostTensor, len(host))
	copy(lnf, host)
	for i := range lnf {
		if lnf[i].Name == "ln_f.weight" {
			d := append([]float32(nil), lnf[i].Data...)
			d[0] += 0.5
			lnf[i].Data = d
		}
	}
	lnfBase, err := BaseOf(tinyCfg, lnf)
	if err != nil {
		t.Fatal(err)
	}
	for want, b := range map[string]Base{"wte": other, "n_embd": widerBase, "vocab_size": bigVocabBase, "ln_f": lnfBase} {
		_, err := Load(path, b)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("loading under a model differing in %s: error %v, want a refusal naming %s", want, err, want)
		}
	}
	// An f16 conversion of the same model keeps its identity.
	half := make([]model.HostTensor, len(host))
	for i, h := range host {
		d := make([]float32, len(h.Data))
		for j, v := range h.Data {
			d[j] = gpu.RoundF16(v)
		}
		half[i] = model.HostTensor{Name: h.Name, Shape: h.Shape, Data: d}
	}
	hb, err := BaseOf(tinyCfg, half)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, hb); err != nil {
		t.Errorf("the f16 conversion of the base model: %v", err)
	}
}

// TestBaseOfModel checks that the identity read back from a model on each
// backend (f32 and f16 weights) equals the host tensors'.
func TestBaseOfModel(t *testing.T) {
	base, host := tinyBase(t, tinyCfg, 3)
	for _, be := range []gpu.Backend{ref.New(), gputest.Backend(t)} {
		for _, dt := range []gpu.DType{gpu.F32, gpu.F16} {
			w, err := model.Upload(be, tinyCfg, host, dt)
			if err != nil {
				t.Fatal(err)
			}
			got, err := BaseOfModel(&model.Model{Cfg: tinyCfg, W: w, B: be})
			if err != nil {
				t.Fatal(err)
			}
			if err := base.Match(got); err != nil {
				t.Errorf("%s %v: %v", be.Name(), dt, err)
			}
		}
	}
}

// (Over 80 lines: a table of damaged adapter files, one entry per kind of
// damage.)
func TestAdapterCorruptFiles(t *testing.T) {
	base, _ := tinyBase(t, tinyCfg, 1)
	a := testAdapters(base, rand.New(rand.NewPCG(3, 4)))[1] // experts: A (3, 4, 6), B (3, 11, 4)
	var good bytes.Buffer
	if err := a.Write(&good); err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(a.Meta)
	write := func(meta map[string]string, edit func(ts []tensorfile.Tensor) []tensorfile.Tensor) []byte {
		ts := make([]tensorfile.Tensor, len(a.Tensors))
		for i, h := range a.Tensors {
			ts[i] = gpu.Must(tensorfile.FromFloat32(h.Name, tensorfile.F32, h.Shape, h.Data))
		}
		if edit != nil {
			ts = edit(ts)
		}
		var b bytes.Buffer
		if err := tensorfile.WriteSafetensors(&b, ts, meta); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	okMeta := map[string]string{formatKey: formatValue, metaKey: string(js)}
	withMeta := func(edit func(m *Meta)) map[string]string {
		m := a.Meta
		edit(&m)
		j, _ := json.Marshal(m)
		return map[string]string{formatKey: formatValue, metaKey: string(j)}
	}
	nan := func(ts []tensorfile.Tensor) []tensorfile.Tensor {
		d := make([]float32, 3*11*4)
		d[17] = float32(math.NaN())
		ts[1] = gpu.Must(tensorfile.FromFloat32("B", tensorfile.F32, []int{3, 11, 4}, d))
		return ts
	}
	cases := map[string]struct {
		data []byte
		want string
	}{
		"truncated":        {good.Bytes()[:good.Len()-7], "safetensors"},
		"not safetensors":  {[]byte("hello, this is not a tensor file"), "safetensors"},
		"no metadata":      {write(nil, nil), "not a Chameleon adapter"},
		"bad json":         {write(map[string]string{formatKey: formatValue, metaKey: "{rank: 4"}, nil), "metadata"},
		"unknown field":    {write(map[string]string{formatKey: formatValue, metaKey: `{"kind":"experts","colour":1}`}, nil), "colour"},
		"unknown kind":     {write(withMeta(func(m *Meta) { m.Kind = "prefix" }), nil), "unknown adapter kind"},
		"zero rank":        {write(withMeta(func(m *Meta) { m.Rank = 0 }), nil), "rank 0"},
		"rank mismatch":    {write(withMeta(func(m *Meta) { m.Rank = 2 }), nil), "shape"},
		"experts mismatch": {write(withMeta(func(m *Meta) { m.Experts = 2 }), nil), "shape"},
		"bad fingerprint":  {write(withMeta(func(m *Meta) { m.Base.Wte = "abc" }), nil), "fingerprint"},
		"stride of one":    {write(withMeta(func(m *Meta) { m.SelfCheck, m.CheckStride = true, 1 }), nil), "stride 1"},
		"negative margin":  {write(withMeta(func(m *Meta) { m.SelfCheck, m.CheckStride, m.CheckMargin = true, 4, -0.1 }), nil), "margin -0.1"},
		"stages unchecked": {write(withMeta(func(m *Meta) { m.CheckStride, m.CheckMargin = 4, 0.2 }), nil), "without the self-check"},
		"NaN":              {write(okMeta, nan), "NaN"},
		"missing tensor":   {write(okMeta, func(ts []tensorfile.Tensor) []tensorfile.Tensor { return ts[:1] }), "tensors"},
		"extra tensor": {write(okMeta, func(ts []tensorfile.Tensor) []tensorfile.Tensor {
			return append(ts, gpu.Must(tensorfile.FromFloat32("C", tensorfile.F32, []int{1}, []float32{1})))
		}), "tensors"},
		"renamed tensor": {write(okMeta, func(ts []tensorfile.Tensor) []tensorfile.Tensor {
			ts[1].Name = "b"
			return ts
		}), `"B" missing`},
	}
	dir := t.TempDir()
	for name, c := range cases {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		if err := os.WriteFile(path, c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path, base)
		t.Logf("%s: %v", name, err)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", name, err, c.want)
		}
	}
	if _, err := Load(filepath.Join(dir, "absent"), base); err == nil {
		t.Error("loading a missing file succeeded")
	}
	// Save refuses to write an invalid adapter.
	bad := *a
	bad.Tensors = append([]model.HostTensor(nil), a.Tensors...)
	bad.Tensors[0].Data = append([]float32(nil), a.Tensors[0].Data...)
	bad.Tensors[0].Data[3] = float32(math.Inf(1))
	if err := Save(filepath.Join(dir, "bad"), &bad); err == nil || !strings.Contains(err.Error(), "+Inf") {
		t.Errorf("saving an adapter holding +Inf: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "bad")); err == nil {
		t.Error("a refused Save left a file behind")
	}
}

// TestKindLabel: each adapter kind's name for people, a gated basis told
// apart from other hyper adapters.
func TestKindLabel(t *testing.T) {
	for _, c := range []struct {
		m    Meta
		want string
	}{
		{Meta{Kind: KindHyper, Rank: 4, StaticRank: 4, Basis: true}, "gated basis"},
		{Meta{Kind: KindHyper, Rank: 4}, "hyper-network"},
		{Meta{Kind: KindHyper, Rank: 4, StaticRank: 8}, "hyper-network"},
		{Meta{Kind: KindLoRA, Rank: 4}, "static LoRA"},
		{Meta{Kind: KindExperts, Rank: 4}, "experts"},
	} {
		if got := c.m.KindLabel(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.m, got, c.want)
		}
	}
}
