package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// wantFail runs the CLI, which must fail with a non-zero exit, print
// nothing on stdout and name want on stderr (in any case: NaN; inf may
// read +Inf).
func wantFail(t *testing.T, want string, args ...string) {
	t.Helper()
	out, stderr, err := run(t, "", args...)
	if err == nil {
		t.Errorf("chameleon %q succeeded; want an error naming %q\nstdout: %s", args, want, out)
		return
	}
	if !strings.Contains(strings.ToLower(stderr), strings.ToLower(want)) && !strings.Contains(stderr, strings.Replace(want, " inf", " +Inf", 1)) {
		t.Errorf("chameleon %q: stderr does not name %q:\n%s", args, want, stderr)
	}
	if out != "" {
		t.Errorf("chameleon %q failed but printed on stdout: %q", args, out)
	}
}

// Sampling flags a sampler cannot use (NaN, negative, out of range) were
// accepted and silently ran as something else (greedy, all tokens), and
// --max-tokens 0 printed the prompt before failing.
func TestCLIGenerateRejectsBadSampling(t *testing.T) {
	for _, c := range []struct{ flag, value string }{
		{"--temperature", "nan"}, {"--temperature", "-1"}, {"--temperature", "inf"},
		{"--top-p", "nan"}, {"--top-p", "0"}, {"--top-p", "-0.5"}, {"--top-p", "2"},
		{"--top-k", "-1"}, {"--max-tokens", "0"}, {"--max-tokens", "-3"},
	} {
		wantFail(t, c.flag+" "+c.value, "generate", "--cpu", c.flag, c.value, "Hi")
	}
	wantFail(t, "--file", "generate", "--file", filepath.Join(t.TempDir(), "missing.txt"))
}

// A --max-tokens past the context overflowed the cache size (a cache of
// -9223372036854775807 tokens), and any generation that ran into the
// context stopped without a word.
func TestCLIGenerateContextNote(t *testing.T) {
	args := []string{"generate", "--cpu", "--temperature", "0", "--stop-at-eot=false", "--max-tokens", "9223372036854775807", "Hi"}
	out, stderr, err := run(t, "", args...)
	if err != nil {
		t.Fatalf("chameleon %q: %v\n%s", args, err, stderr)
	}
	if !strings.Contains(stderr, "stopped at the model's context of 256 tokens") {
		t.Errorf("no note of the context on stderr:\n%s", stderr)
	}
	if strings.Contains(out, "context") {
		t.Errorf("the note went to stdout: %q", out)
	}
	_, stderr, err = run(t, "", "generate", "--cpu", "--max-tokens", "3", "Hi")
	if err != nil || strings.Contains(stderr, "context") {
		t.Errorf("a short generation notes the context (err %v):\n%s", err, stderr)
	}
}

// --device with --cpu was silently ignored.
func TestCLICPUWithDevice(t *testing.T) {
	wantFail(t, "--device", "generate", "--cpu", "--device", "5", "--max-tokens", "1", "Hi")
}

// perplexity ran --batch 0 and -1 as 1.
func TestCLIPerplexityRejectsBadWindows(t *testing.T) {
	data := filepath.Join(t.TempDir(), "text.txt")
	if err := os.WriteFile(data, []byte("The quick brown fox jumps over the lazy dog.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ flag, value string }{
		{"--batch", "0"}, {"--batch", "-1"}, {"--context", "-5"}, {"--stride", "-1"},
	} {
		wantFail(t, c.flag+" "+c.value, "perplexity", "--cpu", "--data", data, c.flag, c.value)
	}
}

// An --out in a missing directory failed (after the work) naming a
// temporary file; a .GGUF name wrote a directory.
func TestCLIOutPaths(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nodir", "x.gguf")
	wantFail(t, missing, "init", "--out", missing)
	wantFail(t, missing, "convert", "--out", missing)
	wantFail(t, missing, "quantize", "--type", "q8_0", "--out", missing)
	ad := filepath.Join(dir, "nodir", "a.safetensors")
	wantFail(t, ad, "adapt", "train", "--method", "lora", "--out", ad)
	wantFail(t, ad, "adapt", "gate", "--adapter", "default", "--corpus", t.TempDir(), "--out", ad)
	wantFail(t, ad, "adapt", "stage", "--windows", filepath.Join(dir, "w.json"), "--out", ad)
	if _, err := os.Stat(filepath.Join(dir, "nodir")); err == nil {
		t.Errorf("a failed run made the missing directory")
	}
	up := filepath.Join(dir, "TINY.GGUF")
	mustRun(t, "", "init", "--out", up)
	if st, err := os.Stat(up); err != nil || st.IsDir() {
		t.Errorf("init --out %s: want a GGUF file, got %v (err %v)", up, st, err)
	}
	mustRun(t, "", "tokenize", "--model", up, "hi")
	// Writing over the checkpoint being read is refused, and the input
	// stays as it was.
	before, err := os.ReadFile(up)
	if err != nil {
		t.Fatal(err)
	}
	wantFail(t, "own checkpoint", "quantize", "--type", "q8_0", "--model", up, "--out", up)
	wantFail(t, "own checkpoint", "convert", "--model", up, "--out", filepath.Join(dir, ".", "TINY.GGUF"))
	if after, err := os.ReadFile(up); err != nil || !bytes.Equal(before, after) {
		t.Errorf("a refused quantize or convert changed its input (err %v)", err)
	}
}

// adapt train --rank 0 panicked inside the trainer ("internal error")
// after preparing the windows; --epochs 0 also failed only then.
func TestCLIAdaptTrainRejectsBadSizes(t *testing.T) {
	out := filepath.Join(t.TempDir(), "a.safetensors")
	for _, c := range []struct{ flag, value string }{
		{"--rank", "0"}, {"--epochs", "0"}, {"--batch", "-1"}, {"--lr", "nan"}, {"--train", "0"},
	} {
		wantFail(t, c.flag+" "+c.value, "adapt", "train", "--corpus", t.TempDir(), "--method", "lora", c.flag, c.value, "--out", out)
	}
}

// bench --prompt 0 or --decode 0 failed only after measuring the ceilings,
// naming no flag.
func TestCLIBenchRejectsBadLengths(t *testing.T) {
	for _, flag := range []string{"--prompt", "--decode"} {
		wantFail(t, flag+" 0", "bench", "--config", "tiny", "--batches", "1", "--reps", "1", "--dtype", "f32", flag, "0")
	}
}

// soak refused any bad flag with one line listing every condition and no
// value.
func TestCLISoakNamesBadFlag(t *testing.T) {
	for _, c := range []struct{ args, want []string }{
		{[]string{"--duration", "1m"}, []string{"--duration 1m0s", "--warmup 2m0s"}},
		{[]string{"--warmup", "-1s"}, []string{"--warmup -1s"}},
		{[]string{"--sample", "0s", "--warmup", "0s"}, []string{"--sample 0s"}},
		{[]string{"--clients", "0"}, []string{"--clients 0"}},
		{[]string{"--slots", "-2"}, []string{"--slots -2"}},
		{[]string{"--max-tokens", "0"}, []string{"--max-tokens 0"}},
	} {
		for _, w := range c.want {
			wantFail(t, w, append([]string{"soak"}, c.args...)...)
		}
	}
}

// card --max-tokens 0 failed with "data: a stream of 0 tokens".
func TestCLICardRejectsBadMaxTokens(t *testing.T) {
	for _, v := range []string{"0", "1", "-1"} {
		wantFail(t, "--max-tokens "+v, "card", "--cpu", "--corpus", t.TempDir(), "--max-tokens", v)
	}
}

// data vocab ended the training text at the first unreadable corpus line
// without a word, and learned a vocabulary from what came before.
func TestCLIDataVocabReadError(t *testing.T) {
	src := t.TempDir()
	for _, pkg := range []string{"fortunes", "fortunes-min"} { // as TestCLIData
		dir := filepath.Join(src, pkg, "usr/share/games/fortunes")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		text := "A penny saved is a penny earned, says " + pkg + ".\n%\nMeasure twice and cut once, says " + pkg + ".\n"
		if err := os.WriteFile(filepath.Join(dir, "wisdom"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	corpus := filepath.Join(t.TempDir(), "corpus")
	mustRun(t, "", "data", "build", "--src", src, "--out", corpus, "--domains", "quotes")
	wantFail(t, "--size 10", "data", "vocab", "--corpus", corpus, "--size", "10", "--out", t.TempDir())
	train := filepath.Join(corpus, "quotes.train.jsonl")
	f, err := os.OpenFile(train, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("{not json\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, stderr, err := run(t, "", "data", "vocab", "--corpus", corpus, "--size", "300", "--out", t.TempDir())
	if err == nil || !strings.Contains(stderr, "quotes.train.jsonl") {
		t.Errorf("data vocab over a corrupt train file: err %v, stderr:\n%s", err, stderr)
	}
}
