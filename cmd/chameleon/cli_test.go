package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/chameleon-llm/chameleon/adaptrun"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The CLI tests build the real binary once and run it as a user would.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "chameleon-cli")
	if err != nil {
		panic(err)
	}
	binPath = filepath.Join(dir, "chameleon")
	if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// run executes the binary; it returns stdout, stderr and the error.
func run(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func mustRun(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, stderr, err := run(t, stdin, args...)
	if err != nil {
		t.Fatalf("chameleon %v: %v\n%s", args, err, stderr)
	}
	return out
}

func tinyModel(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tiny")
	mustRun(t, "", "init", "--config", "tiny", "--seed", "3", "--out", dir)
	return dir
}

func TestCLIDevices(t *testing.T) {
	out := mustRun(t, "", "devices")
	if !strings.Contains(out, "[0]") || !strings.Contains(out, "storage binding") {
		t.Fatalf("devices output:\n%s", out)
	}
}

func TestCLITokenize(t *testing.T) {
	if out := mustRun(t, "", "tokenize", "--gpt2", "Hello world"); out != "15496 995\n" {
		t.Errorf("tokenize: %q", out)
	}
	out := mustRun(t, "Hello world\nfoo bar\n", "tokenize", "--gpt2")
	if out != "15496 995\n21943 2318\n" {
		t.Errorf("tokenize from stdin: %q", out)
	}
	if out := mustRun(t, "15496 995\n", "tokenize", "--gpt2", "--decode"); out != "Hello world\n" {
		t.Errorf("decode: %q", out)
	}
	if _, stderr, err := run(t, "99999999\n", "tokenize", "--decode"); err == nil || !strings.Contains(stderr, "99999999") {
		t.Errorf("out-of-range id: err %v, stderr %q", err, stderr)
	}
	// By default the embedded default model's tokenizer, the one generate
	// and serve use: its ids decode back, and differ from GPT-2's.
	def, _, err := modelTokenizer("", false)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprint(def.Encode("Hello world"))
	if out := mustRun(t, "", "tokenize", "Hello world"); "["+strings.TrimSpace(out)+"]" != want || def.VocabSize() == 50257 {
		t.Errorf("default tokenizer: %q, want %s", out, want)
	}
	if out := mustRun(t, strings.Trim(want, "[]")+"\n", "tokenize", "--decode"); out != "Hello world\n" {
		t.Errorf("default decode: %q", out)
	}
	// A --model that is not a model fails, naming it, instead of falling back.
	for _, bad := range []string{filepath.Join(t.TempDir(), "nonexistent"), t.TempDir(), "cli_test.go"} {
		if _, stderr, err := run(t, "", "tokenize", "--model", bad, "x"); err == nil || !strings.Contains(stderr, bad) {
			t.Errorf("tokenize --model %s: err %v, stderr %q", bad, err, stderr)
		}
	}
}

func TestCLIModelCommands(t *testing.T) {
	dir := tinyModel(t)
	if out := mustRun(t, "", "inspect", dir); !strings.Contains(out, "6862464 parameters") {
		t.Errorf("inspect:\n%s", out)
	}
	gguf := filepath.Join(t.TempDir(), "tiny.gguf")
	mustRun(t, "", "convert", "--model", dir, "--out", gguf)
	back := filepath.Join(t.TempDir(), "back")
	mustRun(t, "", "convert", "--model", gguf, "--out", back)
	a, _ := os.ReadFile(filepath.Join(dir, "model.safetensors"))
	b, _ := os.ReadFile(filepath.Join(back, "model.safetensors"))
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Errorf("safetensors -> gguf -> safetensors changed the file (%d vs %d bytes)", len(a), len(b))
	}

	// Greedy generation: the WebGPU and reference backends agree, f32 weights.
	args := []string{"generate", "--model", dir, "--dtype", "f32", "--temperature", "0", "--max-tokens", "6", "The quick brown fox"}
	gpuOut := mustRun(t, "", args...)
	cpuOut := mustRun(t, "", append(args, "--cpu")...)
	if gpuOut != cpuOut || !strings.HasPrefix(gpuOut, "The quick brown fox") || len(gpuOut) <= len("The quick brown fox\n") {
		t.Errorf("greedy generation differs or is empty:\nwebgpu %q\nref    %q", gpuOut, cpuOut)
	}
	// Several prompts from stdin, batched.
	out := mustRun(t, "first prompt\n\nsecond one\n", "generate", "--model", dir, "--max-tokens", "3", "--seed", "7")
	if !strings.Contains(out, "[1] first prompt") || !strings.Contains(out, "[2] second one") {
		t.Errorf("batched generation:\n%s", out)
	}
	// A prompt over the context fails unless truncated.
	long := strings.Repeat("word ", 300)
	if _, stderr, err := run(t, "", "generate", "--model", dir, "--max-tokens", "2", long); err == nil || !strings.Contains(stderr, "--truncate") {
		t.Errorf("over-long prompt: err %v, stderr %q", err, stderr)
	}
	mustRun(t, "", "generate", "--model", dir, "--max-tokens", "2", "--truncate", long)
	if _, stderr, err := run(t, "", "generate", "--model", dir); err == nil || !strings.Contains(stderr, "no prompts") {
		t.Errorf("no prompts: err %v, stderr %q", err, stderr)
	}
	// Test-time tuning: a bad rate, and an adapter that is not a gated basis.
	if _, stderr, err := run(t, "", "generate", "--max-tokens", "2", "--adapter", "default", "--tune-steps", "2", "--tune-lr", "-1", "hi"); err == nil || !strings.Contains(stderr, "--tune-lr") {
		t.Errorf("tuning at rate -1: err %v, stderr %q", err, stderr)
	}
	if _, stderr, err := run(t, "", "generate", "--model", dir, "--max-tokens", "2", "--adapter", randomHyperFile(t, dir, 7, 0), "--tune-steps", "2", "hi"); err == nil || !strings.Contains(stderr, "gated basis") {
		t.Errorf("tuning a hyper-network that is not a gated basis: err %v, stderr %q", err, stderr)
	}
	// The shipped hyper-network is a gated basis: its gates tune.
	mustRun(t, "", "generate", "--max-tokens", "2", "--adapter", "default", "--tune-steps", "2", "--tune-lr", "0.1", "def add(a, b):\n    return", "Ich weiß nicht, ob")

	// Perplexity: JSON fields, and the two backends agree.
	data := filepath.Join(t.TempDir(), "data.txt")
	os.WriteFile(data, []byte(strings.Repeat("The cat sat on the mat. It was a sunny day in the park.\n", 12)), 0o644)
	var g, c struct {
		Perplexity float64 `json:"perplexity"`
		Tokens     int     `json:"tokens"`
		NLL        float64 `json:"nll"`
	}
	pargs := []string{"perplexity", "--model", dir, "--dtype", "f32", "--data", data, "--context", "64", "--stride", "32", "--json"}
	if err := json.Unmarshal([]byte(mustRun(t, "", pargs...)), &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(mustRun(t, "", append(pargs, "--cpu")...)), &c); err != nil {
		t.Fatal(err)
	}
	if g.Tokens == 0 || g.Tokens != c.Tokens || math.Abs(g.NLL-c.NLL) > 1e-3*c.NLL || math.Abs(g.Perplexity-math.Exp(g.NLL/float64(g.Tokens))) > 1e-6*g.Perplexity {
		t.Errorf("perplexity webgpu %+v, reference %+v", g, c)
	}
}

func TestCLIBadModelFiles(t *testing.T) {
	dir := tinyModel(t)
	st := filepath.Join(dir, "model.safetensors")
	raw, _ := os.ReadFile(st)
	// Truncated weights: a clear error naming the file, and a failing exit.
	os.WriteFile(st, raw[:len(raw)/2], 0o644)
	if _, stderr, err := run(t, "", "generate", "--model", dir, "hi"); err == nil || !strings.Contains(stderr, "model.safetensors") {
		t.Errorf("truncated file: err %v, stderr %q", err, stderr)
	}
	// A header length past the end of the file.
	bad := append([]byte{0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0}, raw[8:100]...)
	os.WriteFile(st, bad, 0o644)
	if _, stderr, err := run(t, "", "inspect", dir); err == nil || !strings.Contains(stderr, "header") {
		t.Errorf("corrupt header: err %v, stderr %q", err, stderr)
	}
	if _, stderr, err := run(t, "", "inspect", filepath.Join(dir, "nope")); err == nil || stderr == "" {
		t.Errorf("missing model: err %v, stderr %q", err, stderr)
	}
}

func TestCLIBenchTrain(t *testing.T) {
	out := mustRun(t, "", "bench", "--train", "--config", "tiny", "--batches", "2", "--seq", "8", "--json")
	var rep struct {
		Ceilings struct {
			MatMul float64 `json:"matmul_gflops"`
		} `json:"ceilings"`
		Train []struct {
			TokensPerSec float64 `json:"tokens_per_s"`
			Fraction     float64 `json:"fraction_of_matmul_ceiling"`
		} `json:"train"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if rep.Ceilings.MatMul <= 0 || len(rep.Train) != 1 || rep.Train[0].TokensPerSec <= 0 || rep.Train[0].Fraction <= 0 {
		t.Errorf("bench --train report: %+v", rep)
	}
}

func TestCLIBenchServe(t *testing.T) {
	png := filepath.Join(t.TempDir(), "serve.png")
	out := mustRun(t, "", "bench", "--serve", "--config", "tiny", "--batches", "1,2", "--decode", "2", "--plot", png, "--json")
	var rep struct {
		Serve []struct {
			Concurrency int     `json:"concurrency"`
			TokensS     float64 `json:"tokens_per_s"`
			Failed      int     `json:"failed"`
		} `json:"serve"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(rep.Serve) != 2 || rep.Serve[1].Concurrency != 2 || rep.Serve[0].TokensS <= 0 || rep.Serve[0].Failed+rep.Serve[1].Failed != 0 {
		t.Errorf("bench --serve report: %+v", rep)
	}
	if st, err := os.Stat(png); err != nil || st.Size() < 1000 {
		t.Errorf("plot not written: %v", err)
	}
}

// bench --serve --adapter serves the base model and the adapter grouped
// apart and in the prefill, level by level, on the same prompts.
func TestCLIBenchServeAdapter(t *testing.T) {
	png := filepath.Join(t.TempDir(), "serve.png")
	out := mustRun(t, "", "bench", "--serve", "--adapter", "random", "--config", "tiny", "--batches", "2", "--decode", "2",
		"--dtype", "f32", "--seq", "16", "--plot", png, "--json")
	var rep struct {
		Serve []struct {
			Config   string  `json:"config"`
			Requests int     `json:"requests"`
			TokensS  float64 `json:"tokens_per_s"`
			Failed   int     `json:"failed"`
			Adapted  int     `json:"adapted"`
		} `json:"serve"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := []string{"base", "adapted, grouped apart", "adapted, in the prefill"}
	if len(rep.Serve) != len(want) {
		t.Fatalf("bench --serve --adapter report: %+v", rep)
	}
	for i, r := range rep.Serve {
		if r.Config != want[i] || r.TokensS <= 0 || r.Failed != 0 || (i > 0) != (r.Adapted == r.Requests) {
			t.Errorf("row %d: %+v, want %q served without failures, adapted unless base", i, r, want[i])
		}
	}
	if st, err := os.Stat(png); err != nil || st.Size() < 1000 {
		t.Errorf("plot not written: %v", err)
	}
}

// TestCLITrainEndToEnd builds a small corpus from a fake fortunes tree,
// trains a tiny model for a few steps, resumes it, and generates from the
// checkpoint: the path from `make data` to a usable model.
// (Over 80 lines: one pipeline, corpus to trained model to adapters, each step
// feeding the next.)
func TestCLITrainEndToEnd(t *testing.T) {
	src := t.TempDir()
	var b strings.Builder
	words := []string{"the", "cat", "sat", "on", "a", "mat", "while", "dogs", "ran", "far", "away", "today"}
	for i := 0; i < 300; i++ {
		for j := 0; j < 12; j++ {
			b.WriteString(words[(i*7+j*5)%len(words)] + " ")
		}
		b.WriteString("number " + strings.Repeat("x", i%9) + ".\n%\n")
	}
	for _, pkg := range []string{"fortunes", "fortunes-min"} {
		dir := filepath.Join(src, pkg, "usr/share/games/fortunes")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "sayings-"+pkg), []byte(strings.ReplaceAll(b.String(), "number", pkg)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	corpus := filepath.Join(t.TempDir(), "corpus")
	mustRun(t, "", "data", "build", "--src", src, "--out", corpus, "--domains", "quotes")
	out := filepath.Join(t.TempDir(), "run")
	args := []string{"train", "--corpus", corpus, "--out", out, "--config", "custom", "--n-embd", "16", "--n-layer", "1",
		"--n-head", "2", "--n-ctx", "32", "--batch", "2", "--seq", "16", "--eval-every", "2", "--save-every", "2",
		"--eval-tokens", "256", "--warmup", "1"}
	mustRun(t, "", append(args, "--steps", "3")...)
	for _, f := range []string{"checkpoint/model.safetensors", "checkpoint/config.json", "checkpoint/encoder.json", "loss.png"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("train did not write %s: %v", f, err)
		}
	}
	// Training into a run directory again without --resume is refused, and
	// so is resuming under another configuration (naming the difference);
	// resuming the finished run with its own flags succeeds.
	if _, stderr, err := run(t, "", append(args, "--steps", "3")...); err == nil {
		t.Errorf("a second run into the same --out without --resume was accepted: %s", stderr)
	}
	if _, stderr, err := run(t, "", append(args, "--steps", "5", "--resume")...); err == nil || !strings.Contains(stderr, "steps: 3 -> 5") {
		t.Errorf("resume under another configuration: err %v, stderr %q", err, stderr)
	}
	mustRun(t, "", append(args, "--steps", "3", "--resume")...)
	gen := mustRun(t, "", "generate", "--model", filepath.Join(out, "checkpoint"), "--max-tokens", "3", "--temperature", "0", "the cat")
	if !strings.HasPrefix(gen, "the cat") {
		t.Errorf("generate from the checkpoint: %q", gen)
	}

	// Adapters of that model: one trained alone (adapt train, its file used
	// by generate), then the benchmark's plumbing on a tiny grid.
	ckpt := filepath.Join(out, "checkpoint")
	hyper := filepath.Join(t.TempDir(), "hyper.safetensors")
	win := []string{"--model", ckpt, "--corpus", corpus, "--adapt-domains", "quotes", "--t", "16", "--prompt", "4", "--batch", "2", "--rank", "1"}
	mustRun(t, "", append([]string{"adapt", "train", "--method", "hyper-hidden", "--out", hyper, "--train", "6", "--epochs", "1"}, win...)...)
	for _, f := range []string{hyper, strings.TrimSuffix(hyper, ".safetensors") + "-loss.png"} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("adapt train did not write %s: %v", f, err)
		}
	}
	if gen := mustRun(t, "", "generate", "--model", ckpt, "--adapter", hyper, "--max-tokens", "2", "--temperature", "0", "the cat", "a mat"); !strings.Contains(gen, "the cat") {
		t.Errorf("generate with the trained adapter: %q", gen)
	}
	// A method with updates inside the decoder writes a file that generate
	// applies (qkv of every layer as well as the head).
	deep := filepath.Join(t.TempDir(), "deep.safetensors")
	// A gate with a selection among the training centroids, served.
	gated := filepath.Join(t.TempDir(), "gated.safetensors")
	gateArgs := []string{"adapt", "gate", "--adapter", hyper, "--out", gated, "--model", ckpt, "--corpus", corpus, "--adapt-domains", "quotes",
		"--t", "16", "--prompt", "4", "--train", "6", "--fit", "2", "--batch", "2"}
	if gj, ok := checkSnake(t, "adapt gate --json", mustRun(t, "", append(gateArgs, "--select", "2", "--json")...)).(map[string]any); !ok || gj["select"] != 2.0 || gj["self_check"] != true {
		t.Errorf("adapt gate --select 2 --json: %v", gj)
	}
	if gen := mustRun(t, "", "generate", "--model", ckpt, "--adapter", gated, "--max-tokens", "2", "--temperature", "0", "the cat", "a mat"); !strings.Contains(gen, "a mat") {
		t.Errorf("generate with a selecting adapter: %q", gen)
	}
	if _, stderr, err := run(t, "", append(gateArgs, "--select", "99")...); err == nil || !strings.Contains(stderr, "select 99") {
		t.Errorf("adapt gate --select 99: err %v, %q", err, stderr)
	}
	// A gate of its own features (the benchmark's shared gate) needs the
	// pretraining domains, which this corpus lacks (adaptrun's
	// TestSharedGateServedMatchesBench serves one); unknown features are
	// named.
	for _, c := range []struct{ features, want string }{{"embed+hidden", "pretraining domains"}, {"tokens", "--gate-features: unknown"}} {
		if _, stderr, err := run(t, "", append(gateArgs, "--gate-features", c.features)...); err == nil || !strings.Contains(stderr, c.want) {
			t.Errorf("adapt gate --gate-features %s: err %v, %q", c.features, err, stderr)
		}
	}
	tj := checkSnake(t, "adapt train --json", mustRun(t, "", append([]string{"adapt", "train", "--method", "hyper-qkv", "--out", deep, "--train", "4", "--epochs", "1", "--json"}, win...)...))
	if r, ok := tj.(map[string]any); !ok || r["out"] != deep || r["steps"] == nil {
		t.Errorf("adapt train --json: %v", tj)
	}
	if gen := mustRun(t, "", "generate", "--model", ckpt, "--adapter", deep, "--max-tokens", "2", "--temperature", "0", "the cat", "a mat"); !strings.Contains(gen, "the cat") {
		t.Errorf("generate with the trained decoder adapter: %q", gen)
	}
	if gen := mustRun(t, "", "generate", "--model", ckpt, "--adapter", hyper, "--cache", "--max-tokens", "2", "--temperature", "0", "the cat", "a mat"); !strings.Contains(gen, "a mat") {
		t.Errorf("generate with the token cache: %q", gen)
	}
	if _, stderr, err := run(t, "", "generate", "--model", ckpt, "--cache", "the cat"); err == nil || !strings.Contains(stderr, "--adapter") {
		t.Errorf("generate --cache without an adapter: err %v, %q", err, stderr)
	}
	bench := t.TempDir()
	mustRun(t, "", append([]string{"adapt", "bench", "--out", bench, "--train", "6", "--val", "2", "--test", "2", "--harm", "0", "--fit", "0",
		"--methods", "lora,experts,table,hyper-hidden,lora-qkv", "--lrs", "1e-2", "--seeds", "1", "--epochs", "1", "--bootstrap", "20"}, win...)...)
	res, err := adaptrun.ReadJSON(filepath.Join(bench, "bench.json"))
	if err != nil {
		t.Fatal(err)
	}
	// base, temperature, lora x3 (static, gated, gated and self-checked),
	// experts x3, table x2, hyper x8, lora-qkv x2 (static, gated)
	if len(res.Rows) != 20 {
		t.Fatalf("adapt bench: %d rows, want 20", len(res.Rows))
	}
	for _, f := range []string{"bench.md", "bench.png", "hyper-hidden.safetensors"} {
		if _, err := os.Stat(filepath.Join(bench, f)); err != nil {
			t.Errorf("adapt bench did not write %s: %v", f, err)
		}
	}
	// The token cache on saved windows, clustered by the trained
	// hyper-network's plan (this corpus has adaptation domains only: no
	// harm split, a uniform prior).
	wf := filepath.Join(t.TempDir(), "w.json.gz")
	mustRun(t, "", append([]string{"adapt", "bench", "--prepare-only", "--save-windows", wf, "--train", "2", "--val", "2", "--test", "4", "--harm", "2", "--fit", "2"}, win...)...)
	// A method it does not know is refused before the base model's pass
	// over the windows (which prints each split's windows); the fitted
	// basis exists only under a budget.
	for _, m := range []string{"nosuch", "hyper-basis-fit"} {
		if _, stderr, err := run(t, "", "adapt", "bench", "--model", ckpt, "--windows", wf, "--out", t.TempDir(), "--methods", m); err == nil || !strings.Contains(stderr, "unknown method") || strings.Contains(stderr, "train: ") {
			t.Errorf("adapt bench --methods %s: err %v, %q", m, err, stderr)
		}
	}
	// So is a gate dropout that is no chance.
	for _, p := range []string{"1", "-0.1", "NaN"} {
		if _, stderr, err := run(t, "", "adapt", "bench", "--model", ckpt, "--windows", wf, "--out", t.TempDir(), "--budget", "4",
			"--methods", "hyper-basis-drop", "--gate-drop", p); err == nil || !strings.Contains(stderr, "--gate-drop") || strings.Contains(stderr, "train: ") {
			t.Errorf("adapt bench --gate-drop %s: err %v, %q", p, err, stderr)
		}
	}
	// And a shared gate in a feature space that does not exist.
	for _, g := range []string{"tokens", "hidden,"} {
		if _, stderr, err := run(t, "", "adapt", "bench", "--model", ckpt, "--windows", wf, "--out", t.TempDir(),
			"--methods", "lora", "--shared-gates", g); err == nil || !strings.Contains(stderr, "--shared-gates") || strings.Contains(stderr, "train: ") {
			t.Errorf("adapt bench --shared-gates %q: err %v, %q", g, err, stderr)
		}
	}
	// And a slack grid that is not one, or one without the pretraining
	// domains' validation windows to choose on.
	for _, sl := range []string{"-0.1", "x", "inf", "0,0.05"} {
		if _, stderr, err := run(t, "", "adapt", "bench", "--model", ckpt, "--windows", wf, "--out", t.TempDir(),
			"--methods", "lora", "--check-slacks", sl); err == nil || !strings.Contains(stderr, "--check-slacks") || strings.Contains(stderr, "train: ") {
			t.Errorf("adapt bench --check-slacks %q: err %v, %q", sl, err, stderr)
		}
	}
	// And an epochs grid that is not one.
	for _, ep := range []string{"0", "2,2", "2,x", ""} {
		if _, stderr, err := run(t, "", "adapt", "bench", "--model", ckpt, "--windows", wf, "--out", t.TempDir(),
			"--methods", "lora", "--epochs", ep); err == nil || !strings.Contains(stderr, "--epochs") || strings.Contains(stderr, "train: ") {
			t.Errorf("adapt bench --epochs %q: err %v, %q", ep, err, stderr)
		}
	}
	// And a cluster-size grid that is not one; adapt train refuses a size
	// for a method that trains on no clusters.
	for _, cs := range []string{"0", "16,16", "x", "-4"} {
		if _, stderr, err := run(t, "", "adapt", "bench", "--model", ckpt, "--windows", wf, "--out", t.TempDir(),
			"--methods", "lora", "--cluster-sizes", cs); err == nil || !strings.Contains(stderr, "--cluster-sizes") || strings.Contains(stderr, "train: ") {
			t.Errorf("adapt bench --cluster-sizes %q: err %v, %q", cs, err, stderr)
		}
	}
	if _, stderr, err := run(t, "", append([]string{"adapt", "train", "--method", "lora", "--cluster-size", "8",
		"--out", filepath.Join(t.TempDir(), "a.safetensors")}, win...)...); err == nil || !strings.Contains(stderr, "--cluster-size 8") {
		t.Errorf("adapt train --method lora --cluster-size 8: err %v, %q", err, stderr)
	}
	// A gate-decay grid that is not one, or one with no gated basis to
	// decay; adapt train refuses a decay for a LoRA.
	for _, c := range []struct{ methods, decays string }{{"hyper-basis", "-1"}, {"hyper-basis", "0,0"}, {"hyper-basis", "x"}, {"hyper-basis", "inf"}, {"lora", "0.1"}} {
		if _, stderr, err := run(t, "", "adapt", "bench", "--model", ckpt, "--windows", wf, "--out", t.TempDir(),
			"--methods", c.methods, "--gate-decays", c.decays); err == nil || !strings.Contains(stderr, "--gate-decays") || strings.Contains(stderr, "train: ") {
			t.Errorf("adapt bench --methods %s --gate-decays %q: err %v, %q", c.methods, c.decays, err, stderr)
		}
	}
	if _, stderr, err := run(t, "", append([]string{"adapt", "train", "--method", "lora", "--gate-decay", "0.1",
		"--out", filepath.Join(t.TempDir(), "a.safetensors")}, win...)...); err == nil || !strings.Contains(stderr, "--gate-decay 0.1") {
		t.Errorf("adapt train --method lora --gate-decay 0.1: err %v, %q", err, stderr)
	}
	cacheDir := t.TempDir()
	out = mustRun(t, "", "adapt", "cache", "--model", ckpt, "--adapter", hyper, "--windows", wf, "--out", cacheDir, "--batch", "2", "--bootstrap", "20", "--dtype", "f32")
	if !strings.Contains(out, "ChamaleonLLM+ cache") || !strings.Contains(out, "**test**") {
		t.Errorf("adapt cache printed no cache row or test stream:\n%s", out)
	}
	for _, f := range []string{"cache.md", "cache.json.gz", "cache.png"} {
		if _, err := os.Stat(filepath.Join(cacheDir, f)); err != nil {
			t.Errorf("adapt cache did not write %s: %v", f, err)
		}
	}
	if _, _, err := run(t, "", "adapt", "cache", "--model", ckpt, "--out", cacheDir); err == nil {
		t.Error("adapt cache without --windows: no error")
	}
	checkScoreVersus(t, ckpt, hyper, gated, wf)
	// The benchmark's groupings and controls for the saved file.
	ctl := t.TempDir()
	out = mustRun(t, "", "adapt", "controls", "--model", ckpt, "--adapter", hyper, "--windows", wf, "--out", ctl, "--bootstrap", "20", "--dtype", "f32")
	if !strings.Contains(out, "control: mean update for all") || !strings.Contains(out, "clustered test batches | hyper, random batches") {
		t.Errorf("adapt controls printed no control row or pair:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(ctl, "controls.json")); err != nil {
		t.Errorf("adapt controls did not write controls.json: %v", err)
	}
	// The staged self-check's choice on validation and fit windows (this
	// corpus has no pretraining domain: its validation windows stand in
	// for the fit split; prompts of 3 predictions are too short to stage,
	// so the file keeps one stage).
	if _, stderr, err := run(t, "", "adapt", "stage", "--model", ckpt, "--adapter", hyper, "--windows", wf, "--out", filepath.Join(t.TempDir(), "s.safetensors")); err == nil || !strings.Contains(stderr, "no fit split") {
		t.Errorf("adapt stage without fit windows: err %v, %q", err, stderr)
	}
	ws, err := adaptrun.LoadWindows(wf)
	if err != nil {
		t.Fatal(err)
	}
	ws.Splits["fit"] = ws.Splits["validation"]
	wfit := filepath.Join(t.TempDir(), "wfit.json.gz")
	if err := ws.Save(wfit); err != nil {
		t.Fatal(err)
	}
	staged, rep := filepath.Join(t.TempDir(), "staged.safetensors"), t.TempDir()
	out = mustRun(t, "", "adapt", "stage", "--model", ckpt, "--adapter", hyper, "--windows", wfit, "--out", staged, "--report", rep, "--batch", "2", "--dtype", "f32")
	if !strings.Contains(out, "| one stage |") || !strings.Contains(out, "the check stays one stage") || !strings.Contains(out, "wrote "+staged) {
		t.Errorf("adapt stage printed no table, verdict or file:\n%s", out)
	}
	for _, f := range []string{staged, filepath.Join(rep, "stages.md"), filepath.Join(rep, "stages.json"), filepath.Join(rep, "stages.png")} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("adapt stage did not write %s: %v", f, err)
		}
	}
	redraw := t.TempDir()
	if out := mustRun(t, "", "adapt", "stage", "--from-json", filepath.Join(rep, "stages.json"), "--report", redraw); !strings.Contains(out, "| one stage |") {
		t.Errorf("adapt stage --from-json printed no table:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(redraw, "stages.png")); err != nil {
		t.Errorf("adapt stage --from-json did not redraw: %v", err)
	}
	if _, stderr, err := run(t, "", "adapt", "stage", "--model", ckpt, "--adapter", hyper, "--windows", wfit); err == nil || !strings.Contains(stderr, "--out") {
		t.Errorf("adapt stage without --out: err %v, %q", err, stderr)
	}
}

// The plain bench repeats its timed run --reps times and reports the run of
// median decode rate, listing every run's rates beside it.
func TestCLIBenchReps(t *testing.T) {
	out := mustRun(t, "", "bench", "--config", "tiny", "--batches", "2", "--prompt", "4", "--decode", "2", "--dtype", "f32", "--reps", "3", "--json")
	var rep struct {
		Runs []struct {
			Reps        int       `json:"reps"`
			Prefill     float64   `json:"prefill_tokens_per_s"`
			Decode      float64   `json:"decode_tokens_per_s"`
			PrefillRuns []float64 `json:"prefill_tokens_per_s_runs"`
			DecodeRuns  []float64 `json:"decode_tokens_per_s_runs"`
		} `json:"runs"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(rep.Runs) != 1 {
		t.Fatalf("%d runs reported, want 1 (batch 2, f32)", len(rep.Runs))
	}
	r := rep.Runs[0]
	if r.Reps != 3 || len(r.DecodeRuns) != 3 || len(r.PrefillRuns) != 3 {
		t.Fatalf("reps %d, %d decode and %d prefill rates, want 3 of each", r.Reps, len(r.DecodeRuns), len(r.PrefillRuns))
	}
	sorted := slices.Clone(r.DecodeRuns)
	slices.Sort(sorted)
	if r.Decode != sorted[1] || sorted[0] <= 0 {
		t.Errorf("decode %v reported, runs %v: want their median", r.Decode, r.DecodeRuns)
	}
	i := slices.Index(r.DecodeRuns, r.Decode)
	if r.Prefill != r.PrefillRuns[i] {
		t.Errorf("prefill %v reported, want %v, the prefill of the median decode run (runs %v)", r.Prefill, r.PrefillRuns[i], r.PrefillRuns)
	}
	if _, stderr, err := run(t, "", "bench", "--config", "tiny", "--batches", "1", "--reps", "0"); err == nil || !strings.Contains(stderr, "--reps") {
		t.Errorf("--reps 0: err %v, stderr %q", err, stderr)
	}
}
