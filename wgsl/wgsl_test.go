package wgsl

import (
	"flag"
	"os"
	"strings"
	"testing"
)

// Every kernel expands completely: no include line or placeholder is left.
func TestIncludesExpand(t *testing.T) {
	for _, n := range Names() {
		src := Source(n)
		if strings.Contains(src, "//#include") || strings.Contains(src, "N_COLS") {
			t.Errorf("kernel %s: unexpanded include", n)
		}
		if !strings.Contains(src, "fn main(") {
			t.Errorf("kernel %s: no entry point", n)
		}
	}
}

func TestExpandSubstitutes(t *testing.T) {
	src := expand("test", "a\n//#include matmul_reg_f32_main N_COLS=params.zz\nb", 0)
	if !strings.HasPrefix(src, "a\n@compute") || !strings.HasSuffix(src, "\nb") || !strings.Contains(src, "params.zz") {
		t.Fatalf("expansion:\n%.200s ... %.100s", src, src[len(src)-100:])
	}
}

var update = flag.Bool("update", false, "rewrite the generated texture matmul kernels")

// TestTexKernelsGenerated: every generated kernel file is exactly what
// texMatMul writes today (run with -update after changing the generator).
func TestTexKernelsGenerated(t *testing.T) {
	for _, k := range TexKernels {
		want := texMatMul(k)
		if *update {
			if err := os.WriteFile(k.Name+".wgsl", []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if got := Source(k.Name); got != want {
			t.Errorf("%s.wgsl differs from wgsl/texgen.go's output: run go test ./wgsl -run TexKernels -update", k.Name)
		}
	}
}
