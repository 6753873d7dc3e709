package model

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/conformance"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/gpu/quant"
	"github.com/chameleon-llm/chameleon/gpu/ref"
	"github.com/chameleon-llm/chameleon/model/tokenizer"
)

// quantCfg: rows of 256 and 1024 weights, whole blocks of every format.
var quantCfg = Config{VocabSize: 300, NCtx: 40, NEmbd: 256, NHead: 4, NLayer: 2, LNEps: 1e-5}

func relRMS(got, want []float32) float64 {
	var se, ss float64
	for i := range got {
		d := float64(got[i]) - float64(want[i])
		se += d * d
		ss += float64(want[i]) * float64(want[i])
	}
	return math.Sqrt(se / ss)
}

// TestQuantizedCheckpoint: a GPT-2 saved as Q8_0, Q4_0 and Q4_K GGUF loads
// back with its layer matrices as blocks (no float copy), runs on WebGPU
// as the reference forward does on the same blocks, and stays as close to
// the unquantized model's forward as its weights are to the originals.
//
// (Over 80 lines: one model saved in each format, loaded back and compared on
// both backends.)
func TestQuantizedCheckpoint(t *testing.T) {
	w := gputest.Backend(t)
	seed := conformance.Seed()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 11))
	host := RandomInit(quantCfg, seed)
	for i := range host {
		if len(host[i].Shape) == 1 {
			for j := range host[i].Data {
				host[i].Data[j] += float32(rng.NormFloat64() * 0.1)
			}
		}
	}
	lens := []int{17, 1, 6}
	toks := randomTokens(rng, lens, quantCfg.VocabSize)
	tq := 17
	plain, err := Upload(ref.New(), quantCfg, host, gpu.F32)
	if err != nil {
		t.Fatal(err)
	}
	f32Logits := forwardAll(t, &Model{Cfg: quantCfg, W: plain, B: ref.New()}, lens, toks)
	seq := randomTokens(rng, []int{39}, quantCfg.VocabSize)[0]
	f32PPL, err := (&Model{Cfg: quantCfg, W: plain, B: ref.New()}).Perplexity(seq, 40, 40, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range quant.Formats {
		t.Run(f.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "q.gguf")
			if err := SaveGGUFWith(path, quantCfg, host, strings.ToLower(f.String()), GGUFOptions{}); err != nil {
				t.Fatal(err)
			}
			cfg, qhost, err := LoadGGUF(path)
			if err != nil {
				t.Fatal(err)
			}
			checkCfgEqual(t, cfg, quantCfg)
			// The layer matrices' relative RMS quantization error, the
			// largest of them (e), bounds the forward's error to first
			// order: each of the 4L matrices perturbs the output by at
			// most its own relative error.
			orig := map[string][]float32{}
			for _, h := range host {
				orig[h.Name] = h.Data
			}
			e := 0.0
			for _, h := range qhost {
				if Quantizable(h.Name) != (h.Blocks != nil) {
					t.Fatalf("%s: blocks %v (quantizable %v)", h.Name, h.Blocks != nil, Quantizable(h.Name))
				}
				if h.Blocks == nil {
					continue
				}
				if h.Data != nil || h.Quant != gpu.QuantDType(f) {
					t.Fatalf("%s: %v blocks and %d floats kept on the host", h.Name, h.Quant, len(h.Data))
				}
				e = max(e, relRMS(Dequantize([]HostTensor{h})[0].Data, orig[h.Name]))
			}
			t.Logf("%v: weights' relative RMS error %.4f, %d bytes on the host (f32: %d)", f, e, QuantizedBytes(qhost), QuantizedBytes(host))
			want := forwardAll(t, uploaded(t, ref.New(), qhost), lens, toks)
			got := forwardAll(t, uploaded(t, w, qhost), lens, toks)
			var gotRows, wantRows, f32Rows []float32
			for b, n := range lens {
				gotRows = append(gotRows, rowsOf(got, b, n, tq, quantCfg.VocabSize)...)
				wantRows = append(wantRows, rowsOf(want, b, n, tq, quantCfg.VocabSize)...)
				f32Rows = append(f32Rows, rowsOf(f32Logits, b, n, tq, quantCfg.VocabSize)...)
			}
			if err := conformance.AllClose(gotRows, wantRows, 2e-4, 2e-3); err != nil {
				t.Errorf("webgpu vs reference on the same blocks: %v", err)
			}
			d := relRMS(wantRows, f32Rows)
			t.Logf("%v: logits' relative RMS difference from the f32 model %.5f (bound %.4f)", f, d, 4*float64(quantCfg.NLayer)*e)
			if d == 0 || d > 4*float64(quantCfg.NLayer)*e {
				t.Errorf("logits differ from the f32 model's by %.5f, want within (0, %.4f]", d, 4*float64(quantCfg.NLayer)*e)
			}
			qm := uploaded(t, w, qhost)
			ppl, err := qm.Perplexity(seq, 40, 40, 1, nil)
			if err != nil {
				t.Fatal(err)
			}
			r := ppl.Perplexity/f32PPL.Perplexity - 1
			t.Logf("%v: perplexity %.4f, f32 %.4f (%+.3f%%)", f, ppl.Perplexity, f32PPL.Perplexity, 100*r)
			if limit := map[quant.Format]float64{quant.Q8_0: 0.005, quant.Q4_0: 0.05, quant.Q4_K: 0.05}[f]; math.Abs(r) > limit {
				t.Errorf("perplexity %.4f vs f32 %.4f: off by more than %.1f%%", ppl.Perplexity, f32PPL.Perplexity, 100*limit)
			}
			tok, err := tokenizer.NewGPT2()
			if err != nil {
				t.Fatal(err)
			}
			opt := GenerateOptions{MaxTokens: 6, Seed: seed}
			g := generateAll(t, qm, tok, toks, opt)
			gr := generateAll(t, uploaded(t, ref.New(), qhost), tok, toks, opt)
			for i := range g {
				if !slices.Equal(g[i].Tokens, gr[i].Tokens) {
					t.Errorf("greedy sequence %d: webgpu %v, reference %v", i, g[i].Tokens, gr[i].Tokens)
				}
			}
		})
	}
}

func uploaded(t *testing.T, b gpu.Backend, host []HostTensor) *Model {
	t.Helper()
	w, err := Upload(b, quantCfg, host, gpu.F16)
	if err != nil {
		t.Fatal(err)
	}
	if got := w.Layers[0].FcW.DType(); !got.Quantized() {
		t.Fatalf("fc weight uploaded as %v", got)
	}
	return &Model{Cfg: quantCfg, W: w, B: b}
}

// Quantizing a model whose rows are not whole blocks, or to an unknown
// type, fails with errors that name the tensor or the type; a model
// uploaded with a quantized matDType keeps its embeddings F16.
func TestQuantizeRejects(t *testing.T) {
	cfg := testConfigs[2] // width 64: whole Q8_0/Q4_0 blocks, not Q4_K's 256
	host := RandomInit(cfg, 1)
	dir := t.TempDir()
	err := SaveGGUFWith(filepath.Join(dir, "k.gguf"), cfg, host, "q4_k", GGUFOptions{})
	if err == nil || !strings.Contains(err.Error(), "blk.0.attn_qkv.weight") || !strings.Contains(err.Error(), "256") {
		t.Errorf("Q4_K of width 64: %v", err)
	}
	if err := SaveGGUFWith(filepath.Join(dir, "x.gguf"), cfg, host, "q5_k", GGUFOptions{}); err == nil || !strings.Contains(err.Error(), `"q5_k"`) {
		t.Errorf("unknown type: %v", err)
	}
	if _, err := Upload(ref.New(), cfg, host, gpu.Q4_K); err == nil || !strings.Contains(err.Error(), "h.0.attn.c_attn.weight") {
		t.Errorf("Upload Q4_K of width 64: %v", err)
	}
	w, err := Upload(ref.New(), cfg, host, gpu.Q8_0)
	if err != nil {
		t.Fatal(err)
	}
	if w.Wte.DType() != gpu.F16 || w.Layers[0].AttnW.DType() != gpu.Q8_0 || w.Layers[0].AttnB.DType() != gpu.F32 {
		t.Errorf("dtypes: wte %v, attn %v, bias %v", w.Wte.DType(), w.Layers[0].AttnW.DType(), w.Layers[0].AttnB.DType())
	}
}

// TestSaveGGUFFromHalves: saving from halves (an f16 checkpoint loaded
// with LoadOptions.Half, as chameleon quantize reads it) or from blocks
// writes the very bytes that saving their widened values does, though no
// tensor is widened before the writer reaches it; a non-finite half is
// refused by name.
func TestSaveGGUFFromHalves(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.gguf")
	if err := SaveGGUF(src, quantCfg, RandomInit(quantCfg, 3), "f16"); err != nil {
		t.Fatal(err)
	}
	_, halves, err := LoadWith(src, LoadOptions{Half: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(halves, func(h HostTensor) bool { return h.Half != nil }) {
		t.Fatal("the f16 checkpoint loaded without halves")
	}
	q8 := filepath.Join(dir, "q8.gguf")
	if err := SaveGGUF(q8, quantCfg, halves, "q8_0"); err != nil {
		t.Fatal(err)
	}
	_, blocks, err := LoadGGUF(q8)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		host  []HostTensor
		dtype string
	}{{"halves", halves, "q4_0"}, {"halves", halves, "f32"}, {"blocks", blocks, "q4_k"}, {"blocks", blocks, "f16"}} {
		a, b := filepath.Join(dir, "a.gguf"), filepath.Join(dir, "b.gguf")
		if err := SaveGGUF(a, quantCfg, c.host, c.dtype); err != nil {
			t.Fatal(err)
		}
		if err := SaveGGUF(b, quantCfg, Dequantize(c.host), c.dtype); err != nil {
			t.Fatal(err)
		}
		if x, y := readFile(t, a), readFile(t, b); !slices.Equal(x, y) {
			t.Fatalf("%s to %s: %d bytes against %d from the widened values, or other bytes", c.name, c.dtype, len(x), len(y))
		}
	}
	bad := slices.Clone(halves)
	for i, h := range bad {
		if h.Half != nil {
			bad[i].Half = slices.Clone(h.Half)
			bad[i].Half[5] = 0x7e00 // NaN
			if err := SaveGGUF(filepath.Join(dir, "bad.gguf"), quantCfg, bad, "q8_0"); err == nil || !strings.Contains(err.Error(), h.Name+" element 5") {
				t.Fatalf("a NaN half: %v", err)
			}
			break
		}
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
