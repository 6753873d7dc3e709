package adapt

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"slices"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
)

// Base identifies the model an adapter was trained for: its architecture
// and fingerprints of the two tensors the adaptation touches, the output
// projection (wte, tied) and the final layernorm that feeds it. Adapter
// files carry it; Load refuses a file whose Base differs from the model's.
//
// The fingerprints are SHA-256 over the tensor's name, shape and values
// rounded to f16 (little-endian bits), so a model and its f16 conversion
// share an identity while any retrained or different model does not.
type Base struct {
	Config model.Config `json:"config"`
	Wte    string       `json:"wte_sha256"`  // wte.weight (V, C)
	LnF    string       `json:"ln_f_sha256"` // ln_f.weight (C) then ln_f.bias (C)
}

// fingerprint hashes named tensors as Base describes.
func fingerprint(ts ...model.HostTensor) string {
	h := sha256.New()
	for _, t := range ts {
		writeHashed(h, t)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func writeHashed(h hash.Hash, t model.HostTensor) {
	fmt.Fprintf(h, "%s%v;", t.Name, t.Shape)
	buf := make([]byte, 2*min(len(t.Data), 1<<16))
	for i := 0; i < len(t.Data); i += len(buf) / 2 {
		chunk := t.Data[i:min(len(t.Data), i+len(buf)/2)]
		for j, v := range chunk {
			binary.LittleEndian.PutUint16(buf[2*j:], gpu.F32ToF16(v))
		}
		h.Write(buf[:2*len(chunk)])
	}
}

// BaseOf is the identity of a model given as host tensors (as model.Load
// returns them).
func BaseOf(cfg model.Config, host []model.HostTensor) (Base, error) {
	if err := cfg.Validate(); err != nil {
		return Base{}, err
	}
	want := map[string][]int{"wte.weight": {cfg.VocabSize, cfg.NEmbd}, "ln_f.weight": {cfg.NEmbd}, "ln_f.bias": {cfg.NEmbd}}
	got := map[string]model.HostTensor{}
	for _, t := range host {
		if shape, ok := want[t.Name]; ok {
			if !slices.Equal(t.Shape, shape) || len(t.Data) != gpu.Numel(shape) {
				return Base{}, fmt.Errorf("adapt: base model tensor %s has shape %v with %d values, config wants %v", t.Name, t.Shape, len(t.Data), shape)
			}
			got[t.Name] = t
		}
	}
	for name := range want {
		if _, ok := got[name]; !ok {
			return Base{}, fmt.Errorf("adapt: base model has no tensor %s", name)
		}
	}
	return Base{Config: cfg, Wte: fingerprint(got["wte.weight"]), LnF: fingerprint(got["ln_f.weight"], got["ln_f.bias"])}, nil
}

// BaseOfModel is the identity of a model on a backend (its wte and ln_f are
// read back once).
func BaseOfModel(m *model.Model) (Base, error) {
	cfg := m.Cfg
	var host []model.HostTensor
	for _, t := range []struct {
		name string
		x    gpu.Tensor
	}{{"wte.weight", m.W.Wte}, {"ln_f.weight", m.W.LnFG}, {"ln_f.bias", m.W.LnFB}} {
		d, err := m.B.ReadF32(t.x)
		if err != nil {
			return Base{}, fmt.Errorf("adapt: reading %s for the model's identity: %w", t.name, err)
		}
		host = append(host, model.HostTensor{Name: t.name, Shape: t.x.Shape(), Data: d})
	}
	return BaseOf(cfg, host)
}

// Match returns nil if an adapter made for b can run on the model
// identified by m, else an error naming the first difference.
func (b Base) Match(m Base) error {
	a, c := b.Config, m.Config
	for _, f := range []struct {
		name string
		x, y any
	}{
		{"vocab_size", a.VocabSize, c.VocabSize}, {"n_embd", a.NEmbd, c.NEmbd}, {"n_layer", a.NLayer, c.NLayer},
		{"n_head", a.NHead, c.NHead}, {"n_positions", a.NCtx, c.NCtx}, {"layer_norm_epsilon", a.LNEps, c.LNEps},
	} {
		if f.x != f.y {
			return fmt.Errorf("adapter was trained for a model with %s %v, this model has %v", f.name, f.x, f.y)
		}
	}
	if b.Wte != m.Wte {
		return fmt.Errorf("adapter was trained for another model: its wte fingerprint is %.12s…, this model's is %.12s…", b.Wte, m.Wte)
	}
	if b.LnF != m.LnF {
		return fmt.Errorf("adapter was trained for another model: its ln_f fingerprint is %.12s…, this model's is %.12s…", b.LnF, m.LnF)
	}
	return nil
}
