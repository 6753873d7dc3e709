package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/model"
)

// checkGenerateFlags refuses generate's length and sampling flags that the
// sampler cannot use (NaN, infinite, negative or out of range), before
// anything is loaded or printed.
func checkGenerateFlags(opt model.GenerateOptions) error {
	if opt.MaxTokens < 1 {
		return fmt.Errorf("--max-tokens %d: want at least 1", opt.MaxTokens)
	}
	s := opt.Sample
	if t := float64(s.Temperature); !(t >= 0) || math.IsInf(t, 1) {
		return fmt.Errorf("--temperature %g: want a finite number of 0 (greedy) or more", t)
	}
	if p := float64(s.TopP); !(p > 0 && p <= 1) {
		return fmt.Errorf("--top-p %g: want a number in (0, 1] (1: all tokens)", p)
	}
	if s.TopK < 0 {
		return fmt.Errorf("--top-k %d: want 0 (all tokens) or more", s.TopK)
	}
	return nil
}

// noteContext says on stderr which generations stopped because the context
// was full rather than at --max-tokens or a stop (stdout keeps only the
// text).
func noteContext(w io.Writer, gens []model.Generation, nctx, maxTokens int) {
	var full []int
	for i, g := range gens {
		if g.Finish == "context" {
			full = append(full, i+1)
		}
	}
	switch {
	case len(full) == 0:
	case len(gens) == 1:
		fmt.Fprintf(w, "note: generation stopped at the model's context of %d tokens (prompt and continuation), before --max-tokens %d\n", nctx, maxTokens)
	default:
		fmt.Fprintf(w, "note: the generations of prompts %s stopped at the model's context of %d tokens (prompt and continuation), before --max-tokens %d\n", joinInts(full), nctx, maxTokens)
	}
}

// checkCPUDevice refuses an explicit --device beside --cpu, which runs on
// no WebGPU adapter (the device would be silently ignored).
func checkCPUDevice(cmd *cobra.Command) error {
	cpu, dev := cmd.Flags().Lookup("cpu"), cmd.Flag("device")
	if cpu == nil || dev == nil || !cpu.Changed || cpu.Value.String() != "true" || !dev.Changed {
		return nil
	}
	return fmt.Errorf("--device %q selects a WebGPU adapter, but --cpu runs on the plain-Go reference backend: give one of them", dev.Value.String())
}

// checkOutDir refuses an output path whose parent directory is missing or
// not a directory, before any work is done (the writer would fail at the
// end, naming its temporary file).
func checkOutDir(flag, path string) error {
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("%s %q: its directory %s does not exist", flag, path, dir)
	}
	if !st.IsDir() {
		return fmt.Errorf("%s %q: %s is not a directory", flag, path, dir)
	}
	return nil
}

// isGGUFName reports whether an output path names a GGUF file (.gguf in
// any case, as loading recognizes it).
func isGGUFName(path string) bool {
	return strings.EqualFold(filepath.Ext(path), ".gguf")
}

// checkModelOut checks a model output (--out): a GGUF file needs its
// directory; a Hugging Face directory is made with its parents, but not
// over a file.
func checkModelOut(out string) error {
	if out == "" {
		return fmt.Errorf("--out is required")
	}
	if isGGUFName(out) {
		return checkOutDir("--out", out)
	}
	if st, err := os.Stat(out); err == nil && !st.IsDir() {
		return fmt.Errorf("--out %q is a file: a Hugging Face checkpoint is a directory (name a .gguf file for GGUF)", out)
	}
	return nil
}

// checkNotInput refuses an --out that is the --model it reads (the same file
// or directory): the write replaces the input, and a failure after it (the
// quantizer's read-back) would leave neither.
func checkNotInput(in, out string) error {
	if in == "" {
		return nil
	}
	a, errA := os.Stat(in)
	b, errB := os.Stat(out)
	if errA == nil && errB == nil && os.SameFile(a, b) {
		return fmt.Errorf("--out %q is --model's own checkpoint: write to another path, then move it", out)
	}
	return nil
}

// positive refuses a count flag under 1.
func positive(flag string, v int) error {
	if v < 1 {
		return fmt.Errorf("%s %d: want at least 1", flag, v)
	}
	return nil
}
