package wgsl_test

import (
	"os"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/wgsl"
	"github.com/chameleon-llm/chameleon/wgsl/internal/gen"
)

// TestGenerated: every generated kernel file is exactly what the generator
// writes today, and no file marked generated is left without a source
// (after changing a template, a plain kernel with variants or the
// generator, run `go generate ./wgsl`).
func TestGenerated(t *testing.T) {
	files, err := gen.Files(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		got, err := os.ReadFile(f.Name)
		if err != nil {
			t.Errorf("%s: %v (run go generate ./wgsl)", f.Name, err)
			continue
		}
		if string(got) != f.Text {
			t.Errorf("%s differs from the generator's output: run go generate ./wgsl", f.Name)
		}
		if name := strings.TrimSuffix(f.Name, ".wgsl"); !strings.Contains(wgsl.Source(name), "fn main(") {
			t.Errorf("%s: the embedded kernel has no entry point", f.Name)
		}
	}
	stale, err := gen.Stale(".", files)
	if err != nil {
		t.Fatal(err)
	}
	if len(stale) > 0 {
		t.Errorf("generated files without a source: %v (run go generate ./wgsl)", stale)
	}
}
