package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/model/tensorfile"
)

// TestCLIQuantize quantizes the embedded default model to Q4_0: the file
// holds Q4_0 layer matrices and f16 embeddings, runs by itself (its own
// tokenizer) in generate and perplexity on WebGPU exactly as on the
// reference backend, and quantizing at load (--dtype q4_0) gives the same
// model as the file.
func TestCLIQuantize(t *testing.T) {
	const defDir = "../../defaults/model"
	if _, err := os.Stat(filepath.Join(defDir, "config.json")); err != nil {
		t.Skip("this build embeds no default model")
	}
	dir := t.TempDir()
	q := filepath.Join(dir, "q4.gguf")
	if out := mustRun(t, "", "quantize", "--type", "q4_0", "--out", q); !strings.Contains(out, "24 layer matrices in Q4_0") {
		t.Errorf("quantize: %q", out)
	}
	f, err := os.Open(q)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	gf, err := tensorfile.ReadGGUF(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	if ft, _ := gf.GetUint("general.file_type"); ft != 2 {
		t.Errorf("general.file_type %d, want 2 (LLAMA_FTYPE_MOSTLY_Q4_0)", ft)
	}
	if a, _ := gf.GetUint("general.alignment"); a != 32 {
		t.Errorf("general.alignment %d", a)
	}
	for _, ti := range gf.Tensors {
		want := tensorfile.F32
		switch {
		case strings.HasSuffix(ti.Name, "_qkv.weight"), strings.HasSuffix(ti.Name, "_output.weight"), strings.HasSuffix(ti.Name, "_up.weight"), strings.HasSuffix(ti.Name, "_down.weight"):
			want = tensorfile.Q4_0
		case strings.HasSuffix(ti.Name, "embd.weight"), ti.Name == "output.weight":
			want = tensorfile.F16
		}
		if ti.DType != want || (gf.DataOffset+int64(ti.Offset))%32 != 0 {
			t.Errorf("%s: %v at %d, want %v 32-byte aligned", ti.Name, ti.DType, ti.Offset, want)
		}
	}
	if _, host, err := model.LoadGGUF(q); err != nil || host[4].Blocks == nil {
		t.Fatalf("loading the quantized file: %v", err)
	}

	args := []string{"generate", "--temperature", "0", "--max-tokens", "6", "--model", q, "In the beginning"}
	gpuOut := mustRun(t, "", args...)
	if cpuOut := mustRun(t, "", append(args, "--cpu")...); cpuOut != gpuOut {
		t.Errorf("generate: webgpu %q, reference %q", gpuOut, cpuOut)
	}
	text := filepath.Join(dir, "t.txt")
	if err := os.WriteFile(text, []byte(strings.Repeat("And God said, Let there be light: and there was light. ", 12)), 0o644); err != nil {
		t.Fatal(err)
	}
	ppl := func(extra ...string) string {
		out := mustRun(t, "", append([]string{"perplexity", "--data", text}, extra...)...)
		return strings.Fields(out)[1] // "perplexity X ..."
	}
	fromFile := ppl("--model", q)
	if atLoad := ppl("--dtype", "q4_0"); atLoad != fromFile {
		t.Errorf("perplexity: the Q4_0 file %s, quantized at load %s", fromFile, atLoad)
	}
	if f16 := ppl(); f16 == fromFile {
		t.Errorf("perplexity of the Q4_0 model equals the f16 model's (%s): the quantized weights were not used", f16)
	}
	if _, stderr, err := run(t, "", "quantize", "--type", "q3_k", "--out", q); err == nil || !strings.Contains(stderr, `"q3_k"`) {
		t.Errorf("quantize --type q3_k: %v %q", err, stderr)
	}
}
