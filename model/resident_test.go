package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/conformance"
	"github.com/chameleon-llm/chameleon/gpu/ref"
)

// TestLoadHalf: LoadOptions.Half keeps an F16 file's matrices and
// embeddings as their halves (vectors as float32), whose values are
// exactly what the plain load widens them to.
func TestLoadHalf(t *testing.T) {
	cfg := testConfigs[0]
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := SaveGGUF(path, cfg, RandomInit(cfg, 3), "f16"); err != nil {
		t.Fatal(err)
	}
	_, wide, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	_, half, err := LoadWith(path, LoadOptions{Half: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range half {
		d, _, _ := gpt2Table.find(h.Name)
		if (d.Role == RoleVector) != (h.Half == nil) || (h.Half != nil) == (h.Data != nil) {
			t.Fatalf("%s (%v): Half %d values, Data %d", h.Name, d.Role, len(h.Half), len(h.Data))
		}
		got := Dequantize(half[i : i+1])[0].Data
		if !slices.EqualFunc(got, wide[i].Data, func(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }) {
			t.Fatalf("%s: halves widen to other values than the plain load's", h.Name)
		}
	}
}

// TestSettledUploadMatchesReference loads a model as `chameleon generate`
// does without an adapter (halves from an F16 GGUF file, UploadWith
// Release, Settle and SettleHead) on a fresh device with the texture
// matmuls: no weight data stays on the host, wte and each layer matrix are
// held only as their textures (ReadF32 says so), the device holds one copy
// of the weights, and prefill and single-row logits (Embed and the head
// from wte's texture) match the reference forward of the same file.
func TestSettledUploadMatchesReference(t *testing.T) {
	cfg := testConfigs[2] // matrices of whole texture blocks: no padding
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := SaveGGUF(path, cfg, RandomInit(cfg, 5), "f16"); err != nil {
		t.Fatal(err)
	}
	_, host, err := LoadWith(path, LoadOptions{Half: true})
	if err != nil {
		t.Fatal(err)
	}
	buffers, settled := oneCopy(cfg, host)
	d, err := gpu.Open(gpu.Options{}) // fresh: its memory is this model's alone
	if err != nil {
		t.Fatalf("no WebGPU device: %v", err)
	}
	defer d.Close()
	w := gpu.NewWebGPU(d)
	if !d.HasTexRead {
		t.Fatal("no read-only storage textures: the texture matmuls, which settled weights need, are off")
	}
	w.MatMulVariant = gpu.MatMulTex
	s0 := d.MemStats()
	wts, err := UploadWith(w, cfg, host, gpu.F16, UploadOptions{Release: true, Settle: true, SettleHead: true})
	if err != nil {
		t.Fatal(err)
	}
	s1 := d.MemStats()
	for _, h := range host {
		if h.Data != nil || h.Half != nil || h.Blocks != nil {
			t.Fatalf("%s: host data kept after the upload", h.Name)
		}
	}
	for i, x := range wts.Tensors() {
		_, err := w.ReadF32(x)
		want := Quantizable(host[i].Name) || host[i].Name == "wte.weight"
		if held := err != nil && strings.Contains(err.Error(), "held only as its texture copy"); held != want {
			t.Errorf("%s: ReadF32 error %v", host[i].Name, err)
		}
	}
	bufs, texs := s1.BufferBytes-s0.BufferBytes, s1.TextureBytes-s0.TextureBytes
	// Buffers come in size classes (at most 25% over, 256 bytes at least).
	if texs != settled || bufs < buffers || bufs > buffers*5/4+256*uint64(len(host)) {
		t.Errorf("device holds %d buffer + %d texture bytes; one copy is %d of buffers (vectors, wpe) and %d of textures (wte, layer matrices)",
			bufs, texs, buffers, settled)
	}
	_, wide, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	rb := ref.New()
	rw, err := Upload(rb, cfg, wide, gpu.F16)
	if err != nil {
		t.Fatal(err)
	}
	got, want := &Model{Cfg: cfg, W: wts, B: w}, &Model{Cfg: cfg, W: rw, B: rb}
	rng := rand.New(rand.NewPCG(conformance.Seed(), 3))
	for _, lens := range [][]int{{1}, {cfg.NCtx / 2, 5}} {
		toks := randomTokens(rng, lens, cfg.VocabSize)
		g, r := forwardAll(t, got, lens, toks), forwardAll(t, want, lens, toks)
		tq := slices.Max(lens)
		for b, n := range lens {
			if err := conformance.AllClose(rowsOf(g, b, n, tq, cfg.VocabSize), rowsOf(r, b, n, tq, cfg.VocabSize), 2e-4, 2e-3); err != nil {
				t.Errorf("%s, sequence %d: %v", fmt.Sprint(lens), b, err)
			}
		}
	}
	wts.Free(w)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
}

// oneCopy is the device bytes of one copy of host's weights (f16 where
// they are halves, rows of even length): those kept as buffers (vectors,
// wpe) and those settled into textures (wte, in whole blocks of 32 rows,
// and the layer matrices).
func oneCopy(cfg Config, host []HostTensor) (buffers, textures uint64) {
	for _, h := range host {
		n := uint64(4 * gpu.Numel(h.Shape))
		if h.Half != nil {
			n /= 2
		}
		switch {
		case h.Name == "wte.weight":
			textures += n / uint64(cfg.VocabSize) * uint64((cfg.VocabSize+31)/32*32)
		case Quantizable(h.Name):
			textures += n
		default:
			buffers += n
		}
	}
	return buffers, textures
}
